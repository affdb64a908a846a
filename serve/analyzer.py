"""FaceAnalyzer: the whole face pipeline in-process (detect, crop, classify both tasks) and the Python API.

No Ray here: the Serve deployment (serve/app.py) wraps this class, one instance per replica.

    from faceray import FaceAnalyzer
    analyzer = FaceAnalyzer(emotion_model="models/emotion", gender_model="models/gender")
    faces = analyzer.analyze("photo.jpg")   # [{"box": [x, y, w, h], "detector_score": 0.93, "emotion": {...}, ...}]

`analyze` takes what users have (`as_bgr`): a path (local, s3:// or gs://), JPEG or PNG bytes, a PIL image, or a
uint8 array: (H, W, 3) in BGR order as OpenCV reads it, (H, W) grey or (H, W, 4) BGRA. Each face item is exactly a
`faces` item of `POST /v1/faces`: "box" (x, y, w, h) in frame pixels, "detector_score" (BlazeFace 0..1; None with
Haar; 1.0 with detector "none", which takes the whole image as the face) and, per loaded model, {"label", "score",
"scores"}.
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


def as_bgr(image: Any) -> npt.NDArray[np.uint8]:
    """A uint8 (H, W, 3) BGR frame from a path (local, s3:// or gs://), JPEG/PNG bytes, a PIL image or a uint8 array
    ((H, W, 3) BGR, (H, W) grey, (H, W, 4) BGRA). Bytes and files are checked as the service checks a request body
    (ValueError naming the problem: empty, truncated, not JPEG/PNG, too many pixels)."""
    import cv2

    from faceray.serve.vision import decode_frame

    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8:
            raise ValueError(f"an image array must be uint8, not {image.dtype}")
        if image.ndim == 2:
            return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
        if image.ndim == 3 and image.shape[2] == 3:
            return image
        if image.ndim == 3 and image.shape[2] == 4:
            return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
        raise ValueError(f"an image array must be (H, W), (H, W, 3) BGR or (H, W, 4) BGRA, not {image.shape}")
    if isinstance(image, bytes | bytearray | memoryview):
        return decode_frame(bytes(image))
    if isinstance(image, str | Path):
        from faceray.storage import Location

        location = Location.of(image)
        try:
            data = location.read_bytes()
        except FileNotFoundError:
            raise FileNotFoundError(f"{location.uri}: no such image file") from None
        try:
            return decode_frame(data)
        except ValueError as error:
            raise ValueError(f"{location.uri}: {error}") from None
    if hasattr(image, "convert") and hasattr(image, "size"):  # a PIL image (Pillow is imported by the caller)
        return cv2.cvtColor(np.asarray(image.convert("RGB")), cv2.COLOR_RGB2BGR)
    raise TypeError(f"cannot read an image from {type(image).__name__}: give a path, bytes, a PIL image or an array")


def paper_models() -> dict[str, Path]:
    """The paper's models where `faceray fetch-weights paper` puts them (faceray.config.models_cache()); ValueError
    saying how to get them when they are not there."""
    from faceray.config import models_cache

    folders = {task: models_cache() / f"{task}-paper" for task in TASKS}
    if not all((folder / "model_card.json").is_file() for folder in folders.values()):
        raise ValueError(
            f"no model given, and the paper's models are not in {models_cache()}: run `faceray fetch-weights paper` "
            "once (1.7 MB, checked), or give emotion_model= and gender_model= (model directories)"
        )
    return folders


class FaceAnalyzer:
    """Detects faces and classifies each with every loaded model.

    `emotion_model` / `gender_model`: model directories (none: the paper's, from `faceray fetch-weights paper`).
    `detector`: "blazeface", "haar" or "none" (the whole image is the face).
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

        models: dict[str, str | Path] = {
            task: folder for task, folder in zip(TASKS, (emotion_model, gender_model)) if folder
        }
        if not models:
            models = dict(paper_models())
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

    def detect_scored(self, image_bgr: npt.NDArray[np.uint8]) -> list[tuple[Box, float | None]]:
        """`detect`, each box with its detector score (serve.detect)."""
        return self.detector.detect_scored(image_bgr)

    def classify_scored(
        self, image_bgr: npt.NDArray[np.uint8], scored: list[tuple[Box, float | None]]
    ) -> list[dict[str, Any]]:
        """`classify` for boxes with their detector scores: each face item gets "detector_score" after its box."""
        return with_scores(self.classify(image_bgr, [box for box, _ in scored]), scored)

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

    def analyze(self, image: Any) -> list[dict[str, Any]]:
        """Detect, crop and classify: the `faces` of `POST /v1/faces` for one image (anything `as_bgr` reads)."""
        frame = as_bgr(image)
        return self.classify_scored(frame, self.detect_scored(frame))

    def analyze_batch(self, images: list[Any]) -> list[list[dict[str, Any]]]:
        """`analyze` for several images, classifying all their faces in one call per model (throughput)."""
        frames = [as_bgr(image) for image in images]
        scored = [self.detect_scored(frame) for frame in frames]
        faces = self.classify_batch(frames, [[box for box, _ in found] for found in scored])
        return [with_scores(frame_faces, found) for frame_faces, found in zip(faces, scored)]

    @property
    def emotion_labels(self) -> tuple[str, ...]:
        """The emotion model's labels in index order (the paper's seven when no emotion model is loaded)."""
        from faceray.labels import EMOTION_LABELS

        classifier = self.classifiers.get("emotion")
        return tuple(classifier.card.labels) if classifier else EMOTION_LABELS

    def analyze_video(self, path: str | Path, fps: float | None = None) -> Any:
        """A video's faces as a pandas DataFrame: one row per face per analysed frame, the columns of
        `faceray analyze`'s OUT/faces/ (serve.collection.faces_schema), `track` following each face across frames.
        `path`: a local path or an s3:// / gs:// URI; `fps`: frames analysed per second (None: every frame).
        Frames are decoded one at a time; each is analysed as `analyze` does. ValueError for an empty or
        undecodable file."""
        import pyarrow as pa

        from faceray.serve.collection import assign_tracks, face_rows, faces_schema, local_media, video_frames

        labels = self.emotion_labels
        rows: list[dict[str, Any]] = []
        analysed: list[int] = []
        with local_media(path) as local:
            for index, time_s, frame in video_frames(local, fps):
                analysed.append(index)
                rows += face_rows(str(path), index, time_s, self.analyze(frame), labels)
        table = pa.Table.from_pylist(rows, schema=faces_schema(labels))
        return assign_tracks(table, analysed).to_pandas()

    def stream(self, detect_every: int = 3, smoothing: float = 0.6) -> StreamSession:
        """A per-stream session that tracks faces between frames (see StreamSession)."""
        return StreamSession(self, detect_every=detect_every, smoothing=smoothing)


def with_scores(faces: list[dict[str, Any]], scored: list[tuple[Box, float | None]]) -> list[dict[str, Any]]:
    """Face items with "detector_score" placed right after "box"."""
    return [
        {"box": face["box"], "detector_score": score, **{k: v for k, v in face.items() if k != "box"}}
        for face, (_, score) in zip(faces, scored)
    ]


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
        scored: list[tuple[Box, float | None]] | None = None
        if detected:
            scored = self.analyzer.detect_scored(image_bgr)
            boxes = [box for box, _ in scored]
            self._since_detection = 0
        else:
            self._since_detection += 1
        located = time.perf_counter()
        assert boxes is not None
        # A detected frame's faces carry their detector scores; a followed face keeps its last detection's.
        faces = (
            self.analyzer.classify_scored(image_bgr, scored)
            if scored is not None
            else self.analyzer.classify(image_bgr, boxes)
        )
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
