"""The training core: distributed steps, epochs, early stopping and LR plateau logic, checkpoint state.

Pure TensorFlow/Keras (no Ray): it runs under any `tf.distribute` strategy — the default one in a plain
process, MultiWorkerMirroredStrategy inside Ray Train workers — with one code path for 1..N workers.
Keras 3 `model.fit` fails under MultiWorkerMirroredStrategy with 2+ workers, hence this custom loop.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import keras
import numpy as np
import numpy.typing as npt
import tensorflow as tf

Batch = tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]]


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
    """Everything needed to resume: next epoch, plateau state, per-epoch history."""

    epoch: int = 0
    plateau: PlateauState = field(default_factory=lambda: PlateauState(lr=1e-3))
    history: list[dict[str, float]] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps({"epoch": self.epoch, "plateau": asdict(self.plateau), "history": self.history})

    @classmethod
    def from_json(cls, text: str) -> TrainingState:
        payload = json.loads(text)
        return cls(epoch=payload["epoch"], plateau=PlateauState(**payload["plateau"]), history=payload["history"])


class StepRunner:
    """Compiled train and evaluation steps for one model under one strategy.

    Loss: sparse categorical cross-entropy (labels as class indices), optionally weighted per class,
    summed over the global batch and divided by its size, plus the model's L2 penalties. With a Keras
    LossScaleOptimizer (mixed_float16) the loss is scaled before the gradients and the optimizer unscales them
    (skipping a step whose gradients overflow). `jit` compiles the forward and backward pass with XLA; the
    augmentation and the (cross-replica) update stay outside the compiled part.
    """

    def __init__(
        self,
        model: keras.Model,
        optimizer: keras.optimizers.Optimizer,
        strategy: tf.distribute.Strategy,
        global_batch_size: int,
        augmenter: keras.Model | None = None,
        class_weights: npt.NDArray[np.float32] | None = None,
        jit: bool = False,
    ) -> None:
        self.model = model
        self.optimizer = optimizer
        self.strategy = strategy
        self.global_batch_size = global_batch_size
        self.augmenter = augmenter
        weights = np.ones(model.output_shape[-1], np.float32) if class_weights is None else class_weights
        self.class_weights = tf.constant(weights, tf.float32)
        self.scales_loss = isinstance(optimizer, keras.optimizers.LossScaleOptimizer)
        self._gradients = tf.function(self._loss_and_gradients, jit_compile=True) if jit else self._loss_and_gradients
        self._train_step = tf.function(self._distributed_train_step, reduce_retracing=True)
        self._eval_step = tf.function(self._local_eval_step, reduce_retracing=True)

    def _loss_and_gradients(self, pixels: tf.Tensor, labels: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, list[tf.Tensor]]:
        """(per-example losses, probabilities, gradients) of one replica's batch; the gradients are of the scaled
        loss when the optimizer scales it."""
        weights = tf.gather(self.class_weights, labels)
        with tf.GradientTape() as tape:
            probabilities = self.model(pixels, training=True)
            per_example = keras.losses.sparse_categorical_crossentropy(labels, probabilities)
            loss = tf.reduce_sum(per_example * weights) / self.global_batch_size
            if self.model.losses:
                penalties = tf.add_n([tf.cast(penalty, tf.float32) for penalty in self.model.losses])
                loss += penalties / self.strategy.num_replicas_in_sync
            if self.scales_loss:
                loss = self.optimizer.scale_loss(loss)
        return per_example, probabilities, tape.gradient(loss, self.model.trainable_variables)

    def _replica_train_step(self, images: tf.Tensor, labels: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        pixels = tf.cast(images, tf.float32)
        if self.augmenter is not None:
            pixels = self.augmenter(pixels, training=True)
        per_example, probabilities, gradients = self._gradients(pixels, labels)
        self.optimizer.apply_gradients(zip(gradients, self.model.trainable_variables))
        correct = tf.reduce_sum(tf.cast(tf.equal(tf.argmax(probabilities, -1), labels), tf.float32))
        return tf.reduce_sum(per_example), correct, tf.cast(tf.shape(labels)[0], tf.float32)

    def _distributed_train_step(self, images: tf.Tensor, labels: tf.Tensor) -> list[tf.Tensor]:
        per_replica = self.strategy.run(self._replica_train_step, args=(images, labels))
        return [self.strategy.reduce(tf.distribute.ReduceOp.SUM, value, axis=None) for value in per_replica]

    def _local_eval_step(self, images: tf.Tensor, labels: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        probabilities = self.model(tf.cast(images, tf.float32), training=False)
        per_example = keras.losses.sparse_categorical_crossentropy(labels, probabilities)
        return tf.reduce_sum(per_example), tf.argmax(probabilities, -1)

    def train_batch(self, images: npt.NDArray[np.uint8], labels: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
        """One optimisation step on this worker's batch; returns [loss sum, correct, count] over all workers."""
        values = self._train_step(tf.convert_to_tensor(images), tf.convert_to_tensor(labels, tf.int64))
        return np.array([float(value) for value in values])

    def evaluate_batches(self, batches: Iterable[Batch]) -> npt.NDArray[np.float64]:
        """[loss sum, correct, count] of this worker's batches, summed over all workers (one collective)."""
        totals = np.zeros(3)
        for images, labels in batches:
            loss_sum, predicted = self._eval_step(tf.convert_to_tensor(images), tf.convert_to_tensor(labels, tf.int64))
            totals += [float(loss_sum), float(np.sum(predicted.numpy() == labels)), len(labels)]
        return all_reduce_sum(self.strategy, totals)


def all_reduce_sum(strategy: tf.distribute.Strategy, values: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Sum a small vector over all workers of `strategy` (identity under the default strategy)."""
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return values

    @tf.function
    def reduce(tensor: tf.Tensor) -> tf.Tensor:  # traced: collectives run eagerly are slow
        return strategy.reduce(tf.distribute.ReduceOp.SUM, strategy.run(tf.identity, args=(tensor,)), axis=None)

    return reduce(tf.constant(values, tf.float64)).numpy()


def save_training_state(
    folder: Path,
    model: keras.Model,
    optimizer: keras.optimizers.Optimizer,
    state: TrainingState,
    best_weights: list[np.ndarray] | None,
) -> None:
    """Write weights, optimizer variables, the best weights so far and the state JSON into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    model.save_weights(folder / "model.weights.h5")
    np.savez(folder / "optimizer.npz", *[variable.numpy() for variable in optimizer.variables])
    if best_weights is not None:
        np.savez(folder / "best_weights.npz", *best_weights)
    (folder / "state.json").write_text(state.to_json())


def read_training_state(folder: Path) -> tuple[TrainingState, list[np.ndarray] | None]:
    """The state and the best weights (None if none were saved) that `save_training_state` wrote into `folder`."""
    best = None
    if (folder / "best_weights.npz").exists():
        with np.load(folder / "best_weights.npz") as arrays:
            best = [arrays[f"arr_{index}"] for index in range(len(arrays.files))]
    return TrainingState.from_json((folder / "state.json").read_text()), best


def restore_training_state(
    folder: Path, model: keras.Model, optimizer: keras.optimizers.Optimizer
) -> tuple[TrainingState, list[np.ndarray] | None]:
    """Load what `save_training_state` wrote into the model and optimizer; returns `read_training_state(folder)`."""
    model.load_weights(folder / "model.weights.h5")
    optimizer.build(model.trainable_variables)
    with np.load(folder / "optimizer.npz") as arrays:
        saved = [arrays[f"arr_{index}"] for index in range(len(arrays.files))]
    if len(saved) == len(optimizer.variables):
        for variable, value in zip(optimizer.variables, saved):
            variable.assign(value)
    return read_training_state(folder)


def run_epochs(
    runner: StepRunner,
    state: TrainingState,
    epochs: int,
    train_batches: Callable[[int], Iterable[Batch]],
    val_batches: Callable[[], Iterable[Batch]] | None,
    patience: int,
    lr_patience: int,
    on_epoch_end: Callable[[dict[str, float], TrainingState, list[np.ndarray] | None], None],
    best_weights: list[np.ndarray] | None = None,
    before_epoch: Callable[[int], None] | None = None,
    log: Callable[[str], None] | None = print,
    extra_metrics: dict[str, float] | None = None,
) -> list[np.ndarray] | None:
    """Train from `state.epoch` to `epochs` (or an early stop); returns the best weights (by validation loss,
    or the last when there is no validation data). `on_epoch_end(metrics, state, best_weights)` runs on every
    worker after every epoch (it reports and checkpoints)."""
    runner.optimizer.learning_rate.assign(state.plateau.lr)
    while state.epoch < epochs and not state.plateau.stopped_early:
        epoch = state.epoch
        if before_epoch is not None:
            before_epoch(epoch)
        started = time.perf_counter()
        totals = np.zeros(3)
        for images, labels in train_batches(epoch):
            totals += runner.train_batch(images, labels)
        seconds = time.perf_counter() - started
        if totals[2] == 0:
            raise ValueError("no training batch: the training split is smaller than one batch per worker")
        metrics = {
            "epoch": epoch + 1,
            "loss": totals[0] / totals[2],
            "accuracy": totals[1] / totals[2],
            "lr": float(state.plateau.lr),
            "images_per_s": totals[2] / seconds,
            "epoch_s": seconds,
            **(extra_metrics or {}),
        }
        if not math.isfinite(metrics["loss"]):
            raise FloatingPointError(f"training diverged: loss is {metrics['loss']} at epoch {epoch + 1}")
        if val_batches is not None:
            val = runner.evaluate_batches(val_batches())
            metrics["val_loss"] = val[0] / max(val[2], 1)
            metrics["val_accuracy"] = val[1] / max(val[2], 1)
            monitored = metrics["val_loss"]
        else:
            monitored = metrics["loss"]
        improved = state.plateau.update(epoch, monitored, patience, lr_patience)
        if improved or best_weights is None or val_batches is None:
            best_weights = [np.array(weight) for weight in runner.model.get_weights()]
        runner.optimizer.learning_rate.assign(state.plateau.lr)
        metrics["best_epoch"] = state.plateau.best_epoch + 1
        metrics["best_val_loss" if val_batches is not None else "best_loss"] = state.plateau.best_loss
        state.epoch = epoch + 1
        state.history.append({key: float(value) for key, value in metrics.items()})
        if log is not None:
            log(format_epoch(metrics, epochs))
        on_epoch_end(metrics, state, best_weights)
    return best_weights


def format_epoch(metrics: dict[str, float], epochs: int) -> str:
    """One line per epoch: loss, accuracy, validation metrics, images/s."""
    line = f"epoch {int(metrics['epoch'])}/{epochs}  loss {metrics['loss']:.4f}  acc {metrics['accuracy']:.3f}"
    if "val_loss" in metrics:
        line += f"  val_loss {metrics['val_loss']:.4f}  val_acc {metrics['val_accuracy']:.3f}"
    return line + f"  lr {metrics['lr']:.1e}  {metrics['images_per_s']:.0f} img/s"
