"""The training core without Ray: plateau logic, epochs under the default strategy, state round trip."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from train.augment import build_augmenter
from train.config import AUGMENT_PRESETS, TrainConfig
from train.loop import PlateauState, StepRunner, TrainingState, restore_training_state, run_epochs, save_training_state
from train.models import build_model


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

    def batches(epoch):
        for start in range(0, len(images), 16):
            yield images[start : start + 16], labels[start : start + 16]

    best = run_epochs(
        runner,
        state,
        6,
        batches,
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
    runner.train_batch = lambda *_: np.array([float("nan"), 0.0, 16.0])  # what a diverged step reports
    state = TrainingState(plateau=PlateauState(lr=1e-3))
    try:
        run_epochs(runner, state, 1, lambda epoch: [(images, labels)], None, 5, 5, lambda *a: None, log=None)
    except FloatingPointError as error:
        assert "diverged" in str(error)
    else:
        raise AssertionError("a NaN loss must stop training")
