"""Readers on the real layouts: imdb.mat / wiki.mat structs and the FER-2013 CSV."""

import numpy as np
import pandas as pd
import pytest
from scipy.io import loadmat

from faceray.ingest.fer import FER_PIXELS, RowError, chunk_byte_ranges, parse_fer_row, read_rows
from faceray.ingest.imdb import LabelFilter, label_rejections, read_imdb_metadata
from faceray.ingest.sample import write_imdb_sample


def test_sample_mat_has_the_real_layout(sample_dir):
    contents = loadmat(str(sample_dir / "imdb_crop" / "imdb.mat"))
    struct = contents["imdb"]
    assert struct.shape == (1, 1)
    record = struct[0, 0]
    expected = {
        "dob",
        "photo_taken",
        "full_path",
        "gender",
        "name",
        "face_location",
        "face_score",
        "second_face_score",
        "celeb_names",
        "celeb_id",
    }
    assert set(record.dtype.names) == expected
    count = record["full_path"].shape[1]
    for field in expected - {"celeb_names"}:
        assert record[field].shape == (1, count), field
    assert record["full_path"].dtype == object  # a cell of strings
    assert isinstance(record["full_path"][0, 0][0], str)
    gender = record["gender"][0]
    assert np.isnan(gender).any() and np.isneginf(record["face_score"][0]).any()
    assert (~np.isnan(record["second_face_score"][0])).any()


def test_read_imdb_metadata(sample_dir):
    frame = read_imdb_metadata(sample_dir / "imdb_crop" / "imdb.mat")
    assert len(frame) == 160
    assert frame["full_path"].str.match(r"^\d\d/nm\d{7}_rm\d+_\d{4}-\d+-\d+_\d{4}\.jpg$").all()
    assert frame["celeb_id"].min() >= 1
    assert set(frame["gender"].dropna().unique()) <= {0.0, 1.0}


def test_wiki_mat_is_read_too(tmp_path):
    mat_path, _ = write_imdb_sample(tmp_path / "wiki_crop", 20, np.random.default_rng(1), struct_name="wiki")
    frame = read_imdb_metadata(mat_path)
    assert len(frame) == 20 and (frame["celeb_id"] == -1).all() and frame["name"].str.len().gt(0).all()


def test_not_a_mat_file_is_a_clear_error(tmp_path):
    (tmp_path / "imdb.mat").write_text("nope")
    with pytest.raises(ValueError, match="not a readable MATLAB file"):
        read_imdb_metadata(tmp_path / "imdb.mat")
    with pytest.raises(ValueError, match="no metadata file"):
        read_imdb_metadata(tmp_path / "missing.mat")


def test_label_filters_give_each_reason():
    frame = pd.DataFrame(
        {
            "gender": [1.0, np.nan, 0.0, 1.0, 0.0, 2.0, 1.0],
            "face_score": [4.0, 4.0, -np.inf, 2.5, 4.0, 4.0, 3.0],
            "second_face_score": [np.nan, np.nan, np.nan, np.nan, 1.7, np.nan, np.nan],
        }
    )
    reasons = label_rejections(frame, LabelFilter())["reason"].tolist()
    assert reasons == [
        None,
        "gender unknown",
        "no face",
        "face_score too low",
        "second face",
        "gender not 0 or 1",
        "face_score too low",
    ]
    relaxed = label_rejections(frame, LabelFilter(min_face_score=None, drop_second_face=False))["reason"].tolist()
    assert relaxed == [None, "gender unknown", None, None, None, "gender not 0 or 1", None]


def good_pixels() -> str:
    return " ".join(["128"] * FER_PIXELS)


def test_parse_fer_row_good():
    emotion, image, split = parse_fer_row(["3", good_pixels(), "PublicTest"])
    assert (emotion, split, image.shape, image.dtype) == (3, "val", (48, 48), np.uint8)


@pytest.mark.parametrize(
    ("fields", "kind"),
    [
        (["3", "1 2 3", "Training"], "wrong pixel count"),
        (["3", "x " + " ".join(["1"] * (FER_PIXELS - 1)), "Training"], "non-numeric pixel"),
        (["3", "256 " + " ".join(["1"] * (FER_PIXELS - 1)), "Training"], "pixel out of range"),
        (["7", good_pixels(), "Training"], "unknown emotion label"),
        (["happy", good_pixels(), "Training"], "unknown emotion label"),
        (["3", good_pixels(), "Validation"], "unknown Usage"),
        (["3", good_pixels()], "wrong field count"),
    ],
)
def test_parse_fer_row_rejects(fields, kind):
    with pytest.raises(RowError) as caught:
        parse_fer_row(fields)
    assert caught.value.kind == kind


def test_fer_chunks_cover_every_row_once(sample_dir):
    csv_path = sample_dir / "fer2013.csv"
    lines = csv_path.read_text().splitlines()[1:]
    chunks = list(chunk_byte_ranges(csv_path, 37))
    assert sum(count for _, count, _, _ in chunks) == len(lines)
    rows = [fields for _, _, start, end in chunks for fields in read_rows(csv_path, start, end)]
    assert len(rows) == len(lines)
    assert [first for first, *_ in chunks] == list(range(1, len(lines) + 1, 37))


def test_fer_bad_header(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("label,pixels\n1,2\n")
    with pytest.raises(ValueError, match="header"):
        list(chunk_byte_ranges(bad, 10))
