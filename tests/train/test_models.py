"""The paper's models: exact parameter counts, normalisation inside, published-weights parity."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest

from faceray.model_card import load_model_dir
from faceray.train.model_dir import import_legacy_model
from faceray.train.models import build_model, mini_xception, mini_xception_body, simple_cnn


def test_parameter_counts_match_the_paper():
    assert mini_xception((64, 64, 1), 7).count_params() == 58_423
    assert mini_xception((64, 64, 1), 2).count_params() == 52_658
    assert simple_cnn((48, 48, 1), 7).count_params() == 642_935


def test_normalisation_is_inside_the_model():
    model = build_model("residual", (48, 48, 1), 7)
    assert model.layers[1].name == "normalize"
    normalise = model.layers[1]
    pixels = np.array([[[[0.0]], [[127.5]], [[255.0]]]], np.float32)
    assert np.allclose(np.asarray(normalise(pixels)).ravel(), [-1.0, 0.0, 1.0], atol=1e-6)
    output = np.asarray(model(np.full((2, 48, 48, 1), 200, np.uint8).astype(np.float32)))
    assert output.shape == (2, 7) and np.allclose(output.sum(axis=1), 1, atol=1e-5)


def test_unknown_architecture():
    with pytest.raises(ValueError, match="unknown model"):
        build_model("resnet", (48, 48, 1), 7)


@pytest.mark.parametrize(
    ("file_name", "classes"), [("fer2013_mini_XCEPTION.102-0.66.hdf5", 7), ("gender_mini_XCEPTION.21-0.95.hdf5", 2)]
)
def test_published_weights_load_into_mini_xception(reference_dir, file_name, classes):
    legacy = keras.models.load_model(reference_dir / file_name, compile=False)
    body = mini_xception_body((64, 64, 1), classes)
    body.set_weights(legacy.get_weights())
    pixels = np.random.default_rng(0).integers(0, 256, (4, 64, 64, 1)).astype(np.float32)
    scaled = (pixels / 255.0 - 0.5) * 2.0
    expected = np.asarray(legacy(scaled, training=False))
    assert np.allclose(np.asarray(body(scaled, training=False)), expected, atol=1e-5)
    model = mini_xception((64, 64, 1), classes)
    model.layers[-1].set_weights(legacy.get_weights())
    assert np.allclose(np.asarray(model(pixels, training=False)), expected, atol=1e-5)


def test_import_model_writes_a_model_directory(reference_dir, tmp_path):
    folder = import_legacy_model(reference_dir / "gender_mini_XCEPTION.21-0.95.hdf5", "gender", tmp_path / "gender")
    model, card = load_model_dir(folder)
    assert card.labels == ("woman", "man") and card.input_shape == (64, 64, 1) and card.color == "gray"
    assert "inside the model" in card.normalization and card.crop.margin == 0.4  # the paper's gender data: IMDB crops
    legacy = keras.models.load_model(reference_dir / "gender_mini_XCEPTION.21-0.95.hdf5", compile=False)
    pixels = np.random.default_rng(1).integers(0, 256, (3, 64, 64, 1)).astype(np.float32)
    assert np.allclose(np.asarray(model(pixels)), np.asarray(legacy((pixels / 255.0 - 0.5) * 2.0)), atol=1e-5)
    assert json.loads((folder / "model_card.json").read_text())["task"] == "gender"


def test_import_model_refuses_a_mismatch(reference_dir, tmp_path):
    with pytest.raises(ValueError, match="outputs"):
        import_legacy_model(reference_dir / "gender_mini_XCEPTION.21-0.95.hdf5", "emotion", tmp_path / "x")
    with pytest.raises(ValueError, match="no model file"):
        import_legacy_model(tmp_path / "missing.hdf5", "emotion", tmp_path / "y")
