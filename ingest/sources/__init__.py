"""Datasets as sources: each module of this package defines one `SOURCE`, found here by name (no Ray).

A source knows its own format and nothing of Ray, Parquet or resuming: it plans its inputs in chunks
(`plan`: read the metadata rows), and turns one chunk into examples or rejections (`examples`: read each example,
its label and split). Every source records its task, labels and crop geometry, which the shards carry on to the
model card. Adding a dataset is one new module here that sets `SOURCE` (plus its test): `faceray ingest NAME`,
the chunked Ray Data run, the shard schema, rejects and the manifest come from this interface.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    import pyarrow as pa

    from faceray.faces import CropGeometry
    from faceray.ingest.config import IngestConfig


@dataclass(frozen=True)
class ChunkSpec:
    """One unit of work and of resumption: `rows` inputs starting at input `first_row`. `start`/`end` locate them in a
    source file when the source reads byte ranges (FER-2013's CSV); sources planned from a metadata table get
    their rows with the chunk instead."""

    chunk: int
    rows: int
    first_row: int
    start: int = 0
    end: int = 0


@dataclass(frozen=True)
class Example:
    """One accepted input: its split, pixels (uint8 (H, W, C) as faceray.faces.face_pixels makes them), class
    index (-1 unknown), where it came from, and the source's extra columns."""

    split: str
    image: npt.NDArray[np.uint8]
    label: int
    source: str
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Rejected:
    """One rejected input, with the reason (a short kind) and a detail that never quotes the input's bytes."""

    source: str
    row: int
    reason: str
    detail: str


@dataclass(frozen=True)
class SourceInputs:
    """What a source needs from the config inside each chunk (plain values: they travel to Ray tasks)."""

    size: int
    color: str
    settings: Mapping[
        str, Any
    ]  # the IngestConfig fields the source lists in `settings`, with paths as faceray.storage Locations


class Source(Protocol):
    """A dataset faceray can ingest."""

    name: str  # `faceray ingest NAME`
    description: str  # one line for --help
    task: str  # 'gender' or 'emotion' (faceray.labels)
    default_size: int  # output side when --size is not given
    crop: CropGeometry  # how the dataset cut faces from photos
    settings: frozenset[str]  # the IngestConfig fields it reads, besides the common ones
    extra_fields: tuple[pa.Field, ...]  # its own shard columns, after faceray.shards.BASE_FIELDS

    def check(self, config: IngestConfig) -> list[str]:
        """Problems with the config for this source (missing inputs), each naming its flag."""
        ...

    def inputs(self, config: IngestConfig) -> Mapping[str, Any]:
        """The settings chunks need (paths as faceray.storage Locations: local or object storage), from a checked config."""
        ...

    def plan(self, config: IngestConfig) -> tuple[list[ChunkSpec], pa.Table | None]:
        """Read the metadata rows and cut them into chunks of `config.shard_rows`; the table (if any) holds one row
        per input, and chunk `c` gets rows first_row .. first_row + rows. Raises ConfigError naming a flag."""
        ...

    def examples(self, spec: ChunkSpec, rows: pa.Table | None, inputs: SourceInputs) -> Iterator[Example | Rejected]:
        """Every input of one chunk, in order, as an Example or a Rejected."""
        ...


def _discover() -> dict[str, Source]:
    found: dict[str, Source] = {}
    for module_info in sorted(pkgutil.iter_modules(__path__), key=lambda info: info.name):
        module = importlib.import_module(f"{__name__}.{module_info.name}")
        source = getattr(module, "SOURCE", None)
        if source is not None:
            if source.name in found:
                raise RuntimeError(f"two ingest sources are named {source.name!r}")
            found[source.name] = source
    return found


_SOURCES: dict[str, Source] | None = None


def sources() -> dict[str, Source]:
    """Every source by name (the modules of this package, imported on first use)."""
    global _SOURCES
    if _SOURCES is None:
        _SOURCES = _discover()
    return _SOURCES


def get_source(name: str) -> Source:
    """The source called `name`; ValueError lists the known ones."""
    try:
        return sources()[name]
    except KeyError:
        raise ValueError(f"unknown dataset {name!r}: expected one of {sorted(sources())}") from None
