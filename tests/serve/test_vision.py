"""Detection, crops and drawing on real photos (no Ray)."""

from __future__ import annotations

import numpy as np
import pytest

from serve.vision import DetectorSettings, FaceDetector, RequestImageError, crop_faces, decode_frame, draw_faces, square_crop_box
from tests.serve.conftest import jpeg


def test_detector_finds_the_astronaut_face_where_it_is(astronaut_bgr):
    boxes = FaceDetector().detect(astronaut_bgr)
    assert len(boxes) == 1
    x, y, w, h = boxes[0]
    centre = (x + w / 2, y + h / 2)
    assert 190 < centre[0] < 260 and 80 < centre[1] < 150 and 60 < w < 140


def test_boxes_map_back_from_the_downscaled_frame(astronaut_bgr):
    import cv2

    big = cv2.resize(astronaut_bgr, (2048, 2048))
    boxes = FaceDetector(DetectorSettings(max_side=512)).detect(big)
    assert len(boxes) == 1
    x, y, w, h = boxes[0]
    assert 760 < x + w / 2 < 1040 and 320 < y + h / 2 < 600


def test_no_face_is_an_empty_list():
    noise = np.random.default_rng(0).integers(0, 255, (240, 320, 3)).astype(np.uint8)
    assert FaceDetector().detect(np.zeros((240, 320, 3), np.uint8)) == []
    assert isinstance(FaceDetector().detect(noise), list)


def test_square_crops_are_enlarged_and_clamped_to_the_frame():
    shape = (480, 640, 3)
    assert square_crop_box((100, 100, 100, 100), 0.1, shape) == (90, 90, 120, 120)
    # at the left/top edge: shifted inside, still square and full size
    assert square_crop_box((0, 0, 80, 100), 0.1, shape) == (0, 0, 120, 120)
    # at the right/bottom edge
    left, top, side, _ = square_crop_box((600, 440, 40, 40), 0.5, shape)
    assert left + side <= 640 and top + side <= 480 and side == 80
    # larger than the frame: clamped to the shorter side
    assert square_crop_box((0, 0, 640, 480), 0.2, shape)[2] == 480


def test_crops_have_the_model_size_and_colour(astronaut_bgr):
    boxes = [(175, 65, 100, 100), (0, 0, 30, 30)]
    grey = crop_faces(astronaut_bgr, boxes, 64, "gray", 0.1)
    rgb = crop_faces(astronaut_bgr, boxes, 48, "rgb", 0.1)
    assert grey.shape == (2, 64, 64, 1) and rgb.shape == (2, 48, 48, 3) and grey.dtype == np.uint8
    # RGB order: the astronaut's skin has more red than blue
    assert rgb[0, :, :, 0].mean() > rgb[0, :, :, 2].mean()


@pytest.mark.parametrize(("body", "message"), [(b"", "empty"), (b"not an image", "not a decodable"),
                                               (b"\xff\xd8\xff\xe0" + b"\x00" * 50 + b"\x01", "truncated")])
def test_decode_frame_errors(body, message):
    with pytest.raises(RequestImageError, match=message):
        decode_frame(body)


def test_decode_and_draw(astronaut_bgr):
    frame = decode_frame(jpeg(astronaut_bgr))
    faces = [{"box": [175, 65, 100, 100], "emotion": {"label": "happy", "score": 0.9}, "gender": {"label": "woman", "score": 0.8}}]
    drawn = draw_faces(frame, faces, "3.0 fps")
    assert drawn.shape == frame.shape and not np.array_equal(drawn, frame)


def test_one_detector_is_safe_to_share_between_threads(astronaut_bgr):
    from concurrent.futures import ThreadPoolExecutor

    detector = FaceDetector()
    frames = [np.roll(astronaut_bgr, shift, axis=1) for shift in range(0, 160, 20)]
    alone = [detector.detect(frame) for frame in frames]
    with ThreadPoolExecutor(8) as pool:
        together = list(pool.map(detector.detect, frames * 2))
    assert together == alone * 2
