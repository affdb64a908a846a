"""The training core: distributed steps, epochs, early stopping and LR plateau logic, checkpoint state.

Pure TensorFlow/Keras (no Ray): it runs under any `tf.distribute` strategy — the default one in a plain
process, MultiWorkerMirroredStrategy inside Ray Train workers — with one code path for 1..N workers.
Keras 3 `model.fit` fails under MultiWorkerMirroredStrategy with 2+ workers, hence this custom loop.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import numpy.typing as npt
import tensorflow as tf

from faceray.train.state import PlateauState as PlateauState  # re-exported: the loop and its state in one import
from faceray.train.state import TrainingState, read_training_state

Batch = tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]]


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

    def _replica_train_step(
        self, images: tf.Tensor, labels: tf.Tensor, control: tf.Tensor
    ) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]:
        pixels = tf.cast(images, tf.float32)
        if self.augmenter is not None:
            pixels = self.augmenter(pixels, training=True)
        per_example, probabilities, gradients = self._gradients(pixels, labels)
        self.optimizer.apply_gradients(zip(gradients, self.model.trainable_variables))
        correct = tf.reduce_sum(tf.cast(tf.equal(tf.argmax(probabilities, -1), labels), tf.float32))
        return tf.reduce_sum(per_example), correct, tf.cast(tf.shape(labels)[0], tf.float32), control

    def _distributed_train_step(self, images: tf.Tensor, labels: tf.Tensor, control: tf.Tensor) -> list[tf.Tensor]:
        per_replica = self.strategy.run(self._replica_train_step, args=(images, labels, control))
        return [self.strategy.reduce(tf.distribute.ReduceOp.SUM, value, axis=None) for value in per_replica]

    def _local_eval_step(self, images: tf.Tensor, labels: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        probabilities = self.model(tf.cast(images, tf.float32), training=False)
        per_example = keras.losses.sparse_categorical_crossentropy(labels, probabilities)
        return tf.reduce_sum(per_example), tf.argmax(probabilities, -1)

    def train_batch(
        self,
        images: npt.NDArray[np.uint8],
        labels: npt.NDArray[np.int64],
        control: tuple[float, float] = (0.0, 0.0),
    ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        """One optimisation step on this worker's batch; returns ([loss sum, correct, count], control) summed over
        all workers. `control` is this worker's (stop wanted, checkpoint due): summed in the same collective as the
        step's metrics, so every worker learns at the same step that one of them asked."""
        values = self._train_step(
            tf.convert_to_tensor(images),
            tf.convert_to_tensor(labels, tf.int64),
            tf.constant(control, tf.float32),
        )
        loss_sum, correct, count, summed = (value.numpy() for value in values)
        return np.array([loss_sum, correct, count], np.float64), np.asarray(summed, np.float64)

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


@dataclass
class EpochFeed:
    """An epoch's batches for this worker: `steps(epoch)` (the same on every worker) and `batches(epoch, start_step)`,
    which yields the batches of steps start_step.. of that epoch in its fixed order (train.feed)."""

    steps: Callable[[int], int]
    batches: Callable[[int, int], Iterable[Batch]]


@dataclass
class Checkpoints:
    """When to save inside an epoch, and how: `save(state, best_weights)` runs on every worker at the same step
    (rank 0 writes); `every_s` seconds between saves inside an epoch (0: only at epoch ends, by `on_epoch_end`);
    `stop_wanted()` says this worker was asked to stop (a signal reached the driver)."""

    save: Callable[[TrainingState, list[np.ndarray] | None], None]
    every_s: float = 0.0
    stop_wanted: Callable[[], bool] = lambda: False


class Progress:
    """Lines inside an epoch: at the first step of a run (its time includes tracing the step) and then every
    `every_s` seconds: step/steps, loss, accuracy, images/s (all workers, since the first step) and the epoch's ETA."""

    def __init__(self, log: Callable[[str], None] | None, every_s: float, epochs: int) -> None:
        self.log, self.every_s, self.epochs = log, every_s, epochs
        self.epoch_start = self.started = self.last = 0.0
        self.images = 0.0
        self.steps = 0
        self.traced = False

    def start_epoch(self) -> None:
        self.epoch_start = self.started = self.last = time.perf_counter()
        self.images = 0.0
        self.steps = 0

    def step(self, epoch: int, step: int, steps: int, totals: npt.NDArray[np.float64], images: float) -> None:
        now = time.perf_counter()
        head = f"epoch {epoch + 1}/{self.epochs}  step {step}/{steps}  "
        metrics = f"loss {totals[0] / max(totals[2], 1):.4f}  acc {totals[1] / max(totals[2], 1):.3f}"
        if not self.traced:  # the run's first step: timed on its own, the rates start after it
            self.traced = True
            self.started = self.last = now
            if self.log is not None:
                self.log(f"{head}{metrics}  first step {now - self.epoch_start:.1f} s")
            return
        self.images += images
        self.steps += 1
        if self.log is None or self.every_s <= 0 or now - self.last < self.every_s or step >= steps:
            return
        self.last = now
        elapsed = max(now - self.started, 1e-9)
        remaining = (steps - step) * elapsed / self.steps
        self.log(f"{head}{metrics}  {self.images / elapsed:.0f} img/s  ETA {format_duration(remaining)}")


def format_duration(seconds: float) -> str:
    """`1:02:03` or `2:03` (h:mm:ss or m:ss)."""
    whole = int(round(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def run_epochs(
    runner: StepRunner,
    state: TrainingState,
    epochs: int,
    feed: EpochFeed,
    val_batches: Callable[[], Iterable[Batch]] | None,
    patience: int,
    lr_patience: int,
    on_epoch_end: Callable[[dict[str, float], TrainingState, list[np.ndarray] | None], None],
    best_weights: list[np.ndarray] | None = None,
    before_epoch: Callable[[int], None] | None = None,
    log: Callable[[str], None] | None = print,
    extra_metrics: dict[str, float] | None = None,
    checkpoints: Checkpoints | None = None,
    progress_every_s: float = 30.0,
) -> list[np.ndarray] | None:
    """Train from `state.epoch`, step `state.step`, to `epochs` (or an early stop, or a stop request); returns the
    best weights (by validation loss, or the last when there is no validation data). `on_epoch_end(metrics, state,
    best_weights)` runs on every worker after every epoch (it reports and checkpoints); `checkpoints` saves inside
    an epoch and stops on request (then `state.stopped` is True and `state.step` says where)."""
    runner.optimizer.learning_rate.assign(state.plateau.lr)
    progress = Progress(log, progress_every_s, epochs)
    last_save = time.perf_counter()
    while state.epoch < epochs and not state.plateau.stopped_early:
        epoch = state.epoch
        if before_epoch is not None:
            before_epoch(epoch)
        steps = feed.steps(epoch)
        if steps == 0:
            raise ValueError("no training batch: the training split is smaller than one batch per worker")
        started = time.perf_counter()
        totals = np.array(state.partial, np.float64)
        progress.start_epoch()
        step = state.step
        control = np.zeros(2)
        for images, labels in feed.batches(epoch, step):
            due = checkpoints is not None and 0 < checkpoints.every_s <= time.perf_counter() - last_save
            stop = checkpoints is not None and checkpoints.stop_wanted()
            values, control = runner.train_batch(images, labels, (float(stop), float(due)))
            totals += values
            step += 1
            progress.step(epoch, step, steps, totals, values[2])
            if checkpoints is not None and (control[0] > 0 or control[1] > 0) and step < steps:
                state.step, state.partial = step, totals.tolist()
                state.partial_s += time.perf_counter() - started
                started = time.perf_counter()
                state.stopped = bool(control[0] > 0)
                checkpoints.save(state, best_weights)
                last_save = time.perf_counter()
                if state.stopped:
                    return best_weights
        if step != steps:
            raise RuntimeError(f"the feed gave {step} of the epoch's {steps} steps")
        seconds = state.partial_s + time.perf_counter() - started
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
        state.epoch, state.step, state.partial, state.partial_s = epoch + 1, 0, [0.0, 0.0, 0.0], 0.0
        state.history.append({key: float(value) for key, value in metrics.items()})
        if log is not None:
            log(format_epoch(metrics, epochs))
        on_epoch_end(metrics, state, best_weights)
        last_save = time.perf_counter()
        if checkpoints is not None and control[0] > 0:  # asked during the epoch's last step: the epoch's save holds
            state.stopped = True
            return best_weights
    return best_weights


def format_epoch(metrics: dict[str, float], epochs: int) -> str:
    """One line per epoch: loss, accuracy, validation metrics, images/s."""
    line = f"epoch {int(metrics['epoch'])}/{epochs}  loss {metrics['loss']:.4f}  acc {metrics['accuracy']:.3f}"
    if "val_loss" in metrics:
        line += f"  val_loss {metrics['val_loss']:.4f}  val_acc {metrics['val_accuracy']:.3f}"
    return line + f"  lr {metrics['lr']:.1e}  {metrics['images_per_s']:.0f} img/s"
