"""Ingest end to end through Ray Data on sample data: counts, rejects, schema, resume."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from faceray.config import ConfigError, resolve_config
from faceray.ingest.config import IngestConfig
from faceray.ingest.pipeline import run_ingest
from faceray.shards import IngestManifest, ShardMetadata, load_split_numpy
from tests.ingest.conftest import LISTENERS, imdb_config

pytestmark = pytest.mark.slow


def fer_config(sample_dir: Path, out: Path, **overrides) -> IngestConfig:
    settings = dict(dataset="fer", csv=str(sample_dir / "fer2013.csv"), out=str(out), shard_rows=64, progress=False)
    settings.update(overrides)
    return resolve_config(IngestConfig, settings)


def all_rows(out: Path) -> list[tuple[str, str, int, bytes]]:
    rows = []
    for split in ("train", "val", "test"):
        for path in sorted((out / split).glob("*.parquet")):
            table = pq.read_table(path)
            rows += [
                (split, source, label, image)
                for source, label, image in zip(
                    table.column("source").to_pylist(),
                    table.column("label").to_pylist(),
                    table.column("image").to_pylist(),
                )
            ]
    return sorted(rows)


def test_ingest_listens_on_loopback_only(imdb_out):
    """Ray Data's tasks and the local Ray under them bind 127.0.0.1 only (the network rule)."""
    assert LISTENERS["ingest"] == set()


def test_imdb_counts_and_rejects(imdb_out):
    manifest = IngestManifest.read(imdb_out)
    inputs = manifest.inputs
    assert inputs["total"] == 160
    assert inputs["accepted"] + inputs["rejected"] == inputs["total"]
    assert sum(manifest.splits[split]["count"] for split in ("train", "val", "test")) == inputs["accepted"]
    # The sample breaks one file of each kind on purpose, and has each label problem.
    for reason in (
        "truncated JPEG",
        "empty file",
        "not a decodable image",
        "missing file",
        "gender unknown",
        "no face",
        "face_score too low",
        "second face",
    ):
        assert manifest.rejects.get(reason, 0) >= 1, reason
    with open(imdb_out / "rejects.csv") as handle:
        rejects = list(csv.DictReader(handle))
    assert len(rejects) == inputs["rejected"]
    assert all(row["reason"] and row["source"] for row in rejects)
    rejected_sources = {row["source"] for row in rejects}
    accepted_sources = {source for _, source, _, _ in all_rows(imdb_out)}
    assert not rejected_sources & accepted_sources
    assert len(accepted_sources) == inputs["accepted"]
    assert manifest.config["min_face_score"] == 3.0


def test_schema_round_trip_with_plain_pyarrow(imdb_out):
    path = sorted((imdb_out / "train").glob("*.parquet"))[0]
    table = pq.read_table(path)
    assert table.schema.field("image").type == "binary"
    assert str(table.schema.field("label").type) == "int16"
    assert {"source", "celeb_id", "face_score", "photo_taken"} <= set(table.column_names)
    metadata = table.schema.metadata
    shape = json.loads(metadata[b"faceray.image_shape"])
    assert shape == [64, 64, 1] and metadata[b"faceray.color"] == b"gray"
    assert json.loads(metadata[b"faceray.labels"]) == ["woman", "man"]
    first = np.frombuffer(table.column("image")[0].as_py(), np.uint8).reshape(shape)
    assert first.std() > 5  # a real picture, not a blank
    images, labels = load_split_numpy(imdb_out, "train")
    assert images.shape[1:] == (64, 64, 1) and images.dtype == np.uint8 and set(labels) <= {0, 1}
    assert ShardMetadata.read(imdb_out, "train").task == "gender"
    assert ShardMetadata.read(imdb_out, "train").crop.margin == 0.4


def test_rerunning_a_finished_ingest_does_nothing(sample_dir, imdb_out):
    before = {path: path.stat().st_mtime_ns for path in imdb_out.rglob("*") if path.is_file()}
    manifest = run_ingest(imdb_config(sample_dir, imdb_out))
    assert manifest.this_run["chunks_processed"] == 0
    after = {path: path.stat().st_mtime_ns for path in imdb_out.rglob("*") if path.is_file()}
    assert before == after


def test_resume_after_interruption_gives_the_same_rows(sample_dir, imdb_out, tmp_path):
    resumed = tmp_path / "resumed"
    shutil.copytree(imdb_out, resumed)
    # What a kill midway leaves: chunks 1 and 3 not marked done, one of their shards half-written,
    # a temporary file, and chunk 3's train shard never written.
    for chunk in (1, 3):
        (resumed / "_work" / "done" / f"part-0000{chunk}.json").unlink()
    half = resumed / "train" / "part-00001.parquet"
    half.write_bytes(half.read_bytes()[:100])
    (resumed / "val" / "part-00003.parquet.tmp").write_bytes(b"partial")
    (resumed / "train" / "part-00003.parquet").unlink()
    manifest = run_ingest(imdb_config(sample_dir, resumed))
    assert manifest.this_run["chunks_processed"] == 2
    assert all_rows(resumed) == all_rows(imdb_out)
    original = json.loads((imdb_out / "manifest.json").read_text())
    assert manifest.splits == original["splits"] and manifest.rejects == original["rejects"]
    assert not list(resumed.rglob("*.tmp"))


def test_other_settings_refuse_the_same_output_unless_overwrite(sample_dir, imdb_out, tmp_path):
    with pytest.raises(ConfigError, match="other settings"):
        run_ingest(imdb_config(sample_dir, imdb_out, size=32))
    copy = tmp_path / "copy"
    shutil.copytree(imdb_out, copy)
    manifest = run_ingest(imdb_config(sample_dir, copy, size=32, color="rgb", overwrite=True))
    assert manifest.metadata.image_shape == (32, 32, 3) and manifest.to_dict()["image_shape"] == [32, 32, 3]
    assert ShardMetadata.read(copy, "train").image_shape == (32, 32, 3)


def test_identity_split_keeps_people_apart(sample_dir, ray_session, tmp_path):
    out = tmp_path / "by_identity"
    run_ingest(imdb_config(sample_dir, out, by_identity=True, split=(0.6, 0.2, 0.2)))
    people: dict[int, set[str]] = {}
    for split in ("train", "val", "test"):
        for path in (out / split).glob("*.parquet"):
            for celeb in pq.read_table(path, columns=["celeb_id"]).column("celeb_id").to_pylist():
                people.setdefault(celeb, set()).add(split)
    assert len(people) > 5 and all(len(splits) == 1 for splits in people.values())
    assert {split for splits in people.values() for split in splits} == {"train", "val", "test"}


def test_fer_ingest_honours_usage_and_rejects_bad_rows(sample_dir, ray_session, tmp_path):
    out = tmp_path / "fer"
    manifest = run_ingest(fer_config(sample_dir, out, size=64))
    assert manifest.inputs["total"] == 206
    assert manifest.inputs["rejected"] == 6
    assert set(manifest.rejects) == {
        "wrong pixel count",
        "non-numeric pixel",
        "pixel out of range",
        "unknown emotion label",
        "wrong field count",
        "unknown Usage",
    }
    usage_of_split = {"train": "Training", "val": "PublicTest", "test": "PrivateTest"}
    for split, usage in usage_of_split.items():
        for path in (out / split).glob("*.parquet"):
            assert set(pq.read_table(path, columns=["usage"]).column("usage").to_pylist()) == {usage}
    images, labels = load_split_numpy(out, "train")
    assert images.shape[1:] == (64, 64, 1) and labels.max() <= 6


def test_ray_dataset_reader(imdb_out, ray_session):
    from faceray.train.dataset import read_split_dataset

    batch = read_split_dataset(imdb_out, "val").take_batch(8)
    assert batch["image"].shape[1:] == (64, 64, 1) and batch["image"].dtype == np.uint8
    assert batch["label"].dtype == np.int64


def test_missing_inputs_are_clear_errors(tmp_path, ray_session):
    with pytest.raises(ConfigError, match="--root"):
        run_ingest(resolve_config(IngestConfig, dict(dataset="imdb", root=str(tmp_path), out=str(tmp_path / "o"))))
    with pytest.raises(ConfigError, match="--csv"):
        run_ingest(
            resolve_config(IngestConfig, dict(dataset="fer", csv=str(tmp_path / "no.csv"), out=str(tmp_path / "o2")))
        )


def test_unknown_gender_kept_on_request_is_labelled_unknown_and_refused_by_training(sample_dir, ray_session, tmp_path):
    from faceray.train.pipeline import label_counts

    out = tmp_path / "kept"
    manifest = run_ingest(imdb_config(sample_dir, out, drop_unknown_gender=False))
    kept = sum(manifest.splits[split]["labels"].get("unknown", 0) for split in ("train", "val", "test"))
    assert kept >= 1 and "gender unknown" not in manifest.rejects
    labels = [label for _, _, label, _ in all_rows(out)]
    assert labels.count(-1) == kept
    assert manifest.inputs["accepted"] + manifest.inputs["rejected"] == manifest.inputs["total"]
    split_with_unknown = next(
        split for split in ("train", "val", "test") if manifest.splits[split]["labels"].get("unknown")
    )
    with pytest.raises(ConfigError, match="unknown label"):
        label_counts(out, split_with_unknown, 2)
