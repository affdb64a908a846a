"""Model directories: `model.keras` plus `model_card.json`, what training writes and evaluation and serving read.

The card carries everything a consumer needs instead of retyping it: task, labels in index order, input shape,
colour mode, normalisation (inside the model) and the crop geometry of the faces the model was trained on.
Keras is imported only by the functions that load or save a model.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from faceray.faces import COLOR_CHANNELS, UNRECORDED_CROP, CropGeometry
from faceray.labels import labels_for_task

if TYPE_CHECKING:
    import keras

    from faceray.storage import Location

MODEL_FILE = "model.keras"
CARD_FILE = "model_card.json"

INPUT = "uint8 or float pixels 0..255, (N, H, W, C); RGB order when C = 3"
NORMALIZATION = "(x / 255 - 0.5) * 2, inside the model (layer 'normalize')"
INTENDED_USE = (
    "Research, teaching and demos of real-time face analysis: how a small CNN classifies face crops, "
    "measured on public benchmarks. Not for decisions about people (hiring, admission, policing, credit, "
    "health, surveillance of individuals)."
)
LIMITATIONS = {
    "emotion": (
        "It predicts which of 7 FER-2013 labels a face's expression resembles. An expression is not a person's inner "
        "emotional state: people feel without showing and show without feeling, and expressions differ across cultures.",
        "FER-2013's 48x48 grey web images were labelled once by annotators; about a third of human raters disagree with "
        "its labels, and 'disgust' has few examples.",
        "Accuracy drops for faces unlike the training photos: pose, occlusion, lighting, age, skin tone.",
    ),
    "gender": (
        "It predicts a binary woman/man label taken from IMDB and Wikipedia celebrity metadata. It knows nothing of a "
        "person's gender identity and is wrong by construction for people outside the binary.",
        "Celebrity photos over-represent some ages, ethnicities, make-up and hairstyles; accuracy is lower for faces "
        "unlike them, and for children.",
    ),
}
# The card's own keys; anything else in model_card.json (config, metrics, trained_on, source, ...) is `extra`.
_CARD_KEYS = ("task", "labels", "input_shape", "color", "input", "normalization", "crop", "architecture",
              "intended_use", "limitations")  # fmt: skip


@dataclass(frozen=True)
class ModelCard:
    """The facts a consumer of a model must not guess. `extra` holds the rest of the card (training config,
    metrics, data provenance, download source) as JSON-ready values."""

    task: str
    input_shape: tuple[int, int, int]
    color: str
    architecture: str
    crop: CropGeometry
    labels: tuple[str, ...] = ()  # () = the task's labels
    input: str = INPUT
    normalization: str = NORMALIZATION
    intended_use: str = INTENDED_USE
    limitations: tuple[str, ...] | None = None  # None = the task's
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        task_labels = labels_for_task(self.task)  # ValueError for an unknown task
        object.__setattr__(self, "input_shape", tuple(int(side) for side in self.input_shape))
        object.__setattr__(self, "labels", tuple(self.labels) or task_labels)
        if self.limitations is None:
            object.__setattr__(self, "limitations", LIMITATIONS.get(self.task, ()))
        else:
            object.__setattr__(self, "limitations", tuple(self.limitations))
        if self.labels != task_labels:
            raise ValueError(f"labels {list(self.labels)} are not the {self.task} labels {list(task_labels)}")
        if (
            len(self.input_shape) != 3
            or self.color not in COLOR_CHANNELS
            or self.input_shape[2] != COLOR_CHANNELS[self.color]
        ):
            raise ValueError(f"input shape {list(self.input_shape)} does not match colour mode {self.color!r}")
        if set(self.extra) & set(_CARD_KEYS):
            raise ValueError(f"extra card fields {sorted(set(self.extra) & set(_CARD_KEYS))} shadow the card's own")

    @property
    def size(self) -> int:
        """The side of the square input, in pixels."""
        return self.input_shape[0]

    def with_extra(self, **items: Any) -> ModelCard:
        """This card with more (or replaced) extra fields."""
        return dataclasses.replace(self, extra={**self.extra, **items})

    def to_dict(self) -> dict[str, Any]:
        """The JSON form of model_card.json."""
        return {
            "task": self.task,
            "labels": list(self.labels),
            "input_shape": list(self.input_shape),
            "color": self.color,
            "input": self.input,
            "normalization": self.normalization,
            "crop": self.crop.to_dict(),
            "architecture": self.architecture,
            "intended_use": self.intended_use,
            "limitations": list(self.limitations or ()),
            **self.extra,
        }

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], source: str = "model card") -> ModelCard:
        """Read the JSON form; cards written before faceray recorded crop geometry (`crop_margin` only, or
        nothing) still load. ValueError names `source` and the field."""
        values = dict(values)
        for key in ("task", "input_shape", "color"):
            if key not in values:
                raise ValueError(f"{source}: field {key!r} is missing")
        if "crop" in values:
            try:
                crop = CropGeometry.from_dict(values.pop("crop"))
            except (KeyError, TypeError, ValueError) as error:
                raise ValueError(f"{source}: field 'crop': {error}") from None
        elif "crop_margin" in values:  # written by faceray before crop geometry had a description
            crop = CropGeometry(float(values.pop("crop_margin")), "recorded as crop_margin by an older faceray")
        else:
            crop = UNRECORDED_CROP
        known = {key: values.pop(key) for key in _CARD_KEYS if key in values}
        try:
            return cls(
                task=known["task"],
                input_shape=tuple(known["input_shape"]),
                color=known["color"],
                architecture=str(known.get("architecture", "unknown")),
                crop=crop,
                labels=tuple(known.get("labels", ())),
                input=known.get("input", INPUT),
                normalization=known.get("normalization", NORMALIZATION),
                intended_use=known.get("intended_use", INTENDED_USE),
                limitations=tuple(known["limitations"]) if "limitations" in known else None,
                extra=values,
            )
        except (TypeError, ValueError) as error:
            raise ValueError(f"{source}: {error}") from None

    @classmethod
    def read(cls, folder: str | Path | Location) -> ModelCard:
        """The card of a model directory (local or in object storage); ValueError when `folder` is not one or the
        card is malformed."""
        from faceray.config import read_json_object
        from faceray.storage import Location

        path = Location.of(folder) / CARD_FILE
        return cls.from_dict(read_json_object(path, "a model directory"), path.uri)

    def save(self, folder: str | Path) -> Path:
        """Write model_card.json into the local `folder` (whole or not at all); returns its path."""
        from faceray.config import write_json

        path = Path(folder) / CARD_FILE
        write_json(path, self.to_dict())
        return path


def save_model_dir(folder: str | Path, model: keras.Model, card: ModelCard) -> Path:
    """Write `model.keras` and `model_card.json` into `folder` after checking they agree; returns the folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if list(model.input_shape[1:]) != list(card.input_shape):
        raise ValueError(f"model input {model.input_shape[1:]} differs from the card's {list(card.input_shape)}")
    if model.output_shape[-1] != len(card.labels):
        raise ValueError(f"model has {model.output_shape[-1]} outputs but the card lists {len(card.labels)} labels")
    model.save(folder / MODEL_FILE)
    record_model_file(folder, card).save(folder)
    return folder


FILES_KEY = "files"  # in a card: {file name: {"sha256", "bytes"}} of the directory's model file as written
MODEL_FIX = (
    "copy the model directory again from where it was made, or rerun the command that wrote it "
    "(faceray train, import-model or fetch-weights)"
)


def record_model_file(folder: str | Path, card: ModelCard) -> ModelCard:
    """The card with the SHA-256 and size of the local `folder`/model.keras recorded under `files`."""
    from faceray.integrity import digest_file

    return card.with_extra(
        files={**(card.extra.get(FILES_KEY) or {}), MODEL_FILE: digest_file(Path(folder) / MODEL_FILE)}
    )


def check_slot(card: ModelCard, task: str, folder: str | Path | Location) -> None:
    """ValueError naming both when a model directory given for `task` ("emotion" or "gender") holds a model of
    another task, as its card records (swapped folders would label faces "emotion: woman")."""
    if card.task != task:
        raise ValueError(
            f"{folder} holds a {card.task} model (its {CARD_FILE} says task {card.task!r}), not a {task} model: "
            f"give it as the {card.task} model"
        )


def check_model_file(folder: str | Path | Location, card: ModelCard) -> None:
    """ValueError naming the file when the directory's model.keras is not the one its card recorded (a directory
    written before faceray recorded it has nothing to check)."""
    from faceray.integrity import check_file
    from faceray.storage import Location

    record = (card.extra.get(FILES_KEY) or {}).get(MODEL_FILE)
    problem = check_file(Location.of(folder) / MODEL_FILE, record, MODEL_FIX) if record else None
    if problem is not None:
        raise ValueError(str(problem))


def load_keras_model(folder: str | Path, card: ModelCard) -> keras.Model:
    """The Keras model of a local model directory (taking raw 0..255 pixels), refused (ValueError naming the file)
    when it is not the file its card recorded."""
    import keras

    check_model_file(folder, card)
    return keras.models.load_model(Path(folder) / MODEL_FILE, compile=False)


def load_model_dir(folder: str | Path) -> tuple[keras.Model, ModelCard]:
    """(model taking raw 0..255 pixels, card) from a model directory."""
    card = ModelCard.read(folder)
    return load_keras_model(folder, card), card
