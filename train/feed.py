"""A data feed for one training process without Ray Data: Parquet shards streamed in a fresh order each epoch.

Pure numpy/pyarrow. A single-worker sweep trial trains inside its Tune trial and reads its shards itself, so it
needs no Ray Data tasks (and no CPUs kept for them). Memory: one shard plus a shuffle buffer, never a split.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from faceray.shards import ShardMetadata, iter_split_numpy, read_shard_numpy, shard_files
from faceray.storage import Location

Batch = tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]]


def shuffled_batches(
    data_dir: str | Path | Location,
    splits: Sequence[str],
    batch_size: int,
    seed: int,
    epoch: int,
    keep: Sequence[float] | None = None,
    buffer_rows: int = 4096,
) -> Iterator[Batch]:
    """Full batches of (uint8 (B, H, W, C), int64 (B,)) from `splits`, in an order that depends on (seed, epoch):
    shards in a random order, rows shuffled within a buffer of about `buffer_rows`. `keep` (per class, 0..1) drops
    each row with probability 1 - keep[label] (class balance by downsampling, a fresh draw each epoch)."""
    rng = np.random.default_rng([seed, epoch])
    files = []
    for split in splits:  # each split's metadata once, not once per shard
        metadata = ShardMetadata.read(data_dir, split)
        files += [(path, metadata) for path in shard_files(data_dir, split)]
    order = rng.permutation(len(files))
    pending_images: list[npt.NDArray[np.uint8]] = []
    pending_labels: list[npt.NDArray[np.int64]] = []
    held = 0
    for index in order:
        images, labels = read_shard_numpy(*files[index])
        if keep is not None:
            mask = rng.random(len(labels)) < np.asarray(keep)[labels]
            images, labels = images[mask], labels[mask]
        pending_images.append(images)
        pending_labels.append(labels)
        held += len(labels)
        if held >= buffer_rows:
            yield from _drain(pending_images, pending_labels, batch_size, rng, keep_tail=True)
            held = sum(len(part) for part in pending_labels)
    yield from _drain(pending_images, pending_labels, batch_size, rng, keep_tail=False)


def _drain(
    images: list[npt.NDArray[np.uint8]],
    labels: list[npt.NDArray[np.int64]],
    batch_size: int,
    rng: np.random.Generator,
    keep_tail: bool,
) -> Iterator[Batch]:
    """Shuffle what is buffered and yield full batches; the remainder stays buffered (or is dropped at the end)."""
    if not labels:
        return
    all_images, all_labels = np.concatenate(images), np.concatenate(labels)
    permutation = rng.permutation(len(all_labels))
    all_images, all_labels = all_images[permutation], all_labels[permutation]
    full = len(all_labels) // batch_size * batch_size
    for start in range(0, full, batch_size):
        yield all_images[start : start + batch_size], all_labels[start : start + batch_size]
    images.clear()
    labels.clear()
    if keep_tail and full < len(all_labels):
        images.append(all_images[full:])
        labels.append(all_labels[full:])


def split_batches(data_dir: str | Path | Location, split: str, batch_size: int = 256) -> Iterator[Batch]:
    """A split in its stored order, in batches of at most `batch_size` (for validation)."""
    for images, labels in iter_split_numpy(data_dir, split):
        for start in range(0, len(labels), batch_size):
            yield images[start : start + batch_size], labels[start : start + batch_size]
