"""The classifier's runtimes: ONNX Runtime must give the Keras model's answers, and say so when it does not."""

from __future__ import annotations

import numpy as np
import pytest

from faceray.serve import classify
from faceray.serve.classify import FaceClassifier, RuntimeMismatchError


def crops_for(classifier: FaceClassifier, count: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (count, *classifier.card.input_shape)).astype(np.uint8)


@pytest.mark.parametrize("task", ["emotion", "gender"])
def test_onnx_runtime_matches_the_keras_model(model_dirs, task):
    onnx = FaceClassifier(model_dirs[task], runtime="onnx")
    keras = FaceClassifier(model_dirs[task], runtime="tensorflow")
    for count in (1, 5, 33):  # one face, a request's faces, more than a batch
        crops = crops_for(onnx, count)
        onnx_probabilities, keras_probabilities = onnx.predict(crops), keras.predict(crops)
        assert onnx_probabilities.shape == (count, len(onnx.labels))
        np.testing.assert_allclose(onnx_probabilities, keras_probabilities, atol=1e-5)
        np.testing.assert_allclose(onnx_probabilities.sum(axis=1), 1.0, atol=1e-5)
    assert onnx.predict(crops_for(onnx, 0)).shape == (0, len(onnx.labels))


def without_export(folder, target):
    """A copy of a model directory as faceray wrote them before exports (no model.onnx, no `exports` in the card)."""
    import shutil

    from faceray.model_card import ModelCard

    shutil.copytree(folder, target)
    (target / "model.onnx").unlink(missing_ok=True)
    card = ModelCard.read(target)
    ModelCard.from_dict({key: value for key, value in card.to_dict().items() if key != "exports"}).save(target)
    return target


@pytest.mark.parametrize("task", ["emotion", "gender"])
def test_the_export_and_the_conversion_at_load_serve_the_same_answers(model_dirs, task, tmp_path):
    from faceray.exports import export_model

    folder = without_export(model_dirs[task], tmp_path / "old")
    converted = FaceClassifier(folder)
    assert converted.source == "converted"
    export_model(folder)
    exported = FaceClassifier(folder)
    assert exported.source == "export"
    crops = crops_for(exported, 9)
    np.testing.assert_allclose(exported.predict(crops), converted.predict(crops), atol=1e-6)
    (folder / "model.onnx").write_bytes((folder / "model.onnx").read_bytes() + b"x")  # changed since the export
    assert FaceClassifier(folder).source == "converted"  # the checksum does not match: converted, and checked


def test_a_conversion_that_disagrees_with_the_model_is_refused(model_dirs, monkeypatch, tmp_path):
    """The load-time parity check: an ONNX graph of other weights must not be served."""
    original = classify._onnx_session

    def other_weights(traced, signature, threads):
        return original(shuffled_call(signature), signature, threads)

    def shuffled_call(signature):
        import tensorflow as tf

        from faceray.model_card import load_model_dir

        model, _ = load_model_dir(model_dirs["gender"])
        model.set_weights(
            [
                np.random.default_rng(7).permutation(weight.ravel()).reshape(weight.shape)
                for weight in model.get_weights()
            ]
        )
        return tf.function(lambda images: model(tf.cast(images, tf.float32), training=False), input_signature=signature)

    monkeypatch.setattr(classify, "_onnx_session", other_weights)
    with pytest.raises(RuntimeMismatchError, match="differs from the Keras model"):
        FaceClassifier(without_export(model_dirs["gender"], tmp_path / "old"), runtime="onnx")


def test_unknown_runtime_is_a_clear_error(model_dirs):
    with pytest.raises(ValueError, match="unknown runtime"):
        FaceClassifier(model_dirs["gender"], runtime="torch")
