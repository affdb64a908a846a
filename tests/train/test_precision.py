"""GPU training's code paths, tested on the CPU: precision policies, the loss-scaling step, XLA, the GPU check,
resource requests and what the card records (no GPU, no Ray cluster)."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from faceray.config import ConfigError, resolve_config
from faceray.train.config import TrainConfig
from faceray.train.loop import StepRunner
from faceray.train.models import build_model
from faceray.train.precision import check_gpus, set_precision, with_loss_scaling


def float16_convolution_runs() -> bool:
    """Whether TensorFlow can run a float16 convolution on this CPU. Its oneDNN kernels need AVX512-FP16 or AMX for
    that; under faceray's AVX2 cap (ONEDNN_MAX_CPU_ISA, faceray.runtime) an Intel Xeon refuses with "could not create
    a primitive descriptor", where the AMD EPYC used before ran it. mixed_float16 is meant for GPUs."""
    try:
        tf.nn.conv2d(tf.zeros((1, 4, 4, 1), tf.float16), tf.zeros((3, 3, 1, 1), tf.float16), 1, "SAME")
    except tf.errors.OpError:
        return False
    return True


needs_float16_convolution = pytest.mark.skipif(
    not float16_convolution_runs(), reason="this CPU's TensorFlow (oneDNN, AVX2 cap) has no float16 convolution"
)


@pytest.fixture(autouse=True)
def float32_afterwards():
    yield
    set_precision("float32")


def batch(seed: int = 0, size: int = 16) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (size, 48, 48, 1)).astype(np.uint8), rng.integers(0, 7, size)


@needs_float16_convolution
def test_mixed_float16_computes_in_float16_keeps_float32_variables_and_a_float32_softmax():
    set_precision("mixed_float16")
    model = build_model("residual", (48, 48, 1), 7)
    convolutions = [layer for layer in model.get_layer("mini_xception").layers if "conv" in layer.name]
    assert convolutions and all(layer.compute_dtype == "float16" for layer in convolutions)
    assert all(variable.dtype == "float32" for variable in model.trainable_variables)
    assert model.get_layer("mini_xception").get_layer("predictions").compute_dtype == "float32"
    assert model(batch()[0].astype(np.float32)).dtype == "float32"


@needs_float16_convolution
def test_the_loss_scaling_step_trains_and_skips_a_step_whose_gradients_overflow():
    set_precision("mixed_float16")
    model = build_model("residual", (48, 48, 1), 7)
    optimizer = with_loss_scaling(keras.optimizers.Adam(1e-3), "mixed_float16")
    assert isinstance(optimizer, keras.optimizers.LossScaleOptimizer)
    runner = StepRunner(model, optimizer, tf.distribute.get_strategy(), 16)
    assert runner.scales_loss
    images, labels = batch()
    losses = [runner.train_batch(images, labels)[0][0] / 16 for _ in range(4)]  # the loss sum over 16 images
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]  # unscaled gradients: it learns the batch
    # A scale so large that float16 gradients overflow: the step is skipped and the scale halves.
    optimizer.dynamic_scale.assign(1e30)
    before = [variable.numpy().copy() for variable in model.trainable_variables]
    runner.train_batch(images, labels)
    assert float(optimizer.dynamic_scale.numpy()) == pytest.approx(5e29)
    assert all(np.array_equal(old, variable.numpy()) for old, variable in zip(before, model.trainable_variables))
    assert with_loss_scaling(keras.optimizers.Adam(1e-3), "float32").__class__ is keras.optimizers.Adam


def test_jit_compiles_the_step_to_the_same_numbers():
    images, labels = batch(1)
    results = []
    for jit in (False, True):
        keras.utils.set_random_seed(0)
        model = build_model("residual", (48, 48, 1), 7)
        runner = StepRunner(model, keras.optimizers.Adam(1e-3), tf.distribute.get_strategy(), 16, jit=jit)
        results.append([runner.train_batch(images, labels)[0][0] for _ in range(2)])
    np.testing.assert_allclose(results[0], results[1], rtol=1e-3)


def test_a_worker_given_gpus_that_tensorflow_cannot_see_stops_with_the_reason():
    assert check_gpus(0) == []
    if tf.config.list_physical_devices("GPU"):
        pytest.skip("this machine has a GPU")
    with pytest.raises(RuntimeError, match=r"sees no GPU \(CUDA build: .*pip install -e '\.\[gpu\]'"):
        check_gpus(1)


def test_precision_and_gpu_settings_are_checked_and_reach_the_trainer_and_the_card(tmp_path):
    from faceray.resources import ClusterResources, ResourceError, plan_training
    from faceray.shards import ShardMetadata
    from faceray.storage import Location
    from faceray.train.pipeline import RunSetup, make_trainer, training_facts

    with pytest.raises(ConfigError, match="--precision"):
        resolve_config(TrainConfig, {"data": "d", "precision": "float8"})
    with pytest.raises(ConfigError, match="mixed_bfloat16 needs --gpus-per-worker"):
        resolve_config(TrainConfig, {"data": "d", "precision": "mixed_bfloat16"})
    with pytest.raises(ResourceError, match="GPU"):
        plan_training(ClusterResources.single_node(16), 2, gpus_per_worker=1)
    config = resolve_config(
        TrainConfig, {"data": "d", "workers": 2, "gpus_per_worker": 1, "precision": "mixed_float16", "batch_size": 256}
    )
    plan = plan_training(ClusterResources.single_node(16, gpus=2), 2, gpus_per_worker=1)
    meta = ShardMetadata((64, 64, 1), "gray", "gender", ("woman", "man"))
    here = Location.of(tmp_path)
    setup = RunSetup(here, tmp_path, here, meta, ["woman", "man"], np.array([5, 5]), ("train",), False, False)
    trainer = make_trainer(config, setup, plan, {}, None, None)
    assert trainer.scaling_config.use_gpu and trainer.scaling_config.resources_per_worker["GPU"] == 1
    facts = training_facts(config)
    assert facts["device"] == "gpu" and facts["precision"] == "mixed_float16" and facts["effective_batch_size"] == 512
