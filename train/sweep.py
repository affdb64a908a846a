"""`faceray sweep`: Ray Tune over the training code: every trial runs `faceray train`'s loop (train.pipeline).

Output folder:
  results.csv     one row per trial: its config, best validation accuracy and loss, best epoch, status, time
  best.json       the winning trial's config and metrics (best validation accuracy)
  curves.png      every trial's validation accuracy per epoch
  trials/<id>/    each trial's model directory;  final/  the --final model;  tune/  Tune's state (resume)
  progress/       each one-worker trial's lines inside epochs (relayed to the console)
"""

from __future__ import annotations

import contextlib
import csv
import math
import os
import time
from pathlib import Path
from typing import Any

from faceray.config import config_to_dict, location, resolve_config, write_json
from faceray.storage import Location, local_folder, staging_folder
from faceray.train.config import TrainConfig
from faceray.train.pipeline import training_data
from faceray.train.sweep_config import SweepConfig
from faceray.train.sweep_space import read_space, to_tune_space

METRIC, MODE = "val_accuracy", "max"
TUNE_DIR, EXPERIMENT = "tune", "sweep"


def run_trial(
    params: dict[str, Any], base: dict[str, Any], plan: dict[str, Any], in_ray_train: bool, progress_dir: str = ""
) -> None:
    """One Tune trial: the sweep's base settings plus this trial's sampled values.

    One worker trains right here, in the trial's process (`train_in_process`: no Train controller, no worker process,
    no Ray Data tasks); more workers run `run_training` (Ray Train) from the trial. Same loop, metrics and outputs.
    With `progress_dir` (a local folder of the sweep), a one-worker trial appends its lines inside epochs to
    `<trial id>.log` there, and the sweep's console relays them (`follow_trial_lines`)."""
    from ray import tune

    from faceray.train.pipeline import run_training, train_in_process

    sampled = dict(params)
    trial_id = tune.get_context().get_trial_id()
    trial_out = Location.of(base["out"]) / "trials" / trial_id
    config = resolve_config(TrainConfig, {**base, **sampled, "out": trial_out.uri})
    started = time.perf_counter()

    def finished(summary: dict[str, Any]) -> None:
        write_json(
            trial_out / "trial.json",
            {"trial_id": trial_id, "sampled": sampled, "seconds": time.perf_counter() - started, "summary": summary},
        )

    if config.workers == 1 and not in_ray_train:

        def report(metrics: dict[str, float], folder: str) -> None:
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))

        from faceray.train.pipeline import EpochLog

        checkpoint = tune.get_checkpoint()
        cpus = float(plan["chosen"]["cpus_per_trial_worker"])
        lines = EpochLog(Path(progress_dir) / f"{trial_id}.log") if progress_dir else None
        if checkpoint is None:
            train_in_process(config, report, cpus=cpus, resource_plan=plan, finished=finished, log=lines)
        else:
            with checkpoint.as_directory() as folder:
                train_in_process(
                    config,
                    report,
                    restore_from=Path(folder),
                    cpus=cpus,
                    resource_plan=plan,
                    finished=finished,
                    log=lines,
                )
    else:
        from ray.tune.integration.ray_train import TuneReportCallback

        finished(run_training(config, callbacks=[TuneReportCallback()], log=None))


def train_final_in_task(config: TrainConfig, log: Any) -> dict[str, Any]:
    """--final with one worker: the trials' in-process training, in one Ray task holding the CPUs of the largest node
    (no Train controller or worker group to start); its epoch lines reach `log` through OUT/final/epochs.log."""
    import ray

    from faceray.resources import plan_sweep
    from faceray.runtime import read_cluster
    from faceray.train.pipeline import EPOCH_LOG, EpochLog, follow_lines

    plan = plan_sweep(read_cluster(), trials=1, max_concurrent=1)
    cpus = float(plan.chosen["cpus_per_trial_worker"])

    def final(settings: dict[str, Any], progress: Path) -> dict[str, Any]:
        from faceray.train.pipeline import train_in_process

        return train_in_process(
            TrainConfig(**settings),
            report=lambda metrics, folder: None,
            cpus=cpus,
            log=EpochLog(progress),
            resource_plan=plan.to_dict(),
        )

    task = ray.remote(num_cpus=cpus, max_retries=0)(final)
    if log is not None:
        log(f"final: {plan.line()}")
    # The task's epoch lines: a local file, beside the outputs when they are local, else in a temporary folder.
    with staging_folder(Location.of(str(config.out))) as folder:
        progress = folder / EPOCH_LOG
        relay = (
            follow_lines(progress, lambda line: log("  final " + line)) if log is not None else contextlib.nullcontext()
        )
        with relay:
            return ray.get(task.remote(config_to_dict(config), progress))


class follow_trial_lines:
    """Context manager: a thread that relays the lines inside epochs (`step S/N`) that one-worker trials append to
    `folder/<trial id>.log`, as `trial <id> <line>`, every `interval_s` (the epoch lines come from TrialProgress)."""

    def __init__(self, folder: Path | None, log: Any, interval_s: float = 1.0) -> None:
        import threading

        self.folder, self.log, self.interval_s = folder, log, interval_s
        self.offsets: dict[Path, int] = {}
        if folder is not None and folder.is_dir():  # a resumed sweep: what earlier runs wrote is not shown again
            self.offsets = {path: path.stat().st_size for path in folder.glob("*.log")}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True, name="faceray-trial-lines")

    def _read_new(self) -> None:
        if self.folder is None or not self.folder.is_dir():
            return
        from faceray.train.pipeline import new_lines

        for path in sorted(self.folder.glob("*.log")):
            lines, self.offsets[path] = new_lines(path, self.offsets.get(path, 0))
            for line in lines:
                if "  step " in line:
                    self.log(f"trial {path.stem} {line}")

    def _run(self) -> None:
        while not self.stop.wait(self.interval_s):
            self._read_new()

    def __enter__(self) -> follow_trial_lines:
        if self.folder is not None and self.log is not None:
            self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        if self.thread.is_alive():
            self.thread.join()


_CONSOLE: dict[str, Any] = {"log": None}  # the running sweep's `log`, for callbacks Tune restores from a saved sweep


def _console_line(line: str) -> None:
    if _CONSOLE["log"] is not None:
        _CONSOLE["log"](line)


def trial_progress(log: Any, epochs: int, keys: list[str]) -> Any:
    """A Tune callback that gives `log` one line per trial epoch and one when a trial ends (instead of Tune's tables)."""
    from ray.tune import Callback

    class TrialProgress(Callback):
        def __init__(self, log: Any, epochs: int, keys: list[str]) -> None:
            self.log, self.epochs, self.keys = log, epochs, keys

        def __getstate__(self) -> dict[str, Any]:  # Tune saves its callbacks with the experiment: not the console
            return {"epochs": self.epochs, "keys": self.keys}

        def __setstate__(self, state: dict[str, Any]) -> None:  # a resumed sweep: this run's console
            self.log, self.epochs, self.keys = _console_line, state["epochs"], state["keys"]

        def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
            line = f"{_trial_name(trial, self.keys)} epoch {int(result.get('epoch', 0))}/{self.epochs}"
            if METRIC in result:
                line += f"  val_acc {result[METRIC]:.3f}  val_loss {result.get('val_loss', math.nan):.4f}"
            self.log(line + f"  {result.get('images_per_s', 0):.0f} img/s")

        def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            self.log(f"{_trial_name(trial, self.keys)} ended")

        def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            self.log(f"{_trial_name(trial, self.keys)} failed (see results.csv)")

    return TrialProgress(log, epochs, keys)


def _trial_name(trial: Any, keys: list[str]) -> str:
    sampled = " ".join(f"{key}={value}" for key, value in (trial.config or {}).items() if key in keys)
    return f"trial {trial.trial_id} ({sampled})"


def trials_and_workers(space: dict[str, Any], samples: int, gpus_per_worker: float = 0.0) -> tuple[int, int, float]:
    """How many trials a space makes (grid points x samples), the most workers and GPUs per worker any trial asks
    (`gpus_per_worker`, the sweep's flag, unless the space sets it)."""
    from faceray.train.sweep_space import grid_size

    def largest(name: str, default: float) -> float:
        value = space.get(name, default)
        return max(value) if isinstance(value, list) else value if isinstance(value, (int, float)) else default

    return grid_size(space) * samples, int(largest("workers", 1)), float(largest("gpus_per_worker", gpus_per_worker))


def trial_rows(result_grid: Any, space_keys: list[str]) -> list[dict[str, Any]]:
    """One row per trial from Tune's results (metrics history included)."""
    rows = []
    for result in result_grid:
        trial_config = result.config or {}
        config = {key: trial_config.get(key) for key in space_keys}
        frame = result.metrics_dataframe
        trial_id = (result.metrics or {}).get("trial_id") or (Path(result.path).name if result.path else "?")
        row: dict[str, Any] = {"trial_id": trial_id, **config}
        if frame is not None and len(frame) and METRIC in frame:
            best = frame.loc[frame[METRIC].idxmax()]
            row.update(
                best_val_accuracy=float(best[METRIC]),
                best_val_loss=float(frame["val_loss"].min()),
                best_epoch=int(best["epoch"]),
                epochs_run=int(frame["epoch"].max()),
                seconds=float(frame["epoch_s"].sum()),
            )
            curve = frame[["epoch", METRIC]].values.tolist()
        else:
            row.update(best_val_accuracy=math.nan, best_val_loss=math.nan, best_epoch=0, epochs_run=0, seconds=0.0)
            curve = []
        if result.error is not None:
            row["status"] = "failed: " + str(result.error).strip().splitlines()[-1][:160]
        elif (
            row["epochs_run"]
            and row["epochs_run"] < int(trial_config.get("epochs", 0) or 0)
            and not _stopped_by_plateau(result)
        ):
            row["status"] = "stopped early (ASHA)"
        else:
            row["status"] = "finished"
        row["_curve"] = curve
        row["_trial_dir"] = str(result.path) if result.path else ""
        rows.append(row)
    return rows


def _stopped_by_plateau(result: Any) -> bool:
    frame = result.metrics_dataframe
    return bool(
        frame is not None
        and len(frame)
        and "best_epoch" in frame
        and int(frame["epoch"].max()) - int(frame["best_epoch"].iloc[-1])
        >= int((result.config or {}).get("patience", 10))
    )


def write_results(out: Path, rows: list[dict[str, Any]], space_keys: list[str]) -> dict[str, Any] | None:
    """results.csv, curves.png and best.json; returns the best row (None when every trial failed)."""
    from matplotlib.figure import Figure  # not pyplot: no global figure registry to close or share between threads
    from matplotlib.ticker import MaxNLocator

    columns = [
        "trial_id",
        *space_keys,
        "best_val_accuracy",
        "best_val_loss",
        "best_epoch",
        "epochs_run",
        "status",
        "seconds",
    ]
    with open(out / "results.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    figure = Figure(figsize=(7, 4))
    axis = figure.subplots()
    for row in rows:
        if row["_curve"]:
            epochs, values = zip(*row["_curve"])
            axis.plot(
                epochs,
                values,
                marker="o",
                label=f"{row['trial_id']} " + " ".join(f"{key}={row[key]}" for key in space_keys),
            )
    axis.set_xlabel("epoch")
    axis.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole: no 1.2, 1.4, ...
    axis.set_ylabel("validation accuracy")
    axis.set_title("sweep: validation accuracy per trial")
    if any(row["_curve"] for row in rows):
        axis.legend(fontsize=6)
    figure.tight_layout()
    figure.savefig(out / "curves.png", dpi=100)
    finished = [
        row for row in rows if not row["status"].startswith("failed") and not math.isnan(row["best_val_accuracy"])
    ]
    if not finished:
        return None
    best = max(finished, key=lambda row: (row["best_val_accuracy"], -row["best_val_loss"]))
    write_json(out / "best.json", {key: value for key, value in best.items() if not key.startswith("_")})
    return best


def format_table(rows: list[dict[str, Any]], space_keys: list[str]) -> str:
    header = ["trial", *space_keys, "val_acc", "val_loss", "best_ep", "status"]
    lines = [header]
    for row in rows:
        lines.append(
            [
                row["trial_id"],
                *(str(row[key]) for key in space_keys),
                f"{row['best_val_accuracy']:.3f}",
                f"{row['best_val_loss']:.3f}",
                str(row["best_epoch"]),
                row["status"],
            ]
        )
    widths = [max(len(str(line[index])) for line in lines) for index in range(len(header))]
    return "\n".join("  ".join(str(cell).ljust(width) for cell, width in zip(line, widths)) for line in lines)


def run_sweep(config: SweepConfig, log: Any = print, verbose: int = 0, stop: Any = None) -> dict[str, Any]:
    """Run (or resume) the sweep; returns {"rows", "best", "final"}. Ray must be initialised.

    The resource plan (faceray.resources.plan_sweep) comes first: a sweep the cluster cannot hold fails at once.
    With `stop` (faceray.stopping), a stop request that ended Tune early raises `Stopped` once its state is saved."""
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    space = read_space(config.space)
    space.setdefault("epochs", config.epochs)
    meta = training_data(config.data, config.task, verify=True)  # once, for every trial
    from faceray.resources import plan_sweep
    from faceray.runtime import read_cluster

    trials, workers, gpus = trials_and_workers(space, config.trials, config.gpus_per_worker)
    plan = plan_sweep(read_cluster(), trials, config.max_concurrent, workers, config.trial_cpus, gpus)
    if log is not None:
        log(plan.line())
    share = float(plan.chosen["cpus_per_trial_worker"])
    out = location(config.out, "--out", output=True)
    out.make_dir()
    write_json(
        out / "sweep_config.json", {**config_to_dict(config), "space_file": space, "resource_plan": plan.to_dict()}
    )
    base = {
        "data": location(config.data, "--data").uri,
        "task": meta.task,
        "out": out.uri,
        "cpus_per_worker": share,
        "gpus_per_worker": config.gpus_per_worker,
        "precision": config.precision,
        "jit": config.jit,
        "max_failures": 0,
    }
    in_trial = workers == 1 and not config.trials_in_ray_train
    param_space = to_tune_space(space)
    max_epochs = space["epochs"] if isinstance(space["epochs"], int) else config.epochs
    space_keys = [key for key in space if key != "epochs" or isinstance(space["epochs"], (list, dict))]
    varying = [key for key in space if isinstance(space[key], (list, dict))]
    scheduler = (
        ASHAScheduler(
            time_attr="epoch", max_t=max_epochs, grace_period=min(config.grace_period, max_epochs), reduction_factor=2
        )
        if config.scheduler == "asha"
        else FIFOScheduler()
    )
    # A one-worker trial trains in its own process and holds its CPUs; a Ray Train trial only waits on its
    # workers (which hold theirs), so it takes a token share.
    # Trials' lines inside epochs: a local folder the sweep's console follows (a local --out only: a trial on
    # another node, or an --out in object storage, shows its epoch lines alone).
    progress_dir = Path(out.path) / "progress" if out.is_local and log is not None else None
    if progress_dir is not None:
        progress_dir.mkdir(parents=True, exist_ok=True)
    trial = tune.with_parameters(
        run_trial,
        base=base,
        plan=plan.to_dict(),
        in_ray_train=not in_trial,
        progress_dir=str(progress_dir or ""),
    )
    trainable = tune.with_resources(
        trial, {"CPU": share if in_trial else 0.01, **({"GPU": gpus} if in_trial and gpus else {})}
    )
    # Tune's experiment state and checkpoints: OUT/tune, on the local disk or in object storage alike.
    storage = None if out.is_local else out.filesystem
    experiment = out / TUNE_DIR / EXPERIMENT
    if tune.Tuner.can_restore(experiment.path, storage_filesystem=storage):
        tuner = tune.Tuner.restore(
            experiment.path,
            storage_filesystem=storage,
            trainable=trainable,
            param_space=param_space,
            resume_unfinished=True,
            resume_errored=False,
            restart_errored=False,
        )
    else:
        tuner = tune.Tuner(
            trainable,
            param_space=param_space,
            tune_config=tune.TuneConfig(
                metric=METRIC,
                mode=MODE,
                num_samples=config.trials,
                scheduler=scheduler,
                max_concurrent_trials=int(plan.chosen["concurrent_trials"]),
            ),
            run_config=tune.RunConfig(
                name=EXPERIMENT,
                storage_path=(out / TUNE_DIR).path,
                storage_filesystem=storage,
                verbose=verbose,
                callbacks=[trial_progress(log, max_epochs, varying)] if log is not None else None,
                checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
            ),
        )
    # Tune's own console output: none at verbose 0 (its newer output engine prints an experiment table even then);
    # faceray's TrialProgress gives one line per trial epoch instead.
    saved_output = os.environ.get("RAY_AIR_NEW_OUTPUT")
    if verbose == 0:
        os.environ["RAY_AIR_NEW_OUTPUT"] = "0"
    _CONSOLE["log"] = log
    try:
        with follow_trial_lines(progress_dir, log):
            result_grid = tuner.fit()
    finally:
        _CONSOLE["log"] = None
    if stop is not None and stop.requested:  # Tune ended its trials early, its state saved: nothing more to do
        raise stop.stopped("the sweep (finished trials and the trials' last checkpoints are kept)")
        if saved_output is None:
            os.environ.pop("RAY_AIR_NEW_OUTPUT", None)
        else:
            os.environ["RAY_AIR_NEW_OUTPUT"] = saved_output
    rows = trial_rows(result_grid, space_keys)
    with local_folder(out) as work:  # Matplotlib and csv write local files; uploaded for object storage
        best = write_results(work, rows, space_keys)
    summary: dict[str, Any] = {"rows": rows, "best": best, "final": None, "space_keys": space_keys}
    if config.final and best is not None:
        from faceray.train.pipeline import run_training

        chosen = {key: best[key] for key in space_keys}
        final_config = resolve_config(
            TrainConfig,
            {
                **base,
                **chosen,
                "final_epochs": max(1, int(best["best_epoch"])),
                "out": (out / "final").uri,
                "max_failures": 1,
                "cpus_per_worker": None,
                "tracking": config.tracking,  # the final model is a run of its own
            },
        )
        if final_config.workers == 1 and not config.trials_in_ray_train:
            summary["final"] = train_final_in_task(final_config, log)
        else:
            summary["final"] = run_training(final_config, log=log)
        write_json(
            out / "best.json", {**{k: v for k, v in best.items() if not k.startswith("_")}, "final": summary["final"]}
        )
    if config.tracking:
        from faceray.train.experiments import log_sweep

        with local_folder(out, fetch=True) as work:  # the results files as artefacts; tensorboard/ uploaded back
            summary["tracking"] = log_sweep(work, config_to_dict(config), rows, config.tracking, out.uri)
    return summary
