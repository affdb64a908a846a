"""Training's side of model directories (the format is faceray.model_card): importing published .hdf5 models,
and keeping the trainer's paths out of a card (no Ray)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import keras

from faceray.exports import write_export
from faceray.faces import FER_CROP, IMDB_WIKI_CROP, CropGeometry
from faceray.labels import labels_for_task
from faceray.model_card import ModelCard, save_model_dir
from faceray.train.models import with_normalization

# What the paper's published models were trained on: gender on IMDB-WIKI crops, emotion on FER-2013 faces.
PAPER_CROPS: dict[str, CropGeometry] = {"gender": IMDB_WIKI_CROP, "emotion": FER_CROP}
PATH_SETTINGS = ("data", "out", "root", "mat", "csv", "space", "emotion_model", "gender_model")


def without_machine_paths(settings: dict[str, Any] | None) -> dict[str, Any] | None:
    """Settings with every path reduced to its last part (a card travels; the trainer's folders do not)."""
    if settings is None:
        return None
    return {
        key: (Path(value).name if key in PATH_SETTINGS and isinstance(value, str) and value else value)
        for key, value in settings.items()
    }


def import_legacy_model(
    hdf5_path: str | Path,
    task: str,
    out: str | Path,
    input_shape: tuple[int, int, int] = (64, 64, 1),
    color: str = "gray",
    crop_margin: float | None = None,
) -> Path:
    """Turn a published Keras .hdf5 (which expects inputs scaled (x/255 - 0.5) * 2) into a model directory
    whose model takes raw pixels, with a card. Defaults are the paper's: 64x64 grey, and the crop geometry of the
    task's training data (`PAPER_CROPS`) unless `crop_margin` is given."""
    path = Path(hdf5_path)
    if not path.is_file():
        raise ValueError(f"no model file at {str(path)!r}")
    legacy = keras.models.load_model(path, compile=False)
    if list(legacy.input_shape[1:]) != list(input_shape):
        raise ValueError(f"{path.name} takes {legacy.input_shape[1:]}, not --input-shape {list(input_shape)}")
    labels = labels_for_task(task)
    if legacy.output_shape[-1] != len(labels):
        raise ValueError(f"{path.name} has {legacy.output_shape[-1]} outputs; task {task!r} has {len(labels)} labels")
    model = with_normalization(legacy, name=f"{task}_imported")
    crop = PAPER_CROPS[task] if crop_margin is None else CropGeometry(crop_margin, "set by import-model --crop-margin")
    card = ModelCard(task, input_shape, color, f"imported from {path.name}", crop, extra={"source": str(path.name)})
    folder = save_model_dir(out, model, card)
    write_export(folder, model, card)  # model.onnx, checked against the Keras model and recorded in the card
    return folder
