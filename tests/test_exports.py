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
    from faceray.train.models import build_model

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


def flip_bit(path, position: int) -> None:
    data = bytearray(path.read_bytes())
    data[position] ^= 0x10
    path.write_bytes(bytes(data))


def test_a_changed_model_file_is_refused_and_a_changed_export_rebuilt_with_a_warning(model_dir, capsys):
    """The card records model.keras's SHA-256: one flipped bit is refused by loading (evaluate, the service, the
    Python API), naming the file; a changed model.onnx is rebuilt from model.keras, with a warning; `faceray verify`
    says both."""
    from faceray.cli import main
    from faceray.model_card import MODEL_FILE, load_model_dir
    from faceray.serve.classify import FaceClassifier

    export_model(model_dir)
    card = ModelCard.read(model_dir)
    assert card.extra["files"][MODEL_FILE]["bytes"] == (model_dir / MODEL_FILE).stat().st_size
    assert main(["verify", str(model_dir)]) == 0 and "all as written" in capsys.readouterr().out

    flip_bit(model_dir / ONNX_FILE, 200)
    with pytest.warns(UserWarning, match="model.onnx: missing or changed since it was written"):
        classifier = FaceClassifier(model_dir)
    assert classifier.source == "converted"  # rebuilt from model.keras, which is intact
    assert main(["verify", str(model_dir)]) == 1 and "faceray export" in capsys.readouterr().out
    export_model(model_dir)

    flip_bit(model_dir / MODEL_FILE, 5000)
    for load in (lambda: load_model_dir(model_dir), lambda: FaceClassifier(model_dir)):
        with pytest.raises(ValueError, match=r"model\.keras: changed since it was written"):
            load()
    assert main(["verify", str(model_dir)]) == 1
    assert f"{model_dir / MODEL_FILE}: changed since it was written" in capsys.readouterr().out
