"""FaceAnalyzer: the whole face pipeline in-process (detect, crop, classify both tasks) and the Python API.

No Ray here: the Serve deployment (serve/app.py) wraps this class, one instance per replica.

    from faceray import FaceAnalyzer
    analyzer = FaceAnalyzer(emotion_model="models/emotion", gender_model="models/gender")
    faces = analyzer.analyze(cv2.imread("photo.jpg"))   # [{"box": [x, y, w, h], "emotion": {...}, "gender": {...}}]

Frames are uint8 (H, W, 3) in BGR order, as OpenCV reads them. Each face item is exactly a `faces` item of
`POST /v1/faces`: "box" (x, y, w, h) in frame pixels and, per loaded model, {"label", "score", "scores"}.
Thread-safe: each thread gets its own detector (detectors keep per-call state); the classifiers' ONNX Runtime
sessions are safe to share.
"""

from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from faceray.faces import CropGeometry, crop_faces
from faceray.serve.detect import Box, Detector, DetectorSettings, make_detector
from faceray.serve.tracking import FaceTracker, follow_faces

TASKS = ("emotion", "gender")


class FaceAnalyzer:
    """Detects faces and classifies each with every loaded model.

    `emotion_model` / `gender_model`: model directories (at least one). `detector`: "blazeface" or "haar".
    `crop_margin`: None = each model card's margin. `runtime`: "onnx" or "tensorflow"; `threads`: ONNX Runtime
    threads per model (0 = one per core). Models and cards are loaded here, once.
    """

    def __init__(
        self,
        emotion_model: str | Path | None = None,
        gender_model: str | Path | None = None,
        detector: str | DetectorSettings = "blazeface",
        *,
        crop_margin: float | None = None,
        runtime: str = "onnx",
        threads: int = 0,
    ) -> None:
        from faceray.model_card import ModelCard, check_slot
        from faceray.serve.classify import FaceClassifier

        models = {task: folder for task, folder in zip(TASKS, (emotion_model, gender_model)) if folder}
        if not models:
            raise ValueError("give at least one model directory (emotion_model or gender_model)")
        for task, folder in models.items():  # before any model loads: swapped folders are one clear error
            try:
                check_slot(ModelCard.read(folder), task, folder)
            except ValueError as error:
                raise ValueError(f"{task}_model: {error}") from None
        self.detector_settings = detector if isinstance(detector, DetectorSettings) else DetectorSettings(name=detector)
        self._local = threading.local()
        # This thread's detector now (make_detector refuses an unknown name), before the slower model loading.
        self.detector  # noqa: B018
        self.classifiers = {task: FaceClassifier(folder, runtime, threads) for task, folder in models.items()}
        override = None if crop_margin is None else CropGeometry(crop_margin, "set by --crop-margin")
        self.crops = {task: override or classifier.card.crop for task, classifier in self.classifiers.items()}

    @property
    def cards(self) -> dict[str, dict[str, Any]]:
        """The model card of each loaded task."""
        return {task: classifier.card.to_dict() for task, classifier in self.classifiers.items()}

    @property
    def detector(self) -> Detector:
        """This thread's detector."""
        detector = getattr(self._local, "detector", None)
        if detector is None:
            detector = self._local.detector = make_detector(self.detector_settings)
        return detector

    def describe(self) -> dict[str, Any]:
        """What `GET /v1/models` reports: the model cards, where each model was loaded from (its directory, and
        'export', 'converted' or 'keras' for the graph that runs) and the detector with its settings."""
        loaded = {
            task: {"model_dir": classifier.model_dir, "graph": classifier.source}
            for task, classifier in self.classifiers.items()
        }
        return {**self.cards, "loaded": loaded, "detector": asdict(self.detector_settings)}

    def detect(self, image_bgr: npt.NDArray[np.uint8]) -> list[Box]:
        """Face boxes (x, y, w, h) in frame pixels, largest first."""
        return self.detector.detect(image_bgr)

    def classify(self, image_bgr: npt.NDArray[np.uint8], boxes: list[Box]) -> list[dict[str, Any]]:
        """Face items for given boxes: one model call per task for all faces of the frame."""
        return self.classify_batch([image_bgr], [boxes])[0]

    def classify_batch(self, frames: list[npt.NDArray[np.uint8]], boxes: list[list[Box]]) -> list[list[dict[str, Any]]]:
        """Face items of several frames, one model call per task for all their faces together."""
        faces: list[list[dict[str, Any]]] = [
            [{"box": [int(value) for value in box]} for box in frame_boxes] for frame_boxes in boxes
        ]
        flat = [face for frame_faces in faces for face in frame_faces]
        if not flat:
            return faces
        for task, classifier in self.classifiers.items():
            card = classifier.card
            crops = np.concatenate(
                [
                    crop_faces(frame, frame_boxes, card.size, card.color, self.crops[task])
                    for frame, frame_boxes in zip(frames, boxes)
                ]
            )
            for face, result in zip(flat, classifier.describe(classifier.predict(crops))):
                face[task] = result
        return faces

    def analyze(self, image_bgr: npt.NDArray[np.uint8]) -> list[dict[str, Any]]:
        """Detect, crop and classify: the `faces` of `POST /v1/faces` for one BGR frame."""
        return self.classify(image_bgr, self.detect(image_bgr))

    def analyze_batch(self, frames: list[npt.NDArray[np.uint8]]) -> list[list[dict[str, Any]]]:
        """`analyze` for several frames, classifying all their faces in one call per model (throughput)."""
        return self.classify_batch(frames, [self.detect(frame) for frame in frames])

    def stream(self, detect_every: int = 3, smoothing: float = 0.6) -> StreamSession:
        """A per-stream session that tracks faces between frames (see StreamSession)."""
        return StreamSession(self, detect_every=detect_every, smoothing=smoothing)


@dataclass
class StreamSession:
    """One video stream's state: full detection every `detect_every`-th frame (or when a face is lost), a cheap
    look around the known faces in between, and each face's scores smoothed over time (`smoothing` is the
    weight of the past, 0 = none). Faces carry a "track" id that stays with a face across frames."""

    analyzer: FaceAnalyzer
    detect_every: int = 3
    smoothing: float = 0.6
    tracker: FaceTracker = field(init=False)
    _previous_grey: npt.NDArray[np.uint8] | None = field(default=None, init=False, repr=False)
    _boxes: list[Box] = field(default_factory=list, init=False, repr=False)
    _since_detection: int = field(default=0, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.detect_every < 1:
            raise ValueError(f"detect_every must be >= 1, not {self.detect_every}")
        self.tracker = FaceTracker(smoothing=self.smoothing)

    def process(self, image_bgr: npt.NDArray[np.uint8]) -> dict[str, Any]:
        """{"faces": smoothed face items with "track", "detected": whether detection ran, "timings_ms"}."""
        import cv2

        started = time.perf_counter()
        grey = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2GRAY)
        boxes: list[Box] | None = None
        due = not self._boxes or self._since_detection + 1 >= self.detect_every
        if not due and self._previous_grey is not None and self._previous_grey.shape == grey.shape:
            boxes = follow_faces(self._previous_grey, grey, self._boxes)  # None when a face is lost
        detected = boxes is None
        if detected:
            boxes = self.analyzer.detect(image_bgr)
            self._since_detection = 0
        else:
            self._since_detection += 1
        located = time.perf_counter()
        assert boxes is not None
        faces = self.analyzer.classify(image_bgr, boxes)
        classified = time.perf_counter()
        self._boxes, self._previous_grey = list(boxes), grey
        return {
            "faces": [track.as_face() for track in self.tracker.update(faces)],
            "detected": detected,
            "timings_ms": {
                "detect" if detected else "track": round((located - started) * 1000, 2),
                "classify": round((classified - located) * 1000, 2),
            },
        }
