"""Processing one chunk of inputs into shards, rejects and a done-marker (pure; the Ray wrapper calls it).

A chunk is the unit of work and of resumption: its shard files and rejects are written under temporary
names and renamed, and the done-marker is written last, so a chunk is either wholly done or redone.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from faceray.labels import SPLITS
from ingest.fer import parse_fer_row, read_rows
from ingest.images import decode_and_resize, resize_pixels
from ingest.imdb import LabelFilter, filter_and_split
from ingest.rejections import Rejection
from ingest.shards import shard_schema, write_shard

WORK_DIR = "_work"
NUMBER_COLUMNS = ("gender", "face_score", "second_face_score", "dob", "photo_taken")
UNKNOWN_LABEL = -1  # an IMDB NaN gender kept with drop_unknown_gender=False
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
    """What every chunk of one ingest run shares."""

    dataset: str  # 'imdb' or 'fer'
    out: str
    size: int
    color: str
    task: str
    labels: tuple[str, ...]
    root: str = ""  # IMDB image root
    csv: str = ""  # FER CSV path
    label_filter: LabelFilter = LabelFilter()  # IMDB label filters
    split_ratios: tuple[float, float, float] = (0.8, 0.1, 0.1)  # IMDB train/val/test
    split_seed: int = 0
    by_identity: bool = False

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (self.size, self.size, 1 if self.color == "gray" else 3)


def chunk_name(chunk_id: int) -> str:
    return f"part-{chunk_id:05d}"


def done_marker(out: str | Path, chunk_id: int) -> Path:
    return Path(out) / WORK_DIR / "done" / f"{chunk_name(chunk_id)}.json"


def reject_file(out: str | Path, chunk_id: int) -> Path:
    return Path(out) / WORK_DIR / "rejects" / f"{chunk_name(chunk_id)}.parquet"


def remove_partial_outputs(out: str | Path, chunk_id: int) -> None:
    """Delete whatever an interrupted attempt at this chunk left behind (it will be redone whole)."""
    shards = [Path(out) / split / f"{chunk_name(chunk_id)}.parquet" for split in SPLITS] + [reject_file(out, chunk_id)]
    for shard in shards:  # named, not globbed: a glob lists the whole folder, which grows with every chunk
        shard.unlink(missing_ok=True)
        shard.with_name(shard.name + ".tmp").unlink(missing_ok=True)  # write_shard's temporary name


class _ChunkCollector:
    """Accumulates accepted rows per split and rejects for one chunk."""

    def __init__(self, settings: ChunkSettings) -> None:
        self.settings = settings
        self.rows: dict[str, dict[str, list[Any]]] = defaultdict(lambda: defaultdict(list))
        self.rejects: dict[str, list[Any]] = defaultdict(list)
        self.accepted: dict[str, Counter[int]] = defaultdict(Counter)
        self.rejected: Counter[str] = Counter()
        self.total = 0

    def accept(self, split: str, image: Any, label: int, source: str, **extra: Any) -> None:
        self.total += 1
        columns = self.rows[split]
        columns["image"].append(image.tobytes())
        columns["label"].append(int(label))
        columns["source"].append(source)
        for key, value in extra.items():
            columns[key].append(value)
        self.accepted[split][int(label)] += 1

    def reject(self, source: str, row: int, reason: str, detail: str) -> None:
        self.total += 1
        self.rejects["source"].append(source)
        self.rejects["row"].append(int(row))
        self.rejects["reason"].append(reason)
        self.rejects["detail"].append(detail)
        self.rejected[reason] += 1

    def write(self, chunk_id: int, seconds: float) -> dict[str, Any]:
        settings = self.settings
        schema = shard_schema(settings.dataset, settings.image_shape, settings.color, settings.task, settings.labels)
        for split, columns in self.rows.items():
            write_shard(Path(settings.out) / split / f"{chunk_name(chunk_id)}.parquet", dict(columns), schema)
        if self.rejects:
            write_shard(reject_file(settings.out, chunk_id), dict(self.rejects), REJECT_SCHEMA)
        summary = {
            "chunk": chunk_id,
            "total": self.total,
            "accepted": {
                split: {str(label): count for label, count in sorted(counts.items())}
                for split, counts in self.accepted.items()
            },
            "rejected": dict(sorted(self.rejected.items())),
            "seconds": round(seconds, 4),
        }
        marker = done_marker(settings.out, chunk_id)
        marker.parent.mkdir(parents=True, exist_ok=True)
        temporary = marker.with_name(marker.name + ".tmp")
        temporary.write_text(json.dumps(summary))
        os.replace(temporary, marker)
        return summary


def path_inside_root(root: str, relative_path: str) -> str:
    """`relative_path` joined onto `root`, or Rejection('outside_root') when it resolves elsewhere.

    Resolved with symlinks followed, so `../` parts, absolute paths and links out of the dataset folder are all
    caught: a metadata file must not make ingest read files outside the dataset.
    """
    real_root = os.path.realpath(root)
    resolved = os.path.realpath(os.path.join(real_root, relative_path))
    if os.path.commonpath([real_root, resolved]) != real_root:
        raise Rejection("outside_root", f"{relative_path!r} resolves outside --root")
    return resolved


def read_file_bytes(path: str) -> bytes:
    """The bytes of an input file, or a Rejection ('missing file', 'unreadable file')."""
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except FileNotFoundError:
        raise Rejection("missing file", path) from None
    except OSError as error:
        raise Rejection("unreadable file", f"{path}: {error.strerror or error}") from None


def process_imdb_chunk(chunk_id: int, rows: pd.DataFrame, settings: ChunkSettings) -> dict[str, Any]:
    """Filter labels, split, decode, resize and write one IMDB chunk; `rows` are its read_imdb_metadata rows."""
    started = time.perf_counter()
    remove_partial_outputs(settings.out, chunk_id)
    rows = rows.copy()
    for name in NUMBER_COLUMNS:  # plain float64 with NaN, whatever dtype the Arrow-to-pandas step chose
        rows[name] = rows[name].to_numpy(dtype=np.float64, na_value=np.nan)
    frame = filter_and_split(
        rows, settings.label_filter, settings.split_ratios, settings.split_seed, settings.by_identity
    )
    columns = {
        name: frame[name].tolist()
        for name in ("full_path", "row", "reason", "detail", "split", "gender", "celeb_id", "face_score", "photo_taken")
    }  # plain lists: cheaper than rows
    collector = _ChunkCollector(settings)
    for index, relative_path in enumerate(columns["full_path"]):
        row, reason = columns["row"][index], columns["reason"][index]
        if reason:  # None or "" when the labels passed the filters
            collector.reject(relative_path, row, reason, columns["detail"][index])
            continue
        try:
            data = read_file_bytes(path_inside_root(settings.root, relative_path))
            image = decode_and_resize(data, settings.size, settings.color)
        except Rejection as rejection:
            collector.reject(relative_path, row, rejection.kind, rejection.detail)
            continue
        gender = columns["gender"][index]
        collector.accept(
            columns["split"][index],
            image,
            UNKNOWN_LABEL if gender != gender else int(gender),
            relative_path,
            celeb_id=int(columns["celeb_id"][index]),
            face_score=float(columns["face_score"][index]),
            photo_taken=float(columns["photo_taken"][index]),
        )
    return collector.write(chunk_id, time.perf_counter() - started)


def process_fer_chunk(chunk_id: int, first_row: int, start: int, end: int, settings: ChunkSettings) -> dict[str, Any]:
    """Parse, resize and write the rows of one FER-2013 chunk (bytes `start`..`end` of the CSV)."""
    started = time.perf_counter()
    remove_partial_outputs(settings.out, chunk_id)
    collector = _ChunkCollector(settings)
    source_name = Path(settings.csv).name
    for offset, fields in enumerate(read_rows(settings.csv, start, end)):
        row = first_row + offset
        source = f"{source_name}:{row}"
        try:
            emotion, pixels, split = parse_fer_row(fields)
        except Rejection as rejection:
            collector.reject(source, row, rejection.kind, rejection.detail)
            continue
        image = resize_pixels(pixels, settings.size, settings.color, input_order="rgb")
        usage = fields[2].strip()
        collector.accept(split, image, emotion, source, usage=usage)
    return collector.write(chunk_id, time.perf_counter() - started)
