"""Experiment tracking of train and sweep runs (`--tracking`), through the trackers' own APIs (no Ray).

  --tracking mlflow          MLflow, in a local file store ./mlruns (no server; `mlflow ui` reads it)
  --tracking mlflow:URI      MLflow at URI: http://host:5000, sqlite:///mlflow.db, file:///path, databricks, ...
  --tracking tensorboard     TensorBoard event files in OUT/tensorboard/ (`tensorboard --logdir OUT/tensorboard`)

A training run is logged once its model directory is written: the resolved config as parameters, every epoch's
metrics (history.csv) by step, the test or validation evaluation, the model card, the plots and the model directory
as artefacts. A sweep logs one parent run and one child run per trial (its sampled settings, validation accuracy per
epoch, best values and status). Where the run went is written to OUT/tracking.json.
"""

from __future__ import annotations

import csv
import json
import os
import posixpath
from pathlib import Path
from typing import Any

from faceray.exports import ONNX_FILE
from faceray.model_card import CARD_FILE, MODEL_FILE, ModelCard

TRACKERS = ("mlflow", "tensorboard")
TENSORBOARD_DIR = "tensorboard"  # OUT/tensorboard/
EXPERIMENT = "faceray"
MODEL_FILES = (MODEL_FILE, ONNX_FILE, CARD_FILE)
PLOTS = ("learning_curves.png", "confusion_matrix.png")


def parse_tracking(value: str) -> tuple[str, str | None]:
    """'mlflow', 'mlflow:URI' or 'tensorboard' -> (tracker, URI or None); ValueError names the choices."""
    tracker, _, uri = value.partition(":")
    if tracker not in TRACKERS or (tracker == "tensorboard" and uri):
        raise ValueError(f"{value!r}: expected mlflow, mlflow:URI or tensorboard")
    return tracker, uri or None


def mlflow_uri(uri: str | None) -> str:
    """The tracking URI: the given one, else a local file store ./mlruns. MLflow 3 keeps its file store in
    maintenance mode behind MLFLOW_ALLOW_FILE_STORE; faceray allows it for file: URIs (no server, no database)."""
    resolved = uri or Path("mlruns").resolve().as_uri()
    if resolved.startswith("file:") or "://" not in resolved:
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    return resolved


def _history(out: Path) -> list[dict[str, float]]:
    path = out / "history.csv"
    if not path.is_file():
        return []
    with open(path) as handle:
        return [
            {key: float(value) for key, value in row.items() if value not in ("", None)}
            for row in csv.DictReader(handle)
        ]


def _params(settings: dict[str, Any]) -> dict[str, str]:
    """Flat string parameters (MLflow's limit is 6,000 characters each)."""
    return {key: str(value)[:500] for key, value in settings.items() if value is not None and key != "tracking"}


def log_training(out: str | Path, settings: dict[str, Any], tracking: str, target: str | None = None) -> dict[str, Any]:
    """Log a finished training run's model directory `out` (a local folder: history, evaluation, card, plots, files);
    returns where it went (also written to OUT/tracking.json). `target` names the output folder when `out` is its
    local staging copy (object storage)."""
    out = Path(out)
    target = target or str(out)
    tracker, uri = parse_tracking(tracking)
    card = ModelCard.read(out).to_dict()
    evaluation = json.loads((out / "evaluation.json").read_text()) if (out / "evaluation.json").is_file() else {}
    history = _history(out)
    if tracker == "tensorboard":
        where = _tensorboard_training(out, settings, card, history, evaluation, _logdir(target))
    else:
        where = _mlflow_training(out, settings, card, history, evaluation, mlflow_uri(uri), target)
    (out / "tracking.json").write_text(json.dumps(where, indent=2) + "\n")
    return where


def _folder_name(target: str) -> str:
    """The last part of an output folder's path or URI (runs are named after it)."""
    return posixpath.basename(target.rstrip("/"))


def _logdir(target: str) -> str:
    """Where an output folder's TensorBoard event files are, named as the folder is (a path or a URI)."""
    return f"{target.rstrip('/')}/{TENSORBOARD_DIR}"


def _final_metrics(evaluation: dict[str, Any]) -> dict[str, float]:
    split = evaluation.get("split", "test")
    return {
        f"{split}_{name}": float(evaluation[name])
        for name in ("accuracy", "macro_f1", "chance_accuracy")
        if isinstance(evaluation.get(name), (int, float))
    }


def _mlflow_training(
    out: Path,
    settings: dict[str, Any],
    card: dict[str, Any],
    history: list[dict[str, float]],
    evaluation: dict[str, Any],
    uri: str,
    target: str,
) -> dict[str, Any]:
    import mlflow

    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment(EXPERIMENT)
    folder = _folder_name(target)
    with mlflow.start_run(run_name=f"{card['task']} {card['architecture']} ({folder})") as run:
        mlflow.set_tags({"faceray.task": card["task"], "faceray.model_dir": folder, "faceray.out": target})
        mlflow.log_params(_params(settings))
        for row in history:
            step = int(row.get("epoch", 0))
            mlflow.log_metrics({key: value for key, value in row.items() if key != "epoch"}, step=step)
        mlflow.log_metrics(_final_metrics(evaluation))
        mlflow.log_dict(card, CARD_FILE)
        for name in PLOTS:
            if (out / name).is_file():
                mlflow.log_artifact(str(out / name), "plots")
        for name in MODEL_FILES:
            if (out / name).is_file():
                mlflow.log_artifact(str(out / name), "model")
        run_id = run.info.run_id
    return {"tracker": "mlflow", "uri": uri, "experiment": EXPERIMENT, "run_id": run_id}


def _tensorboard_training(
    out: Path,
    settings: dict[str, Any],
    card: dict[str, Any],
    history: list[dict[str, float]],
    evaluation: dict[str, Any],
    logdir: str,
) -> dict[str, Any]:
    """Event files in the local `out`/tensorboard; the record names that folder `logdir` (the output's own name)."""
    import tensorflow as tf

    folder = out / TENSORBOARD_DIR
    writer = tf.summary.create_file_writer(str(folder))
    with writer.as_default():
        for row in history:
            step = int(row.get("epoch", 0))
            for key, value in row.items():
                if key != "epoch":
                    tf.summary.scalar(key, value, step=step)
        last = int(history[-1].get("epoch", 0)) if history else 0
        for key, value in _final_metrics(evaluation).items():
            tf.summary.scalar(key, value, step=last)
        tf.summary.text("config", json.dumps(_params(settings), indent=2), step=0)
        tf.summary.text("model_card", json.dumps(card, indent=2), step=0)
    writer.flush()
    writer.close()
    return {"tracker": "tensorboard", "logdir": logdir}


def log_sweep(
    out: str | Path, settings: dict[str, Any], rows: list[dict[str, Any]], tracking: str, target: str | None = None
) -> dict[str, Any]:
    """Log a finished sweep: a parent run with the sweep's settings and best trial, one child run per trial. `out` is
    a local folder; `target` names the sweep's output folder when `out` is its local staging copy."""
    out = Path(out)
    target = target or str(out)
    tracker, uri = parse_tracking(tracking)
    metrics = ("best_val_accuracy", "best_val_loss", "best_epoch", "epochs_run", "seconds")
    if tracker == "tensorboard":
        import tensorflow as tf

        for row in rows:
            writer = tf.summary.create_file_writer(str(out / TENSORBOARD_DIR / str(row["trial_id"])))
            with writer.as_default():
                for epoch, accuracy in row.get("_curve", []):
                    tf.summary.scalar("val_accuracy", float(accuracy), step=int(epoch))
                tf.summary.text("trial", json.dumps({k: v for k, v in row.items() if not k.startswith("_")}), step=0)
            writer.close()
        where: dict[str, Any] = {"tracker": "tensorboard", "logdir": _logdir(target)}
    else:
        import mlflow

        resolved = mlflow_uri(uri)
        mlflow.set_tracking_uri(resolved)
        mlflow.set_experiment(EXPERIMENT)
        children = {}
        with mlflow.start_run(run_name=f"sweep ({_folder_name(target)})") as parent:
            mlflow.log_params(_params(settings))
            for row in rows:
                with mlflow.start_run(run_name=f"trial {row['trial_id']}", nested=True) as child:
                    mlflow.log_params(
                        _params({k: v for k, v in row.items() if not k.startswith("_") and k not in metrics})
                    )
                    for epoch, accuracy in row.get("_curve", []):
                        mlflow.log_metric("val_accuracy", float(accuracy), step=int(epoch))
                    mlflow.log_metrics(
                        {key: float(row[key]) for key in metrics if isinstance(row.get(key), (int, float))}
                    )
                    children[str(row["trial_id"])] = child.info.run_id
            for name in ("results.csv", "best.json", "curves.png"):
                if (out / name).is_file():
                    mlflow.log_artifact(str(out / name))
            where = {"tracker": "mlflow", "uri": resolved, "experiment": EXPERIMENT, "run_id": parent.info.run_id,
                     "trial_runs": children}  # fmt: skip
    (out / "tracking.json").write_text(json.dumps(where, indent=2) + "\n")
    return where
