"""Training through Ray Train on sample data: accuracy above chance, outputs, 2 workers, failure recovery."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from faceray.cli import main
from faceray.config import ConfigError, resolve_config
from faceray.model_card import load_model_dir
from faceray.train.config import TrainConfig
from faceray.train.pipeline import run_training

pytestmark = pytest.mark.slow


def config_for(data: Path, out: Path, **overrides) -> TrainConfig:
    # bn_momentum 0.9: with only ~16 steps an epoch, the paper's 0.99 leaves the inference-time
    # batch-norm statistics near their initial values and validation accuracy at chance.
    settings = dict(
        data=str(data),
        task="emotion",
        model="residual",
        epochs=6,
        batch_size=32,
        bn_momentum=0.9,
        augment="off",
        out=str(out),
        seed=0,
    )
    settings.update(overrides)
    return resolve_config(TrainConfig, settings)


LISTENERS: dict[str, set] = {}


@pytest.fixture(scope="module")
def trained(fer_data, tmp_path_factory) -> tuple[Path, dict]:
    from tests.conftest import ListenerWatch

    out = tmp_path_factory.mktemp("model")
    with ListenerWatch() as watch:
        summary = run_training(config_for(fer_data, out))
    LISTENERS["training"] = watch.found
    return out, summary


def test_training_listens_on_loopback_only(trained):
    """Ray Train's controller and worker and TensorFlow's collective server bind 127.0.0.1 (the network rule)."""
    assert LISTENERS["training"] == set()


def test_short_run_lands_clearly_above_chance(trained):
    """The sample's emotions are drawn mouths and brows: 6 epochs of ~500 images learn them. Chance is at most
    the majority share (about 0.25 with FER's class mix) and 1/7 uniform; we require 0.2 above the majority."""
    out, summary = trained
    evaluation = json.loads((out / "evaluation.json").read_text())
    assert evaluation["split"] == "test" and evaluation["count"] > 40
    assert evaluation["accuracy"] >= evaluation["chance_accuracy"] + 0.2, evaluation["accuracy"]
    assert summary["evaluation"]["accuracy"] == evaluation["accuracy"]
    assert len(evaluation["confusion_matrix"]) == 7 and set(evaluation["per_class"]) >= {"happy", "sad"}
    assert 0 < evaluation["macro_f1"] <= 1


def test_model_directory_and_card(trained):
    out, _ = trained
    for name in (
        "model.keras",
        "model_card.json",
        "history.csv",
        "learning_curves.png",
        "evaluation.json",
        "confusion_matrix.png",
        "train_config.json",
    ):
        assert (out / name).is_file(), name
    model, card = load_model_dir(out)
    assert card.task == "emotion" and card.labels[3] == "happy" and card.input_shape == (48, 48, 1)
    assert card.color == "gray" and card.extra["config"]["lr"] == 1e-3
    assert card.crop.margin == 0.1 and "FER-2013" in card.crop.description  # the crop the ingest recorded
    assert card.extra["trained_on"]["manifest"]["dataset"] == "fer"
    assert card.extra["metrics"]["best_epoch"] >= 1
    assert "inner" in " ".join(card.limitations or ()) and "Not for decisions about people" in card.intended_use
    home, temporary = str(Path.home()), str(out.parent)
    text = json.dumps(card.to_dict())
    assert home not in text and temporary not in text  # no path of the training machine
    plan = json.loads((out / "train_config.json").read_text())["resource_plan"]
    assert plan["stage"] == "train" and plan["chosen"]["workers"] == 1
    with open(out / "history.csv") as handle:
        history = list(csv.DictReader(handle))
    assert len(history) == card.extra["metrics"]["epochs_run"] and {
        "loss",
        "val_loss",
        "val_accuracy",
        "images_per_s",
    } <= set(history[0])


def test_evaluate_command(trained, fer_data, capsys):
    out, _ = trained
    assert main(["evaluate", str(out), "--data", str(fer_data), "--split", "val"]) == 0
    printed = capsys.readouterr().out
    saved = json.loads((out / "evaluation_val.json").read_text())
    assert saved["split"] == "val" and 0 <= saved["accuracy"] <= 1
    assert f"val: accuracy {saved['accuracy']:.3f}" in printed and "happy" in printed and "{" not in printed
    # A user's mistake is one line and exit status 2, never a traceback.
    for arguments in (
        ["evaluate", str(out / "nowhere"), "--data", str(fer_data)],
        ["evaluate", str(out), "--data", str(out)],
        ["inspect", str(out / "nowhere")],
    ):
        with pytest.raises(SystemExit) as exited:
            main(arguments)
        assert exited.value.code == 2
        error = capsys.readouterr().err
        assert "Traceback" not in error and ("not a model directory" in error or "not" in error)


def test_a_finished_run_run_again_changes_nothing_and_trains_nothing(trained, fer_data):
    """The same command on a finished --out returns the saved summary without starting Ray Train: no file is
    written again (train_config.json, Ray Train's records and checkpoints, the model directory)."""
    out, summary = trained
    written = {path: path.stat().st_mtime_ns for path in out.rglob("*") if path.is_file()}
    again = run_training(config_for(fer_data, out))
    assert again["already_finished"] and again["metrics"] == summary["metrics"]
    assert again["evaluation"] == summary["evaluation"]
    assert {path: path.stat().st_mtime_ns for path in out.rglob("*") if path.is_file()} == written


def test_a_finished_run_whose_model_file_changed_is_not_taken_as_finished(trained, fer_data, tmp_path):
    """One flipped byte in a finished run's model.keras: the run is not taken as finished, and the line names the
    file (the same command then writes the model directory again from the last checkpoint)."""
    import shutil

    from faceray.storage import Location
    from faceray.train.pipeline import finished_run

    out = tmp_path / "copy"
    shutil.copytree(trained[0], out)
    model = bytearray((out / "model.keras").read_bytes())
    model[len(model) // 2] ^= 1
    (out / "model.keras").write_bytes(bytes(model))
    said: list[str] = []
    assert finished_run(config_for(fer_data, out), Location.of(str(out)), said.append) is None
    assert len(said) == 1 and "model.keras" in said[0] and "from the last checkpoint" in said[0], said


def test_rerun_with_other_settings_is_refused(trained, fer_data):
    out, _ = trained
    with pytest.raises(ConfigError, match="other settings"):
        run_training(config_for(fer_data, out, lr=0.01))


def test_two_workers_recover_from_an_injected_failure(fer_data, tmp_path):
    """Worker 1 raises at epoch 2 of the fresh run. Finishing at all proves the restart resumed from the
    epoch-1 checkpoint: a restart from scratch would be 'fresh' again, fail again and exceed max_failures=1."""
    out = tmp_path / "two"
    summary = run_training(
        config_for(fer_data, out, workers=2, epochs=2, fail_at_epoch=1, max_failures=1, batch_size=64)
    )
    with open(out / "history.csv") as handle:
        history = list(csv.DictReader(handle))
    assert [int(float(row["epoch"])) for row in history] == [1, 2]
    assert all(float(row["workers"]) == 2 for row in history)
    assert summary["metrics"]["epochs_run"] == 2


def test_task_mismatch_is_a_clear_error(fer_data, tmp_path):
    with pytest.raises(ConfigError, match="--task"):
        run_training(config_for(fer_data, tmp_path / "x", task="gender"))


def test_a_request_the_cluster_cannot_hold_is_refused_before_anything_starts(fer_data, tmp_path):
    """Issue 18: `--workers 5` on the 2-CPU test cluster, or a GPU on a cluster without one, fails with the flag and
    the numbers, and no output folder is made (nothing ran)."""
    from faceray.resources import ResourceError

    with pytest.raises(ResourceError, match="--workers 5 needs .* this cluster has 2 CPUs"):
        run_training(config_for(fer_data, tmp_path / "three", workers=5))
    with pytest.raises(ResourceError, match="no GPU"):
        run_training(config_for(fer_data, tmp_path / "gpu", gpus_per_worker=1))
    assert not (tmp_path / "three").exists() and not (tmp_path / "gpu").exists()


def run_readme_readback(out: Path, tmp_path: Path) -> str:
    """docs/training.md's read-back block, run in a fresh Python where `runs/emotion` is the tracked model directory."""
    import os
    import re
    import subprocess
    import sys
    import textwrap

    readme = (Path(__file__).resolve().parents[2] / "docs" / "training.md").read_text()
    block = re.search(r"<!-- mlflow-readback -->\s*```python\n(.*?)```", readme, re.S)
    assert block, "docs/training.md's mlflow-readback block is missing"
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "emotion").symlink_to(out)
    environment = {key: value for key, value in os.environ.items() if key != "MLFLOW_ALLOW_FILE_STORE"}
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(block.group(1))],
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_a_training_run_is_tracked_in_mlflow_and_tensorboard(trained, tmp_path):
    """--tracking, on the trained model directory: MLflow's file store read back (params, metrics per epoch, card,
    plots and model files), and TensorBoard's event files read back."""
    from mlflow.tracking import MlflowClient

    from faceray.train.experiments import log_training

    out, _ = trained
    history = list(csv.DictReader(open(out / "history.csv")))
    settings = {"lr": 0.001, "model": "residual", "data": "fer48"}
    where = log_training(out, settings, f"mlflow:{(tmp_path / 'mlruns').as_uri()}")
    client = MlflowClient(where["uri"])
    run = client.get_run(where["run_id"])
    assert run.data.params["lr"] == "0.001" and run.data.tags["faceray.task"] == "emotion"
    losses = client.get_metric_history(run.info.run_id, "loss")
    assert [metric.step for metric in losses] == [int(float(row["epoch"])) for row in history]
    assert run.data.metrics["test_accuracy"] == json.loads((out / "evaluation.json").read_text())["accuracy"]
    artefacts = {item.path for item in client.list_artifacts(run.info.run_id)}
    assert {"model_card.json", "plots", "model"} <= artefacts
    assert {"model/model.keras", "model/model.onnx"} <= {
        item.path for item in client.list_artifacts(run.info.run_id, "model")
    }
    assert json.loads((out / "tracking.json").read_text())["run_id"] == run.info.run_id
    printed = run_readme_readback(out, tmp_path)
    assert printed.split() == ["0.001", str(run.data.metrics["test_accuracy"])]

    where = log_training(out, settings, "tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(where["logdir"], size_guidance={"tensors": 0})
    events.Reload()
    steps = [event.step for event in events.Tensors("loss")]
    assert steps == [int(float(row["epoch"])) for row in history] and "test_accuracy" in events.Tags()["tensors"]
