"""ServeConfig: every setting of `faceray serve` (also the `args` of the Serve YAML's app builder)."""

from __future__ import annotations

from dataclasses import dataclass

from faceray.config import option
from serve.classify import RUNTIMES


@dataclass(frozen=True)
class ServeConfig:
    """Settings of the face-classification service."""

    emotion_model: str = option("", "emotion model directory (from `faceray train` or `faceray import-model`)")
    gender_model: str = option("", "gender model directory")
    host: str = option("127.0.0.1", "address the HTTP server binds (127.0.0.1 = this machine only)")
    port: int = option(8000, "HTTP port")
    replicas: int = option(1, "replicas of each classifier deployment")
    max_side: int = option(640, "detection runs on the frame downscaled so its longer side is at most this")
    scale_factor: float = option(1.1, "Haar detectMultiScale scaleFactor")
    min_neighbors: int = option(5, "Haar detectMultiScale minNeighbors")
    min_size: int = option(24, "smallest face side in frame pixels")
    crop_margin: float = option(-1.0, "margin added to each side of a face box, fraction of its size; -1 = the model card's")
    runtime: str = option("onnx", "classifier runtime: onnx (ONNX Runtime; converted from the Keras model at load and "
                                  "checked against it) or tensorflow", choices=RUNTIMES)
    classifier_threads: int = option(0, "ONNX Runtime threads per classifier replica; 0 = one per core")
    max_batch_size: int = option(16, "requests batched together per classifier call (@serve.batch)")
    batch_wait_ms: float = option(5.0, "longest wait to fill a batch, milliseconds")
    max_body_bytes: int = option(10_000_000, "largest accepted request body in bytes (413 above)")
    replica_cpus: float = option(0.25, "CPUs reserved per replica (fractional: detection and both models share small machines)")
    address: str = option("", "Ray address: empty = embedded local Ray on loopback; 'auto' or ray://HOST:10001 = a cluster")

    def validate(self) -> list[str]:
        problems = []
        if not self.emotion_model and not self.gender_model:
            problems.append("--emotion-model / --gender-model: give at least one model directory")
        if not 0 < self.port < 65536:
            problems.append(f"--port: {self.port} is not a TCP port")
        for name in ("replicas", "max_side", "min_neighbors", "min_size", "max_batch_size", "max_body_bytes"):
            if getattr(self, name) < 1:
                problems.append(f"--{name.replace('_', '-')}: {getattr(self, name)} must be at least 1")
        if self.runtime not in RUNTIMES:
            problems.append(f"--runtime: {self.runtime!r} is not one of {', '.join(RUNTIMES)}")
        if self.classifier_threads < 0:
            problems.append(f"--classifier-threads: {self.classifier_threads} must be >= 0")
        if self.scale_factor <= 1:
            problems.append(f"--scale-factor: {self.scale_factor} must be > 1")
        if self.crop_margin != -1 and not 0 <= self.crop_margin <= 1:
            problems.append(f"--crop-margin: {self.crop_margin} must be in 0..1 (or -1 for the card's)")
        if self.replica_cpus <= 0:
            problems.append(f"--replica-cpus: {self.replica_cpus} must be > 0")
        return problems
