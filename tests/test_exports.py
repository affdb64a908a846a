"""Exported models: `model.onnx` written beside the Keras model, checked against it, recorded in the card with its
checksum; `faceray export` for older directories (no Ray)."""

from __future__ import annotations

import hashlib

import pytest

from faceray.exports import ONNX_FILE, export_model, recorded_export
from faceray.faces import IMDB_WIKI_CROP
from faceray.model_card import ModelCard, save_model_dir


@pytest.fixture
def model_dir(tmp_path):
    from train.models import build_model

    card = ModelCard("gender", (32, 32, 1), "gray", "residual", IMDB_WIKI_CROP)
    return save_model_dir(tmp_path / "gender", build_model("residual", (32, 32, 1), 2), card)


def test_the_export_is_checked_and_recorded_with_its_checksum(model_dir):
    assert recorded_export(model_dir, ModelCard.read(model_dir)) is None  # a directory without an export
    card = export_model(model_dir)
    record = card.extra["exports"]["onnx"]
    data = (model_dir / ONNX_FILE).read_bytes()
    assert record["sha256"] == hashlib.sha256(data).hexdigest() and record["bytes"] == len(data)
    assert record["max_abs_difference"] <= 1e-4 and record["opset"] == 17
    assert ModelCard.read(model_dir) == card and recorded_export(model_dir, card) == data
    (model_dir / ONNX_FILE).write_bytes(data[:-1])
    assert recorded_export(model_dir, card) is None  # changed since: not trusted
    with pytest.raises(ValueError, match="unknown export format"):
        export_model(model_dir, "tflite")


def test_faceray_export_command(model_dir, capsys):
    from faceray.cli import main

    assert main(["export", str(model_dir)]) == 0
    assert f"wrote {model_dir / ONNX_FILE}" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exited:
        main(["export", str(model_dir.parent / "nowhere")])
    assert exited.value.code == 2 and "not a model directory" in capsys.readouterr().err
