"""Decoding, crops and drawing on real photos (no Ray)."""

from __future__ import annotations

import numpy as np
import pytest

from faceray.faces import crop_faces, square_crop_box
from faceray.image_bytes import declared_size
from faceray.serve.vision import RequestImageError, decode_frame, draw_faces
from tests.serve.conftest import jpeg


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


@pytest.mark.parametrize(
    ("body", "message"),
    [(b"", "empty"), (b"not an image", "not a decodable"), (b"\xff\xd8\xff\xe0" + b"\x00" * 50 + b"\x01", "truncated")],
)
def test_decode_frame_errors(body, message):
    with pytest.raises(RequestImageError, match=message):
        decode_frame(body)


def test_decode_and_draw(astronaut_bgr):
    frame = decode_frame(jpeg(astronaut_bgr))
    faces = [
        {
            "box": [175, 65, 100, 100],
            "emotion": {"label": "happy", "score": 0.9},
            "gender": {"label": "woman", "score": 0.8},
        }
    ]
    drawn = draw_faces(frame, faces, "3.0 fps")
    assert drawn.shape == frame.shape and not np.array_equal(drawn, frame)


def png_header(width: int, height: int) -> bytes:
    """A PNG signature and IHDR chunk declaring width x height (no pixel data follows)."""
    import struct
    import zlib

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))


def test_declared_size_is_read_from_the_header(astronaut_bgr):
    import cv2

    assert declared_size(jpeg(astronaut_bgr)) == (512, 512)
    assert declared_size(cv2.imencode(".png", astronaut_bgr[:300])[1].tobytes()) == (300, 512)
    assert declared_size(png_header(30000, 20000)) == (20000, 30000)
    assert declared_size(b"BM" + b"\x00" * 60) is None


def test_a_bomb_is_refused_by_its_header_before_decoding(monkeypatch):
    import cv2

    def must_not_decode(*args, **kwargs):
        raise AssertionError("decoded a frame whose header is over the pixel limit")

    monkeypatch.setattr(cv2, "imdecode", must_not_decode)
    with pytest.raises(RequestImageError, match="30000x30000 pixels exceeds"):
        decode_frame(png_header(30000, 30000) + b"\x00" * 100)


def test_formats_other_than_jpeg_and_png_are_refused(astronaut_bgr):
    import cv2

    bmp = cv2.imencode(".bmp", astronaut_bgr)[1].tobytes()
    with pytest.raises(RequestImageError, match="send JPEG or PNG"):
        decode_frame(bmp)


def test_labels_stay_inside_the_picture_and_apart():
    """The group photo's case: faces side by side near the top and the right edge, labels wider than the faces."""
    from faceray.serve.vision import _overlap, place_labels

    boxes = [(560, 4, 70, 80), (500, 10, 60, 70), (440, 2, 60, 66), (20, 300, 50, 50), (600, 440, 40, 40)]
    sizes = [(180, 20)] * len(boxes)
    corners = place_labels((640, 480), boxes, sizes)
    rects = [(left, top, width, height) for (left, top), (width, height) in zip(corners, sizes)]
    for left, top, width, height in rects:
        assert 0 <= left and left + width <= 640 and 0 <= top and top + height <= 480
    assert not any(_overlap(a, b) for index, a in enumerate(rects) for b in rects[index + 1 :])


def test_the_page_draws_with_the_annotated_images_colours():
    import re
    from pathlib import Path

    import faceray.serve
    from faceray.serve.vision import GENDER_COLORS, UNKNOWN

    page = (Path(faceray.serve.__file__).parent / "web" / "page.js").read_text()
    colours = dict(re.findall(r"(woman|man): \"(#[0-9a-f]{6})\"", page))
    hex_of = lambda bgr: "#{:02x}{:02x}{:02x}".format(*reversed(bgr))  # noqa: E731
    assert colours == {label: hex_of(bgr) for label, bgr in GENDER_COLORS.items()}
    assert f'UNKNOWN_COLOUR = "{hex_of(UNKNOWN)}"' in page
