"""The Parquet shard format shared by ingest (writer) and train (reader). Plain pyarrow, no Ray.

Schema of `OUT/<split>/part-*.parquet`:
  image   binary   uint8 pixels, row-major (height, width, channels), RGB order when channels == 3
  label   int16    class index into the task's labels (faceray.labels); -1 = unknown (IMDB NaN gender kept
                   with --no-drop-unknown-gender; training refuses such data)
  source  string   where the row came from (relative image path, or 'fer2013.csv:<row>')
  + per dataset: celeb_id int64, face_score float32, photo_taken float32 (IMDB); usage string (FER)
Schema metadata (bytes keys): faceray.image_shape = JSON [h, w, c], faceray.color = 'gray'|'rgb',
faceray.task = 'gender'|'emotion', faceray.labels = JSON list of label names.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.parquet as pq

SHAPE_KEY = b"faceray.image_shape"
COLOR_KEY = b"faceray.color"
TASK_KEY = b"faceray.task"
LABELS_KEY = b"faceray.labels"

BASE_FIELDS = [pa.field("image", pa.binary()), pa.field("label", pa.int16()), pa.field("source", pa.string())]
EXTRA_FIELDS: dict[str, list[pa.Field]] = {
    "imdb": [
        pa.field("celeb_id", pa.int64()),
        pa.field("face_score", pa.float32()),
        pa.field("photo_taken", pa.float32()),
    ],
    "fer": [pa.field("usage", pa.string())],
}


def shard_schema(dataset: str, image_shape: Sequence[int], color: str, task: str, labels: Sequence[str]) -> pa.Schema:
    """The Arrow schema (with faceray metadata) of one dataset's shards."""
    metadata = {
        SHAPE_KEY: json.dumps(list(image_shape)).encode(),
        COLOR_KEY: color.encode(),
        TASK_KEY: task.encode(),
        LABELS_KEY: json.dumps(list(labels)).encode(),
    }
    return pa.schema(BASE_FIELDS + EXTRA_FIELDS[dataset], metadata=metadata)


def write_shard(path: Path, rows: dict[str, list[Any]], schema: pa.Schema) -> None:
    """Write one shard atomically (temporary name, then rename), zstd-compressed."""
    table = pa.Table.from_pydict(rows, schema=schema)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    pq.write_table(table, temporary, compression="zstd")
    os.replace(temporary, path)


def shard_files(data_dir: str | Path, split: str) -> list[Path]:
    """The finished shard files of `split`, sorted (temporary files excluded)."""
    folder = Path(data_dir) / split
    return sorted(folder.glob("*.parquet")) if folder.is_dir() else []


def read_shard_metadata(data_dir: str | Path, split: str = "train") -> dict[str, Any]:
    """image_shape, color, task and labels recorded in the shards of `split` (raises ValueError if none)."""
    files = shard_files(data_dir, split)
    if not files:
        raise ValueError(f"no Parquet shards in {Path(data_dir) / split}")
    metadata = pq.read_schema(files[0]).metadata or {}
    if SHAPE_KEY not in metadata:
        raise ValueError(f"{files[0]} was not written by faceray ingest (no {SHAPE_KEY.decode()} in its schema)")
    return {
        "image_shape": tuple(json.loads(metadata[SHAPE_KEY])),
        "color": metadata[COLOR_KEY].decode(),
        "task": metadata[TASK_KEY].decode(),
        "labels": tuple(json.loads(metadata[LABELS_KEY])),
    }


def decode_images(column: Sequence[bytes] | npt.NDArray[Any], image_shape: Sequence[int]) -> npt.NDArray[np.uint8]:
    """Turn a column of raw pixel bytes into uint8 (N, H, W, C)."""
    count = len(column)
    if count == 0:
        return np.zeros((0, *image_shape), np.uint8)
    joined = b"".join(bytes(item) for item in column)
    return np.frombuffer(joined, np.uint8).reshape(count, *image_shape)


def read_shard_numpy(
    path: str | Path, image_shape: Sequence[int]
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]]:
    """One shard file as (uint8 (N, H, W, C) images, int64 (N,) labels)."""
    table = pq.read_table(path, columns=["image", "label"])
    return decode_images(table.column("image").to_pylist(), image_shape), table.column("label").to_numpy().astype(
        np.int64
    )


def iter_split_numpy(data_dir: str | Path, split: str) -> Iterator[tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]]]:
    """Yield (uint8 (N, H, W, C) images, int64 (N,) labels) shard by shard."""
    shape = read_shard_metadata(data_dir, split)["image_shape"]
    for path in shard_files(data_dir, split):
        yield read_shard_numpy(path, shape)


def load_split_numpy(data_dir: str | Path, split: str) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]]:
    """A whole split in memory as (uint8 (N, H, W, C), int64 (N,)); for small data and evaluation."""
    shape = read_shard_metadata(data_dir, split)["image_shape"]
    parts = list(iter_split_numpy(data_dir, split))
    if not parts:
        return np.zeros((0, *shape), np.uint8), np.zeros((0,), np.int64)
    return np.concatenate([images for images, _ in parts]), np.concatenate([labels for _, labels in parts])
