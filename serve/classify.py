"""A model directory as a fast batched classifier (Keras/TF, no Ray)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt


class FaceClassifier:
    """Loads a model directory once; `predict` runs a traced call on uint8 crops (N, H, W, C) -> (N, K)."""

    def __init__(self, model_dir: str | Path) -> None:
        import tensorflow as tf

        from train.model_dir import load_model_dir

        self.model, self.card = load_model_dir(model_dir)
        height, width, channels = self.card["input_shape"]
        model = self.model
        # A traced function with a fixed signature: ~10x faster per face than eager calls, no retracing.
        self._call = tf.function(
            lambda images: model(tf.cast(images, tf.float32), training=False),
            input_signature=[tf.TensorSpec([None, height, width, channels], tf.uint8)],
        )
        self.predict(np.zeros((1, height, width, channels), np.uint8))  # trace once now, not on the first request

    @property
    def labels(self) -> list[str]:
        return list(self.card["labels"])

    def predict(self, crops: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
        if len(crops) == 0:
            return np.zeros((0, len(self.labels)), np.float32)
        return self._call(crops).numpy()

    def describe(self, probabilities: npt.NDArray[np.float32]) -> list[dict[str, Any]]:
        """Per face: {"label", "score", "scores": {label: p}}."""
        labels = self.labels
        results = []
        for row in probabilities:
            best = int(np.argmax(row))
            results.append({"label": labels[best], "score": float(row[best]),
                            "scores": {label: round(float(p), 5) for label, p in zip(labels, row)}})
        return results
