"""Decoding and resizing face images (pure OpenCV/numpy, no Ray)."""

from __future__ import annotations

import cv2
import numpy as np
import numpy.typing as npt

from ingest.rejections import Rejection

COLOR_CHANNELS: dict[str, int] = {"gray": 1, "rgb": 3}

_JPEG_START = b"\xff\xd8"
_JPEG_END = b"\xff\xd9"
# Start-of-frame markers that carry the image size (baseline, progressive, lossless, ...).
_SOF_MARKERS = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


class ImageError(Rejection):
    """An input that is not a usable image (kind: 'empty file', 'truncated JPEG', 'not a decodable image')."""


def is_truncated_jpeg(data: bytes) -> bool:
    """True for JPEG bytes without the end-of-image marker (trailing zero padding allowed).

    OpenCV decodes such files "successfully", filling the missing part with grey, so callers check first.
    """
    return data.startswith(_JPEG_START) and data.rstrip(b"\x00")[-2:] != _JPEG_END


def jpeg_size(data: bytes) -> tuple[int, int] | None:
    """(height, width) from a JPEG header without decoding, or None when it is not a JPEG or unreadable."""
    if not data.startswith(_JPEG_START):
        return None
    position = 2
    length = len(data)
    while position + 9 < length:
        if data[position] != 0xFF:
            return None
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte
            position += 1
            continue
        if marker in _SOF_MARKERS:
            height = int.from_bytes(data[position + 5 : position + 7], "big")
            width = int.from_bytes(data[position + 7 : position + 9], "big")
            return (height, width) if height and width else None
        segment = int.from_bytes(data[position + 2 : position + 4], "big")
        position += 2 + segment
    return None


def reduction_factor(source_shape: tuple[int, int] | None, size: int) -> int:
    """Largest JPEG DCT reduction (1, 2, 4 or 8) that keeps the shorter side at least `size` pixels."""
    if source_shape is None:
        return 1
    shorter = min(source_shape)
    for factor in (8, 4, 2):
        if shorter // factor >= size:
            return factor
    return 1


_REDUCED_FLAGS: dict[tuple[str, int], int] = {
    ("gray", 1): cv2.IMREAD_GRAYSCALE,
    ("gray", 2): cv2.IMREAD_REDUCED_GRAYSCALE_2,
    ("gray", 4): cv2.IMREAD_REDUCED_GRAYSCALE_4,
    ("gray", 8): cv2.IMREAD_REDUCED_GRAYSCALE_8,
    ("rgb", 1): cv2.IMREAD_COLOR,
    ("rgb", 2): cv2.IMREAD_REDUCED_COLOR_2,
    ("rgb", 4): cv2.IMREAD_REDUCED_COLOR_4,
    ("rgb", 8): cv2.IMREAD_REDUCED_COLOR_8,
}


def check_color(color: str) -> None:
    if color not in COLOR_CHANNELS:
        raise ValueError(f"unknown colour mode {color!r}: expected one of {sorted(COLOR_CHANNELS)}")


def decode_and_resize(data: bytes, size: int, color: str) -> npt.NDArray[np.uint8]:
    """Decode encoded image bytes (JPEG, PNG, ...) and resize to a square `size` x `size`.

    Returns uint8 (size, size, 1) for color='gray' or (size, size, 3) in RGB order for color='rgb'.
    Grey sources become 3 equal channels in 'rgb'; colour sources are converted to grey in 'gray'.
    JPEGs at least twice the target are decoded at 1/2, 1/4 or 1/8 scale in the DCT domain (faster).
    Raises ImageError (a ValueError) naming the problem: empty, truncated, or not decodable.
    """
    check_color(color)
    if size <= 0:
        raise ValueError(f"size must be positive, got {size}")
    if not data:
        raise ImageError("empty file", "0 bytes")
    if is_truncated_jpeg(data):
        raise ImageError("truncated JPEG", f"no end-of-image marker in {len(data)} bytes")
    factor = reduction_factor(jpeg_size(data), size)
    buffer = np.frombuffer(data, dtype=np.uint8)
    try:
        image = cv2.imdecode(buffer, _REDUCED_FLAGS[(color, factor)])
    except cv2.error as error:
        raise ImageError("not a decodable image", str(getattr(error, "msg", error)).strip()) from None
    if image is None or image.size == 0:
        # The detail never quotes the file's bytes: rejects.csv must not copy the contents of what was read.
        raise ImageError("not a decodable image", f"OpenCV could not decode these {len(data)} bytes")
    return resize_pixels(image, size, color, input_order="bgr")


def resize_pixels(
    image: npt.NDArray[np.uint8], size: int, color: str, input_order: str = "bgr"
) -> npt.NDArray[np.uint8]:
    """Resize a decoded uint8 image (H, W), (H, W, 1) or (H, W, 3) to (size, size, C) in `color` mode.

    `input_order` is the channel order of 3-channel inputs: 'bgr' (as OpenCV decodes) or 'rgb'.
    Shrinking uses area interpolation, enlarging bilinear.
    """
    check_color(color)
    if image.dtype != np.uint8:
        raise ValueError(f"expected uint8 pixels, got {image.dtype}")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 3 and image.shape[2] == 4:
        image = image[:, :, :3]
    if image.ndim not in (2, 3):
        raise ValueError(f"expected an image of shape (H, W) or (H, W, C), got {image.shape}")
    if color == "gray" and image.ndim == 3:
        code = cv2.COLOR_BGR2GRAY if input_order == "bgr" else cv2.COLOR_RGB2GRAY
        image = cv2.cvtColor(image, code)
    elif color == "rgb" and image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    elif color == "rgb" and input_order == "bgr":
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    height, width = image.shape[:2]
    if (height, width) != (size, size):
        shrinking = height > size or width > size
        image = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)
    if image.ndim == 2:
        image = image[:, :, np.newaxis]
    return np.ascontiguousarray(image)
