"""The training core without Ray: plateau logic, epochs under the default strategy, state round trip."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from faceray.train.augment import build_augmenter
from faceray.train.config import AUGMENT_PRESETS, TrainConfig
from faceray.train.loop import (
    Checkpoints,
    EpochFeed,
    PlateauState,
    StepRunner,
    TrainingState,
    read_training_state,
    restore_training_state,
    run_epochs,
    save_training_state,
)
from faceray.train.models import build_model


def test_plateau_lowers_the_rate_then_stops():
    state = PlateauState(lr=1e-3)
    assert state.update(0, 1.0, patience=3, lr_patience=2)
    assert not state.update(1, 1.1, patience=3, lr_patience=2)
    assert not state.update(2, 1.2, patience=3, lr_patience=2)
    assert abs(state.lr - 1e-4) < 1e-12 and not state.stopped_early
    assert not state.update(3, 1.0, patience=3, lr_patience=2)
    assert state.stopped_early and state.best_epoch == 0
    assert not PlateauState(lr=1e-3).update(0, float("nan"), 3, 2)


def test_augmentation_settings_from_preset_and_overrides():
    config = TrainConfig(data="d", augment="paper", zoom=0.3, flip=False)
    assert config.augmentation() == {
        "flip": 0.0,
        "rotation": 10.0,
        "shift": 0.1,
        "zoom": 0.3,
        "brightness": 0.0,
        "contrast": 0.0,
    }
    assert build_augmenter(AUGMENT_PRESETS["off"]) is None
    augmenter = build_augmenter(AUGMENT_PRESETS["paper"])
    images = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 1)).astype(np.float32)
    augmented = np.asarray(augmenter(images, training=True))
    assert augmented.shape == images.shape and not np.allclose(augmented, images)


def tiny_problem(count: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Bright vs dark images: a problem any model learns in a few steps."""
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, count)
    images = np.where(labels[:, None, None, None] == 1, 200, 50) + rng.integers(-20, 20, (count, 16, 16, 1))
    return images.astype(np.uint8), labels.astype(np.int64)


def test_epochs_learn_and_state_round_trips(tmp_path):
    keras.utils.set_random_seed(0)
    images, labels = tiny_problem()
    model = build_model("residual", (16, 16, 1), 2, bn_momentum=0.5)
    optimizer = keras.optimizers.Adam(1e-2)
    runner = StepRunner(model, optimizer, tf.distribute.get_strategy(), 16)
    state = TrainingState(plateau=PlateauState(lr=1e-2))
    reports = []

    def batches(epoch, start_step=0):
        for start in range(16 * start_step, len(images), 16):
            yield images[start : start + 16], labels[start : start + 16]

    best = run_epochs(
        runner,
        state,
        6,
        EpochFeed(lambda epoch: len(images) // 16, batches),
        lambda: batches(0),
        patience=10,
        lr_patience=10,
        on_epoch_end=lambda metrics, *_: reports.append(metrics),
        log=None,
    )
    assert [row["epoch"] for row in reports] == [1, 2, 3, 4, 5, 6]
    assert reports[-1]["loss"] < reports[0]["loss"]
    assert reports[-1]["val_accuracy"] >= 0.9
    save_training_state(tmp_path, model, optimizer, state, best)
    other = build_model("residual", (16, 16, 1), 2, bn_momentum=0.5)
    other_optimizer = keras.optimizers.Adam(1e-2)
    restored, restored_best = restore_training_state(tmp_path, other, other_optimizer)
    assert restored.epoch == 6 and len(restored.history) == 6
    assert all(np.array_equal(a, b) for a, b in zip(other.get_weights(), model.get_weights()))
    assert all(np.array_equal(a, b) for a, b in zip(restored_best, best))
    assert int(other_optimizer.iterations.numpy()) == int(optimizer.iterations.numpy())


def test_divergence_raises(tmp_path):
    images, labels = tiny_problem(16)
    model = build_model("residual", (16, 16, 1), 2)
    runner = StepRunner(model, keras.optimizers.Adam(1e-3), tf.distribute.get_strategy(), 16)
    runner.train_batch = lambda *_: (np.array([float("nan"), 0.0, 16.0]), np.zeros(2))  # a diverged step's report
    state = TrainingState(plateau=PlateauState(lr=1e-3))
    feed = EpochFeed(lambda epoch: 1, lambda epoch, start: [(images, labels)])
    try:
        run_epochs(runner, state, 1, feed, None, 5, 5, lambda *a: None, log=None)
    except FloatingPointError as error:
        assert "diverged" in str(error)
    else:
        raise AssertionError("a NaN loss must stop training")


def test_a_stop_inside_an_epoch_saves_and_the_resumed_run_sees_each_example_once(tmp_path):
    """A stop request after step 3 of 8: the state is saved at step 3 with its partial sums; a run restored from it
    trains steps 4..8, so the epoch's examples are each trained exactly once, and its metrics cover all 8 steps."""
    keras.utils.set_random_seed(0)
    images, labels = tiny_problem(64)
    identities = np.arange(64)
    trained: list[int] = []

    def run(state: TrainingState, stop_after: int | None, folder):
        model = build_model("basic", (16, 16, 1), 2)
        optimizer = keras.optimizers.Adam(1e-3)
        if (folder / "state.json").exists():
            state, _ = restore_training_state(folder, model, optimizer)
        runner = StepRunner(model, optimizer, tf.distribute.get_strategy(), 8)

        def batches(epoch, start_step):
            for step in range(start_step, 8):
                rows = slice(8 * step, 8 * step + 8)
                trained.extend(identities[rows].tolist())
                yield images[rows], labels[rows]

        calls = {"count": 0}

        def stop_wanted() -> bool:
            calls["count"] += 1
            return stop_after is not None and calls["count"] >= stop_after

        lines: list[str] = []
        run_epochs(
            runner,
            state,
            1,
            EpochFeed(lambda epoch: 8, batches),
            None,
            5,
            5,
            on_epoch_end=lambda metrics, state, best: save_training_state(folder, model, optimizer, state, best),
            log=lines.append,
            checkpoints=Checkpoints(
                lambda state, best: save_training_state(folder, model, optimizer, state, best), 0.0, stop_wanted
            ),
            progress_every_s=0.0,
        )
        return state, lines

    stopped, lines = run(TrainingState(plateau=PlateauState(lr=1e-3)), stop_after=3, folder=tmp_path)
    assert stopped.stopped and (stopped.epoch, stopped.step) == (0, 3)
    assert lines and lines[0].startswith("epoch 1/1  step 1/8  loss ") and "first step " in lines[0]
    saved, _ = read_training_state(tmp_path)
    assert (saved.epoch, saved.step) == (0, 3) and saved.partial[2] == 24
    assert sorted(trained) == list(range(24))

    finished, _ = run(TrainingState(plateau=PlateauState(lr=1e-3)), stop_after=None, folder=tmp_path)
    assert not finished.stopped and (finished.epoch, finished.step) == (1, 0)
    assert sorted(trained) == list(range(64))  # each example of the epoch once, across the stop
    assert len(finished.history) == 1 and finished.history[0]["loss"] > 0
    saved, _ = read_training_state(tmp_path)
    assert saved.partial == [0.0, 0.0, 0.0]
