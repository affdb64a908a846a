"""The paper's two models in Keras 3, with the input normalisation inside the model (no Ray).

Every model built here takes raw pixels (float or uint8 values 0..255, shape (H, W, C), grey or RGB as the
model card says) and applies the paper's scaling (x / 255 - 0.5) * 2 in its first layer, so training and
serving cannot disagree.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import keras
from keras import layers, regularizers


def normalization_layer() -> layers.Layer:
    """(x / 255 - 0.5) * 2 == x * 2/255 - 1: pixels 0..255 -> [-1, 1]."""
    return layers.Rescaling(scale=2.0 / 255.0, offset=-1.0, name="normalize")


def mini_xception_body(
    input_shape: Sequence[int], num_classes: int, l2_weight: float = 0.01, bn_momentum: float = 0.99
) -> keras.Model:
    """The residual mini-Xception as the paper's reference code builds it; takes inputs already in [-1, 1].

    58,423 parameters for (64, 64, 1) -> 7 and 52,658 for (64, 64, 1) -> 2. As in the reference code only
    the two stem convolutions carry the L2 penalty (old Keras ignored it on the separable convolutions).
    `bn_momentum` is Keras' default 0.99 as in the paper; small datasets need less (0.9) for usable
    inference-time statistics after a few hundred steps.
    """
    regularizer = regularizers.L2(l2_weight)
    image = keras.Input(shape=tuple(input_shape), name="image")
    x = image
    for _ in range(2):
        x = layers.Conv2D(8, 3, strides=1, kernel_regularizer=regularizer, use_bias=False)(x)
        x = layers.BatchNormalization(momentum=bn_momentum)(x)
        x = layers.Activation("relu")(x)
    for filters in (16, 32, 64, 128):
        residual = layers.Conv2D(filters, 1, strides=2, padding="same", use_bias=False)(x)
        residual = layers.BatchNormalization(momentum=bn_momentum)(residual)
        x = layers.SeparableConv2D(filters, 3, padding="same", use_bias=False)(x)
        x = layers.BatchNormalization(momentum=bn_momentum)(x)
        x = layers.Activation("relu")(x)
        x = layers.SeparableConv2D(filters, 3, padding="same", use_bias=False)(x)
        x = layers.BatchNormalization(momentum=bn_momentum)(x)
        x = layers.MaxPooling2D(3, strides=2, padding="same")(x)
        x = layers.add([x, residual])
    x = layers.Conv2D(num_classes, 3, padding="same")(x)
    x = layers.GlobalAveragePooling2D()(x)
    output = layers.Activation("softmax", name="predictions", dtype="float32")(x)  # float32 under mixed precision
    return keras.Model(image, output, name="mini_xception")


def simple_cnn_body(input_shape: Sequence[int], num_classes: int, bn_momentum: float = 0.99) -> keras.Model:
    """The paper's "basic" sequential CNN; takes inputs in [-1, 1]. 642,935 parameters for (48, 48, 1) -> 7."""
    image = keras.Input(shape=tuple(input_shape), name="image")
    x = image
    for filters, kernel in ((16, 7), (32, 5), (64, 3), (128, 3)):
        x = layers.Conv2D(filters, kernel, padding="same")(x)
        x = layers.BatchNormalization(momentum=bn_momentum)(x)
        x = layers.Conv2D(filters, kernel, padding="same")(x)
        x = layers.BatchNormalization(momentum=bn_momentum)(x)
        x = layers.Activation("relu")(x)
        x = layers.AveragePooling2D(2, padding="same")(x)
        x = layers.Dropout(0.5)(x)
    x = layers.Conv2D(256, 3, padding="same")(x)
    x = layers.BatchNormalization(momentum=bn_momentum)(x)
    x = layers.Conv2D(num_classes, 3, padding="same")(x)
    x = layers.GlobalAveragePooling2D()(x)
    output = layers.Activation("softmax", name="predictions", dtype="float32")(x)  # float32 under mixed precision
    return keras.Model(image, output, name="simple_cnn")


def with_normalization(body: keras.Model, name: str | None = None) -> keras.Model:
    """Wrap a body that expects [-1, 1] into a model that takes raw 0..255 pixels."""
    pixels = keras.Input(shape=body.input_shape[1:], name="pixels")
    return keras.Model(pixels, body(normalization_layer()(pixels)), name=name or body.name)


ARCHITECTURES: dict[str, Callable[..., keras.Model]] = {"residual": mini_xception_body, "basic": simple_cnn_body}


def build_model(
    architecture: str, input_shape: Sequence[int], num_classes: int, bn_momentum: float = 0.99
) -> keras.Model:
    """'residual' (mini-Xception) or 'basic' (simple CNN), taking raw 0..255 pixels of `input_shape`."""
    if architecture not in ARCHITECTURES:
        raise ValueError(f"unknown model {architecture!r}: expected one of {sorted(ARCHITECTURES)}")
    return with_normalization(ARCHITECTURES[architecture](input_shape, num_classes, bn_momentum=bn_momentum))


def mini_xception(input_shape: Sequence[int], num_classes: int) -> keras.Model:
    """The residual mini-Xception taking raw pixels (normalisation inside)."""
    return build_model("residual", input_shape, num_classes)


def simple_cnn(input_shape: Sequence[int], num_classes: int) -> keras.Model:
    """The basic CNN taking raw pixels (normalisation inside)."""
    return build_model("basic", input_shape, num_classes)
