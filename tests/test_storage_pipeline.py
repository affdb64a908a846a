"""The pipeline on object storage: ingest from a bucket, train from it into it, serve from it, on the S3 test server
(moto on 127.0.0.1). The same faceray code as for local folders; nothing of faceray's is mocked."""

from __future__ import annotations

import hashlib
import json
import re
import shlex
import uuid
from pathlib import Path

import boto3
import numpy as np
import pytest

from faceray.config import resolve_config
from faceray.ingest.chunks import WORK_DIR, chunk_name, done_marker
from faceray.ingest.config import IngestConfig
from faceray.ingest.pipeline import run_ingest
from faceray.shards import MANIFEST_FILE, REJECTS_FILE, IngestManifest, read_table, shard_files
from faceray.storage import Location, upload_folder

pytestmark = pytest.mark.slow

OPERATIONS = Path(__file__).resolve().parents[1] / "docs" / "operations.md"  # the reference page holding it


@pytest.fixture(scope="module")
def raw(s3_server, ray_session, sample_dir) -> Location:
    """The session's sample data (IMDB-WIKI crops + imdb.mat, fer2013.csv) uploaded to a new bucket."""
    bucket = f"faceray-pipeline-{uuid.uuid4().hex[:8]}"
    boto3.client("s3", endpoint_url=s3_server).create_bucket(Bucket=bucket)
    raw = Location.of(f"s3://{bucket}/raw")
    upload_folder(sample_dir, raw)
    return raw


def ingest(dataset: str, inputs: Path | Location, out: Path | Location, **overrides) -> IngestManifest:
    paths = {"root": str(inputs / "imdb_crop")} if dataset == "imdb" else {"csv": str(inputs / "fer2013.csv")}
    settings = dict(dataset=dataset, out=str(out), shard_rows=48, progress=False, **paths, **overrides)
    return run_ingest(resolve_config(IngestConfig, settings))


def shard_rows(out: Path | Location) -> list[tuple]:
    rows = []
    for split in ("train", "val", "test"):
        for location in shard_files(out, split):
            table = read_table(location)
            rows += [(split, *row.values()) for row in table.to_pylist()]
    return sorted(rows, key=lambda row: (row[0], row[3]))  # by split and source


@pytest.mark.parametrize("dataset", ["imdb", "fer"])
def test_ingest_from_a_bucket_into_a_bucket_gives_the_local_result(raw, sample_dir, tmp_path, dataset):
    """Same counts, rejects and rows (pixels included) as the same ingest of the same files on the local disk."""
    remote = ingest(dataset, raw, raw.parent / f"shards-{dataset}")
    local = ingest(dataset, sample_dir, tmp_path / "local")
    assert remote.inputs == local.inputs and remote.splits == local.splits and remote.rejects == local.rejects
    assert remote.rejects and remote.inputs["accepted"] + remote.inputs["rejected"] == remote.inputs["total"]
    assert shard_rows(raw.parent / f"shards-{dataset}") == shard_rows(tmp_path / "local")
    reasons = [
        line.split(",")[2] for line in (raw.parent / f"shards-{dataset}" / REJECTS_FILE).read_text().splitlines()
    ]
    assert len(reasons) - 1 == remote.inputs["rejected"]  # one line per rejected input, under the header
    read_back = IngestManifest.read(raw.parent / f"shards-{dataset}").to_dict()
    assert read_back == json.loads(json.dumps(remote.to_dict()))


def test_an_interrupted_ingest_resumes_in_the_bucket(raw):
    """A chunk whose done-marker is missing (the run died after writing its shards) is redone whole; the others are
    not, and no row is counted twice."""
    out = raw.parent / "shards-resume"
    first = ingest("fer", raw, out)
    rows = shard_rows(out)
    assert first.chunks >= 3
    done_marker(out, 1).delete()  # chunk 1 stopped before its marker: its shards are there, unconfirmed
    (out / MANIFEST_FILE).delete()
    leftover = out / "train" / f"{chunk_name(1)}.parquet"
    assert leftover.is_file()
    resumed = ingest("fer", raw, out)
    assert resumed.this_run["chunks_processed"] == 1 and resumed.this_run["images_processed"] == 48
    assert shard_rows(out) == rows and resumed.inputs == first.inputs
    assert ingest("fer", raw, out).this_run["chunks_processed"] == 0  # finished: nothing to do
    assert sorted(location.name for location in (out / WORK_DIR / "done").files()) == [
        f"{chunk_name(chunk)}.json" for chunk in range(first.chunks)
    ]


def test_keys_outside_the_root_are_rejected_in_a_bucket_too(raw, tmp_path):
    """imdb.mat paths with `../` or absolute keys are rejected by name and never read, as on a local disk."""
    from scipy.io import loadmat, savemat

    root = raw.parent / "hostile" / "imdb_crop"
    mat = tmp_path / "imdb.mat"
    (mat).write_bytes((raw / "imdb_crop" / "imdb.mat").read_bytes())
    contents = loadmat(str(mat))
    struct = contents["imdb"]
    outside = ["../raw/imdb_crop/00/escape.jpg", "/etc/hostname", "a/../../b.jpg"]
    for index, path in enumerate(outside):
        struct[0, 0]["full_path"][0, index] = np.array([path])
    savemat(str(mat), {"imdb": struct})
    (root / "imdb.mat").write_bytes(mat.read_bytes())
    manifest = ingest(
        "imdb",
        root.parent,
        raw.parent / "hostile-out",
        min_face_score=None,
        drop_second_face=False,
        drop_unknown_gender=False,
    )
    assert manifest.rejects.get("outside_root") == len(outside)


def readme_s3_commands() -> list[list[str]]:
    """The `faceray` commands of the reference's object-storage pipeline, as written (serve: a server, not run)."""
    block = re.search(r"<!-- s3-pipeline.*?-->\s*```bash\n(.*?)```", OPERATIONS.read_text(), re.S)
    assert block, "docs/operations.md's s3-pipeline block is missing"
    lines = [line.split("#", 1)[0].strip() for line in block.group(1).replace("\\\n", " ").splitlines()]
    return [shlex.split(line)[1:] for line in lines if line.startswith("faceray ")]


def test_the_readme_s3_pipeline_runs_as_written_and_serves_from_the_bucket(s3_server, ray_session, astronaut_bgr):
    """sample -> ingest -> train -> evaluate with s3:// paths (docs/operations.md's commands, in this process), then the
    served model: read from the bucket (card and ONNX export) with the answers of a local copy."""
    from faceray.cli import main
    from faceray.serve.analyzer import FaceAnalyzer
    from faceray.serve.classify import FaceClassifier
    from faceray.storage import local_copy

    commands = readme_s3_commands()
    names = [command[0] for command in commands]
    assert names == ["sample", "ingest", "ingest", "inspect", "train", "evaluate", "serve"]
    buckets = {match for command in commands for match in re.findall(r"s3://([^/]+)/", " ".join(command))}
    client = boto3.client("s3", endpoint_url=s3_server)
    for bucket in buckets:
        client.create_bucket(Bucket=bucket)
    for command in commands[:-1]:
        assert main(command) == 0, command
    train = commands[names.index("train")]
    model = train[train.index("--out") + 1]
    files = {location.name for location in Location.of(model).files()}
    expected = {"model.keras", "model.onnx", "model_card.json", "evaluation.json", "evaluation_test.json"}
    assert expected | {"history.csv", "train_config.json", "learning_curves.png", "confusion_matrix.png"} <= files
    assert (Location.of(model) / "ray_results").is_dir()  # Ray Train's checkpoints went to the bucket
    assert not Path("s3:").exists()  # nothing written to a local folder named after the URI

    inspected = commands[names.index("inspect")][1]
    assert {location.name for location in (Location.of(inspected) / "inspect").files()} == {
        "samples.png",
        "class_distribution.png",
    }

    kept = {name: (Location.of(model) / name).read_text() for name in ("history.csv", "train_config.json")}
    assert main(train) == 0  # a finished run in the bucket, run again: nothing is trained or written again
    assert {name: (Location.of(model) / name).read_text() for name in kept} == kept
    (Location.of(model) / "model.onnx").delete()
    assert main(["export", model]) == 0  # `faceray export` on a directory in the bucket: file and card rewritten
    exported = json.loads((Location.of(model) / "model_card.json").read_text())["exports"]["onnx"]
    assert exported["sha256"] == hashlib.sha256((Location.of(model) / "model.onnx").read_bytes()).hexdigest()

    served = FaceClassifier(model)
    assert served.source == "export" and served.model_dir == model
    with local_copy(Location.of(model)) as folder:
        local = FaceAnalyzer(emotion_model=folder).analyze(astronaut_bgr)
    remote = FaceAnalyzer(emotion_model=model).analyze(astronaut_bgr)
    assert local and [face["emotion"] for face in remote] == [face["emotion"] for face in local]


@pytest.fixture(scope="session")
def astronaut_bgr() -> np.ndarray:
    import cv2
    from skimage import data

    return cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)
