"""Decoding request images and drawing results (pure OpenCV/numpy, no Ray); face crops are faceray.faces'.

Frames are uint8 (H, W, 3) in BGR order, as OpenCV decodes them. Boxes are (x, y, w, h) in frame pixels.
"""

from __future__ import annotations

import cv2
import numpy as np
import numpy.typing as npt

from faceray.image_bytes import declared_size, is_truncated_jpeg


class RequestImageError(ValueError):
    """Request bytes that are not a usable image; the message says why."""


MAX_PIXELS = 40_000_000  # largest accepted frame: 40 megapixels (a 120 MB BGR array)


def decode_frame(data: bytes, max_pixels: int = MAX_PIXELS) -> npt.NDArray[np.uint8]:
    """Decode JPEG or PNG bytes into a uint8 (H, W, 3) BGR frame; RequestImageError names the problem.

    The size the header declares is checked before decoding, so a small file declaring a huge image
    (a decompression bomb) is refused at once instead of being decoded.
    """
    if not data:
        raise RequestImageError("empty body: send JPEG or PNG bytes")
    if is_truncated_jpeg(data):
        raise RequestImageError("truncated JPEG: no end-of-image marker")
    size = declared_size(data)
    if size is None:  # other formats (TIFF, WebP, ...) are not read: their size cannot be checked first
        raise RequestImageError(f"not a decodable image ({len(data)} bytes starting {data[:8]!r}): send JPEG or PNG")
    if size[0] * size[1] > max_pixels:
        raise RequestImageError(f"image of {size[1]}x{size[0]} pixels exceeds the limit of {max_pixels}")
    try:
        frame = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    except cv2.error:
        frame = None
    if frame is None:
        raise RequestImageError(f"not a decodable image ({len(data)} bytes starting {data[:8]!r})")
    if frame.shape[0] * frame.shape[1] > max_pixels:
        raise RequestImageError(f"image of {frame.shape[1]}x{frame.shape[0]} pixels exceeds the limit of {max_pixels}")
    return frame


GENDER_COLORS = {"woman": (180, 80, 255), "man": (255, 160, 60)}  # BGR


def draw_faces(frame: npt.NDArray[np.uint8], faces: list[dict], overlay: str | None = None) -> npt.NDArray[np.uint8]:
    """Draw each face's box (colour by gender) with "emotion gender" and scores, plus an optional status line.

    `faces` are response items: {"box": [x, y, w, h], "emotion": {"label", "score"}, "gender": {...}}.
    """
    canvas = frame.copy()
    thickness = max(1, round(max(canvas.shape[:2]) / 400))
    for face in faces:
        x, y, w, h = (int(value) for value in face["box"])
        gender = face.get("gender") or {}
        emotion = face.get("emotion") or {}
        colour = GENDER_COLORS.get(gender.get("label", ""), (200, 200, 200))
        cv2.rectangle(canvas, (x, y), (x + w, y + h), colour, thickness)
        text = " ".join(
            f"{part['label']} {part['score']:.2f}" for part in (emotion, gender) if part.get("label") is not None
        )
        scale = 0.4 * thickness
        (text_width, text_height), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
        top = max(0, y - text_height - 6)
        cv2.rectangle(canvas, (x, top), (x + text_width + 4, top + text_height + 6), colour, -1)
        cv2.putText(
            canvas, text, (x + 2, top + text_height + 2), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 1, cv2.LINE_AA
        )
    if overlay:
        cv2.putText(canvas, overlay, (8, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 3, cv2.LINE_AA)
        cv2.putText(canvas, overlay, (8, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
    return canvas
