"""Class labels, defined once for every stage (index order is the models' output order)."""

from __future__ import annotations

EMOTION_LABELS: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
"""FER-2013 emotion classes, index = the `emotion` column of fer2013.csv."""

GENDER_LABELS: tuple[str, ...] = ("woman", "man")
"""IMDB-WIKI gender classes, index = the `gender` field of imdb.mat (0 woman, 1 man)."""

TASK_LABELS: dict[str, tuple[str, ...]] = {"emotion": EMOTION_LABELS, "gender": GENDER_LABELS}

FER_USAGE_TO_SPLIT: dict[str, str] = {"Training": "train", "PublicTest": "val", "PrivateTest": "test"}

SPLITS: tuple[str, ...] = ("train", "val", "test")


def labels_for_task(task: str) -> tuple[str, ...]:
    """Return the label names of `task` ('emotion' or 'gender') in index order."""
    try:
        return TASK_LABELS[task]
    except KeyError:
        raise ValueError(f"unknown task {task!r}: expected one of {sorted(TASK_LABELS)}") from None
