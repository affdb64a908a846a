"""`faceray inspect`: the manifest as a table, a sample grid per class and a class-distribution chart (no Ray)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from faceray.labels import SPLITS
from faceray.shards import IngestManifest, iter_split_numpy, verified_manifest
from faceray.storage import Location, local_folder


def manifest_table(manifest: IngestManifest) -> str:
    """A plain-text table: rows = labels, columns = splits, then the rejects per reason."""
    labels = list(manifest.metadata.labels)
    width = max(len(label) for label in [*labels, "rejected", "total"]) + 2
    meta = manifest.metadata
    lines = [f"{manifest.dataset} ({meta.task}, {list(meta.image_shape)} {meta.color})"]
    lines.append("".ljust(width) + "".join(split.rjust(10) for split in SPLITS))
    for label in labels:
        lines.append(
            label.ljust(width) + "".join(str(manifest.splits[split]["labels"][label]).rjust(10) for split in SPLITS)
        )
    lines.append("total".ljust(width) + "".join(str(manifest.splits[split]["count"]).rjust(10) for split in SPLITS))
    inputs = manifest.inputs
    lines.append(f"inputs {inputs['total']}: accepted {inputs['accepted']}, rejected {inputs['rejected']}")
    for reason, count in manifest.rejects.items():
        lines.append(f"  rejected  {count:>8}  {reason}")
    run = manifest.this_run
    lines.append(f"last run: {run['images_processed']} inputs, {run['elapsed_s']} s, {run['images_per_s']} img/s")
    return "\n".join(lines)


def sample_grid(
    data_dir: str | Path | Location, labels: list[str], per_class: int = 8, split: str = "train"
) -> np.ndarray:
    """uint8 (rows*H, per_class*W, 3) RGB grid: one row of up to `per_class` images per label."""
    chosen: dict[int, list[np.ndarray]] = {index: [] for index in range(len(labels))}
    shape = None
    for images, targets in iter_split_numpy(data_dir, split):
        shape = images.shape[1:]
        for image, label in zip(images, targets):
            if len(chosen[int(label)]) < per_class:
                chosen[int(label)].append(image)
        if all(len(items) >= per_class for items in chosen.values()):
            break
    if shape is None:
        raise ValueError(f"no images in {Location.of(data_dir) / split}")
    height, width, channels = shape
    grid = np.full((len(labels) * height, per_class * width, 3), 255, np.uint8)
    for row, items in chosen.items():
        for column, image in enumerate(items):
            tile = np.repeat(image, 3, axis=2) if channels == 1 else image
            grid[row * height : (row + 1) * height, column * width : (column + 1) * width] = tile
    return grid


def inspect_output(data_dir: str | Path, per_class: int = 8) -> tuple[str, list[Location]]:
    """Print-ready table of OUT/manifest.json and the PNGs written under OUT/inspect/ (OUT local or in object
    storage)."""
    data = Location.of(data_dir)
    with local_folder(data / "inspect") as folder:  # Matplotlib writes local files; uploaded for object storage
        table, names = _inspect(data, folder, per_class)
    return table, [data / "inspect" / name for name in names]


def _inspect(data_dir: Location, folder: Path, per_class: int) -> tuple[str, list[str]]:
    from matplotlib.figure import Figure  # not pyplot: no global figure registry to close or share between threads

    manifest = verified_manifest(data_dir)  # every file as written, before a sample of it is drawn
    labels = list(manifest.metadata.labels)
    written: list[Path] = []

    grid = sample_grid(data_dir, labels, per_class)
    tile = manifest.metadata.image_shape[0]
    figure = Figure(figsize=(per_class * 0.9 + 1.5, len(labels) * 0.9 + 0.5))
    axis = figure.subplots()
    axis.imshow(grid)
    axis.set_yticks([tile * (index + 0.5) for index in range(len(labels))], labels)
    axis.set_xticks([])
    axis.set_title(f"{manifest.dataset}: training samples per class")
    figure.tight_layout()
    written.append(folder / "samples.png")
    figure.savefig(written[-1], dpi=100)

    figure = Figure(figsize=(7, 3.5))
    axis = figure.subplots()
    positions = np.arange(len(labels))
    for offset, split in enumerate(SPLITS):
        counts = [manifest.splits[split]["labels"][label] for label in labels]
        axis.bar(positions + (offset - 1) * 0.27, counts, width=0.27, label=split)
    axis.set_xticks(positions, labels)
    axis.set_ylabel("images")
    axis.set_title(f"{manifest.dataset}: class distribution")
    axis.legend()
    figure.tight_layout()
    written.append(folder / "class_distribution.png")
    figure.savefig(written[-1], dpi=100)
    return manifest_table(manifest), [path.name for path in written]
