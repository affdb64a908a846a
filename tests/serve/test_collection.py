"""Photo and video collections (serve/collection.py, no Ray): finding inputs, reading videos in frames, tracks, the
faces table, and `FaceAnalyzer.analyze_video`."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pyarrow as pa
import pytest

from faceray.serve.client import write_test_video
from faceray.serve.collection import (
    MediaError,
    assign_tracks,
    face_rows,
    faces_schema,
    keeps_frame,
    list_inputs,
    summarize,
    video_frames,
)
from tests.serve.test_analyzer import moving_face_frames


def write_collection(root: Path, astronaut_bgr: np.ndarray, frames: int = 6) -> Path:
    """A folder as users have them: photos in a subfolder, a video, a broken and an empty file, a text file and a
    hidden file."""
    (root / "photos" / "trip").mkdir(parents=True)
    cv2.imwrite(str(root / "photos" / "astronaut.jpg"), astronaut_bgr)
    cv2.imwrite(str(root / "photos" / "trip" / "grey.png"), np.full((60, 80), 128, np.uint8))
    (root / "photos" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"x" * 64)
    (root / "photos" / "notes.txt").write_text("not a picture")
    (root / "photos" / ".DS_Store").write_bytes(b"\0")
    (root / "empty.mp4").write_bytes(b"")
    write_test_video(root / "walk.mp4", moving_face_frames(astronaut_bgr, frames), fps=10.0)
    return root


def test_inputs_are_found_in_folders_globs_and_files_and_the_rest_is_rejected(tmp_path, astronaut_bgr):
    root = write_collection(tmp_path / "shoot", astronaut_bgr)
    media, rejects = list_inputs([str(root), str(root / "photos" / "astronaut.jpg")])
    sources = {item.source: item.kind for item in media}
    assert sources == {
        "shoot/photos/astronaut.jpg": "image",
        "shoot/photos/broken.jpg": "image",  # found here; the read rejects it as undecodable
        "shoot/photos/trip/grey.png": "image",
        "shoot/empty.mp4": "video",
        "shoot/walk.mp4": "video",
    }  # the astronaut given again is analysed once; the hidden file is skipped
    assert [(reject.source, reject.reason) for reject in rejects] == [("shoot/photos/notes.txt", "unsupported")]
    globbed, _ = list_inputs([str(root / "photos" / "**" / "*.png"), str(root / "*.mp4")])
    assert sorted(item.source for item in globbed) == ["photos/trip/grey.png", "shoot/empty.mp4", "shoot/walk.mp4"]
    assert len({item.key for item in media}) == len(media)
    with pytest.raises(FileNotFoundError, match="no such file or folder"):
        list_inputs([str(root / "missing")])
    with pytest.raises(FileNotFoundError, match="matches no file"):
        list_inputs([str(root / "*.avi")])


def test_inputs_in_object_storage(bucket, tmp_path, astronaut_bgr):
    from faceray.storage import Location, upload_folder

    root = write_collection(tmp_path / "shoot", astronaut_bgr)
    upload_folder(root, Location.of(f"{bucket}/shoot"))
    media, rejects = list_inputs([f"{bucket}/shoot"])
    assert {item.source for item in media} >= {"shoot/walk.mp4", "shoot/photos/trip/grey.png"}
    assert all(item.uri.startswith(bucket) for item in media)
    assert [reject.reason for reject in rejects] == ["unsupported"]
    globbed, _ = list_inputs([f"{bucket}/shoot/*.mp4"])
    assert sorted(item.source for item in globbed) == ["shoot/empty.mp4", "shoot/walk.mp4"]


def test_a_video_is_sampled_at_the_asked_rate_and_bad_files_are_explained(tmp_path, astronaut_bgr):
    video = write_test_video(tmp_path / "v.mp4", moving_face_frames(astronaut_bgr, 30), fps=10.0)
    every = list(video_frames(video))
    assert [index for index, _, _ in every] == list(range(30))
    sampled = list(video_frames(video, fps=2.5))
    assert [index for index, _, _ in sampled] == [0, 4, 8, 12, 16, 20, 24, 28]
    assert [time for _, time, _ in sampled][:3] == pytest.approx([0.0, 0.4, 0.8])
    assert sum(keeps_frame(index, 29.97, 5.0) for index in range(2997)) == pytest.approx(500, abs=1)
    # A segment (a read task's share) gives the frames, indices and sampling of a read from the start.
    for start, stop in ((7, 19), (13, None), (29, 40)):
        part = list(video_frames(video, 2.5, start, stop))
        whole = [item for item in sampled if item[0] >= start and (stop is None or item[0] < stop)]
        assert [(index, time) for index, time, _ in part] == [(index, time) for index, time, _ in whole]
        assert all(np.array_equal(mine, theirs) for (_, _, mine), (_, _, theirs) in zip(part, whole))
    (tmp_path / "empty.mp4").write_bytes(b"")
    with pytest.raises(MediaError, match="empty") as empty:
        list(video_frames(tmp_path / "empty.mp4"))
    assert empty.value.reason == "empty"
    (tmp_path / "junk.mp4").write_bytes(b"no video here " * 40)
    with pytest.raises(MediaError) as junk:
        list(video_frames(tmp_path / "junk.mp4"))
    assert junk.value.reason == "undecodable"


def test_tracks_follow_faces_and_a_face_gone_too_long_comes_back_as_a_new_one():
    def row(frame, x):
        return face_rows("v.mp4", frame, frame / 10, [{"box": [x, 100, 80, 80], "detector_score": 0.9}])[0]

    rows = [row(frame, 10 + 5 * frame) for frame in range(4)] + [row(frame, 400) for frame in range(4)]
    rows += [row(12, 30)]  # the first face again after 8 analysed frames without it
    table = pa.Table.from_pylist(rows, schema=faces_schema())
    tracked = assign_tracks(table, analysed_frames=range(13))
    assert tracked.column("frame").to_pylist() == [0, 0, 1, 1, 2, 2, 3, 3, 12]
    # The moving face keeps track 1, the still one track 2; missed for more than max_missed frames, a new track.
    assert tracked.column("track").to_pylist() == [1, 2, 1, 2, 1, 2, 1, 2, 3]
    summary = summarize("v.mp4", "video", 13, 5, tracked)
    assert (
        summary["faces"] == 9 and summary["frames_with_faces"] == 5 and summary["faces_per_frame"] == round(9 / 13, 4)
    )


def test_analyze_video_gives_the_faces_of_each_frame_as_analyze_does(tmp_path, model_dirs, astronaut_bgr):
    from faceray.serve.analyzer import FaceAnalyzer

    analyzer = FaceAnalyzer(model_dirs["emotion"], model_dirs["gender"])
    video = write_test_video(tmp_path / "walk.mp4", moving_face_frames(astronaut_bgr, 8), fps=10.0)
    table = analyzer.analyze_video(video, fps=5)
    assert list(table.columns) == faces_schema(analyzer.emotion_labels).names
    decoded = {index: frame for index, _, frame in video_frames(video, fps=5)}
    assert sorted(set(table["frame"])) == sorted(decoded) == [0, 2, 4, 6]
    for index, frame in decoded.items():
        expected = analyzer.analyze(frame)
        rows = table[table["frame"] == index]
        assert [list(box) for box in rows["box"]] == [face["box"] for face in expected]
        assert list(rows["emotion"]) == [face["emotion"]["label"] for face in expected]
        assert list(rows["gender_score"]) == [face["gender"]["score"] for face in expected]
    assert table["track"].nunique() == 1  # one face walking across the picture
    assert (table["source"] == str(video)).all()
    (tmp_path / "empty.mp4").write_bytes(b"")
    with pytest.raises(ValueError, match="empty"):
        analyzer.analyze_video(tmp_path / "empty.mp4")
