"""Hostile metadata: paths in imdb.mat that reach outside --root are rejected as outside_root, and no reject
detail carries the contents of a file (pure chunk core, no Ray)."""

from __future__ import annotations

import os

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from scipy.io import loadmat, savemat

from faceray.ingest.chunks import ChunkSettings, process_chunk, reject_file
from faceray.ingest.imdb import read_imdb_metadata
from faceray.ingest.sample import write_imdb_sample
from faceray.ingest.sources import ChunkSpec, SourceInputs
from faceray.storage import Location


def run_chunk(rows, root, out):
    """The IMDB-WIKI source's chunk 0 over `rows` (read_imdb_metadata's frame), as the Ray task runs it."""
    from faceray.ingest.config import IngestConfig
    from faceray.ingest.sources import get_source

    source = get_source("imdb")
    inputs = SourceInputs(64, "gray", source.inputs(IngestConfig(dataset="imdb", root=str(root), out=str(out))))
    settings = ChunkSettings(dataset="imdb", out=Location.of(str(out)), inputs=inputs)
    table = pa.Table.from_pandas(rows, preserve_index=False)
    return process_chunk(ChunkSpec(chunk=0, rows=table.num_rows, first_row=0), table, settings), settings


OUTSIDE_PATHS = ("../../../../../../etc/passwd", "/etc/hostname", "../outside.jpg", "escape/outside.jpg")


def test_paths_outside_the_root_are_rejected_and_never_read(tmp_path):
    root = tmp_path / "imdb_crop"
    mat_path, _ = write_imdb_sample(root, 12, np.random.default_rng(3), clean=True)
    outside_face = np.random.default_rng(0).integers(0, 255, (80, 80, 3)).astype(np.uint8)
    cv2.imwrite(str(tmp_path / "outside.jpg"), outside_face)  # a good image, but not the dataset's
    os.symlink(tmp_path, root / "escape")  # a link inside the root that points out of it
    contents = loadmat(str(mat_path))
    struct = contents["imdb"]
    for index, path in enumerate(OUTSIDE_PATHS):  # the first rows now point outside, in the real cell layout
        struct[0, 0]["full_path"][0, index] = np.array([path])
    savemat(str(mat_path), {"imdb": struct})

    rows = read_imdb_metadata(mat_path)
    assert list(rows["full_path"][: len(OUTSIDE_PATHS)]) == list(OUTSIDE_PATHS)
    summary, settings = run_chunk(rows, root, tmp_path / "out")

    assert summary["rejected"].get("outside_root") == len(OUTSIDE_PATHS)
    accepted = sum(count for split in summary["accepted"].values() for count in split.values())
    assert accepted + sum(summary["rejected"].values()) == summary["total"] == 12
    rejects = pq.read_table(reject_file(settings.out, 0).path).to_pylist()
    outside = [reject for reject in rejects if reject["reason"] == "outside_root"]
    assert sorted(reject["source"] for reject in outside) == sorted(OUTSIDE_PATHS)
    passwd_head = open("/etc/passwd", "rb").read(8).decode(errors="replace")
    assert all(passwd_head not in reject["detail"] for reject in rejects)


def test_a_link_that_stays_inside_the_root_is_fine(tmp_path):
    root = tmp_path / "imdb_crop"
    mat_path, _ = write_imdb_sample(root, 6, np.random.default_rng(4), clean=True)
    rows = read_imdb_metadata(mat_path)
    first = rows["full_path"][0]
    os.symlink(root / first, root / "alias.jpg")
    rows.loc[0, "full_path"] = "alias.jpg"
    summary, settings = run_chunk(rows, root, tmp_path / "out")
    assert "outside_root" not in summary["rejected"]
    assert sum(count for split in summary["accepted"].values() for count in split.values()) == 6
