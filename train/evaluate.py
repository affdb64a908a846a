"""Evaluation: accuracy, per-class precision/recall/F1, macro-F1, confusion matrix, and their plots (no Ray)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np
import numpy.typing as npt


def predict_probabilities(model: keras.Model, images: npt.NDArray[np.uint8], batch_size: int = 256) -> npt.NDArray[np.float32]:
    """Class probabilities (N, K) for uint8 images (N, H, W, C), batched through a traced call."""
    import tensorflow as tf

    call = tf.function(lambda batch: model(batch, training=False), reduce_retracing=True)
    outputs = [call(tf.cast(images[start : start + batch_size], tf.float32)).numpy() for start in range(0, len(images), batch_size)]
    return np.concatenate(outputs) if outputs else np.zeros((0, model.output_shape[-1]), np.float32)


def classification_report(labels: npt.NDArray[np.int64], predicted: npt.NDArray[np.int64], names: Sequence[str]) -> dict[str, Any]:
    """Accuracy, per-class precision/recall/F1/support, macro-F1 and the confusion matrix (rows = true)."""
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    indices = list(range(len(names)))
    precision, recall, f1, support = precision_recall_fscore_support(labels, predicted, labels=indices, zero_division=0)
    matrix = confusion_matrix(labels, predicted, labels=indices)
    present = support > 0
    return {
        "count": int(len(labels)),
        "accuracy": float(np.mean(labels == predicted)) if len(labels) else 0.0,
        "macro_f1": float(np.mean(f1[present])) if present.any() else 0.0,
        "per_class": {
            name: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
            for name, p, r, f, s in zip(names, precision, recall, f1, support)
        },
        "labels": list(names),
        "confusion_matrix": matrix.tolist(),
        "chance_accuracy": float(np.max(np.bincount(labels, minlength=len(names))) / len(labels)) if len(labels) else 0.0,
    }


def evaluate_model(model: keras.Model, images: npt.NDArray[np.uint8], labels: npt.NDArray[np.int64],
                   names: Sequence[str]) -> dict[str, Any]:
    """Run `model` on uint8 images (N, H, W, C) and report against integer `labels`."""
    probabilities = predict_probabilities(model, images)
    return classification_report(labels, probabilities.argmax(axis=1), names)


def plot_confusion_matrix(report: dict[str, Any], path: Path, title: str) -> None:
    """A row-normalised confusion matrix with counts, as PNG."""
    from matplotlib.figure import Figure  # not pyplot: no global figure registry to close or share between threads

    matrix = np.array(report["confusion_matrix"], dtype=float)
    normalised = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    names = report["labels"]
    figure = Figure(figsize=(1.0 + 0.8 * len(names), 0.8 + 0.7 * len(names)))
    axis = figure.subplots()
    axis.imshow(normalised, cmap="Blues", vmin=0, vmax=1)
    for row in range(len(names)):
        for column in range(len(names)):
            colour = "white" if normalised[row, column] > 0.5 else "black"
            axis.text(column, row, int(matrix[row, column]), ha="center", va="center", color=colour, fontsize=8)
    axis.set_xticks(range(len(names)), names, rotation=45, ha="right")
    axis.set_yticks(range(len(names)), names)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    axis.set_title(f"{title}\naccuracy {report['accuracy']:.3f}, macro-F1 {report['macro_f1']:.3f}")
    figure.tight_layout()
    figure.savefig(path, dpi=100)


def plot_learning_curves(history: Sequence[dict[str, float]], path: Path, title: str) -> None:
    """Loss and accuracy per epoch (train and validation) as PNG."""
    from matplotlib.figure import Figure  # not pyplot: no global figure registry to close or share between threads

    epochs = [row["epoch"] for row in history]
    figure = Figure(figsize=(9, 3.5))
    loss_axis, accuracy_axis = figure.subplots(1, 2)
    loss_axis.plot(epochs, [row["loss"] for row in history], label="train")
    accuracy_axis.plot(epochs, [row["accuracy"] for row in history], label="train")
    if history and "val_loss" in history[0]:
        loss_axis.plot(epochs, [row["val_loss"] for row in history], label="validation")
        accuracy_axis.plot(epochs, [row["val_accuracy"] for row in history], label="validation")
    loss_axis.set_title("loss")
    accuracy_axis.set_title("accuracy")
    for axis in (loss_axis, accuracy_axis):
        axis.set_xlabel("epoch")
        axis.legend()
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
