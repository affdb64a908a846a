"""Reading FER-2013 (`emotion,pixels,Usage` CSV, 48x48 grey) row by row (no Ray)."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import numpy.typing as npt

from faceray.ingest.rejections import Rejection
from faceray.labels import EMOTION_LABELS, FER_USAGE_TO_SPLIT
from faceray.storage import Location

FER_SIDE = 48
FER_PIXELS = FER_SIDE * FER_SIDE
FER_HEADER = ("emotion", "pixels", "Usage")


class RowError(Rejection):
    """A CSV row that cannot be used."""


def parse_fer_row(fields: list[str]) -> tuple[int, npt.NDArray[np.uint8], str]:
    """Parse one FER-2013 row ['3', '70 80 ...', 'Training'] -> (emotion, uint8 (48, 48) grey image, split).

    Raises RowError with the reason: wrong field count, unknown emotion label, wrong pixel count,
    non-numeric or out-of-range pixel, unknown Usage.
    """
    if len(fields) != 3:
        raise RowError("wrong field count", f"expected 3 fields (emotion,pixels,Usage), got {len(fields)}")
    emotion_text, pixel_text, usage = (field.strip() for field in fields)
    try:
        emotion = int(emotion_text)
    except ValueError:
        raise RowError("unknown emotion label", repr(emotion_text[:20])) from None
    if not 0 <= emotion < len(EMOTION_LABELS):
        raise RowError("unknown emotion label", str(emotion))
    if usage not in FER_USAGE_TO_SPLIT:
        raise RowError("unknown Usage", repr(usage[:20]))
    tokens = pixel_text.split()
    if len(tokens) != FER_PIXELS:
        raise RowError("wrong pixel count", f"{len(tokens)} pixels, expected {FER_PIXELS}")
    try:
        values = np.array(tokens, dtype=np.int64)
    except ValueError:
        bad = next(token for token in tokens if not token.lstrip("-").isdigit())
        raise RowError("non-numeric pixel", repr(bad[:20])) from None
    if values.min() < 0 or values.max() > 255:
        outlier = int(values[(values < 0) | (values > 255)][0])
        raise RowError("pixel out of range", f"{outlier} not in 0..255")
    return emotion, values.astype(np.uint8).reshape(FER_SIDE, FER_SIDE), FER_USAGE_TO_SPLIT[usage]


def check_fer_header(csv_path: str | Path | Location) -> int:
    """Check the header line of a FER-2013 CSV (local or in object storage) and return the byte offset of the first
    data row."""
    with Location.of(csv_path).open_input() as handle:
        header = handle.readline()
    names = tuple(name.strip() for name in header.decode("utf-8", "replace").strip().split(","))
    if names != FER_HEADER:
        raise ValueError(f"{csv_path}: header {names} is not {FER_HEADER}")
    return len(header)


def chunk_byte_ranges(csv_path: str | Path | Location, rows_per_chunk: int) -> Iterator[tuple[int, int, int, int]]:
    """Split the data rows into chunks without loading the file: yields (first_row, row_count, start, end).

    Rows are numbered from 1 (the first line after the header); offsets are bytes in the file.
    """
    start = check_fer_header(csv_path)
    first_row, count, chunk_start, position = 1, 0, start, start
    with Location.of(csv_path).open_input() as handle:
        handle.seek(start)
        for line in handle:
            position += len(line)
            if not line.strip():
                continue
            count += 1
            if count == rows_per_chunk:
                yield first_row, count, chunk_start, position
                first_row, count, chunk_start = first_row + count, 0, position
    if count:
        yield first_row, count, chunk_start, position


def read_rows(csv_path: str | Path | Location, start: int, end: int) -> Iterator[list[str]]:
    """The CSV fields of each non-blank line between byte offsets `start` and `end` (one ranged read)."""
    with Location.of(csv_path).open_input() as handle:
        handle.seek(start)
        text = handle.read(end - start).decode("utf-8", "replace")
    lines = [line for line in text.splitlines() if line.strip()]
    yield from csv.reader(lines)
