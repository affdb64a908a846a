"""FER-2013 as an ingest source: one CSV (emotion,pixels,Usage) of 48x48 grey faces, read in byte ranges.

Planning makes one streaming pass over the file to cut it into chunks (nothing held in memory); each chunk parses
its rows (ingest.fer) and prepares the pixels with faceray.faces.face_pixels. The Usage column is the split.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import pyarrow as pa

from faceray.config import ConfigError
from faceray.faces import FER_CROP, face_pixels
from faceray.ingest.config import IngestConfig
from faceray.ingest.fer import FER_SIDE, chunk_byte_ranges, parse_fer_row, read_rows
from faceray.ingest.rejections import Rejection
from faceray.ingest.sources import ChunkSpec, Example, Rejected, SourceInputs
from faceray.storage import Location


class Fer2013Source:
    """fer2013.csv -> emotion examples."""

    name = "fer"
    description = "FER-2013 CSV (emotion)"
    task = "emotion"
    default_size = FER_SIDE
    crop = FER_CROP
    settings = frozenset({"csv"})
    extra_fields = (pa.field("usage", pa.string()),)

    def check(self, config: IngestConfig) -> list[str]:
        return [] if config.csv else ["--csv: the FER-2013 CSV file is required"]

    def inputs(self, config: IngestConfig) -> Mapping[str, Any]:
        return {"csv": Location.of(str(config.csv))}

    def plan(self, config: IngestConfig) -> tuple[list[ChunkSpec], pa.Table | None]:
        try:
            csv = Location.of(str(config.csv))
        except ValueError as error:
            raise ConfigError(f"--csv: {error}") from None
        if not csv.is_file():
            raise ConfigError(f"--csv: no such file {config.csv!r}")
        try:
            ranges = list(chunk_byte_ranges(csv, config.shard_rows))
        except ValueError as error:
            raise ConfigError(f"--csv: {error}") from None
        specs = [
            ChunkSpec(chunk=chunk, rows=count, first_row=first, start=start, end=end)
            for chunk, (first, count, start, end) in enumerate(ranges)
        ]
        return specs, None

    def examples(self, spec: ChunkSpec, rows: pa.Table | None, inputs: SourceInputs) -> Iterator[Example | Rejected]:
        csv_path = inputs.settings["csv"]
        source_name = csv_path.name
        for offset, fields in enumerate(read_rows(csv_path, spec.start, spec.end)):
            row = spec.first_row + offset
            source = f"{source_name}:{row}"
            try:
                emotion, pixels, split = parse_fer_row(fields)
            except Rejection as rejection:
                yield Rejected(source, row, rejection.kind, rejection.detail)
                continue
            image = face_pixels(pixels, inputs.size, inputs.color, input_order="rgb")
            yield Example(split, image, emotion, source, {"usage": fields[2].strip()})


SOURCE = Fer2013Source()
