"""Decoding dataset images into face pixels (pure OpenCV/numpy, no Ray); the pixels come from faceray.faces."""

from __future__ import annotations

import cv2
import numpy as np
import numpy.typing as npt

from faceray.faces import check_color, face_pixels
from faceray.image_bytes import is_truncated_jpeg, jpeg_size
from faceray.ingest.rejections import Rejection


class ImageError(Rejection):
    """An input that is not a usable image (kind: 'empty file', 'truncated JPEG', 'not a decodable image')."""


def reduction_factor(source_shape: tuple[int, int] | None, size: int) -> int:
    """Largest JPEG DCT reduction (1, 2, 4 or 8) that keeps the shorter side at least `size` pixels."""
    if source_shape is None:
        return 1
    shorter = min(source_shape)
    for factor in (8, 4, 2):
        if shorter // factor >= size:
            return factor
    return 1


# JPEG decoding scale -> OpenCV flag. Always in colour: `face_pixels` does the grey conversion, exactly as serving
# does (libjpeg's own grey output rounds differently from cv2.cvtColor, up to 1 level per pixel).
_REDUCED_FLAGS: dict[int, int] = {
    1: cv2.IMREAD_COLOR,
    2: cv2.IMREAD_REDUCED_COLOR_2,
    4: cv2.IMREAD_REDUCED_COLOR_4,
    8: cv2.IMREAD_REDUCED_COLOR_8,
}


def decode_and_resize(data: bytes, size: int, color: str) -> npt.NDArray[np.uint8]:
    """Decode encoded image bytes (JPEG, PNG, ...) and resize to a square `size` x `size`.

    Returns uint8 (size, size, 1) for color='gray' or (size, size, 3) in RGB order for color='rgb', prepared by
    faceray.faces.face_pixels (the serving path's function). Grey sources become 3 equal channels in 'rgb'.
    JPEGs at least twice the target are decoded at 1/2, 1/4 or 1/8 scale in the DCT domain (faster); this
    decoding scale is the one step serving does not share (it decodes whole frames at full scale).
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
        image = cv2.imdecode(buffer, _REDUCED_FLAGS[factor])
    except cv2.error as error:
        raise ImageError("not a decodable image", str(getattr(error, "msg", error)).strip()) from None
    if image is None or image.size == 0:
        # The detail never quotes the file's bytes: rejects.csv must not copy the contents of what was read.
        raise ImageError("not a decodable image", f"OpenCV could not decode these {len(data)} bytes")
    return face_pixels(image, size, color, input_order="bgr")
