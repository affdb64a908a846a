"""IMDB-WIKI as an ingest source: face crops (imdb_crop/ or wiki_crop/) labelled by imdb.mat / wiki.mat (gender).

The .mat is read once when planning; each chunk filters its rows' labels with the paper's filters, assigns splits by
a deterministic hash, reads its image files and decodes them (ingest.images). Files that resolve outside --root are
rejected, never read.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import pyarrow as pa

from faceray.config import ConfigError
from faceray.faces import IMDB_WIKI_CROP
from faceray.ingest.config import IngestConfig
from faceray.ingest.images import decode_and_resize
from faceray.ingest.imdb import LabelFilter, filter_and_split, read_imdb_metadata
from faceray.ingest.rejections import Rejection
from faceray.ingest.sources import ChunkSpec, Example, Rejected, SourceInputs
from faceray.ingest.splits import parse_ratios
from faceray.storage import Location, read_in_order

UNKNOWN_LABEL = -1  # a NaN gender kept with --no-drop-unknown-gender
NUMBER_COLUMNS = ("gender", "face_score", "second_face_score", "dob", "photo_taken")


def resolve_mat_path(config: IngestConfig) -> Location:
    """--mat, else ROOT/imdb.mat, else ROOT/wiki.mat (local or object storage)."""
    try:
        if config.mat:
            return Location.of(config.mat)
        root = Location.of(str(config.root))
    except ValueError as error:
        raise ConfigError(f"--root/--mat: {error}") from None
    for name in ("imdb.mat", "wiki.mat"):
        if (root / name).is_file():
            return root / name
    raise ConfigError(f"--root: no imdb.mat or wiki.mat in {config.root!r} (or pass --mat)")


def path_inside_root(root: Location, relative_path: str) -> Location:
    """`relative_path` joined onto `root`, or Rejection('outside_root') when it resolves elsewhere.

    Locally resolved with symlinks followed, so `../` parts, absolute paths and links out of the dataset folder are
    all caught; in object storage (no links) `../` parts and absolute keys are: a metadata file must not make ingest
    read files outside the dataset.
    """
    if root.is_local:
        real_root = os.path.realpath(root.path)
        resolved = os.path.realpath(os.path.join(real_root, relative_path))
        inside = os.path.commonpath([real_root, resolved]) == real_root
        if inside:  # built directly: Location.of would resolve the path again (35 us a file, measured)
            return Location(root.filesystem, resolved, resolved)
    else:
        key = posixpath.normpath(posixpath.join("/", relative_path)).lstrip("/")
        inside = bool(key) and not posixpath.isabs(relative_path) and posixpath.normpath(relative_path) == key
        if inside:
            return root / key
    raise Rejection("outside_root", f"{relative_path!r} resolves outside --root")


def file_bytes(location: Location, data: bytes | OSError) -> bytes:
    """An input file's bytes as `faceray.storage.read_in_order` gave them, or a Rejection ('missing file',
    'unreadable file') naming the file."""
    if isinstance(data, FileNotFoundError):
        raise Rejection("missing file", location.uri)
    if isinstance(data, OSError):
        raise Rejection("unreadable file", f"{location.uri}: {data.strerror or data}")
    return data


class ImdbWikiSource:
    """IMDB-WIKI crops + .mat metadata -> gender examples."""

    name = "imdb"
    description = "IMDB-WIKI face crops + imdb.mat/wiki.mat (gender)"
    task = "gender"
    default_size = 64  # the paper's gender input
    crop = IMDB_WIKI_CROP
    settings = frozenset(
        {"root", "mat", "split", "by_identity", "seed", "min_face_score", "drop_unknown_gender", "drop_second_face"}
    )
    extra_fields = (
        pa.field("celeb_id", pa.int64()),
        pa.field("face_score", pa.float32()),
        pa.field("photo_taken", pa.float32()),
    )

    def check(self, config: IngestConfig) -> list[str]:
        problems = [] if (config.root or config.mat) else ["--root: the IMDB-WIKI crop folder is required"]
        try:
            parse_ratios(config.split)
        except ValueError as error:
            problems.append(f"--split: {error}")
        return problems

    def inputs(self, config: IngestConfig) -> Mapping[str, Any]:
        return {
            "root": Location.of(config.root) if config.root else resolve_mat_path(config).parent,
            "label_filter": LabelFilter(
                drop_unknown_gender=config.drop_unknown_gender,
                min_face_score=config.min_face_score,
                drop_second_face=config.drop_second_face,
            ),
            "split_ratios": parse_ratios(config.split),
            "split_seed": config.seed,
            "by_identity": config.by_identity,
        }

    def plan(self, config: IngestConfig) -> tuple[list[ChunkSpec], pa.Table | None]:
        table = pa.Table.from_pandas(read_imdb_metadata(resolve_mat_path(config)), preserve_index=False)
        specs = [
            ChunkSpec(chunk=chunk, rows=min(config.shard_rows, table.num_rows - start), first_row=start)
            for chunk, start in enumerate(range(0, table.num_rows, config.shard_rows))
        ]
        return specs, table

    def examples(self, spec: ChunkSpec, rows: pa.Table | None, inputs: SourceInputs) -> Iterator[Example | Rejected]:
        assert rows is not None, "IMDB-WIKI chunks carry their metadata rows"
        settings = inputs.settings
        frame = rows.to_pandas()
        for name in NUMBER_COLUMNS:  # plain float64 with NaN, whatever dtype the Arrow-to-pandas step chose
            frame[name] = frame[name].to_numpy(dtype=np.float64, na_value=np.nan)
        frame = filter_and_split(
            frame, settings["label_filter"], settings["split_ratios"], settings["split_seed"], settings["by_identity"]
        )
        names = ("full_path", "row", "reason", "detail", "split", "gender", "celeb_id", "face_score", "photo_taken")
        columns = {name: frame[name].tolist() for name in names}  # plain lists: cheaper than rows
        files: list[Location | Rejected] = []  # per row: the file to read, or why it is rejected unread
        for index, relative_path in enumerate(columns["full_path"]):
            row, reason = columns["row"][index], columns["reason"][index]
            if reason:  # None or "" when the labels passed the filters
                files.append(Rejected(relative_path, row, reason, columns["detail"][index]))
                continue
            try:
                files.append(path_inside_root(settings["root"], relative_path))
            except Rejection as rejection:
                files.append(Rejected(relative_path, row, rejection.kind, rejection.detail))
        # One at a time from a local disk; from object storage, many requests in flight ahead of the decoder.
        contents = read_in_order(file for file in files if isinstance(file, Location))
        for index, file in enumerate(files):
            if isinstance(file, Rejected):
                yield file
                continue
            relative_path, row = columns["full_path"][index], columns["row"][index]
            try:
                image = decode_and_resize(file_bytes(file, next(contents)), inputs.size, inputs.color)
            except Rejection as rejection:
                yield Rejected(relative_path, row, rejection.kind, rejection.detail)
                continue
            gender = columns["gender"][index]
            extra = {
                "celeb_id": int(columns["celeb_id"][index]),
                "face_score": float(columns["face_score"][index]),
                "photo_taken": float(columns["photo_taken"][index]),
            }
            label = UNKNOWN_LABEL if gender != gender else int(gender)  # NaN != NaN
            yield Example(columns["split"][index], image, label, relative_path, extra)


SOURCE = ImdbWikiSource()
