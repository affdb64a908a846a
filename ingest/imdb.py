"""Reading IMDB-WIKI metadata (`imdb.mat` / `wiki.mat`) and applying the paper's label filters (no Ray)."""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from faceray.storage import Location

METADATA_COLUMNS = (
    "row",
    "full_path",
    "gender",
    "face_score",
    "second_face_score",
    "celeb_id",
    "name",
    "dob",
    "photo_taken",
)


def _cell_strings(cell: np.ndarray) -> list[str]:
    """Strings of a MATLAB 1xN cell array as scipy loads it (each item an array holding one string)."""
    values: list[str] = []
    for item in np.asarray(cell).ravel():
        while isinstance(item, np.ndarray):
            item = item.ravel()[0] if item.size else ""
        values.append(str(item))
    return values


def _numbers(field: np.ndarray, count: int, name: str) -> np.ndarray:
    values = np.asarray(field, dtype=np.float64).ravel()
    if values.size != count:
        raise ValueError(f"field {name!r} has {values.size} values, expected {count} (one per image)")
    return values


def read_imdb_metadata(mat_path: str | Path | Location) -> pd.DataFrame:
    """Read the per-image metadata of an IMDB-WIKI `.mat` file (struct `imdb` or `wiki`, fields 1xN).

    Returns one row per image with METADATA_COLUMNS; `row` is the image's index in the file, `gender` is
    0.0 woman / 1.0 man / NaN unknown, `face_score` may be -inf (no face), `celeb_id` is -1 where the file
    has none (wiki.mat). Raises ValueError when the file is not such a struct.
    """
    from scipy.io import loadmat

    path = Location.of(mat_path)
    if not path.is_file():
        raise ValueError(f"no metadata file at {path.uri!r}")
    try:
        contents = loadmat(path.path if path.is_local else io.BytesIO(path.read_bytes()))
    except Exception as error:  # scipy raises several types for a corrupt file
        raise ValueError(f"{path} is not a readable MATLAB file: {error}") from None
    names = [key for key in contents if not key.startswith("__")]
    struct_name = "imdb" if "imdb" in names else "wiki" if "wiki" in names else None
    if struct_name is None:
        raise ValueError(f"{path} holds no 'imdb' or 'wiki' struct (found {names})")
    record = contents[struct_name][0, 0]
    fields = record.dtype.names or ()
    missing = {"full_path", "gender", "face_score", "second_face_score"} - set(fields)
    if missing:
        raise ValueError(f"{path}: struct {struct_name!r} lacks fields {sorted(missing)}")
    full_paths = _cell_strings(record["full_path"])
    count = len(full_paths)
    frame = pd.DataFrame(
        {
            "row": np.arange(count, dtype=np.int64),
            "full_path": full_paths,
            "gender": _numbers(record["gender"], count, "gender"),
            "face_score": _numbers(record["face_score"], count, "face_score"),
            "second_face_score": _numbers(record["second_face_score"], count, "second_face_score"),
        }
    )
    frame["celeb_id"] = (
        np.nan_to_num(_numbers(record["celeb_id"], count, "celeb_id"), nan=-1).astype(np.int64)
        if "celeb_id" in fields
        else np.full(count, -1, dtype=np.int64)
    )
    frame["name"] = _cell_strings(record["name"]) if "name" in fields else [""] * count
    frame["dob"] = _numbers(record["dob"], count, "dob") if "dob" in fields else np.nan
    frame["photo_taken"] = _numbers(record["photo_taken"], count, "photo_taken") if "photo_taken" in fields else np.nan
    return frame[list(METADATA_COLUMNS)]


@dataclass(frozen=True)
class LabelFilter:
    """The paper's label filters, each switchable."""

    drop_unknown_gender: bool = True
    min_face_score: float | None = 3.0
    drop_second_face: bool = True


def label_rejections(frame: pd.DataFrame, label_filter: LabelFilter) -> pd.DataFrame:
    """Per row of `frame`, why its label is rejected: columns `reason` (a fixed kind, None when kept) and
    `detail` (the offending value). The first failing filter wins."""
    reasons = pd.Series([None] * len(frame), index=frame.index, dtype=object)
    details = pd.Series([""] * len(frame), index=frame.index, dtype=object)

    def reject(mask: pd.Series, reason: str, detail: pd.Series | str) -> None:
        mask = mask & reasons.isna()
        reasons[mask] = reason
        details[mask] = detail[mask] if isinstance(detail, pd.Series) else detail

    gender = frame["gender"]
    if label_filter.drop_unknown_gender:
        reject(gender.isna(), "gender unknown", "gender is NaN")
    reject(gender.notna() & ~gender.isin([0.0, 1.0]), "gender not 0 or 1", gender.map(lambda value: f"gender {value}"))
    score = frame["face_score"]
    if label_filter.min_face_score is not None:
        threshold = label_filter.min_face_score
        reject(pd.Series(np.isneginf(score), index=frame.index), "no face", "face_score is -Inf")
        reject(score.isna(), "face_score missing", "face_score is NaN")
        reject(
            score <= threshold,
            "face_score too low",
            score.map(lambda value: f"face_score {value:.3f} <= {threshold:g}"),
        )
    if label_filter.drop_second_face:
        second = frame["second_face_score"]
        reject(second.notna(), "second face", second.map(lambda value: f"second_face_score {value:.3f}"))
    return pd.DataFrame({"reason": reasons, "detail": details}, index=frame.index)


def filter_and_split(
    frame: pd.DataFrame, label_filter: LabelFilter, ratios: tuple[float, float, float], seed: int, by_identity: bool
) -> pd.DataFrame:
    """`frame` (rows of read_imdb_metadata) plus columns reason, detail (label_rejections) and split.

    Row-local, so any slice gives the same answer as the whole file: chunks apply it in parallel.
    """
    from faceray.ingest.splits import assign_splits

    frame = pd.concat([frame, label_rejections(frame, label_filter)], axis=1)
    if by_identity:
        keys = [
            identity_key(celeb, name, path)
            for celeb, name, path in zip(frame["celeb_id"], frame["name"], frame["full_path"])
        ]
    else:
        keys = list(frame["full_path"])
    frame["split"] = assign_splits(keys, ratios, seed)
    return frame


def identity_key(row_celeb_id: int, name: str, full_path: str) -> str:
    """The key that keeps one person in one split: celeb_id, else the name (wiki.mat), else the path."""
    if row_celeb_id is not None and row_celeb_id >= 0:
        return f"celeb:{row_celeb_id}"
    if name and not (isinstance(name, float) and math.isnan(name)):
        return f"name:{name}"
    return f"path:{full_path}"
