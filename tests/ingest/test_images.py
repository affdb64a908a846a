import cv2
import numpy as np
import pytest

from faceray.faces import face_pixels
from faceray.image_bytes import jpeg_size
from faceray.ingest.images import ImageError, decode_and_resize, reduction_factor


def encode(image: np.ndarray, extension: str = ".jpg") -> bytes:
    ok, data = cv2.imencode(extension, image)
    assert ok
    return data.tobytes()


@pytest.fixture()
def colour_picture() -> np.ndarray:
    """(300, 200, 3) BGR: left half pure blue, right half pure red."""
    image = np.zeros((300, 200, 3), np.uint8)
    image[:, :100] = (255, 0, 0)
    image[:, 100:] = (0, 0, 255)
    return image


def test_jpeg_size_reads_the_header(colour_picture):
    assert jpeg_size(encode(colour_picture)) == (300, 200)
    assert jpeg_size(encode(colour_picture, ".png")) is None
    assert jpeg_size(b"\xff\xd8garbage") is None


def test_reduction_factor_keeps_at_least_the_target():
    assert reduction_factor((700, 500), 64) == 4
    assert reduction_factor((130, 130), 64) == 2
    assert reduction_factor((100, 120), 64) == 1
    assert reduction_factor((600, 600), 64) == 8
    assert reduction_factor(None, 64) == 1


def test_decode_rgb_keeps_channel_order(colour_picture):
    image = decode_and_resize(encode(colour_picture, ".png"), 32, "rgb")
    assert image.shape == (32, 32, 3) and image.dtype == np.uint8
    # Left half was blue: in RGB order the last channel is high there.
    assert image[16, 4, 2] > 200 and image[16, 4, 0] < 50
    assert image[16, 28, 0] > 200 and image[16, 28, 2] < 50


def test_decode_gray_from_colour_and_rgb_from_gray(colour_picture):
    gray = decode_and_resize(encode(colour_picture), 64, "gray")
    assert gray.shape == (64, 64, 1)
    grey_source = encode(cv2.cvtColor(colour_picture, cv2.COLOR_BGR2GRAY))
    rgb = decode_and_resize(grey_source, 48, "rgb")
    assert rgb.shape == (48, 48, 3)
    assert np.array_equal(rgb[:, :, 0], rgb[:, :, 1]) and np.array_equal(rgb[:, :, 1], rgb[:, :, 2])


def test_reduced_decoding_matches_full_decoding(colour_picture):
    big = cv2.resize(colour_picture, (600, 900), interpolation=cv2.INTER_NEAREST)
    data = encode(big)
    reduced = decode_and_resize(data, 64, "gray").astype(int)
    full = face_pixels(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), 64, "gray").astype(int)
    assert np.abs(reduced - full).mean() < 3


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        (b"", "empty file"),
        (b"<html>404</html>", "not a decodable image"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "not a decodable image"),
    ],
)
def test_bad_bytes_are_rejected_with_a_reason(data, kind):
    with pytest.raises(ImageError) as caught:
        decode_and_resize(data, 64, "gray")
    assert caught.value.kind == kind


def test_truncated_jpeg_is_rejected(colour_picture):
    data = encode(colour_picture)
    with pytest.raises(ImageError) as caught:
        decode_and_resize(data[: len(data) // 2], 64, "gray")
    assert caught.value.kind == "truncated JPEG"


def test_invalid_arguments_raise_value_error(colour_picture):
    with pytest.raises(ValueError, match="colour mode"):
        decode_and_resize(encode(colour_picture), 64, "bgr")
    with pytest.raises(ValueError, match="size"):
        decode_and_resize(encode(colour_picture), 0, "gray")
