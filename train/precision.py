"""Numeric precision and accelerators of a training run (pure TensorFlow/Keras, no Ray).

`--precision`: 'float32' (the default), 'mixed_float16' (float16 compute, float32 variables, dynamic loss scaling:
GPUs with tensor cores) or 'mixed_bfloat16' (bfloat16 compute, no loss scaling needed: recent GPUs and CPUs with
AVX-512 BF16). In every policy the models' last layer (softmax) computes in float32, so probabilities and the loss
stay float32. `--gpus-per-worker N` asks Ray for GPUs; a worker that was given GPUs but where TensorFlow sees none
(a CPU-only TensorFlow, a CUDA/driver mismatch) stops with the reason instead of training on the CPU.
"""

from __future__ import annotations

import os
from typing import Any

PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")


def set_precision(precision: str) -> None:
    """Make `precision` Keras's global dtype policy for the models built next (in this process)."""
    import keras

    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}: expected one of {PRECISIONS}")
    keras.mixed_precision.set_global_policy(precision)


def with_loss_scaling(optimizer: Any, precision: str) -> Any:
    """The optimizer wrapped in Keras's dynamic LossScaleOptimizer for 'mixed_float16' (float16 gradients underflow
    without it); unchanged for the other precisions."""
    import keras

    if precision == "mixed_float16":
        return keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer


def check_gpus(gpus_per_worker: float) -> list[str]:
    """The GPUs TensorFlow sees in this worker, with memory growth on (several workers may share a GPU); [] when no
    GPU was asked for. Raises RuntimeError, with TensorFlow's CUDA build and Ray's assignment, when GPUs were asked
    for and TensorFlow sees none: faceray never falls back to the CPU silently. Call before TensorFlow's first op."""
    if gpus_per_worker <= 0:
        return []
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        build = tf.sysconfig.get_build_info()
        raise RuntimeError(
            f"--gpus-per-worker {gpus_per_worker:g}: Ray assigned GPU(s) "
            f"{os.environ.get('CUDA_VISIBLE_DEVICES', '(none listed)')} to this worker, but TensorFlow "
            f"{tf.__version__} sees no GPU (CUDA build: {bool(build.get('is_cuda_build'))}, built for CUDA "
            f"{build.get('cuda_version', '-')}, cuDNN {build.get('cudnn_version', '-')}). Install the GPU libraries "
            "with `pip install -e '.[gpu]'` and check that `nvidia-smi` shows a driver for that CUDA version"
        )
    for gpu in gpus:
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:
            pass  # already initialised in this process: its setting stays
    return [gpu.name for gpu in gpus]


def device_summary(gpus: list[str]) -> str:
    """'cpu', or the GPUs a worker trained on, e.g. 'gpu: /physical_device:GPU:0'."""
    return "cpu" if not gpus else "gpu: " + ", ".join(gpus)
