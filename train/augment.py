"""In-graph augmentation built from numeric settings, so sweeps can vary each one (Keras, no Ray)."""

from __future__ import annotations

import keras
from keras import layers


def build_augmenter(settings: dict[str, float], seed: int = 0) -> keras.Sequential | None:
    """Random flip/rotation/shift/zoom/brightness/contrast on float pixels 0..255 (N, H, W, C); None if all off.

    settings: flip (0/1), rotation (degrees), shift and zoom (fractions), brightness (fraction of 0..255),
    contrast (factor).
    """
    steps: list[layers.Layer] = []
    if settings.get("flip", 0) > 0:
        steps.append(layers.RandomFlip("horizontal", seed=seed))
    if settings.get("rotation", 0) > 0:
        steps.append(layers.RandomRotation(settings["rotation"] / 360.0, fill_mode="nearest", seed=seed + 1))
    if settings.get("shift", 0) > 0:
        steps.append(layers.RandomTranslation(settings["shift"], settings["shift"], fill_mode="nearest", seed=seed + 2))
    if settings.get("zoom", 0) > 0:
        steps.append(layers.RandomZoom(settings["zoom"], settings["zoom"], fill_mode="nearest", seed=seed + 3))
    if settings.get("brightness", 0) > 0:
        steps.append(layers.RandomBrightness(settings["brightness"], value_range=(0, 255), seed=seed + 4))
    if settings.get("contrast", 0) > 0:
        steps.append(layers.RandomContrast(settings["contrast"], seed=seed + 5))
    if not steps:
        return None
    return keras.Sequential(steps, name="augment")
