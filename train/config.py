"""TrainConfig: every setting of `faceray train` (and of each sweep trial)."""

from __future__ import annotations

from dataclasses import dataclass

from faceray.config import location_problems, option, output_problems
from faceray.train.precision import PRECISIONS

AUGMENT_PRESETS: dict[str, dict[str, float]] = {
    # The paper's ImageDataGenerator: rotation 10 degrees, shifts 0.1, zoom 0.1, horizontal flip.
    "paper": {"flip": 1.0, "rotation": 10.0, "shift": 0.1, "zoom": 0.1, "brightness": 0.0, "contrast": 0.0},
    "off": {"flip": 0.0, "rotation": 0.0, "shift": 0.0, "zoom": 0.0, "brightness": 0.0, "contrast": 0.0},
}


@dataclass(frozen=True)
class TrainConfig:
    """Settings of one training run."""

    data: str = option(None, "an ingest output folder (OUT of `faceray ingest`; local, s3:// or gs://)", required=True)
    task: str | None = option(
        None, "emotion or gender (default: the task recorded in the data)", choices=("emotion", "gender")
    )
    model: str = option("residual", "residual (mini-Xception) or basic (sequential CNN)", choices=("residual", "basic"))
    workers: int = option(1, "data-parallel Ray Train workers")
    epochs: int = option(30, "maximum epochs (early stopping may end sooner)")
    batch_size: int = option(32, "images per worker per step")
    lr: float = option(1e-3, "Adam learning rate")
    augment: str = option(
        "paper", "augmentation preset; the settings below override it", choices=tuple(AUGMENT_PRESETS)
    )
    flip: bool | None = option(None, "random horizontal flip (preset when unset)")
    rotation: float | None = option(None, "random rotation, degrees (preset when unset)")
    shift: float | None = option(None, "random shift, fraction of the side (preset when unset)")
    zoom: float | None = option(None, "random zoom, fraction (preset when unset)")
    brightness: float | None = option(None, "random brightness, fraction of the range (preset when unset)")
    contrast: float | None = option(None, "random contrast factor (preset when unset)")
    bn_momentum: float = option(0.99, "batch-norm moving-average momentum: 0.99 as the paper; 0.9 for small datasets")
    balance: str = option(
        "none",
        "class balance: none, class-weight (loss weights) or downsample (per epoch)",
        choices=("none", "class-weight", "downsample"),
    )
    patience: int = option(10, "early stopping: epochs without a better validation loss")
    lr_patience: int = option(4, "reduce the learning rate x0.1 after this many epochs without improvement")
    final_epochs: int | None = option(
        None, "retrain on train+val for this many epochs and evaluate the test split once (default: no final run)"
    )
    out: str = option("runs/train", "output model directory (local, s3:// or gs://)")
    seed: int = option(0, "random seed (weights, shuffling, augmentation)")
    cpus_per_worker: float | None = option(
        None, "CPUs reserved per worker (default: the cluster's CPUs shared between the workers)"
    )
    gpus_per_worker: float = option(
        0.0, "GPUs per worker (0 = train on CPUs); refused at once on a cluster without GPUs"
    )
    precision: str = option(
        "float32",
        "float32, mixed_float16 (GPUs with tensor cores; dynamic loss scaling) or mixed_bfloat16; the softmax stays "
        "float32 and the model directory holds a float32 model",
        choices=PRECISIONS,
    )
    jit: bool = option(False, "compile the forward and backward pass with XLA")
    max_failures: int = option(1, "worker failures to recover from (restart from the last checkpoint)")
    checkpoint_every: float = option(
        10.0, "minutes between checkpoints inside an epoch (besides each epoch's end; 0: only at epoch ends)"
    )
    progress_every: float = option(30.0, "seconds between progress lines inside an epoch (0: only the first step)")
    crop_margin: float | None = option(
        None,
        "face-box margin per side (fraction of the box) the model expects; goes in the card (default: the crop "
        "geometry the ingest recorded for the data)",
    )
    evaluate_split: str = option("test", "split evaluated at the end (evaluation.json)", choices=("test", "val"))
    tracking: str | None = option(
        None, "mlflow (a local ./mlruns file store), mlflow:URI or tensorboard: log the run (default: off)"
    )
    address: str | None = option(
        None, "Ray address: 'auto' or ray://HOST:10001 = a cluster (default: an embedded local Ray on loopback)"
    )
    fail_at_epoch: int | None = option(None, "testing only: one worker raises at this epoch of a fresh run", cli=False)

    def validate(self) -> list[str]:
        problems = location_problems(data=self.data, out=self.out) + output_problems(out=self.out)
        if not self.data:
            problems.append("--data: an ingest output folder is required")
        for name in ("workers", "epochs", "batch_size"):
            if getattr(self, name) < 1:
                problems.append(f"--{name.replace('_', '-')}: {getattr(self, name)} must be at least 1")
        if not 0 < self.lr < 1:
            problems.append(f"--lr: {self.lr} must be in (0, 1)")
        if self.cpus_per_worker is not None and self.cpus_per_worker <= 0:
            problems.append(f"--cpus-per-worker: {self.cpus_per_worker} must be > 0")
        if self.checkpoint_every < 0:
            problems.append(f"--checkpoint-every: {self.checkpoint_every} must be >= 0 (minutes)")
        if self.progress_every < 0:
            problems.append(f"--progress-every: {self.progress_every} must be >= 0 (seconds)")
        if self.gpus_per_worker < 0:
            problems.append(f"--gpus-per-worker: {self.gpus_per_worker} must be >= 0")
        problems += tracking_problems(self.tracking)
        if self.precision == "mixed_bfloat16" and self.gpus_per_worker == 0:
            problems.append(
                "--precision mixed_bfloat16 needs --gpus-per-worker > 0: on CPUs faceray caps oneDNN at AVX2 "
                "(ONEDNN_MAX_CPU_ISA), which has no bfloat16 convolutions"
            )
        if self.final_epochs is not None and self.final_epochs < 1:
            problems.append(f"--final-epochs: {self.final_epochs} must be at least 1")
        if not 0 < self.bn_momentum < 1:
            problems.append(f"--bn-momentum: {self.bn_momentum} must be in (0, 1)")
        if self.crop_margin is not None and not 0 <= self.crop_margin <= 1:
            problems.append(f"--crop-margin: {self.crop_margin} must be in 0..1")
        for name in ("rotation", "shift", "zoom", "brightness", "contrast"):
            value = getattr(self, name)
            if value is not None and value < 0:
                problems.append(f"--{name}: {value} must be >= 0")
        return problems

    def augmentation(self) -> dict[str, float]:
        """The effective augmentation settings (preset, then explicit overrides)."""
        settings = dict(AUGMENT_PRESETS[self.augment])
        for name in settings:
            value = getattr(self, name)
            if value is not None:
                settings[name] = float(value)
        return settings


def tracking_problems(tracking: str | None) -> list[str]:
    """What is wrong with a --tracking value (an unknown tracker, MLflow not installed)."""
    import importlib.util

    from faceray.train.experiments import parse_tracking

    if tracking is None:
        return []
    try:
        tracker, _ = parse_tracking(tracking)
    except ValueError as error:
        return [f"--tracking: {error}"]
    module = {"mlflow": "mlflow", "tensorboard": "tensorboard"}[tracker]
    if importlib.util.find_spec(module) is None:
        return [f"--tracking {tracker}: {module} is not installed: pip install -e '.[tracking]'"]
    return []
