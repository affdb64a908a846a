"""Sweeps with Ray Tune on sample data: every trial in the table, failures do not stop it, resume, --final."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest

from faceray.config import ConfigError, resolve_config
from faceray.train.sweep import format_table, run_sweep, write_results
from faceray.train.sweep_config import SweepConfig
from faceray.train.sweep_space import grid_size, read_space

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
        {
            "trial_id": "a",
            "lr": 0.01,
            "best_val_accuracy": 0.5,
            "best_val_loss": 1.0,
            "best_epoch": 2,
            "epochs_run": 3,
            "status": "finished",
            "seconds": 1.0,
            "_curve": [[1, 0.4], [2, 0.5]],
        },
        {
            "trial_id": "b",
            "lr": 0.001,
            "best_val_accuracy": 0.7,
            "best_val_loss": 1.2,
            "best_epoch": 3,
            "epochs_run": 3,
            "status": "finished",
            "seconds": 1.0,
            "_curve": [[1, 0.6], [3, 0.7]],
        },
        {
            "trial_id": "c",
            "lr": 0.1,
            "best_val_accuracy": math.nan,
            "best_val_loss": math.nan,
            "best_epoch": 0,
            "epochs_run": 0,
            "status": "failed: diverged",
            "seconds": 0.0,
            "_curve": [],
        },
    ]
    best = write_results(tmp_path, rows, ["lr"])
    assert best["trial_id"] == "b" and json.loads((tmp_path / "best.json").read_text())["lr"] == 0.001
    assert (tmp_path / "curves.png").is_file()
    assert "failed" in format_table(rows, ["lr"])


def test_the_sweep_plot_has_whole_epochs_on_its_axis(tmp_path, monkeypatch):
    import matplotlib.figure

    drawn = []
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", lambda figure, *args, **kwargs: drawn.append(figure))
    row = {"trial_id": "a", "lr": 0.01, "best_val_accuracy": 0.5, "best_val_loss": 1.0, "best_epoch": 2}
    row |= {"epochs_run": 2, "status": "finished", "seconds": 1.0, "_curve": [[1, 0.4], [2, 0.5]]}
    write_results(tmp_path, [row], ["lr"])
    ticks = drawn[0].axes[0].get_xticks()
    assert len(ticks) >= 2 and all(float(tick).is_integer() for tick in ticks)  # 1, 2: not 1.2, 1.4, ...


@pytest.mark.slow
def test_sweep_fits_the_machine_with_a_failing_trial_resume_and_final(fer_data, bucket, tmp_path):
    """Issue 18's sweep shape on this machine's shipped defaults (no --trial-cpus): four grid points, ASHA, two at
    once; one trial raises at its first epoch (max_failures is 0 inside sweeps). Then resume, then --final.

    Data and outputs are in a bucket of the S3 test server (Tune's experiment state, the trials' and the final
    model's directories included); the demo's test runs a sweep on local folders."""
    import io

    import pyarrow.fs as pafs

    from faceray.storage import Location, upload_folder

    data = Location.of(f"{bucket}/fer48")
    upload_folder(fer_data, data)
    space = tmp_path / "space.yaml"
    space.write_text("lr: [1.0e-3, 3.0e-3]\nfail_at_epoch: [-1, 0]\nbn_momentum: 0.9\naugment: 'off'\nbatch_size: 64\n")
    out = Location.of(f"{bucket}/sweep")
    config = resolve_config(
        SweepConfig,
        dict(
            data=data.uri,
            space=str(space),
            epochs=2,
            scheduler="asha",
            max_concurrent=2,
            final=True,
            out=out.uri,
            tracking=f"mlflow:{(tmp_path / 'mlruns').as_uri()}",
        ),
    )
    summary = run_sweep(config)
    saved_plan = json.loads((out / "sweep_config.json").read_text())["resource_plan"]
    assert saved_plan["chosen"]["concurrent_trials"] == 2 and saved_plan["chosen"]["trial_runs"] == "in the Tune trial"
    rows = list(csv.DictReader(io.StringIO((out / "results.csv").read_text())))
    assert len(rows) == 4
    statuses = sorted(row["status"].split(":")[0] for row in rows)
    assert statuses[:2] == ["failed", "failed"] and all(
        status in ("finished", "stopped early (ASHA)") for status in statuses[2:]
    )
    finished = [row for row in rows if not row["status"].startswith("failed")]
    best = json.loads((out / "best.json").read_text())
    assert best["trial_id"] in {row["trial_id"] for row in finished} and best["fail_at_epoch"] == -1
    assert max(int(row["epochs_run"]) for row in finished) == 2 and (out / "curves.png").is_file()
    trial_dir = out / "trials" / best["trial_id"]
    assert (trial_dir / "model.keras").is_file() or int(best["epochs_run"]) < 2  # a trial ASHA stopped writes no model
    final = json.loads((out / "final" / "evaluation.json").read_text())
    assert final["split"] == "test" and summary["final"]["metrics"]["epochs_run"] == int(best["best_epoch"])
    assert (out / "final" / "model.onnx").is_file() and (out / "tune" / "sweep").is_dir()
    # --tracking: a parent run, one child per trial (read back from MLflow's file store), and the final model's run
    from mlflow.tracking import MlflowClient

    client = MlflowClient(summary["tracking"]["uri"])
    children = summary["tracking"]["trial_runs"]
    assert set(children) == {row["trial_id"] for row in rows}
    best_run = client.get_run(children[best["trial_id"]])
    assert (
        best_run.data.params["lr"] == str(best["lr"])
        and best_run.data.tags["mlflow.parentRunId"] == summary["tracking"]["run_id"]
    )
    assert [metric.step for metric in client.get_metric_history(best_run.info.run_id, "val_accuracy")][0] == 1
    final_run = client.get_run(json.loads((out / "final" / "tracking.json").read_text())["run_id"])
    assert final_run.data.metrics["test_accuracy"] == pytest.approx(final["accuracy"])

    selector = pafs.FileSelector((out / "trials").path, recursive=True)
    trial_file = next(
        Location(out.filesystem, info.path, info.path)
        for info in out.filesystem.get_file_info(selector)
        if info.base_name == "trial.json"
    )
    before = (trial_file.info().mtime, trial_file.read_text())
    resumed = run_sweep(
        resolve_config(SweepConfig, dict(data=data.uri, space=str(space), epochs=2, scheduler="asha", out=out.uri))
    )
    assert len(resumed["rows"]) == 4  # restored from the bucket's experiment state: finished trials kept, not re-run
    assert (trial_file.info().mtime, trial_file.read_text()) == before


def test_a_sweep_the_cluster_cannot_hold_is_refused_before_anything_starts(fer_data, tmp_path):
    from faceray.resources import ResourceError

    space = tmp_path / "space.yaml"
    space.write_text("lr: [1.0e-4, 3.0e-4, 1.0e-3, 3.0e-3, 1.0e-2, 3.0e-2, 1.0e-1, 3.0e-1]\n")
    config = resolve_config(
        SweepConfig, dict(data=str(fer_data), space=str(space), max_concurrent=8, out=str(tmp_path / "sweep"))
    )
    with pytest.raises(
        ResourceError, match="--max-concurrent 8 needs .* this cluster has 2 CPUs.* --max-concurrent 4 or fewer"
    ):
        run_sweep(config)
    assert not (tmp_path / "sweep").exists()
