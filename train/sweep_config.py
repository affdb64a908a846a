"""SweepConfig: every setting of `faceray sweep`."""

from __future__ import annotations

from dataclasses import dataclass

from faceray.config import location_problems, option, output_problems
from faceray.train.config import tracking_problems
from faceray.train.precision import PRECISIONS


@dataclass(frozen=True)
class SweepConfig:
    """Settings of a learning-rate / augmentation sweep."""

    data: str = option(None, "an ingest output folder (local, s3:// or gs://)", required=True)
    task: str | None = option(
        None, "emotion or gender (default: the task recorded in the data)", choices=("emotion", "gender")
    )
    space: str = option(None, "search-space YAML (see train/spaces/report.yaml)", required=True)
    trials: int = option(1, "samples of the space (each grid point is tried this many times, with fresh random values)")
    max_concurrent: int | None = option(
        None, "trials running at once (default: as many as the cluster holds at 1 CPU per worker)"
    )
    scheduler: str = option(
        "asha", "asha stops hopeless trials early; fifo runs every trial to the end", choices=("asha", "fifo")
    )
    epochs: int = option(10, "maximum epochs per trial (unless the space sets epochs)")
    grace_period: int = option(2, "ASHA: epochs every trial runs before it can be stopped")
    final: bool = option(False, "retrain the best config on train+val for its best epoch count and evaluate test once")
    out: str = option(
        "runs/sweep", "output folder (local, s3:// or gs://): results.csv, best.json, curves.png, trials/, final/"
    )
    trial_cpus: float | None = option(
        None, "CPUs each trial worker reserves (default: the cluster split between the concurrent trials)"
    )
    gpus_per_worker: float = option(0.0, "GPUs per trial worker (0 = CPUs); the space may set it per trial")
    precision: str = option(
        "float32", "float32, mixed_float16 or mixed_bfloat16 (see faceray train)", choices=PRECISIONS
    )
    jit: bool = option(False, "compile each trial's forward and backward pass with XLA")
    trials_in_ray_train: bool = option(False, "benchmarks only: one-worker trials run Ray Train too", cli=False)
    tracking: str | None = option(
        None, "mlflow (a local ./mlruns file store), mlflow:URI or tensorboard: log the run (default: off)"
    )
    address: str | None = option(
        None, "Ray address: 'auto' or ray://HOST:10001 = a cluster (default: an embedded local Ray on loopback)"
    )

    def validate(self) -> list[str]:
        problems = location_problems(data=self.data, out=self.out) + output_problems(out=self.out)
        if not self.data:
            problems.append("--data: an ingest output folder is required")
        if not self.space:
            problems.append("--space: a search-space YAML file is required")
        for name in ("trials", "epochs", "grace_period"):
            if getattr(self, name) < 1:
                problems.append(f"--{name.replace('_', '-')}: must be at least 1")
        problems += tracking_problems(self.tracking)
        if self.gpus_per_worker < 0:
            problems.append(f"--gpus-per-worker: {self.gpus_per_worker} must be >= 0")
        if self.max_concurrent is not None and self.max_concurrent < 1:
            problems.append(
                f"--max-concurrent: {self.max_concurrent} must be at least 1 (leave it unset to fit the cluster)"
            )
        if self.trial_cpus is not None and self.trial_cpus <= 0:
            problems.append(f"--trial-cpus: {self.trial_cpus} must be > 0 (leave it unset to fit the cluster)")
        return problems
