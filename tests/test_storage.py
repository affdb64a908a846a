"""faceray.storage: the same operations on a local folder and on a bucket of the S3 test server (127.0.0.1)."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from faceray.storage import Location, download_folder, is_store_uri, local_copy, local_folder


@pytest.fixture(params=["local", "s3"])
def folder(request: pytest.FixtureRequest, tmp_path: Path) -> Location:
    if request.param == "local":
        return Location.of(tmp_path / "folder")
    return Location.of(request.getfixturevalue("bucket") + "/some/folder")


def test_resolving_names_the_store_and_refuses_unknown_schemes(tmp_path: Path) -> None:
    local = Location.of(tmp_path / "a")
    assert local.is_local and local.uri == str(tmp_path / "a") and local.local_path() == tmp_path / "a"
    assert Location.of(f"file://{tmp_path}/a").path == str(tmp_path / "a")
    assert is_store_uri("s3://b/k") and is_store_uri("gs://b/k") and not is_store_uri(str(tmp_path))
    with pytest.raises(ValueError, match="unsupported scheme 'ftp'"):
        Location.of("ftp://host/file")
    with pytest.raises(ValueError, match="empty"):
        Location.of("")
    for uri in ("s3://bucket/key?endpoint_override=127.0.0.1:9000", "s3://key:secret@bucket/key"):
        with pytest.raises(ValueError, match="in the environment"):
            Location.of(uri)


def test_files_write_read_list_and_delete(folder: Location) -> None:
    assert not folder.exists() and folder.files() == []
    (folder / "b.parquet").write_bytes(b"2")
    (folder / "a.parquet").write_text("one")
    (folder / "notes.txt").write_bytes(b"x")
    (folder / "sub" / "c.parquet").write_bytes(b"3")
    assert folder.is_dir() and (folder / "a.parquet").is_file() and not (folder / "missing").exists()
    assert [location.name for location in folder.files(".parquet")] == ["a.parquet", "b.parquet"]
    assert (folder / "a.parquet").read_text() == "one"
    with (folder / "b.parquet").open_input() as handle:
        handle.seek(0)
        assert handle.read() == b"2"
    with pytest.raises(FileNotFoundError, match="no file at .*missing"):
        (folder / "missing").read_bytes()
    (folder / "a.parquet").delete()
    (folder / "a.parquet").delete()  # deleting what is gone is fine
    assert [location.name for location in folder.files()] == ["b.parquet", "notes.txt"]
    folder.delete_tree()
    assert not folder.exists()


def test_a_failed_write_leaves_nothing_behind(folder: Location) -> None:
    target = folder / "shard.parquet"
    target.write_bytes(b"good")
    with pytest.raises(RuntimeError), target.writer() as handle:
        handle.write(b"half")
        raise RuntimeError("interrupted")
    assert target.read_bytes() == b"good"  # the old bytes, whole
    assert [location.name for location in folder.files()] == ["shard.parquet"]


def test_a_location_travels_pickled_with_its_endpoint(bucket: str) -> None:
    location = Location.of(bucket + "/x.bin")
    location.write_bytes(b"payload")
    copy = pickle.loads(pickle.dumps(location))
    assert copy.uri == location.uri and copy.read_bytes() == b"payload"


def test_local_folder_uploads_on_success_only(bucket: str, tmp_path: Path) -> None:
    out = Location.of(bucket + "/run")
    with local_folder(out) as work:
        (work / "model.keras").write_bytes(b"m")
        (work / "plots").mkdir()
        (work / "plots" / "curve.png").write_bytes(b"p")
        (work / "scratch.log").write_bytes(b"s")
    assert (out / "model.keras").read_bytes() == b"m" and (out / "plots" / "curve.png").read_bytes() == b"p"
    with pytest.raises(RuntimeError), local_folder(Location.of(bucket + "/failed")) as work:
        (work / "model.keras").write_bytes(b"m")
        raise RuntimeError("training failed")
    assert not Location.of(bucket + "/failed").exists()
    with local_folder(out, fetch=True, skip=("scratch.log",)) as work:  # a rerun sees the top-level files
        assert (work / "model.keras").read_bytes() == b"m" and not (work / "plots").exists()
    with local_copy(out) as copy:
        assert sorted(path.name for path in copy.iterdir()) == ["model.keras", "scratch.log"]
    copied = download_folder(out, tmp_path / "all", recursive=True)
    assert sorted(path.relative_to(tmp_path / "all").as_posix() for path in copied) == [
        "model.keras",
        "plots/curve.png",
        "scratch.log",
    ]
    with pytest.raises(FileNotFoundError, match="no files in"), local_copy(Location.of(bucket + "/nothing")):
        pass


def test_bad_locations_are_one_line_naming_the_flag(bucket: str, tmp_path: Path, capsys) -> None:
    """Before anything starts (no Ray): an unknown scheme, a missing bucket, an empty data folder or model
    directory in a bucket are each one message naming the flag, exit status 2."""
    from faceray.cli import main

    cases = [
        (["ingest", "fer", "--csv", "ftp://host/fer2013.csv", "--out", str(tmp_path)], "--csv: 'ftp://host"),
        (["sample", "--out", "s3://no-such-bucket-here/raw"], "--out: s3://no-such-bucket-here/raw: there is no"),
        (["train", "--data", f"{bucket}/nothing", "--out", str(tmp_path)], "--data: no Parquet shards in s3://"),
        (["serve", "--emotion-model", f"{bucket}/nothing"], "--emotion-model: s3://"),
        (["train", "--data", "s3://key:secret@bucket/data"], "in the environment"),
    ]
    for argv, words in cases:
        with pytest.raises(SystemExit) as exited:
            main(argv)
        assert exited.value.code == 2, argv
        error = capsys.readouterr().err
        assert words in error and "Traceback" not in error and "secret" not in error, error
