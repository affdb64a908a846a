"""Integrity of an ingest output: every file's SHA-256 in the manifest; flipped bits, truncation, missing and stray
files and out-of-range labels refused with the file's name; --repair redoes exactly the damaged chunks."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from faceray.ingest.pipeline import run_ingest
from faceray.shards import FormatError, IngestManifest, ShardMetadata, check_ingest_output, read_shard_numpy
from tests.ingest.conftest import imdb_config
from tests.ingest.test_pipeline import all_rows

pytestmark = pytest.mark.slow


@pytest.fixture
def clean_out(imdb_out) -> Path:
    """The session's ingest of the sample (tests/ingest/conftest.py), never changed here."""
    return imdb_out


@pytest.fixture
def damaged_out(clean_out, tmp_path) -> Path:
    """A copy of the clean output, to damage."""
    return Path(shutil.copytree(clean_out, tmp_path / "out"))


def flip_bit(path: Path, position: int, bit: int = 0) -> None:
    data = bytearray(path.read_bytes())
    data[position] ^= 1 << bit
    path.write_bytes(bytes(data))


def test_every_file_is_recorded_and_a_sound_output_verifies(clean_out):
    manifest, problems = check_ingest_output(clean_out)
    written = {
        str(path.relative_to(clean_out))
        for path in clean_out.rglob("*.parquet")
        if path.parts[-2] in ("train", "val", "test", "rejects")
    }
    assert problems == [] and set(manifest.files) == written and len(written) > 4
    for name, record in manifest.files.items():
        assert record["bytes"] == (clean_out / name).stat().st_size


def test_seeded_bit_flips_are_all_detected_naming_the_file(damaged_out):
    """One bit at 40 seeded positions of a shard (header, pages, footer alike): each is found, and only there."""
    shard = sorted((damaged_out / "train").glob("*.parquet"))[0]
    rng = np.random.default_rng(0)
    for position, bit in zip(rng.integers(0, shard.stat().st_size, 40), rng.integers(0, 8, 40)):
        flip_bit(shard, int(position), int(bit))
        _, problems = check_ingest_output(damaged_out)
        assert [problem.path for problem in problems] == [str(shard)], position
        assert "changed since it was written" in problems[0].what and "--repair" in problems[0].fix
        flip_bit(shard, int(position), int(bit))  # the same bit again: the file as written
    assert check_ingest_output(damaged_out)[1] == []


def test_truncated_missing_and_stray_files_are_each_named(damaged_out):
    shards = sorted((damaged_out / "train").glob("*.parquet"))
    shards[0].write_bytes(shards[0].read_bytes()[:-100])
    shards[1].unlink()
    shutil.copy(shards[2], damaged_out / "val" / "part-99999.parquet")
    problems = {problem.path: problem.what for problem in check_ingest_output(damaged_out)[1]}
    assert "truncated" in problems[str(shards[0])]
    assert problems[str(shards[1])] == "missing"
    assert "not written by this ingest" in problems[str(damaged_out / "val" / "part-99999.parquet")]
    assert len(problems) == 3
    assert check_ingest_output(damaged_out, ["test"])[1] == []  # checking one split looks at that split only


def test_training_evaluation_and_inspect_refuse_a_damaged_output_naming_the_file(damaged_out):
    from faceray.config import ConfigError
    from faceray.ingest.inspect import inspect_output
    from faceray.train.pipeline import verify_data

    shard = sorted((damaged_out / "train").glob("*.parquet"))[0]
    flip_bit(shard, shard.stat().st_size // 2)
    with pytest.raises(ConfigError, match=rf"--data: {shard}: changed since it was written.*--repair"):
        verify_data(damaged_out)
    verify_data(damaged_out, ["val", "test"])  # evaluation of another split reads only that split's files
    with pytest.raises(FormatError, match=str(shard)):
        inspect_output(damaged_out)


def test_labels_outside_the_classes_are_refused_as_they_are_read(damaged_out):
    """A shard rewritten with labels pushed out of range (a writer's bug, not a flipped bit: its record is
    updated too) is refused by every reader, naming the file, instead of training on or crashing with KeyError."""
    from faceray.config import ConfigError
    from faceray.integrity import digest_file
    from faceray.train.pipeline import label_counts

    shard = sorted((damaged_out / "train").glob("*.parquet"))[0]
    table = pq.read_table(shard)
    labels = table.column("label").to_numpy().copy()
    labels[3] = 12
    table = table.set_column(table.schema.get_field_index("label"), "label", pa.array(labels, pa.int16()))
    pq.write_table(table, shard, compression="zstd")
    manifest = IngestManifest.read(damaged_out)
    files = {**manifest.files, f"train/{shard.name}": digest_file(shard)}
    IngestManifest(**{**manifest.__dict__, "files": files}).save(damaged_out)
    assert check_ingest_output(damaged_out)[1] == []
    message = rf"{shard}: label 12 at row 3 is not a class of this data \(0..1, or -1 unknown\)"
    with pytest.raises(FormatError, match=message):
        read_shard_numpy(shard, ShardMetadata.read(damaged_out, "train"))
    with pytest.raises((FormatError, ConfigError), match=message):
        label_counts(damaged_out, "train", 2)


def test_repair_redoes_exactly_the_damaged_chunks_and_ends_with_a_clean_run_s_rows(sample_dir, clean_out, damaged_out):
    train = sorted((damaged_out / "train").glob("*.parquet"))
    val = sorted((damaged_out / "val").glob("*.parquet"))
    flip_bit(train[0], 100)
    val[0].write_bytes(val[0].read_bytes()[:50])
    shutil.copy(train[1], damaged_out / "test" / "part-77777.parquet")
    damaged_chunks = {train[0].name, val[0].name}
    lines: list[str] = []
    manifest = run_ingest(imdb_config(sample_dir, damaged_out, repair=True), log=lines.append)
    assert manifest.this_run["chunks_processed"] == len(damaged_chunks)
    assert any("repair: 3 damaged or foreign files" in line for line in lines), lines
    assert check_ingest_output(damaged_out)[1] == []
    assert all_rows(damaged_out) == all_rows(clean_out)
    assert manifest.files == IngestManifest.read(clean_out).files  # the same bytes as the clean run's
    assert (damaged_out / "_work" / "removed" / "test-part-77777.parquet").is_file()  # kept aside, not deleted
    assert IngestManifest.read(damaged_out).inputs == IngestManifest.read(clean_out).inputs


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs to fill needs root (CI runs as root)")
def test_a_full_disk_is_said_with_the_folder_its_free_space_and_that_a_rerun_resumes(sample_dir, ray_session, tmp_path):
    from faceray.errors import explain

    tiny = tmp_path / "tiny"
    tiny.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(tiny)], check=True)
    try:
        with pytest.raises(Exception) as failed:
            run_ingest(imdb_config(sample_dir, tiny / "out"))
        line = explain(failed.value, str(tiny / "out"))
    finally:
        subprocess.run(["umount", str(tiny)], check=True)
    assert line.startswith("no space left on the device of ") and f"MB free in {tiny}" in line, line
    assert "running the same command again resumes" in line and "ray::" not in line and "\x1b" not in line
