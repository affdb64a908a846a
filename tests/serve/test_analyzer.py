"""FaceAnalyzer, the in-process pipeline and Python API, and its per-stream tracking (no Ray)."""

from __future__ import annotations

import subprocess
import sys

import cv2
import numpy as np
import pytest

from faceray.serve.analyzer import FaceAnalyzer
from faceray.serve.tracking import follow_faces


@pytest.fixture(scope="module")
def analyzer(model_dirs) -> FaceAnalyzer:
    return FaceAnalyzer(emotion_model=model_dirs["emotion"], gender_model=model_dirs["gender"])


def moving_face_frames(astronaut_bgr, count: int, step: int = 6) -> list[np.ndarray]:
    face = astronaut_bgr[30:230, 130:330]
    frames = []
    for index in range(count):
        frame = np.full((480, 640, 3), 90, np.uint8)
        x = 60 + index * step
        frame[140:340, x : x + 200] = face
        frames.append(frame)
    return frames


def test_the_python_api_is_importable_from_faceray_without_loading_anything():
    code = (
        "import sys, faceray; assert 'faceray.serve.analyzer' not in sys.modules and 'tensorflow' not in sys.modules; "
        "from faceray import FaceAnalyzer; print(FaceAnalyzer.__module__)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "faceray.serve.analyzer"


def test_the_python_api_works_beside_a_users_own_serve_py(tmp_path):
    """A user's folder with its own serve.py and train.py: faceray's stages are faceray.serve and faceray.train, so
    neither shadows them."""
    (tmp_path / "serve.py").write_text("raise SystemExit('the user serve.py was imported')\n")
    (tmp_path / "train.py").write_text("raise SystemExit('the user train.py was imported')\n")
    code = "from faceray import FaceAnalyzer; import faceray.train.config; print(FaceAnalyzer.__module__)"
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "faceray.serve.analyzer"


def test_analyze_a_real_photo(analyzer, model_dirs, astronaut_bgr):
    [face] = analyzer.analyze(astronaut_bgr)
    x, y, w, h = face["box"]
    assert 190 < x + w / 2 < 260 and 80 < y + h / 2 < 150
    for task, count in (("emotion", 7), ("gender", 2)):
        assert len(face[task]["scores"]) == count and abs(sum(face[task]["scores"].values()) - 1) < 1e-3
        assert face[task]["label"] == max(face[task]["scores"], key=face[task]["scores"].get)
    if model_dirs["published"]:
        assert face["gender"]["label"] == "woman" and face["emotion"]["label"] == "happy"


def test_analyze_batch_equals_analyze_frame_by_frame(analyzer, astronaut_bgr):
    frames = [astronaut_bgr, np.full((240, 320, 3), 128, np.uint8), np.roll(astronaut_bgr, 40, axis=1)]
    batched = analyzer.analyze_batch(frames)
    alone = [analyzer.analyze(frame) for frame in frames]
    assert [[face["box"] for face in faces] for faces in batched] == [
        [face["box"] for face in faces] for faces in alone
    ]
    assert batched[1] == []
    for faces_batched, faces_alone in zip(batched, alone):
        for first, second in zip(faces_batched, faces_alone):
            for task in ("emotion", "gender"):
                assert first[task]["label"] == second[task]["label"]
                assert abs(first[task]["score"] - second[task]["score"]) < 1e-4


def test_describe_names_the_models_and_the_detector(analyzer):
    description = analyzer.describe()
    assert description["emotion"]["labels"][3] == "happy" and description["gender"]["labels"] == ["woman", "man"]
    assert description["detector"]["name"] == "blazeface" and description["detector"]["min_score"] == 0.5


def test_one_model_is_enough_and_none_means_the_fetched_paper_models(model_dirs, astronaut_bgr, tmp_path, monkeypatch):
    [face] = FaceAnalyzer(gender_model=model_dirs["gender"], detector="haar").analyze(astronaut_bgr)
    assert set(face) == {"box", "detector_score", "gender"} and face["detector_score"] is None  # Haar: no score
    monkeypatch.setenv("FACERAY_MODELS", str(tmp_path))
    with pytest.raises(ValueError, match=r"not in .*: run `faceray fetch-weights paper`"):
        FaceAnalyzer()
    for task in ("emotion", "gender"):  # where `faceray fetch-weights paper` writes them
        (tmp_path / f"{task}-paper").symlink_to(model_dirs[task])
    assert set(FaceAnalyzer().analyze(astronaut_bgr)[0]) == {"box", "detector_score", "emotion", "gender"}
    with pytest.raises(ValueError, match="unknown detector"):
        FaceAnalyzer(gender_model=model_dirs["gender"], detector="yolo")


def test_analyze_takes_a_path_bytes_a_pil_image_or_an_array(analyzer, astronaut_bgr, tmp_path):
    from PIL import Image

    expected = analyzer.analyze(astronaut_bgr)
    path = tmp_path / "astronaut.png"
    cv2.imwrite(str(path), astronaut_bgr)
    pil = Image.open(path)
    for image in (path, str(path), path.read_bytes(), pil, cv2.cvtColor(astronaut_bgr, cv2.COLOR_BGR2BGRA)):
        assert analyzer.analyze(image) == expected, type(image)
    [grey] = analyzer.analyze(cv2.cvtColor(astronaut_bgr, cv2.COLOR_BGR2GRAY))
    assert abs(grey["box"][0] - expected[0]["box"][0]) < 12
    with pytest.raises(FileNotFoundError, match="no such image file"):
        analyzer.analyze(tmp_path / "missing.jpg")
    with pytest.raises(ValueError, match="not a decodable image"):
        analyzer.analyze(b"GIF89a not a face")
    with pytest.raises(TypeError, match="cannot read an image from int"):
        analyzer.analyze(42)


def test_detector_none_takes_a_cropped_face_as_the_face(model_dirs, analyzer, astronaut_bgr):
    """A dataset crop or an ID photo: BlazeFace may find nothing in a tight crop; "none" classifies the whole image."""
    [found] = analyzer.analyze(astronaut_bgr)
    x, y, w, h = found["box"]
    crop = np.ascontiguousarray(astronaut_bgr[y : y + h, x : x + w])
    whole = FaceAnalyzer(model_dirs["emotion"], model_dirs["gender"], detector="none")
    [face] = whole.analyze(crop)
    assert face["box"] == [0, 0, w, h] and face["detector_score"] == 1.0
    assert set(face["emotion"]["scores"]) == set(found["emotion"]["scores"])
    assert 0.0 < found["detector_score"] <= 1.0


def test_swapped_model_folders_are_refused_naming_both(model_dirs):
    """Each card records its task: a gender model given as the emotion model (and the other way round) is refused
    before anything loads, in Python and by `faceray serve` (exit 2, before Ray starts)."""
    from faceray.cli import main

    with pytest.raises(ValueError, match=r"emotion_model: .* holds a gender model .* give it as the gender model"):
        FaceAnalyzer(emotion_model=model_dirs["gender"], gender_model=model_dirs["emotion"])
    with pytest.raises(SystemExit) as exited:
        main(["serve", "--emotion-model", str(model_dirs["gender"]), "--gender-model", str(model_dirs["emotion"])])
    assert exited.value.code == 2


def test_follow_faces_finds_a_shifted_face_and_loses_a_vanished_one(astronaut_bgr):
    first, second = moving_face_frames(astronaut_bgr, 2, step=14)
    grey_first, grey_second = (cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY) for frame in (first, second))
    box = (100, 170, 120, 120)
    [(x, y, w, h)] = follow_faces(grey_first, grey_second, [box])
    assert abs(x - 114) <= 3 and abs(y - 170) <= 3 and (w, h) == (120, 120)
    assert follow_faces(grey_first, np.full_like(grey_first, 90), [box]) is None


def test_a_stream_detects_every_kth_frame_and_keeps_one_track(analyzer, astronaut_bgr):
    session = analyzer.stream(detect_every=3, smoothing=0.6)
    results = [session.process(frame) for frame in moving_face_frames(astronaut_bgr, 9)]
    assert [result["detected"] for result in results] == [True, False, False] * 3
    assert all(len(result["faces"]) == 1 for result in results)
    assert len({result["faces"][0]["track"] for result in results}) == 1
    boxes = [result["faces"][0]["box"] for result in results]
    assert boxes[-1][0] - boxes[0][0] > 30  # the box moved with the face
    assert all("track" in result["timings_ms"] for result in results if not result["detected"])
    # Every stream face has its detector score: the detection's, kept by the frames that follow it.
    scores = [result["faces"][0]["detector_score"] for result in results]
    assert all(0.5 < score <= 1 for score in scores) and scores[1] == scores[0] and scores[3] != scores[0]


def test_a_stream_detects_again_when_a_face_is_lost(analyzer, astronaut_bgr):
    session = analyzer.stream(detect_every=5)
    frames = moving_face_frames(astronaut_bgr, 2)
    blank = np.full((480, 640, 3), 90, np.uint8)
    flags = [session.process(frame)["detected"] for frame in (frames[0], frames[1], blank, blank, frames[0])]
    assert flags == [True, False, True, True, True]  # lost at the blank frame, then nothing to follow


def test_stream_smoothing_weighs_the_past(analyzer, astronaut_bgr):
    frames = moving_face_frames(astronaut_bgr, 2)
    raw = analyzer.stream(detect_every=1, smoothing=0.0)
    smooth = analyzer.stream(detect_every=1, smoothing=0.9)
    first = [raw.process(frame)["faces"][0]["gender"]["scores"]["woman"] for frame in frames]
    second = [smooth.process(frame)["faces"][0]["gender"]["scores"]["woman"] for frame in frames]
    assert second[0] == pytest.approx(first[0], abs=1e-6)
    assert second[1] == pytest.approx(0.9 * first[0] + 0.1 * first[1], abs=1e-4)
