"""The training feed: Parquet shards streamed to each worker in an order fixed by (seed, epoch), resumable at a step.

Pure numpy/pyarrow (no Ray). Every training process (a Ray Train worker, a single-worker sweep trial) reads its own
shards: no read tasks, no object store, and memory that does not grow with the dataset (one shard plus a shuffle
buffer of `buffer_rows`, plus `prefetch` batches decoded ahead by one thread).

An epoch's order: the files in a permutation drawn from (seed, epoch); worker `rank` of `world` takes every
world-th row of each file (every worker reads every file: reading is ~100x cheaper than training a row, and a split
into files would leave workers unequal when files are few); rows are shuffled within a buffer (a generator drawn
from (seed, epoch, rank)). With
`--balance downsample` each file's kept rows are drawn from (seed, epoch, file). Every worker runs the same number
of steps, `FeedPlan.steps(...)` (the smallest worker's full batches), so collectives line up; the rest of an epoch's
rows are left out of that epoch only. `worker_batches(..., start_step=S)` yields the same batches as a fresh epoch
from step S on: a run stopped at step S resumes at the same place and sees each example of that epoch once.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from faceray.shards import ShardMetadata, iter_split_numpy, read_shard_numpy, read_table, shard_files
from faceray.storage import Location

Batch = tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]]
SHUFFLE_BUFFER_ROWS = 16384  # 64 MiB of 64x64 grey images: mixes ~12 ingest shards


@dataclass(frozen=True)
class FeedPlan:
    """The shard files of the splits a run trains on, with each file's labels (read once, label column only)."""

    files: tuple[Location, ...]
    metadata: tuple[ShardMetadata, ...]
    labels: tuple[npt.NDArray[np.int16], ...]

    @classmethod
    def read(cls, data_dir: str | Path | Location, splits: Sequence[str]) -> FeedPlan:
        files: list[Location] = []
        metadata: list[ShardMetadata] = []
        labels: list[npt.NDArray[np.int16]] = []
        for split in splits:
            shards = shard_files(data_dir, split)
            if not shards:
                continue
            split_metadata = ShardMetadata.read(data_dir, split)
            for path in shards:
                files.append(path)
                metadata.append(split_metadata)
                labels.append(read_table(path, columns=["label"]).column("label").to_numpy().astype(np.int16))
        return cls(tuple(files), tuple(metadata), tuple(labels))

    @property
    def rows(self) -> int:
        return sum(len(part) for part in self.labels)

    def order(self, seed: int, epoch: int) -> npt.NDArray[np.int64]:
        """The files' order in `epoch` (indices into `files`)."""
        return np.random.default_rng([seed, epoch]).permutation(len(self.files))

    def kept(self, index: int, seed: int, epoch: int, keep: Sequence[float] | None) -> npt.NDArray[np.bool_] | None:
        """Which rows of file `index` an epoch keeps under per-class `keep` fractions (None: all of them)."""
        if keep is None:
            return None
        labels = self.labels[index]
        return np.random.default_rng([seed, epoch, 1 + index]).random(len(labels)) < np.asarray(keep)[labels]

    def worker_rows(self, seed: int, epoch: int, rank: int, world: int, keep: Sequence[float] | None) -> int:
        """Rows worker `rank` of `world` gets in `epoch`: every world-th kept row of each file, from row `rank`."""
        total = 0
        for index in range(len(self.files)):
            mask = self.kept(index, seed, epoch, keep)
            kept = len(self.labels[index]) if mask is None else int(mask.sum())
            total += max(0, (kept - rank + world - 1) // world)
        return total

    def steps(self, batch_size: int, seed: int, epoch: int, world: int, keep: Sequence[float] | None = None) -> int:
        """Steps in `epoch`: the full batches of the worker with the fewest rows (the same on every worker)."""
        return min(self.worker_rows(seed, epoch, rank, world, keep) // batch_size for rank in range(world))


def worker_batches(
    plan: FeedPlan,
    batch_size: int,
    seed: int,
    epoch: int,
    rank: int = 0,
    world: int = 1,
    keep: Sequence[float] | None = None,
    start_step: int = 0,
    buffer_rows: int = SHUFFLE_BUFFER_ROWS,
) -> Iterator[Batch]:
    """Batches of (uint8 (B, H, W, C), int64 (B,)) for worker `rank` in `epoch`, from `start_step` to
    `plan.steps(...)`: the module docstring's order. Skipped steps are read and shuffled but not copied out."""
    steps = plan.steps(batch_size, seed, epoch, world, keep)
    rng = np.random.default_rng([seed, epoch, 1_000_003 + rank])
    pending_images: list[npt.NDArray[np.uint8]] = []
    pending_labels: list[npt.NDArray[np.int64]] = []
    step = 0
    held = 0
    for index in plan.order(seed, epoch):
        if step >= steps:
            return
        images, labels = read_shard_numpy(plan.files[index], plan.metadata[index])
        mask = plan.kept(int(index), seed, epoch, keep)
        if mask is not None:
            images, labels = images[mask], labels[mask]
        if world > 1:
            images, labels = images[rank::world], labels[rank::world]
        pending_images.append(images)
        pending_labels.append(labels)
        held += len(labels)
        if held >= buffer_rows:
            for images_held, labels_held, chosen in _drain(
                pending_images, pending_labels, batch_size, rng, keep_tail=True
            ):
                if start_step <= step < steps:
                    yield images_held[chosen], labels_held[chosen]
                step += 1
            held = sum(len(part) for part in pending_labels)
    for images_held, labels_held, chosen in _drain(pending_images, pending_labels, batch_size, rng, keep_tail=False):
        if start_step <= step < steps:
            yield images_held[chosen], labels_held[chosen]
        step += 1


def _drain(
    images: list[npt.NDArray[np.uint8]],
    labels: list[npt.NDArray[np.int64]],
    batch_size: int,
    rng: np.random.Generator,
    keep_tail: bool,
) -> Iterator[tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64], npt.NDArray[np.int64]]]:
    """Shuffle what is buffered and yield (images, labels, row indices of one full batch); the remainder stays
    buffered (or is dropped at the end)."""
    if not labels:
        return
    all_labels = np.concatenate(labels)
    permutation = rng.permutation(len(all_labels))
    all_images = np.concatenate(images)
    full = len(all_labels) // batch_size * batch_size
    for start in range(0, full, batch_size):
        yield all_images, all_labels, permutation[start : start + batch_size]
    images.clear()
    labels.clear()
    if keep_tail and full < len(all_labels):
        rest = permutation[full:]
        images.append(all_images[rest])
        labels.append(all_labels[rest])


def prefetched(batches: Iterator[Batch], depth: int = 4) -> Iterator[Batch]:
    """`batches`, produced by one background thread up to `depth` ahead (reading and shuffling overlap the training
    step; numpy and pyarrow release the GIL). Errors are raised in the consumer; closing the generator stops the
    thread."""
    slots: queue.Queue = queue.Queue(maxsize=depth)
    finished = threading.Event()
    end = object()

    def produce() -> None:
        try:
            for batch in batches:
                while not finished.is_set():
                    try:
                        slots.put(batch, timeout=0.2)
                        break
                    except queue.Full:
                        continue
                if finished.is_set():
                    return
            slots.put(end)
        except BaseException as error:  # handed to the consumer
            slots.put(error)

    thread = threading.Thread(target=produce, daemon=True, name="faceray-feed")
    thread.start()
    try:
        while True:
            item = slots.get()
            if item is end:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        finished.set()


def split_batches(
    data_dir: str | Path | Location, split: str, batch_size: int = 256, rank: int = 0, world: int = 1
) -> Iterator[Batch]:
    """A split in its stored order, in batches of at most `batch_size` (for validation); worker `rank` of `world`
    reads every world-th shard."""
    if world == 1:
        for images, labels in iter_split_numpy(data_dir, split):
            yield from _slices(images, labels, batch_size)
        return
    files = shard_files(data_dir, split)
    if not files:
        return
    metadata = ShardMetadata.read(data_dir, split)
    for path in files[rank::world]:
        yield from _slices(*read_shard_numpy(path, metadata), batch_size)


def _slices(images: npt.NDArray[np.uint8], labels: npt.NDArray[np.int64], batch_size: int) -> Iterator[Batch]:
    for start in range(0, len(labels), batch_size):
        yield images[start : start + batch_size], labels[start : start + batch_size]
