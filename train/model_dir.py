"""Model directories: `model.keras` plus `model_card.json`, what serving and evaluation read (no Ray).

The card carries everything a consumer needs instead of retyping it: task, labels in index order,
input shape, colour mode, normalisation (inside the model) and the face-crop margin the model expects.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import keras

from faceray.config import write_json
from faceray.labels import labels_for_task
from train.models import NORMALIZATION, with_normalization

MODEL_FILE = "model.keras"
CARD_FILE = "model_card.json"

INTENDED_USE = (
    "Research, teaching and demos of real-time face analysis: how a small CNN classifies face crops, "
    "measured on public benchmarks. Not for decisions about people (hiring, admission, policing, credit, "
    "health, surveillance of individuals)."
)
LIMITATIONS = {
    "emotion": [
        "It predicts which of 7 FER-2013 labels a face's expression resembles. An expression is not a person's inner "
        "emotional state: people feel without showing and show without feeling, and expressions differ across cultures.",
        "FER-2013's 48x48 grey web images were labelled once by annotators; about a third of human raters disagree with "
        "its labels, and 'disgust' has few examples.",
        "Accuracy drops for faces unlike the training photos: pose, occlusion, lighting, age, skin tone.",
    ],
    "gender": [
        "It predicts a binary woman/man label taken from IMDB and Wikipedia celebrity metadata. It knows nothing of a "
        "person's gender identity and is wrong by construction for people outside the binary.",
        "Celebrity photos over-represent some ages, ethnicities, make-up and hairstyles; accuracy is lower for faces "
        "unlike them, and for children.",
    ],
}
PATH_SETTINGS = ("data", "out", "root", "mat", "csv", "space", "emotion_model", "gender_model")


def without_machine_paths(settings: dict[str, Any] | None) -> dict[str, Any] | None:
    """Settings with every path reduced to its last part (a card travels; the trainer's folders do not)."""
    if settings is None:
        return None
    return {
        key: (Path(value).name if key in PATH_SETTINGS and isinstance(value, str) and value else value)
        for key, value in settings.items()
    }


def make_card(
    task: str, input_shape: tuple[int, int, int], color: str, architecture: str, crop_margin: float, **extra: Any
) -> dict[str, Any]:
    """A model card: the facts a consumer of the model must not guess."""
    if color not in ("gray", "rgb") or input_shape[2] != (1 if color == "gray" else 3):
        raise ValueError(f"input shape {input_shape} does not match colour mode {color!r}")
    return {
        "task": task,
        "labels": list(labels_for_task(task)),
        "input_shape": list(input_shape),
        "color": color,
        "input": "uint8 or float pixels 0..255, (N, H, W, C); RGB order when C = 3",
        "normalization": NORMALIZATION,
        "crop_margin": crop_margin,
        "architecture": architecture,
        "intended_use": INTENDED_USE,
        "limitations": LIMITATIONS.get(task, []),
        **extra,
    }


def save_model_dir(folder: str | Path, model: keras.Model, card: dict[str, Any]) -> Path:
    """Write `model.keras` and `model_card.json` into `folder`; returns the folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if list(model.input_shape[1:]) != list(card["input_shape"]):
        raise ValueError(f"model input {model.input_shape[1:]} differs from the card's {card['input_shape']}")
    if model.output_shape[-1] != len(card["labels"]):
        raise ValueError(f"model has {model.output_shape[-1]} outputs but the card lists {len(card['labels'])} labels")
    model.save(folder / MODEL_FILE)
    write_json(folder / CARD_FILE, card)
    return folder


def read_card(folder: str | Path) -> dict[str, Any]:
    path = Path(folder) / CARD_FILE
    if not path.is_file():
        raise ValueError(f"{folder} is not a model directory (no {CARD_FILE})")
    return json.loads(path.read_text())


def load_model_dir(folder: str | Path) -> tuple[keras.Model, dict[str, Any]]:
    """(model taking raw 0..255 pixels, card) from a model directory."""
    card = read_card(folder)
    model = keras.models.load_model(Path(folder) / MODEL_FILE, compile=False)
    return model, card


def import_legacy_model(
    hdf5_path: str | Path,
    task: str,
    out: str | Path,
    input_shape: tuple[int, int, int] = (64, 64, 1),
    color: str = "gray",
    crop_margin: float = 0.1,
) -> Path:
    """Turn a published Keras .hdf5 (which expects inputs scaled (x/255 - 0.5) * 2) into a model directory
    whose model takes raw pixels, with a card. Defaults are the paper's: 64x64 grey."""
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
    card = make_card(
        task,
        input_shape,
        color,
        architecture=f"imported from {path.name}",
        crop_margin=crop_margin,
        source=str(path.name),
    )
    return save_model_dir(out, model, card)
