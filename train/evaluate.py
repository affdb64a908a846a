"""Evaluation: accuracy, per-class precision/recall/F1, macro-F1, confusion matrix, and their plots (no Ray)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np
import numpy.typing as npt


def predict_probabilities(
    model: keras.Model, images: npt.NDArray[np.uint8], batch_size: int = 256
) -> npt.NDArray[np.float32]:
    """Class probabilities (N, K) for uint8 images (N, H, W, C), batched through a traced call."""
    import tensorflow as tf

    call = tf.function(lambda batch: model(batch, training=False), reduce_retracing=True)
    outputs = [
        call(tf.cast(images[start : start + batch_size], tf.float32)).numpy()
        for start in range(0, len(images), batch_size)
    ]
    return np.concatenate(outputs) if outputs else np.zeros((0, model.output_shape[-1]), np.float32)


def classification_report(
    labels: npt.NDArray[np.int64], predicted: npt.NDArray[np.int64], names: Sequence[str]
) -> dict[str, Any]:
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
        "chance_accuracy": float(np.max(np.bincount(labels, minlength=len(names))) / len(labels))
        if len(labels)
        else 0.0,
    }


def evaluate_model(
    model: keras.Model, images: npt.NDArray[np.uint8], labels: npt.NDArray[np.int64], names: Sequence[str]
) -> dict[str, Any]:
    """Run `model` on uint8 images (N, H, W, C) and report against integer `labels`."""
    probabilities = predict_probabilities(model, images)
    return classification_report(labels, probabilities.argmax(axis=1), names)


def plot_confusion_matrix(report: dict[str, Any], path: Path, title: str) -> None:
    """Two panels as PNG: the counts, and the matrix normalised by row (the recall of each true class)."""
    from matplotlib.figure import Figure  # not pyplot: no global figure registry to close or share between threads

    matrix = np.array(report["confusion_matrix"], dtype=float)
    normalised = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    names = report["labels"]
    side = max(3.2, 0.55 * len(names) + 1.6)  # readable at 2 classes as at 7
    figure = Figure(figsize=(2 * side + 0.6, side + 0.9))
    count_axis, share_axis = figure.subplots(1, 2)
    for axis, values, caption, text in (
        (count_axis, matrix, "images", lambda value: f"{int(value)}"),
        (share_axis, normalised, "share of each true class", lambda value: f"{value:.2f}"),
    ):
        scaled = values / max(values.max(), 1e-9)
        axis.imshow(scaled, cmap="Blues", vmin=0, vmax=1)
        for row in range(len(names)):
            for column in range(len(names)):
                colour = "white" if scaled[row, column] > 0.5 else "black"
                axis.text(column, row, text(values[row, column]), ha="center", va="center", color=colour, fontsize=9)
        axis.set_xticks(range(len(names)), names, rotation=45, ha="right")
        axis.set_yticks(range(len(names)), names)
        axis.set_xlabel("predicted")
        axis.set_ylabel("true")
        axis.set_title(caption, fontsize=10)
    figure.suptitle(
        f"{title}: accuracy {report['accuracy']:.3f}, macro-F1 {report['macro_f1']:.3f} ({report['count']} images)",
        fontsize=11,
    )
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def plot_learning_curves(history: Sequence[dict[str, float]], path: Path, title: str) -> None:
    """Loss and accuracy per epoch (train and validation) as PNG; integer epoch ticks; the best epoch (lowest
    validation loss, else training loss) marked on both panels."""
    from matplotlib.figure import Figure  # not pyplot: no global figure registry to close or share between threads
    from matplotlib.ticker import MaxNLocator

    epochs = [int(row["epoch"]) for row in history]
    figure = Figure(figsize=(10, 4))
    loss_axis, accuracy_axis = figure.subplots(1, 2)
    loss_axis.plot(epochs, [row["loss"] for row in history], marker="o", label="train")
    accuracy_axis.plot(epochs, [row["accuracy"] for row in history], marker="o", label="train")
    monitored = "loss"
    if history and "val_loss" in history[0]:
        monitored = "val_loss"
        loss_axis.plot(epochs, [row["val_loss"] for row in history], marker="o", label="validation")
        accuracy_axis.plot(epochs, [row["val_accuracy"] for row in history], marker="o", label="validation")
    if history:
        best = min(history, key=lambda row: row[monitored])
        for axis in (loss_axis, accuracy_axis):
            axis.axvline(
                int(best["epoch"]),
                color="grey",
                linestyle="--",
                linewidth=1,
                label=f"best epoch {int(best['epoch'])} ({monitored})",
            )
    loss_axis.set_title("loss")
    accuracy_axis.set_title("accuracy")
    for axis in (loss_axis, accuracy_axis):
        axis.set_xlabel("epoch")
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.legend(fontsize=8)
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
