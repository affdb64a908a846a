"""`faceray fetch-weights paper`: the paper's published models, downloaded on purpose and checked, as model directories.

Nothing here runs unless the user asks: faceray never downloads at run time. Each file's SHA-256 is pinned below; a
file that does not match is deleted and refused. The .hdf5 files (MIT licence, github oarriaga/face_classification)
become model directories through `import_legacy_model`, the code behind `faceray import-model`.
"""

from __future__ import annotations

import hashlib
import shutil
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

PAPER_BASE_URL = "https://github.com/oarriaga/face_classification/raw/master/trained_models"
PAPER_LICENSE = "MIT, Copyright (c) 2017 Octavio Arriaga (github oarriaga/face_classification)"


@dataclass(frozen=True)
class PublishedWeights:
    """One published file: where it lives under the base URL, its pinned SHA-256 and what it classifies."""

    task: str
    path: str  # relative to the base URL (the repository's trained_models/ layout)
    sha256: str
    size_bytes: int
    input_shape: tuple[int, int, int] = (64, 64, 1)
    color: str = "gray"

    @property
    def filename(self) -> str:
        return self.path.rsplit("/", 1)[-1]


SETS: dict[str, tuple[PublishedWeights, ...]] = {
    "paper": (
        PublishedWeights(
            "emotion",
            "emotion_models/fer2013_mini_XCEPTION.102-0.66.hdf5",
            "59534287fdfb125e30a94400296c25ea9f5d706fca93dd8adbbbed916799ea0e",
            872_856,
        ),
        PublishedWeights(
            "gender",
            "gender_models/gender_mini_XCEPTION.21-0.95.hdf5",
            "7affc7bd520c48ca908eada26988d0e17fdfa1d447d8ae5675395f05ca6f943b",
            802_960,
        ),
    ),
}


class DownloadError(ValueError):
    """A file that could not be fetched or did not match its pinned checksum."""


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def download_verified(url: str, target: Path, sha256: str, max_bytes: int, timeout_s: float = 60.0) -> Path:
    """Fetch `url` into `target` through a temporary file; keep it only if its SHA-256 is `sha256`.
    A file already at `target` with the right checksum is kept without a download."""
    if target.is_file() and sha256_of(target) == sha256:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".part")
    digest, size = hashlib.sha256(), 0
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response, open(partial, "wb") as handle:
            while block := response.read(1 << 16):
                size += len(block)
                if size > max_bytes:
                    raise DownloadError(f"{url}: more than {max_bytes} bytes, not the published file")
                digest.update(block)
                handle.write(block)
    except (urllib.error.URLError, TimeoutError, OSError) as error:
        partial.unlink(missing_ok=True)
        raise DownloadError(f"{url}: {getattr(error, 'reason', error)}") from None
    except DownloadError:
        partial.unlink(missing_ok=True)
        raise
    if digest.hexdigest() != sha256:
        partial.unlink(missing_ok=True)
        raise DownloadError(
            f"{url}: SHA-256 {digest.hexdigest()} is not the pinned {sha256}; the file was deleted "
            "(a tampered or changed file, or a mirror that serves something else)"
        )
    partial.replace(target)
    return target


def fetch_weights(
    name: str, out: str | Path, base_url: str = PAPER_BASE_URL, log: Callable[[str], None] | None = print
) -> dict[str, Path]:
    """Download set `name` into OUT/downloads/, verify each file, write OUT/<task>-<name>/ model directories.
    Returns {task: model directory}. Raises DownloadError (nothing half-written is left behind)."""
    from faceray.train.model_dir import import_legacy_model

    if name not in SETS:
        raise DownloadError(f"unknown weights {name!r}; known: {', '.join(SETS)}")
    out = Path(out)
    folders: dict[str, Path] = {}
    for weights in SETS[name]:
        url = f"{base_url.rstrip('/')}/{weights.path}"
        if log is not None:
            log(f"fetching {weights.filename} ({weights.size_bytes / 1e6:.1f} MB) from {url}")
        hdf5 = download_verified(url, out / "downloads" / weights.filename, weights.sha256, 2 * weights.size_bytes)
        folder = out / f"{weights.task}-{name}"
        staging = out / f".{weights.task}-{name}.staging"
        shutil.rmtree(staging, ignore_errors=True)
        import_legacy_model(hdf5, weights.task, staging, weights.input_shape, weights.color)
        _add_provenance(staging, url, weights)
        shutil.rmtree(folder, ignore_errors=True)
        staging.replace(folder)
        folders[weights.task] = folder
        if log is not None:
            log(f"  SHA-256 verified; model directory {folder}")
    return folders


def _add_provenance(folder: Path, url: str, weights: PublishedWeights) -> None:
    from faceray.model_card import ModelCard

    card = ModelCard.read(folder)
    source = {
        "url": url,
        "file": weights.filename,
        "sha256": weights.sha256,
        "license": PAPER_LICENSE,
        "paper": "Arriaga, Ploger, Valdenegro: Real-time Convolutional Neural Networks for Emotion and "
        "Gender Classification (2017)",
    }
    card.with_extra(source=source).save(folder)
