"""Face detection, square crops and drawing (pure OpenCV/numpy, no Ray).

Frames are uint8 (H, W, 3) in BGR order, as OpenCV decodes them. Boxes are (x, y, w, h) in frame pixels.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from ingest.images import is_truncated_jpeg

Box = tuple[int, int, int, int]


class RequestImageError(ValueError):
    """Request bytes that are not a usable image; the message says why."""


def decode_frame(data: bytes, max_pixels: int = 40_000_000) -> npt.NDArray[np.uint8]:
    """Decode JPEG/PNG bytes into a uint8 (H, W, 3) BGR frame; RequestImageError names the problem."""
    if not data:
        raise RequestImageError("empty body: send JPEG or PNG bytes")
    if is_truncated_jpeg(data):
        raise RequestImageError("truncated JPEG: no end-of-image marker")
    try:
        frame = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    except cv2.error:
        frame = None
    if frame is None:
        raise RequestImageError(f"not a decodable image ({len(data)} bytes starting {data[:8]!r})")
    if frame.shape[0] * frame.shape[1] > max_pixels:
        raise RequestImageError(f"image of {frame.shape[1]}x{frame.shape[0]} pixels exceeds the limit of {max_pixels}")
    return frame


def default_cascade_path() -> str:
    """OpenCV's bundled frontal-face Haar cascade (opencv-python 4.x ships it)."""
    path = Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml"
    if not path.is_file():
        raise RuntimeError(f"no Haar cascade at {path}: install opencv-python<5 (5.x ships none)")
    return str(path)


def downscale_for_detection(frame: npt.NDArray[np.uint8], max_side: int) -> tuple[npt.NDArray[np.uint8], float]:
    """The grey (h, w) image detection runs on (longer side at most `max_side`) and its scale to the frame.

    `frame` is BGR (H, W, 3) or grey (H, W). The service sends this to its detector: a 320x240 grey image is
    77 KB where the 640x480 BGR frame is 922 KB.
    """
    grey = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY) if frame.ndim == 3 else frame
    height, width = grey.shape
    scale = min(1.0, max_side / max(height, width))
    if scale < 1:
        grey = cv2.resize(grey, (round(width * scale), round(height * scale)), interpolation=cv2.INTER_AREA)
    return grey, scale


@dataclass(frozen=True)
class DetectorSettings:
    """Haar detection on a downscaled grey frame."""

    max_side: int = 640
    scale_factor: float = 1.1
    min_neighbors: int = 5
    min_size: int = 24


class FaceDetector:
    """OpenCV Haar frontal-face detector; boxes come back in the coordinates of the full frame.

    Thread-safe: a cascade's detectMultiScale is not (concurrent calls on one cascade return boxes that mix
    frames), and Serve runs a replica's synchronous methods on a thread pool, so calls are serialised.
    """

    def __init__(self, settings: DetectorSettings = DetectorSettings(), cascade_path: str | None = None) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self.cascade = cv2.CascadeClassifier(cascade_path or default_cascade_path())
        if self.cascade.empty():
            raise RuntimeError(f"could not load the Haar cascade {cascade_path or default_cascade_path()}")

    def detect(self, frame: npt.NDArray[np.uint8]) -> list[Box]:
        """Faces in a BGR (H, W, 3) or grey (H, W) frame, largest first."""
        return self.detect_downscaled(*downscale_for_detection(frame, self.settings.max_side))

    def detect_downscaled(self, small: npt.NDArray[np.uint8], scale: float) -> list[Box]:
        """Faces in a grey image from `downscale_for_detection`, as boxes of the full frame (divided by `scale`), largest first."""
        minimum = max(8, round(self.settings.min_size * scale))
        with self._lock:
            found = self.cascade.detectMultiScale(
                small, scaleFactor=self.settings.scale_factor, minNeighbors=self.settings.min_neighbors,
                minSize=(minimum, minimum),
            )
        boxes = [tuple(int(round(value / scale)) for value in box) for box in np.asarray(found).reshape(-1, 4)]
        return sorted(boxes, key=lambda box: -box[2] * box[3])  # type: ignore[return-value]


def square_crop_box(box: Box, margin: float, frame_shape: tuple[int, ...]) -> Box:
    """A square around `box`, each side enlarged by `margin` x the box size, shifted and clamped into the frame.

    Faces at the edge keep a square crop as long as the frame allows; it is never empty.
    """
    x, y, w, h = box
    frame_height, frame_width = frame_shape[:2]
    side = int(round(max(w, h) * (1 + 2 * margin)))
    side = max(1, min(side, frame_width, frame_height))
    centre_x, centre_y = x + w / 2, y + h / 2
    left = int(round(centre_x - side / 2))
    top = int(round(centre_y - side / 2))
    left = min(max(left, 0), frame_width - side)
    top = min(max(top, 0), frame_height - side)
    return left, top, side, side


def crop_faces(frame: npt.NDArray[np.uint8], boxes: list[Box], size: int, color: str, margin: float) -> npt.NDArray[np.uint8]:
    """Crops of each box as the model wants them: uint8 (N, size, size, 1) grey or (N, size, size, 3) RGB."""
    channels = 1 if color == "gray" else 3
    crops = np.zeros((len(boxes), size, size, channels), np.uint8)
    for index, box in enumerate(boxes):
        left, top, side, _ = square_crop_box(box, margin, frame.shape)
        patch = frame[top : top + side, left : left + side]
        patch = cv2.resize(patch, (size, size), interpolation=cv2.INTER_AREA if side > size else cv2.INTER_LINEAR)
        if color == "gray":
            crops[index, :, :, 0] = cv2.cvtColor(patch, cv2.COLOR_BGR2GRAY)
        else:
            crops[index] = cv2.cvtColor(patch, cv2.COLOR_BGR2RGB)
    return crops


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
        cv2.putText(canvas, text, (x + 2, top + text_height + 2), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 1, cv2.LINE_AA)
    if overlay:
        cv2.putText(canvas, overlay, (8, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 3, cv2.LINE_AA)
        cv2.putText(canvas, overlay, (8, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
    return canvas
