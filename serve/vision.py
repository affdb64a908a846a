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


# BGR; serve/web/page.js draws with the same colours (#ff50b4, #3ca0ff, #c8c8c8: tests/serve/test_vision.py checks).
GENDER_COLORS = {"woman": (180, 80, 255), "man": (255, 160, 60)}
UNKNOWN = (200, 200, 200)


def place_labels(
    frame_size: tuple[int, int], boxes: list[tuple[int, int, int, int]], sizes: list[tuple[int, int]]
) -> list[tuple[int, int]]:
    """Top-left corners for one label per box, in order (the largest face first): each label inside the frame
    ((width, height)) and overlapping none placed before it when the frame has room. A label sits above its box,
    else inside its top edge, else below it, moved down past any label in its way; `sizes` are (width, height)."""
    width, height = frame_size
    placed: list[tuple[int, int, int, int]] = []
    corners = []
    for index, ((x, y, _, h), (label_width, label_height)) in enumerate(zip(boxes, sizes)):
        others = [box for other, box in enumerate(boxes) if other != index]  # no label over another face either
        left = min(max(0, x), max(0, width - label_width))
        candidates = [y - label_height, y, y + h]
        best = _free_top(left, candidates, (label_width, label_height), height, placed, placed + others)
        if best is None:  # every place covers another face: labels apart from each other is what matters most
            best = _free_top(left, candidates, (label_width, label_height), height, placed, placed)
        if best is None:  # no free place: keep it inside the frame at least
            best = min(max(0, candidates[0]), max(0, height - label_height))
        placed.append((left, best, label_width, label_height))
        corners.append((left, best))
    return corners


def _free_top(
    left: int,
    starts: list[int],
    size: tuple[int, int],
    height: int,
    placed: list[tuple[int, int, int, int]],
    obstacles: list[tuple[int, int, int, int]],
) -> int | None:
    """The first top, from `starts` (each moved down past the placed labels in its way), where a label of `size` at
    `left` stays inside a frame of `height` and overlaps none of `obstacles`; None when there is none."""
    label_width, label_height = size
    for start in starts:
        top = min(max(0, start), max(0, height - label_height))
        for _ in range(len(placed) + 1):  # move down past each label in the way, at most once each
            clash = next((rect for rect in placed if _overlap((left, top, label_width, label_height), rect)), None)
            if clash is None:
                break
            top = clash[1] + clash[3]
        rect = (left, top, label_width, label_height)
        if top + label_height <= height and not any(_overlap(rect, other) for other in obstacles):
            return top
    return None


def _overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    return a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[3] and b[1] < a[1] + a[3]


def face_label(face: dict) -> str:
    """ "happy 0.92 woman 0.94": each task's label and score, emotion first."""
    return " ".join(
        f"{part['label']} {part['score']:.2f}"
        for part in (face.get("emotion") or {}, face.get("gender") or {})
        if part.get("label") is not None
    )


def draw_faces(frame: npt.NDArray[np.uint8], faces: list[dict], overlay: str | None = None) -> npt.NDArray[np.uint8]:
    """Draw each face's box (colour by gender, as the live page does) with "emotion gender" and scores, labels kept
    inside the picture and apart (`place_labels`), plus an optional status line.

    `faces` are response items: {"box": [x, y, w, h], "emotion": {"label", "score"}, "gender": {...}}.
    """
    canvas = frame.copy()
    thickness = max(1, round(max(canvas.shape[:2]) / 400))
    # Text sized to the faces (the median face's width), not only to the picture: labels about a face or two wide.
    widths = sorted(int(face["box"][2]) for face in faces) or [0]
    scale = min(0.4 * thickness, max(0.35, widths[len(widths) // 2] / 200))
    texts = [face_label(face) for face in faces]
    sizes = []
    for text in texts:
        (text_width, text_height), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
        sizes.append((text_width + 4, text_height + 6))
    boxes = [tuple(int(value) for value in face["box"]) for face in faces]
    corners = place_labels((canvas.shape[1], canvas.shape[0]), boxes, sizes)  # type: ignore[arg-type]
    for face, (x, y, w, h) in zip(faces, boxes):
        gender = face.get("gender") or {}
        cv2.rectangle(canvas, (x, y), (x + w, y + h), GENDER_COLORS.get(gender.get("label", ""), UNKNOWN), thickness)
    for face, text, (left, top), (label_width, label_height) in zip(faces, texts, corners, sizes):
        colour = GENDER_COLORS.get((face.get("gender") or {}).get("label", ""), UNKNOWN)
        cv2.rectangle(canvas, (left, top), (left + label_width, top + label_height), colour, -1)
        cv2.putText(
            canvas, text, (left + 2, top + label_height - 4), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 1, cv2.LINE_AA
        )
    if overlay:
        cv2.putText(canvas, overlay, (8, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 3, cv2.LINE_AA)
        cv2.putText(canvas, overlay, (8, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
    return canvas
