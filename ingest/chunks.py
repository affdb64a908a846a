"""Processing one chunk of a source's inputs into shards, rejects and a done-marker (pure; the Ray wrapper calls it).

A chunk is the unit of work and of resumption: each of its shard files and rejects is written whole (a temporary
name renamed locally; one object put when complete in object storage, which has no rename), and the done-marker is
written last, so a chunk is either wholly done or redone. The same code runs on local folders and on s3:// / gs://.
"""

from __future__ import annotations

import json
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from faceray.ingest.sources import ChunkSpec, Example, SourceInputs, get_source
from faceray.labels import SPLITS, labels_for_task
from faceray.shards import ShardMetadata, write_shard
from faceray.storage import TEMPORARY_SUFFIX, Location

WORK_DIR = "_work"
REJECT_SCHEMA = pa.schema(
    [
        pa.field("source", pa.string()),
        pa.field("row", pa.int64()),
        pa.field("reason", pa.string()),
        pa.field("detail", pa.string()),
    ]
)


@dataclass(frozen=True)
class ChunkSettings:
    """What every chunk of one ingest run shares (plain values: they travel to Ray tasks)."""

    dataset: str  # the source's name (ingest.sources)
    out: Location  # the output folder (it pickles with its store's endpoint)
    inputs: SourceInputs

    @property
    def metadata(self) -> ShardMetadata:
        """The metadata every shard of this run records."""
        source = get_source(self.dataset)
        channels = 1 if self.inputs.color == "gray" else 3
        return ShardMetadata(
            (self.inputs.size, self.inputs.size, channels),
            self.inputs.color,
            source.task,
            labels_for_task(source.task),
            source.name,
            source.crop,
        )


def chunk_name(chunk_id: int) -> str:
    return f"part-{chunk_id:05d}"


def done_folder(out: str | Path | Location) -> Location:
    return Location.of(out) / WORK_DIR / "done"


def done_marker(out: str | Path | Location, chunk_id: int) -> Location:
    return done_folder(out) / f"{chunk_name(chunk_id)}.json"


def finished_chunks(out: str | Path | Location, chunk_ids: list[int]) -> set[int]:
    """Those of `chunk_ids` whose done-marker exists (one listing, not a request per chunk)."""
    names = {marker.name for marker in done_folder(out).files(".json")}
    return {chunk_id for chunk_id in chunk_ids if done_marker(out, chunk_id).name in names}


def reject_name(chunk_id: int) -> str:
    """The chunk's reject file, relative to OUT."""
    return f"{WORK_DIR}/rejects/{chunk_name(chunk_id)}.parquet"


def reject_file(out: str | Path | Location, chunk_id: int) -> Location:
    return Location.of(out) / reject_name(chunk_id)


def remove_partial_outputs(out: str | Path | Location, chunk_id: int) -> None:
    """Delete whatever an interrupted attempt at this chunk left behind (it will be redone whole)."""
    out = Location.of(out)
    shards = [out / split / f"{chunk_name(chunk_id)}.parquet" for split in SPLITS] + [reject_file(out, chunk_id)]
    for shard in shards:  # named, not listed: a listing covers the whole folder, which grows with every chunk
        shard.delete()
        if shard.is_local:  # a local write killed midway leaves its temporary name (a store keeps no partial object)
            (shard.parent / (shard.name + TEMPORARY_SUFFIX)).delete()


class _ChunkCollector:
    """Accumulates accepted rows per split and rejects for one chunk."""

    def __init__(self, settings: ChunkSettings) -> None:
        self.settings = settings
        self.rows: dict[str, dict[str, list[Any]]] = defaultdict(lambda: defaultdict(list))
        self.rejects: dict[str, list[Any]] = defaultdict(list)
        self.accepted: dict[str, Counter[int]] = defaultdict(Counter)
        self.rejected: Counter[str] = Counter()
        self.total = 0

    def accept(self, example: Example) -> None:
        self.total += 1
        columns = self.rows[example.split]
        columns["image"].append(example.image.tobytes())
        columns["label"].append(int(example.label))
        columns["source"].append(example.source)
        for key, value in example.extra.items():
            columns[key].append(value)
        self.accepted[example.split][int(example.label)] += 1

    def reject(self, source: str, row: int, reason: str, detail: str) -> None:
        self.total += 1
        self.rejects["source"].append(source)
        self.rejects["row"].append(int(row))
        self.rejects["reason"].append(reason)
        self.rejects["detail"].append(detail)
        self.rejected[reason] += 1

    def write(self, chunk_id: int, seconds: float) -> dict[str, Any]:
        settings = self.settings
        schema = settings.metadata.schema(get_source(settings.dataset).extra_fields)
        files = {}  # path relative to OUT -> its record (SHA-256, size), gathered into the manifest
        for split, columns in self.rows.items():
            name = f"{split}/{chunk_name(chunk_id)}.parquet"
            files[name] = write_shard(settings.out / name, dict(columns), schema)
        if self.rejects:
            name = reject_name(chunk_id)
            files[name] = write_shard(settings.out / name, dict(self.rejects), REJECT_SCHEMA)
        summary = {
            "chunk": chunk_id,
            "total": self.total,
            "accepted": {
                split: {str(label): count for label, count in sorted(counts.items())}
                for split, counts in self.accepted.items()
            },
            "rejected": dict(sorted(self.rejected.items())),
            "seconds": round(seconds, 4),
            "files": files,
        }
        done_marker(settings.out, chunk_id).write_text(json.dumps(summary))  # last: the chunk is done
        return summary


def process_chunk(spec: ChunkSpec, rows: pa.Table | None, settings: ChunkSettings) -> dict[str, Any]:
    """Turn one chunk's inputs (its metadata `rows`, if its source plans with a table) into shards, rejects and
    the done-marker; returns the chunk's summary (counts per split and label, rejects per reason)."""
    started = time.perf_counter()
    remove_partial_outputs(settings.out, spec.chunk)
    collector = _ChunkCollector(settings)
    for item in get_source(settings.dataset).examples(spec, rows, settings.inputs):
        if isinstance(item, Example):
            collector.accept(item)
        else:
            collector.reject(item.source, item.row, item.reason, item.detail)
    return collector.write(spec.chunk, time.perf_counter() - started)
