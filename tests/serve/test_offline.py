"""`faceray analyze` on Ray Data (serve/offline.py): a collection with bad files, a stop and a resume, object storage,
a finished run left alone, other settings refused."""

from __future__ import annotations

import csv
import json

import pyarrow.parquet as pq
import pytest

from faceray.config import ConfigError, resolve_config
from faceray.serve.config import AnalyzeConfig
from tests.serve.test_collection import write_collection


def config_for(inputs, out, model_dirs, **settings) -> AnalyzeConfig:
    values = dict(
        inputs=tuple(str(item) for item in inputs),
        out=str(out),
        emotion_model=str(model_dirs["emotion"]),
        gender_model=str(model_dirs["gender"]),
        actors=1,
        progress=False,
        **settings,
    )
    return resolve_config(AnalyzeConfig, values)


def faces_by_source(out) -> dict[str, list[dict]]:
    rows = pq.read_table(f"{out}/faces").to_pylist()
    found: dict[str, list[dict]] = {}
    for row in rows:
        found.setdefault(row["source"], []).append(row)
    return found


def test_a_collection_is_analysed_stopped_resumed_and_left_alone_once_finished(
    ray_session, tmp_path, bucket, model_dirs, astronaut_bgr, monkeypatch
):
    import cv2

    from faceray.serve import offline
    from faceray.serve.analyzer import FaceAnalyzer
    from faceray.serve.collection import video_frames
    from faceray.storage import Location

    root = write_collection(tmp_path / "shoot", astronaut_bgr, frames=12)
    Location.of(f"{bucket}/more/astronaut.png").write_bytes(cv2.imencode(".png", astronaut_bgr)[1].tobytes())
    out = tmp_path / "out"
    config = config_for([root, f"{bucket}/more"], out, model_dirs, fps=5.0, annotate=True)

    # A stop after the first finished input: what is finished is kept, the rest is redone on the next run.
    finish = offline.finish_input
    finished = []

    def stop_after_one(*arguments, **keywords):
        marker = finish(*arguments, **keywords)
        finished.append(marker["source"])
        raise KeyboardInterrupt

    monkeypatch.setattr(offline, "SEGMENT_FRAMES", 5)  # the 12-frame video in 3 actor tasks: [0, 5), [5, 10), [10, …)
    monkeypatch.setattr(offline, "finish_input", stop_after_one)
    with pytest.raises(KeyboardInterrupt):
        offline.run_analyze(config)
    assert len(list((out / "_work" / "done").iterdir())) == 1 and not (out / "manifest.json").exists()
    monkeypatch.setattr(offline, "finish_input", finish)
    manifest = offline.run_analyze(config)

    counts = manifest["counts"]
    assert manifest["this_run"]["inputs_analysed"] == 5  # the 6 images and videos, less the one finished before
    assert counts == {
        "inputs": 7,  # 6 images and videos, and the text file: analysed + rejected
        "analysed": 4,
        "rejected": 3,
        "images": 3,
        "videos": 1,
        "frames": 3 + 6,  # 12 frames at 10 frames/s sampled at 5
        "frames_with_faces": counts["frames_with_faces"],
        "faces": counts["faces"],
    }
    with open(out / "rejects.csv") as handle:
        rejects = {row["source"]: row["reason"] for row in csv.DictReader(handle)}
    assert rejects == {
        "shoot/photos/notes.txt": "unsupported",
        "shoot/photos/broken.jpg": "undecodable",
        "shoot/empty.mp4": "empty",
    }

    # Every face row is what the in-process analyzer finds on the same frame, tracks set on the video.
    analyzer = FaceAnalyzer(model_dirs["emotion"], model_dirs["gender"])
    faces = faces_by_source(out)
    expected = {
        "shoot/photos/astronaut.jpg": {0: analyzer.analyze(str(root / "photos" / "astronaut.jpg"))},
        "more/astronaut.png": {0: analyzer.analyze(f"{bucket}/more/astronaut.png")},
        "shoot/walk.mp4": {index: analyzer.analyze(frame) for index, _, frame in video_frames(root / "walk.mp4", 5)},
    }
    for source, frames in expected.items():
        rows = faces.get(source, [])
        assert [(row["frame"], row["box"]) for row in rows] == [
            (index, face["box"]) for index, found in frames.items() for face in found
        ]
        assert [row["emotion_score"] for row in rows] == [
            face["emotion"]["score"] for found in frames.values() for face in found
        ]
    assert {row["track"] for row in faces["shoot/walk.mp4"]} == {1}
    assert {row["track"] for row in faces["shoot/photos/astronaut.jpg"]} == {None}
    with open(out / "summary.csv") as handle:
        summary = {row["source"]: row for row in csv.DictReader(handle)}
    assert summary["shoot/walk.mp4"]["frames"] == "6" and summary["shoot/photos/trip/grey.png"]["faces"] == "0"
    assert (out / "timelines" / "shoot" / "walk.mp4.png").stat().st_size > 0
    assert cv2.VideoCapture(str(out / "annotated" / "shoot" / "walk.mp4")).get(cv2.CAP_PROP_FRAME_COUNT) == 6
    assert cv2.imread(str(out / "annotated" / "shoot" / "photos" / "astronaut.jpg")) is not None
    assert json.loads((out / "manifest.json").read_text())["models"]["emotion"]["files"]

    # Run again: nothing changes. Other settings are refused, --overwrite replaces.
    written = {path: path.stat().st_mtime_ns for path in out.rglob("*") if path.is_file() and path.name != "plan.json"}
    again = offline.run_analyze(config)
    assert again["this_run"]["inputs_analysed"] == 0
    assert {path: path.stat().st_mtime_ns for path in written} == written
    with pytest.raises(ConfigError, match="other fps"):
        offline.run_analyze(config_for([root, f"{bucket}/more"], out, model_dirs, fps=2.0, annotate=True))
    with pytest.raises(ConfigError, match="INPUT: .*no such file"):
        offline.run_analyze(config_for([root / "nothing"], tmp_path / "other", model_dirs))


def test_a_damaged_model_is_refused_before_any_work_naming_its_file(tmp_path, model_dirs, astronaut_bgr):
    """The model checks of `faceray serve` (serve.config.check_models): a flipped byte in model.keras is one
    ConfigError naming the flag and the file, before Ray is asked for anything (no ray_session here)."""
    import shutil

    import cv2

    from faceray.serve.offline import run_analyze

    damaged = tmp_path / "emotion"
    shutil.copytree(model_dirs["emotion"], damaged)
    model = bytearray((damaged / "model.keras").read_bytes())
    model[len(model) // 2] ^= 1
    (damaged / "model.keras").write_bytes(bytes(model))
    cv2.imwrite(str(tmp_path / "face.jpg"), astronaut_bgr)
    config = config_for([tmp_path / "face.jpg"], tmp_path / "out", {**model_dirs, "emotion": damaged})
    with pytest.raises(ConfigError, match=r"--emotion-model: .*model\.keras: changed since it was written"):
        run_analyze(config)
    assert not (tmp_path / "out" / "faces").exists()


def test_a_video_rejected_in_one_segment_is_written_once_every_segment_has_reported():
    """A video cut into segments, damaged in its first: the reject arrives before the other segment's frames, and
    the input is finished (one reject, no rows lost to a finished input) only when both segments have reported."""
    import pyarrow as pa

    from faceray.serve.collection import MediaInput
    from faceray.serve.offline import InputProgress, absorb_results, result_schema

    media = MediaInput("/videos/cut.mp4", "cut.mp4", "video")
    waiting = {media.key: InputProgress(media, segments=2)}
    schema = result_schema(("happy", "sad"))

    def results(*rows: dict) -> pa.Table:
        return pa.Table.from_pylist([{**row, "key": media.key} for row in rows], schema)

    absorb_results(results({"kind": "reject", "reason": "undecodable", "detail": "bad frame"}), waiting)
    assert not waiting[media.key].complete  # the second segment's rows are still to come
    frames = absorb_results(
        results({"kind": "frame", "frame": 128, "faces": 0, "node": "n"}, {"kind": "end", "frame": 1}), waiting
    )
    progress = waiting[media.key]
    assert frames == {"n": 1} and progress.complete and progress.segments == 0
    assert (progress.reject.reason, progress.reject.detail) == ("undecodable", "bad frame")


def test_a_video_is_cut_into_segments_only_where_its_container_seeks_exactly(tmp_path, astronaut_bgr):
    """A segment seeks to its first frame; where a container cannot land there exactly, each segment would decode
    the video's start again, so such a video is read by one actor from the start."""
    import cv2

    from faceray.serve.client import write_test_video
    from faceray.serve.collection import MediaInput, VideoInfo
    from faceray.serve.offline import SEGMENT_FRAMES, VideoHeader, input_blocks, video_header, video_segments

    info = VideoInfo(fps=10.0, frames=2 * SEGMENT_FRAMES + 5, width=64, height=48)
    assert video_segments(VideoHeader(info, True)) == [(0, SEGMENT_FRAMES), (SEGMENT_FRAMES, 2 * SEGMENT_FRAMES),
                                                       (2 * SEGMENT_FRAMES, -1)]  # fmt: skip
    assert video_segments(VideoHeader(info, False)) == [(0, -1)]
    assert video_segments(None) == [(0, -1)]

    small = cv2.resize(astronaut_bgr, (64, 64))
    path = write_test_video(tmp_path / "long.mp4", [small] * (SEGMENT_FRAMES + 10), fps=10)
    media = MediaInput(str(path), "long.mp4", "video")
    header = video_header(media)
    assert header is not None and header.seeks_exactly and header.info.frames == SEGMENT_FRAMES + 10
    blocks, segments, estimate = input_blocks([media], fps=5.0)
    assert segments == {media.key: 2} and len(blocks) == 2 and estimate == (SEGMENT_FRAMES + 10) // 2
