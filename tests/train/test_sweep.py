"""Sweeps with Ray Tune on sample data: every trial in the table, failures do not stop it, resume, --final."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest

from faceray.config import ConfigError, resolve_config
from train.sweep import format_table, run_sweep, write_results
from train.sweep_config import SweepConfig
from train.sweep_space import grid_size, read_space

SPACES = Path(__file__).resolve().parents[2] / "train" / "spaces"


def test_shipped_spaces_load():
    report = read_space(SPACES / "report.yaml")
    assert report["lr"] == [1e-2, 1e-3, 1e-4] and report["augment"] == ["off", "paper"]
    assert grid_size(report) == 12
    random_space = read_space(SPACES / "random.yaml")
    assert "loguniform" in random_space["lr"]


def test_bad_spaces_are_clear_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("learning_rate: [1, 2]\ndata: x\nlr: {gaussian: [0, 1]}\n")
    with pytest.raises(ConfigError) as caught:
        read_space(bad)
    message = str(caught.value)
    assert "learning_rate" in message and "'data'" in message and "gaussian" not in message.split("lr")[0]


def test_best_is_the_highest_validation_accuracy(tmp_path):
    rows = [
        {"trial_id": "a", "lr": 0.01, "best_val_accuracy": 0.5, "best_val_loss": 1.0, "best_epoch": 2, "epochs_run": 3,
         "status": "finished", "seconds": 1.0, "_curve": [[1, 0.4], [2, 0.5]]},
        {"trial_id": "b", "lr": 0.001, "best_val_accuracy": 0.7, "best_val_loss": 1.2, "best_epoch": 3, "epochs_run": 3,
         "status": "finished", "seconds": 1.0, "_curve": [[1, 0.6], [3, 0.7]]},
        {"trial_id": "c", "lr": 0.1, "best_val_accuracy": math.nan, "best_val_loss": math.nan, "best_epoch": 0,
         "epochs_run": 0, "status": "failed: diverged", "seconds": 0.0, "_curve": []},
    ]
    best = write_results(tmp_path, rows, ["lr"])
    assert best["trial_id"] == "b" and json.loads((tmp_path / "best.json").read_text())["lr"] == 0.001
    assert (tmp_path / "curves.png").is_file()
    assert "failed" in format_table(rows, ["lr"])


@pytest.mark.slow
def test_sweep_with_a_failing_trial_resume_and_final(fer_data, tmp_path):
    space = tmp_path / "space.yaml"
    # Two trials; the second raises in a worker at its first epoch (and max_failures is 0 inside sweeps).
    space.write_text("lr: 1.0e-3\nfail_at_epoch: [-1, 0]\nbn_momentum: 0.9\naugment: 'off'\nbatch_size: 64\n")
    config = resolve_config(SweepConfig, dict(data=str(fer_data), space=str(space), epochs=2, scheduler="fifo",
                                              max_concurrent=2, trial_cpus=0.5, final=True, out=str(tmp_path / "sweep")))
    summary = run_sweep(config)
    out = tmp_path / "sweep"
    with open(out / "results.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 2
    statuses = sorted(row["status"].split(":")[0] for row in rows)
    assert statuses == ["failed", "finished"]
    finished = next(row for row in rows if row["status"] == "finished")
    best = json.loads((out / "best.json").read_text())
    assert best["trial_id"] == finished["trial_id"] and best["fail_at_epoch"] == -1
    assert int(finished["epochs_run"]) == 2 and (out / "curves.png").is_file()
    final = json.loads((out / "final" / "evaluation.json").read_text())
    assert final["split"] == "test" and summary["final"]["metrics"]["epochs_run"] == int(finished["best_epoch"])

    trial_file = next((out / "trials").glob("*/trial.json"))
    before = trial_file.stat().st_mtime_ns
    resumed = run_sweep(resolve_config(SweepConfig, dict(data=str(fer_data), space=str(space), epochs=2, scheduler="fifo",
                                                         out=str(out))))
    assert len(resumed["rows"]) == 2 and trial_file.stat().st_mtime_ns == before  # finished trial kept, not re-run
