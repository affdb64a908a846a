"""ServeConfig: every setting of `faceray serve` (also the `args` of the Serve YAML's app builder)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from faceray.config import location_problems, option, output_problems
from faceray.serve.classify import RUNTIMES
from faceray.serve.detect import DETECTORS, DetectorSettings

if TYPE_CHECKING:
    from faceray.model_card import ModelCard


def check_models(models: dict[str, str], runtime: str = "onnx") -> dict[str, ModelCard]:
    """Read each {task: model directory}'s card, so a wrong path or bucket, a folder in the other task's slot, or a
    model.keras that is not the one its card recorded is one line (ConfigError naming the flag); a changed
    model.onnx is a warning printed here (the graph is rebuilt from model.keras). Returns the cards."""
    from faceray.config import ConfigError
    from faceray.exports import changed_export
    from faceray.model_card import ModelCard, check_model_file, check_slot

    cards = {}
    for task, where in models.items():
        flag = f"--{task}-model"
        try:
            card = ModelCard.read(where)
            check_slot(card, task, where)  # swapped folders are refused
            check_model_file(where, card)  # a changed model.keras is refused
        except (ValueError, OSError) as error:
            raise ConfigError(f"{flag}: {error}") from None
        warning = changed_export(where, card) if runtime == "onnx" else None
        if warning:
            print(f"{flag}: warning: {warning}", flush=True)
        cards[task] = card
    return cards


def face_pipeline_problems(min_score: float, crop_margin: float | None) -> list[str]:
    """The detector and crop settings `faceray serve` and `faceray analyze` share, checked alike."""
    problems = []
    if not 0 < min_score < 1:
        problems.append(f"--min-score: {min_score} must be in (0, 1)")
    if crop_margin is not None and not 0 <= crop_margin <= 1:
        problems.append(f"--crop-margin: {crop_margin} must be in 0..1")
    return problems


# Request slots per replica that no admitted stream or HTTP request can take (see ServeConfig.max_ongoing_requests).
RESERVED_SLOTS = 16


@dataclass(frozen=True)
class ServeConfig:
    """Settings of the face-classification service."""

    emotion_model: str | None = option(
        None, "emotion model directory, local or s3://, gs:// (from `faceray train` or `faceray import-model`)"
    )
    gender_model: str | None = option(None, "gender model directory (local, s3:// or gs://)")
    host: str = option("127.0.0.1", "address the HTTP server binds (127.0.0.1 = this machine only)")
    port: int = option(8000, "HTTP port")
    replicas: int = option(1, "replicas of the service deployment (each loads the detector and both models)")
    workers: int = option(2, "threads per replica that decode, detect and classify (concurrent frames per replica)")
    detector: str = option(
        "blazeface",
        "face detector: blazeface (MediaPipe BlazeFace full-range, LiteRT), haar (OpenCV's frontal-face cascade) or "
        "none (the whole image is one face: cropped faces, ID photos)",
        choices=DETECTORS,
    )
    detector_threads: int = option(1, "BlazeFace: LiteRT threads per detector (one detector per worker thread)")
    min_score: float = option(0.5, "BlazeFace: smallest face score kept, 0..1")
    max_side: int = option(640, "Haar: detection runs on the frame downscaled so its longer side is at most this")
    scale_factor: float = option(1.1, "Haar: detectMultiScale scaleFactor")
    min_neighbors: int = option(5, "Haar: detectMultiScale minNeighbors")
    min_size: int = option(24, "smallest face side in frame pixels")
    detect_every: int = option(
        3,
        "stream: full detection every k-th frame (and when a face is lost); faces are "
        "followed by template matching in between",
    )
    smoothing: float = option(0.6, "stream: weight of the past in each face's smoothed scores, 0..1 (0 = none)")
    stream_queue: int = option(2, "stream: frames that may wait per connection; beyond, the oldest is dropped")
    crop_margin: float | None = option(
        None, "margin added to each side of a face box, fraction of its size (default: each model card's crop)"
    )
    runtime: str = option(
        "onnx",
        "classifier runtime: onnx (ONNX Runtime; converted from the Keras model at load and "
        "checked against it) or tensorflow",
        choices=RUNTIMES,
    )
    classifier_threads: int | None = option(None, "ONNX Runtime threads per model (default: one per core)")
    request_timeout_s: float = option(
        5.0,
        "end-to-end limit of one HTTP request in seconds, its body included (408 beyond); enforced by faceray, "
        "not by a header a client could send; streams are not bounded by it",
    )
    max_http_requests: int = option(
        64,
        "HTTP requests a replica holds at once (bodies arriving or frames analysed); beyond, 503 with Retry-After "
        "at once, so slow clients cannot take the slots /healthz and streams need",
    )
    http_queue: int = option(
        0,
        "HTTP frames that may wait for a worker thread per replica; beyond, 503 with Retry-After at once "
        "(overload is shed, not queued)",
    )
    max_streams: int = option(
        128, "open streams per replica; one more is refused at once with close code 1013 (try again later)"
    )
    stream_idle_s: float = option(
        60.0, "stream: closed with code 1008 (reason 'idle') after this many seconds without a frame"
    )
    frame_deadline_s: float = option(
        1.0,
        "stream: a frame not answered within this many seconds of its arrival is answered "
        '{"dropped": true, "reason": "deadline"} and the stream goes on',
    )
    max_body_bytes: int = option(10_000_000, "largest accepted request body or stream frame in bytes (413 above)")
    replica_cpus: float = option(0.5, "CPUs reserved per replica (fractional values share small machines)")
    allowed_origins: tuple[str, ...] = option(
        (),
        "other web origins (https://host:port) whose pages may call this "
        "service from a browser; empty = this service's own page only",
    )
    address: str | None = option(
        None, "Ray address: 'auto' or ray://HOST:10001 = a cluster (default: an embedded local Ray on loopback)"
    )

    def detector_settings(self) -> DetectorSettings:
        """The detector part of this config."""
        return DetectorSettings(
            name=self.detector,
            min_score=self.min_score,
            threads=self.detector_threads,
            max_side=self.max_side,
            scale_factor=self.scale_factor,
            min_neighbors=self.min_neighbors,
            min_size=self.min_size,
        )

    def max_ongoing_requests(self) -> int:
        """Serve's request slots per replica: every open stream and HTTP request faceray admits, plus a reserve that
        user traffic cannot reach (health checks, /v1/models, the page, refusals on their way out)."""
        return self.max_streams + self.max_http_requests + RESERVED_SLOTS

    def validate(self) -> list[str]:
        problems = location_problems(emotion_model=self.emotion_model, gender_model=self.gender_model)
        if not self.emotion_model and not self.gender_model:
            problems.append("--emotion-model / --gender-model: give at least one model directory")
        if not 0 < self.port < 65536:
            problems.append(f"--port: {self.port} is not a TCP port")
        for name in (
            "replicas",
            "workers",
            "detector_threads",
            "max_side",
            "min_neighbors",
            "min_size",
            "detect_every",
            "stream_queue",
            "max_http_requests",
            "max_streams",
            "max_body_bytes",
        ):
            if getattr(self, name) < 1:
                problems.append(f"--{name.replace('_', '-')}: {getattr(self, name)} must be at least 1")
        if self.runtime not in RUNTIMES:
            problems.append(f"--runtime: {self.runtime!r} is not one of {', '.join(RUNTIMES)}")
        if self.detector not in DETECTORS:
            problems.append(f"--detector: {self.detector!r} is not one of {', '.join(DETECTORS)}")
        problems += face_pipeline_problems(self.min_score, self.crop_margin)
        if not 0 <= self.smoothing < 1:
            problems.append(f"--smoothing: {self.smoothing} must be in [0, 1)")
        if self.classifier_threads is not None and self.classifier_threads < 1:
            problems.append(f"--classifier-threads: {self.classifier_threads} must be at least 1")
        if self.scale_factor <= 1:
            problems.append(f"--scale-factor: {self.scale_factor} must be > 1")
        if self.http_queue < 0:
            problems.append(f"--http-queue: {self.http_queue} must be at least 0")
        for name in ("request_timeout_s", "stream_idle_s", "frame_deadline_s"):
            if getattr(self, name) <= 0:
                problems.append(f"--{name.replace('_', '-')}: {getattr(self, name)} must be > 0")
        if self.replica_cpus <= 0:
            problems.append(f"--replica-cpus: {self.replica_cpus} must be > 0")
        return problems


@dataclass(frozen=True)
class ClientConfig:
    """Settings of `faceray client`: a webcam or video sent to the service, the faces drawn."""

    source: str = option("0", "webcam index or video file")
    url: str = option("http://127.0.0.1:8000", "service URL")
    output: str | None = option(None, "write the annotated video here (.mp4)")
    jsonl: str | None = option(None, "write one JSON line of results per answered frame here")
    display: bool = option(True, "show a window (--no-display: headless)")
    max_frames: int | None = option(None, "stop after this many frames (default: no limit)")
    max_in_flight: int = option(2, "requests outstanding at once; other frames are dropped")
    jpeg_quality: int = option(85, "JPEG quality of the frames sent, 1..100")
    timeout_s: float = option(10.0, "seconds one request or stream answer may take")
    smoothing: float = option(0.6, "weight of the past in each face's scores, 0..1")
    realtime: bool = option(
        True, "read a video file at its frame rate, as a camera delivers it (--no-realtime: as fast as possible)"
    )
    transport: str = option(
        "stream",
        "stream: one WebSocket to /v1/stream, faces tracked by the service; http: one POST /v1/faces per frame",
        choices=("stream", "http"),
    )
    give_up_s: float = option(
        30.0,
        "seconds of continuous service outage before the client stops; shorter outages are retried with backoff "
        "while the picture stays live",
    )

    def validate(self) -> list[str]:
        problems = []
        if self.max_in_flight < 1:
            problems.append(f"--max-in-flight: {self.max_in_flight} must be at least 1")
        if not 0 <= self.smoothing < 1:
            problems.append(f"--smoothing: {self.smoothing} must be in [0, 1)")
        if self.max_frames is not None and self.max_frames < 1:
            problems.append(f"--max-frames: {self.max_frames} must be at least 1")
        if not 1 <= self.jpeg_quality <= 100:
            problems.append(f"--jpeg-quality: {self.jpeg_quality} must be in 1..100")
        if self.timeout_s <= 0 or self.give_up_s <= 0:
            problems.append("--timeout-s and --give-up-s must be > 0")
        return problems


@dataclass(frozen=True)
class AnalyzeConfig:
    """Settings of `faceray analyze`: photo and video collections to tables of faces, on Ray Data."""

    inputs: tuple[str, ...] = option((), "image and video files, folders (walked recursively) and globs", cli=False)
    out: str | None = option(None, "output folder, local or s3:// / gs:// (faces/, summary.csv, …)", required=True)
    emotion_model: str | None = option(
        None, "emotion model directory, local or s3:// (default: the paper's, from `faceray fetch-weights paper`)"
    )
    gender_model: str | None = option(None, "gender model directory, local or s3:// (default: the paper's)")
    fps: float | None = option(None, "analyse a video at this many frames per second (default: every frame)")
    annotate: bool = option(False, "also write annotated copies of the images and videos under OUT/annotated/")
    detector: str = option(
        "blazeface", "face detector: blazeface, haar or none (each image is one face)", choices=DETECTORS
    )
    min_score: float = option(0.5, "BlazeFace: smallest face score kept, 0..1")
    min_size: int = option(24, "smallest face side in frame pixels")
    crop_margin: float | None = option(
        None, "margin added to each side of a face box, fraction of its size (default: each model card's crop)"
    )
    actors: int = option(0, "FaceAnalyzer actors (0 = one per CPU of the cluster)")
    overwrite: bool = option(False, "replace an analysis in --out made with other inputs, models or settings")
    progress: bool = option(True, "show a progress bar in frames/s (--no-progress: none)")
    address: str | None = option(
        None, "Ray address: 'auto' or ray://HOST:10001 = a cluster (default: an embedded local Ray on loopback)"
    )

    def detector_settings(self) -> DetectorSettings:
        """The detector part of this config (one LiteRT thread: an actor has one CPU)."""
        return DetectorSettings(name=self.detector, min_score=self.min_score, threads=1, min_size=self.min_size)

    def plan_fields(self) -> dict[str, object]:
        """What must match for a run to continue an earlier one in the same --out (the models are checked by their
        cards' checksums, not their paths)."""
        return {
            "inputs": list(self.inputs),
            "fps": self.fps,
            "annotate": self.annotate,
            "detector": self.detector,
            "min_score": self.min_score,
            "min_size": self.min_size,
            "crop_margin": self.crop_margin,
        }

    def validate(self) -> list[str]:
        problems = location_problems(emotion_model=self.emotion_model, gender_model=self.gender_model, out=self.out)
        problems += output_problems(out=self.out)
        if not self.inputs:
            problems.append("INPUT: give at least one image, video, folder or glob")
        if not self.out:
            problems.append("--out: required (the output folder)")
        if self.fps is not None and self.fps <= 0:
            problems.append(f"--fps: {self.fps} must be > 0")
        problems += face_pipeline_problems(self.min_score, self.crop_margin)
        if self.min_size < 1:
            problems.append(f"--min-size: {self.min_size} must be at least 1")
        if self.actors < 0:
            problems.append(f"--actors: {self.actors} must be at least 0")
        return problems
