"""The Parquet shard format: ingest writes it, training reads it (plain pyarrow, no Ray).

Layout: `OUT/<split>/part-NNNNN.parquet`, one folder per split. Columns (`BASE_FIELDS`, then the source's own):
  image   binary   uint8 pixels, row-major (height, width, channels), RGB order when channels == 3
  label   int16    class index into the task's labels (faceray.labels); -1 = unknown (IMDB NaN gender kept
                   with --no-drop-unknown-gender; training refuses such data)
  source  string   where the row came from (relative image path, or 'fer2013.csv:<row>')
  + per source (ingest/sources/): celeb_id, face_score, photo_taken (IMDB-WIKI); usage (FER-2013)
The schema's metadata is a `ShardMetadata` (bytes keys `faceray.*`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.parquet as pq

from faceray.faces import COLOR_CHANNELS, CropGeometry
from faceray.integrity import FileProblem, check_files, digest_bytes
from faceray.labels import SPLITS, labels_for_task
from faceray.storage import Location

SHAPE_KEY = b"faceray.image_shape"
COLOR_KEY = b"faceray.color"
TASK_KEY = b"faceray.task"
LABELS_KEY = b"faceray.labels"
DATASET_KEY = b"faceray.dataset"
CROP_KEY = b"faceray.crop"

BASE_FIELDS = [pa.field("image", pa.binary()), pa.field("label", pa.int16()), pa.field("source", pa.string())]


class FormatError(ValueError):
    """A file that is not in the format faceray expects; the message names the file and the field."""


@dataclass(frozen=True)
class ShardMetadata:
    """What every shard of an ingest output records about its images.

    image_shape: (H, W, C) of each image; color: 'gray' (C=1) or 'rgb' (C=3, RGB order); task and labels: the
    classes in index order; dataset: the source's name; crop: how the source cut faces from photos.
    `dataset` and `crop` are None in outputs written before faceray recorded them.
    """

    image_shape: tuple[int, int, int]
    color: str
    task: str
    labels: tuple[str, ...]
    dataset: str | None = None
    crop: CropGeometry | None = None

    def __post_init__(self) -> None:
        problems = self.problems()
        if problems:
            raise FormatError("invalid shard metadata: " + "; ".join(problems))

    def problems(self) -> list[str]:
        """Every inconsistency, each naming its field."""
        problems = []
        if len(self.image_shape) != 3 or min(self.image_shape) < 1:
            problems.append(f"image_shape {list(self.image_shape)} is not [height, width, channels]")
        elif self.color not in COLOR_CHANNELS or self.image_shape[2] != COLOR_CHANNELS[self.color]:
            problems.append(f"color {self.color!r} does not match image_shape {list(self.image_shape)}")
        try:
            expected = labels_for_task(self.task)
            if tuple(self.labels) != expected:
                problems.append(f"labels {list(self.labels)} are not the {self.task} labels {list(expected)}")
        except ValueError as error:
            problems.append(f"task: {error}")
        return problems

    def schema(self, extra_fields: Sequence[pa.Field] = ()) -> pa.Schema:
        """The Arrow schema of shards with this metadata: BASE_FIELDS, then a source's `extra_fields`."""
        metadata = {
            SHAPE_KEY: json.dumps(list(self.image_shape)).encode(),
            COLOR_KEY: self.color.encode(),
            TASK_KEY: self.task.encode(),
            LABELS_KEY: json.dumps(list(self.labels)).encode(),
        }
        if self.dataset is not None:
            metadata[DATASET_KEY] = self.dataset.encode()
        if self.crop is not None:
            metadata[CROP_KEY] = json.dumps(self.crop.to_dict()).encode()
        return pa.schema([*BASE_FIELDS, *extra_fields], metadata=metadata)

    @classmethod
    def from_schema(cls, schema: pa.Schema, path: str | Path | Location) -> ShardMetadata:
        """Read it back from a shard's schema; FormatError names `path` and the missing or bad field."""
        metadata = schema.metadata or {}
        if SHAPE_KEY not in metadata:
            raise FormatError(f"{path} was not written by faceray ingest (no {SHAPE_KEY.decode()} in its schema)")
        field = ""
        try:
            field = COLOR_KEY.decode()
            color = metadata[COLOR_KEY].decode()
            field = TASK_KEY.decode()
            task = metadata[TASK_KEY].decode()
            field = SHAPE_KEY.decode()
            shape = tuple(int(side) for side in json.loads(metadata[SHAPE_KEY]))
            field = LABELS_KEY.decode()
            labels = tuple(str(label) for label in json.loads(metadata[LABELS_KEY]))
            field = CROP_KEY.decode()
            crop = CropGeometry.from_dict(json.loads(metadata[CROP_KEY])) if CROP_KEY in metadata else None
        except (KeyError, ValueError, TypeError) as error:
            raise FormatError(f"{path}: schema field {field}: missing or unreadable ({error})") from None
        dataset = metadata[DATASET_KEY].decode() if DATASET_KEY in metadata else None
        if len(shape) != 3:
            raise FormatError(f"{path}: schema field {SHAPE_KEY.decode()}: {list(shape)} is not [h, w, c]")
        try:
            return cls((shape[0], shape[1], shape[2]), color, task, labels, dataset, crop)
        except FormatError as error:
            raise FormatError(f"{path}: {error}") from None

    @classmethod
    def read(cls, data_dir: str | Path | Location, split: str = "train") -> ShardMetadata:
        """The metadata of the shards of `split` in an ingest output (FormatError if there are none)."""
        files = shard_files(data_dir, split)
        if not files:
            raise FormatError(f"no Parquet shards in {Location.of(data_dir) / split}")
        return cls.from_schema(pq.read_schema(files[0].path, filesystem=files[0].filesystem), files[0].uri)


def write_shard(path: str | Path | Location, rows: dict[str, list[Any]], schema: pa.Schema) -> dict[str, Any]:
    """Write one shard, zstd-compressed with Parquet page checksums, whole or not at all (local: temporary name, then
    rename; object storage: one object put when complete); returns its record ({"sha256", "bytes"}) for the
    manifest."""
    table = pa.Table.from_pydict(rows, schema=schema)
    buffer = pa.BufferOutputStream()
    pq.write_table(table, buffer, compression="zstd", write_page_checksum=True)
    data = buffer.getvalue().to_pybytes()
    Location.of(path).write_bytes(data)
    return digest_bytes(data)


def shard_files(data_dir: str | Path | Location, split: str) -> list[Location]:
    """The finished shard files of `split` (local or in object storage), sorted (temporary files excluded)."""
    return (Location.of(data_dir) / split).files(".parquet")


def read_table(location: str | Path | Location, columns: Sequence[str] | None = None) -> pa.Table:
    """One Parquet file (local or in object storage) as an Arrow table, its page checksums verified where it has
    them; FormatError names the file when it cannot be read."""
    location = Location.of(location)
    try:
        return pq.read_table(
            location.path, filesystem=location.filesystem, columns=columns, page_checksum_verification=True
        )
    except (pa.ArrowException, OSError) as error:
        if isinstance(error, FileNotFoundError):
            raise
        raise FormatError(f"{location.uri}: not a readable Parquet shard ({error}); {REPAIR}") from None


# What to do about a damaged or foreign file in an ingest output.
REPAIR = "rerun the same `faceray ingest` command with --repair to rewrite the chunks whose files are damaged"


def check_labels(labels: npt.NDArray[Any], classes: int, where: str | Path | Location) -> None:
    """FormatError naming the file when a label is not a class of the data (0..classes-1, or -1 for unknown)."""
    bad = (labels >= classes) | (labels < -1)
    if bad.any():
        row = int(np.argmax(bad))
        raise FormatError(
            f"{where}: label {int(labels[row])} at row {row} is not a class of this data (0..{classes - 1}, or -1 "
            f"unknown): the file is damaged; {REPAIR}"
        )


def decode_images(column: Sequence[bytes] | npt.NDArray[Any], image_shape: Sequence[int]) -> npt.NDArray[np.uint8]:
    """Turn a column of raw pixel bytes into uint8 (N, H, W, C)."""
    count = len(column)
    if count == 0:
        return np.zeros((0, *image_shape), np.uint8)
    joined = b"".join(bytes(item) for item in column)
    return np.frombuffer(joined, np.uint8).reshape(count, *image_shape)


def read_shard_numpy(
    path: str | Path | Location, metadata: ShardMetadata
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]]:
    """One shard file as (uint8 (N, H, W, C) images, int64 (N,) labels), its labels checked against the metadata's
    classes (FormatError naming the file)."""
    table = read_table(path, columns=["image", "label"])
    labels = table.column("label").to_numpy().astype(np.int64)
    check_labels(labels, len(metadata.labels), Location.of(path).uri)
    return decode_images(table.column("image").to_pylist(), metadata.image_shape), labels


def iter_split_numpy(
    data_dir: str | Path | Location, split: str
) -> Iterator[tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]]]:
    """Yield (uint8 (N, H, W, C) images, int64 (N,) labels) shard by shard."""
    return _split_parts(data_dir, split, ShardMetadata.read(data_dir, split))


def _split_parts(
    data_dir: str | Path | Location, split: str, metadata: ShardMetadata
) -> Iterator[tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]]]:
    for path in shard_files(data_dir, split):
        yield read_shard_numpy(path, metadata)


def load_split_numpy(
    data_dir: str | Path | Location, split: str
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]]:
    """A whole split in memory as (uint8 (N, H, W, C), int64 (N,)); for small data and evaluation."""
    metadata = ShardMetadata.read(data_dir, split)  # read once, for every shard and the empty case
    parts = list(_split_parts(data_dir, split, metadata))
    if not parts:
        return np.zeros((0, *metadata.image_shape), np.uint8), np.zeros((0,), np.int64)
    return np.concatenate([images for images, _ in parts]), np.concatenate([labels for _, labels in parts])


MANIFEST_FILE = "manifest.json"  # OUT/manifest.json: resolved config, counts per split and label, rejects, throughput
REJECTS_FILE = "rejects.csv"  # OUT/rejects.csv: every rejected input (source,row,reason,detail)


@dataclass(frozen=True)
class IngestManifest:
    """OUT/manifest.json of a finished ingest: what the shards hold (`metadata`), the resolved config, counts of
    inputs, per split and label, rejects per reason, chunks, the last run's throughput and its resource plan."""

    dataset: str
    metadata: ShardMetadata
    config: dict[str, Any]
    inputs: dict[str, int]  # total, accepted, rejected (accepted + rejected == total)
    splits: dict[str, dict[str, Any]]  # split -> {"count", "labels": {label: count}}
    rejects: dict[str, int]  # reason -> count, most frequent first
    chunks: int
    this_run: dict[str, float]  # chunks_processed, images_processed, elapsed_s, images_per_s
    resource_plan: dict[str, Any] | None = None
    # Every shard and reject file, relative to OUT: {"sha256", "bytes"} as written (None: an output from before
    # faceray recorded them, which cannot be verified).
    files: dict[str, dict[str, Any]] | None = None

    def __post_init__(self) -> None:
        accepted, rejected, total = (self.inputs.get(key) for key in ("accepted", "rejected", "total"))
        if accepted is None or rejected is None or total is None or accepted + rejected != total:
            raise FormatError(f"manifest field 'inputs': {self.inputs} is not accepted + rejected = total")

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (the metadata's fields at the top level, as faceray has always written it)."""
        meta = self.metadata
        return {
            "dataset": self.dataset,
            "task": meta.task,
            "labels": list(meta.labels),
            "image_shape": list(meta.image_shape),
            "color": meta.color,
            "crop": meta.crop.to_dict() if meta.crop else None,
            "config": self.config,
            "inputs": self.inputs,
            "splits": self.splits,
            "rejects": self.rejects,
            "chunks": self.chunks,
            "this_run": self.this_run,
            "schema": "see faceray/shards.py: image binary (uint8 HxWxC), label int16, source string, + the source's "
            "columns",
            "resource_plan": self.resource_plan,
            "files": self.files,
        }

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = MANIFEST_FILE) -> IngestManifest:
        """Read the JSON form (also manifests written before faceray recorded crop geometry); FormatError names
        `source` and the field."""
        field = ""
        try:
            field = "crop"
            crop = CropGeometry.from_dict(values["crop"]) if values.get("crop") else None
            field = "task/labels/image_shape/color"
            shape = tuple(int(side) for side in values["image_shape"])
            metadata = ShardMetadata(
                (shape[0], shape[1], shape[2]),
                values["color"],
                values["task"],
                tuple(values["labels"]),
                values["dataset"],
                crop,
            )
            manifest = cls(
                dataset=values["dataset"],
                metadata=metadata,
                config=values["config"],
                inputs=values["inputs"],
                splits=values["splits"],
                rejects=values["rejects"],
                chunks=int(values["chunks"]),
                this_run=values["this_run"],
                resource_plan=values.get("resource_plan"),
                files=values.get("files"),
            )
        except KeyError as missing:
            raise FormatError(f"{source}: field {missing} is missing: not a faceray ingest manifest") from None
        except (TypeError, ValueError, IndexError) as error:
            raise FormatError(f"{source}: field {field}: {error}") from None
        return manifest

    @classmethod
    def read(cls, data_dir: str | Path | Location) -> IngestManifest:
        """The manifest of a finished ingest output; FormatError names the folder when it is not one."""
        from faceray.config import read_json_object

        path = Location.of(data_dir) / MANIFEST_FILE
        try:
            values = read_json_object(path, "a finished `faceray ingest` output")
        except ValueError as error:
            raise FormatError(str(error)) from None
        return cls.from_dict(values, path.uri)

    def save(self, data_dir: str | Path | Location) -> Location:
        """Write OUT/manifest.json whole; returns its location."""
        from faceray.config import write_json

        path = Location.of(data_dir) / MANIFEST_FILE
        write_json(path, self.to_dict())
        return path


def check_ingest_output(
    data_dir: str | Path | Location, splits: Sequence[str] | None = None
) -> tuple[IngestManifest, list[FileProblem]]:
    """Check an ingest output against its manifest: each recorded file of `splits` (default: all, rejects included)
    has the size and SHA-256 it was written with, and no shard is there that the ingest did not write. Returns the
    manifest and the problems (none for a sound output; none checkable when `manifest.files` is None)."""
    data_dir = Location.of(data_dir)
    manifest = IngestManifest.read(data_dir)
    if manifest.files is None:
        return manifest, []
    chosen = None if splits is None else set(splits)
    wanted = {name: record for name, record in manifest.files.items() if chosen is None or name.split("/")[0] in chosen}
    problems = check_files(data_dir, wanted, REPAIR)
    for split in SPLITS if chosen is None else sorted(chosen):
        for shard in shard_files(data_dir, split):
            if f"{split}/{shard.name}" not in manifest.files:
                problems.append(
                    FileProblem(shard.uri, "not written by this ingest (its manifest has no record of it)", REPAIR)
                )
    return manifest, problems


def verified_manifest(data_dir: str | Path | Location, splits: Sequence[str] | None = None) -> IngestManifest:
    """The manifest of an ingest output whose files (of `splits`) all match it (`check_ingest_output`); FormatError
    with one line per damaged, missing or foreign file otherwise."""
    manifest, problems = check_ingest_output(data_dir, splits)
    if problems:
        raise FormatError("\n".join(str(problem) for problem in problems))
    return manifest
