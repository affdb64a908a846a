"""What a training run saves to resume: plateau logic, the epoch and step, per-epoch history (numpy and JSON only).

No Keras or TensorFlow here: the driver reads a run's last state without importing them (train.loop trains).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np


@dataclass
class PlateauState:
    """Early stopping and reduce-LR-on-plateau on the validation loss (identical on every worker)."""

    lr: float
    best_loss: float = math.inf
    best_epoch: int = -1
    since_best: int = 0
    since_lr_change: int = 0
    stopped_early: bool = False

    def update(
        self, epoch: int, loss: float, patience: int, lr_patience: int, factor: float = 0.1, min_lr: float = 1e-6
    ) -> bool:
        """Record `loss` of `epoch`; returns True when it is the best so far. May lower `lr` or set `stopped_early`."""
        improved = math.isfinite(loss) and loss < self.best_loss - 1e-6
        if improved:
            self.best_loss, self.best_epoch = loss, epoch
            self.since_best = self.since_lr_change = 0
        else:
            self.since_best += 1
            self.since_lr_change += 1
            if self.since_lr_change >= lr_patience and self.lr > min_lr:
                self.lr = max(min_lr, self.lr * factor)
                self.since_lr_change = 0
            if self.since_best >= patience:
                self.stopped_early = True
        return improved


@dataclass
class TrainingState:
    """Everything needed to resume: the epoch and the step inside it, the partial sums of that epoch's steps so far,
    plateau state, per-epoch history. `stopped` (not saved) says the run ended on a stop request."""

    epoch: int = 0
    plateau: PlateauState = field(default_factory=lambda: PlateauState(lr=1e-3))
    history: list[dict[str, float]] = field(default_factory=list)
    step: int = 0  # steps done in `epoch` (a checkpoint inside an epoch)
    partial: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])  # loss sum, correct, count of those steps
    partial_s: float = 0.0  # seconds those steps took
    stopped: bool = False

    def to_json(self) -> str:
        return json.dumps(
            {
                "epoch": self.epoch,
                "step": self.step,
                "partial": self.partial,
                "partial_s": self.partial_s,
                "plateau": asdict(self.plateau),
                "history": self.history,
            }
        )

    @classmethod
    def from_json(cls, text: str) -> TrainingState:
        payload = json.loads(text)
        return cls(
            epoch=payload["epoch"],
            plateau=PlateauState(**payload["plateau"]),
            history=payload["history"],
            step=int(payload.get("step", 0)),
            partial=[float(value) for value in payload.get("partial", [0.0, 0.0, 0.0])],
            partial_s=float(payload.get("partial_s", 0.0)),
        )


def read_training_state(folder: Path) -> tuple[TrainingState, list[np.ndarray] | None]:
    """The state and the best weights (None if none were saved) that `save_training_state` wrote into `folder`."""
    best = None
    if (folder / "best_weights.npz").exists():
        with np.load(folder / "best_weights.npz") as arrays:
            best = [arrays[f"arr_{index}"] for index in range(len(arrays.files))]
    return TrainingState.from_json((folder / "state.json").read_text()), best
