"""The Ray Train wrapper: data-parallel training over N workers fed by Ray Data, then the model directory.

Output directory (`--out`, a local folder or s3:// / gs://):
  model.keras, model_card.json         the best model (by validation loss) and its card
  history.csv, learning_curves.png     one row per epoch
  evaluation.json, confusion_matrix.png  accuracy, per-class P/R/F1, macro-F1, confusion matrix
  train_config.json                    the resolved config (written first)
  ray_results/                         Ray Train checkpoints (rerunning the same command resumes)
In object storage, Ray Train keeps its checkpoints there directly (`storage_filesystem`), and the files Keras and
Matplotlib write are made in a local staging folder and uploaded once written (`write_outputs`).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from faceray.config import ConfigError, config_to_dict, location, write_json
from faceray.faces import UNRECORDED_CROP, CropGeometry
from faceray.shards import (
    IngestManifest,
    ShardMetadata,
    check_labels,
    load_split_numpy,
    read_table,
    shard_files,
    verified_manifest,
)
from faceray.stopping import StopRequest
from faceray.storage import Location, local_copy, local_folder, staging_folder, upload_folder
from faceray.train.config import TrainConfig

RAY_RESULTS = "ray_results"
EPOCH_LOG = "epochs.log"  # the workers' epoch lines, relayed to the console (a local file; not uploaded)
RUN_NAME = "train"


def label_counts(data_dir: str | Path | Location, split: str, num_classes: int) -> np.ndarray:
    """Images per class in a split, read from the label column only."""
    counts = np.zeros(num_classes, np.int64)
    for path in shard_files(data_dir, split):
        labels = read_table(path, columns=["label"]).column("label").to_numpy()
        check_labels(labels, num_classes, path.uri)
        unknown = int(np.count_nonzero(labels < 0))
        if unknown:
            raise ConfigError(
                f"--data: {path} holds {unknown} images with an unknown label (-1); training needs labelled data: "
                "ingest again with the unknown-label filter on (--drop-unknown-gender)"
            )
        counts += np.bincount(labels, minlength=num_classes)[:num_classes]
    return counts


def class_weights_for(counts: np.ndarray) -> np.ndarray:
    """Loss weight per class, N / (K * n_c); classes absent from the data get weight 0."""
    present = counts > 0
    weights = np.zeros(len(counts), np.float32)
    weights[present] = counts.sum() / (present.sum() * counts[present])
    return weights


class EpochLog:
    """Rank 0's epoch lines, appended to a file in the run's folder; the driver tails it onto the console
    (`follow_lines`), so each line shows once, and the workers' own output can stay in Ray's logs."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def __call__(self, line: str) -> None:
        with open(self.path, "a") as handle:
            handle.write(line + "\n")


def new_lines(path: Path, offset: int) -> tuple[list[str], int]:
    """The complete lines appended to `path` after byte `offset`, and the offset after them (a line still being
    written is left for the next read)."""
    with open(path) as handle:
        handle.seek(offset)
        text = handle.read()
    complete = text[: text.rfind("\n") + 1]
    return complete.splitlines(), offset + len(complete.encode())


class follow_lines:
    """Context manager: a thread that gives `log` each new line appended to `path` while the block runs."""

    def __init__(self, path: Path, log: Any, interval_s: float = 0.5) -> None:
        import threading

        self.path, self.log, self.interval_s = path, log, interval_s
        self.offset = path.stat().st_size if path.exists() else 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True, name="faceray-epoch-lines")

    def _read_new(self) -> None:
        if not self.path.exists():
            return
        lines, self.offset = new_lines(self.path, self.offset)
        for line in lines:
            self.log(line)

    def _run(self) -> None:
        while not self.stop.wait(self.interval_s):
            self._read_new()

    def __enter__(self) -> follow_lines:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()
        self._read_new()


def train_loop_per_worker(loop_config: dict[str, Any]) -> None:
    """Ray Train worker: build the model under MultiWorkerMirroredStrategy, restore, train on this worker's part of
    each epoch (train.feed: its own shard reads, an order fixed by the seed), report each epoch and, every
    --checkpoint-every minutes or when the driver asks to stop, a checkpoint inside the epoch."""
    import ray.train
    import tensorflow as tf

    from faceray.train.feed import split_batches
    from faceray.train.loop import (
        Checkpoints,
        PlateauState,
        TrainingState,
        restore_training_state,
        run_epochs,
        save_training_state,
    )
    from faceray.train.precision import check_gpus

    config = TrainConfig(**loop_config["config"])
    gpus = check_gpus(config.gpus_per_worker)  # before TensorFlow's first op: a worker without its GPU stops here
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    # One worker needs no collective server: TensorFlow's binds every interface (its address is fixed), so a
    # single worker uses the same strategy API in-process and nothing listens beyond Ray's own loopback ports.
    # Workers with GPUs reduce gradients with NCCL, on CPUs with TensorFlow's ring all-reduce.
    if world > 1:
        implementation = (
            tf.distribute.experimental.CommunicationImplementation.NCCL
            if gpus
            else tf.distribute.experimental.CommunicationImplementation.RING
        )
        options = tf.distribute.experimental.CommunicationOptions(implementation=implementation)
        strategy = tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
    else:
        strategy = tf.distribute.MirroredStrategy()
    runner = build_runner(config, loop_config, strategy, config.batch_size * world)
    model, optimizer = runner.model, runner.optimizer

    state, best = TrainingState(plateau=PlateauState(lr=config.lr)), None
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as folder, strategy.scope():
            state, best = restore_training_state(Path(folder), model, optimizer)
    fresh = checkpoint is None

    data = Location.of(loop_config["data"])
    # A GPU consumes batches faster: keep more decoded ahead.
    feed = epoch_feed(config, data, loop_config["train_splits"], loop_config["keep"], rank, world, 4 if gpus else 2)

    def val_batches():
        return split_batches(data, "val", 256, rank, world)

    def before_epoch(epoch: int) -> None:
        if fresh and epoch == config.fail_at_epoch and rank == world - 1:
            raise RuntimeError(f"injected failure at epoch {epoch + 1} (fail_at_epoch, for tests)")

    def report(metrics: dict[str, float], state: TrainingState, best_weights: list[np.ndarray] | None) -> None:
        with tempfile.TemporaryDirectory() as folder:
            saved = None
            if rank == 0:
                save_training_state(Path(folder), model, optimizer, state, best_weights)
                saved = ray.train.Checkpoint.from_directory(folder)
            ray.train.report({key: float(value) for key, value in metrics.items()}, checkpoint=saved)

    def save_inside_epoch(state: TrainingState, best_weights: list[np.ndarray] | None) -> None:
        # "stopped": the driver sees this checkpoint registered and ends the run without waiting for Ray Train's
        # teardown (`stop_checkpoint`).
        report({"epoch": state.epoch, "step": state.step, "stopped": float(state.stopped)}, state, best_weights)

    stop_wanted = watch_stop_flag(loop_config.get("stop_flag"))
    run_epochs(
        runner,
        state,
        loop_config["epochs"],
        feed,
        val_batches if loop_config["has_val"] else None,
        config.patience,
        config.lr_patience,
        report,
        best_weights=best,
        before_epoch=before_epoch,
        log=EpochLog(loop_config["progress_file"]) if rank == 0 and loop_config.get("progress_file") else None,
        extra_metrics={"workers": float(world)},
        checkpoints=Checkpoints(save_inside_epoch, loop_config["checkpoint_every_s"], stop_wanted),
        progress_every_s=config.progress_every,
    )


def epoch_feed(
    config: TrainConfig,
    data: Location,
    splits: Any,
    keep: list[float] | None,
    rank: int = 0,
    world: int = 1,
    depth: int = 2,
) -> Any:
    """The `EpochFeed` of worker `rank` of `world` (train.feed: its own shard reads, an order fixed by --seed and the
    epoch, `depth` batches prefetched by a thread); `keep`: --balance downsample's per-class fractions."""
    from faceray.train.feed import FeedPlan, prefetched, worker_batches
    from faceray.train.loop import EpochFeed

    plan = FeedPlan.read(data, splits)
    return EpochFeed(
        steps=lambda epoch: plan.steps(config.batch_size, config.seed, epoch, world, keep),
        batches=lambda epoch, start: prefetched(
            worker_batches(plan, config.batch_size, config.seed, epoch, rank, world, keep, start), depth=depth
        ),
    )


def make_stop_flag() -> str:
    """A fresh key in Ray's key-value store (the GCS) that the driver sets when asked to stop; every worker polls
    it (`watch_stop_flag`). No actor: a process of its own would cost ~60 MB for one bit."""
    import uuid

    return f"faceray-stop-{uuid.uuid4().hex}"


def set_stop_flag(key: str) -> None:
    from ray.experimental.internal_kv import _internal_kv_put

    _internal_kv_put(key, b"1", namespace="faceray")


def watch_stop_flag(key: str | None, interval_s: float = 0.5) -> Any:
    """A function that says whether the driver's stop flag `key` is set, polled by a daemon thread every
    `interval_s` (None: a function that is always False)."""
    import threading

    if not key:
        return lambda: False
    from ray.experimental.internal_kv import _internal_kv_get

    asked = threading.Event()

    def poll() -> None:
        while not asked.is_set():
            try:
                if _internal_kv_get(key, namespace="faceray"):
                    asked.set()
            except Exception:  # the GCS is gone: the run is ending anyway
                asked.set()
            asked.wait(interval_s)

    threading.Thread(target=poll, daemon=True, name="faceray-stop-flag").start()
    return asked.is_set


def build_runner(config: TrainConfig, settings: dict[str, Any], strategy: Any, global_batch_size: int) -> Any:
    """The model, optimizer and compiled steps of one worker, the same for Ray Train workers and in-trial training:
    seeded, the augmentation in float32, the model under `--precision` (loss scaling for mixed_float16) and
    `--jit`. `settings` are loop_settings(...): input_shape, num_classes, class_weights."""
    import keras

    from faceray.train.augment import build_augmenter
    from faceray.train.loop import StepRunner
    from faceray.train.models import build_model
    from faceray.train.precision import set_precision, with_loss_scaling

    keras.utils.set_random_seed(config.seed)
    set_precision("float32")  # the augmentation works on float pixels 0..255, whatever the model's precision
    augmenter = build_augmenter(config.augmentation(), seed=config.seed)
    set_precision(config.precision)
    with strategy.scope():
        model = build_model(config.model, settings["input_shape"], settings["num_classes"], config.bn_momentum)
        optimizer = with_loss_scaling(keras.optimizers.Adam(learning_rate=config.lr), config.precision)
    class_weights = np.asarray(settings["class_weights"], np.float32) if settings["class_weights"] else None
    return StepRunner(model, optimizer, strategy, global_batch_size, augmenter, class_weights, jit=config.jit)


@dataclasses.dataclass(frozen=True)
class RunSetup:
    """What both training paths (Ray Train, in a Tune trial) read from the data before the first step."""

    data: Location
    out: Path  # the local folder the outputs are written in: --out itself, or its staging folder (object storage)
    target: Location  # --out as given: where train_config.json, ray_results/ and (at the end) the outputs go
    meta: ShardMetadata
    labels: list[str]
    counts: np.ndarray  # images per class in what is trained on
    train_splits: tuple[str, ...]
    use_val: bool
    final: bool

    def keep_fractions(self) -> list[float]:
        """Per class, the fraction of rows `--balance downsample` keeps each epoch (the rarest class's count)."""
        present = self.counts[self.counts > 0]
        return [float(present.min() / count) if count else 0.0 for count in self.counts]


def training_data(data: str | Path | Location, task: str | None = None, verify: bool = False) -> ShardMetadata:
    """The metadata of an ingest output's training split, checked against `task`; with `verify`, every file of the
    output checked against its manifest's SHA-256s first (`verify_data`). Raises ConfigError naming --data or --task
    (train, sweep and their CLI: the CLI checks the metadata before Ray starts, the run verifies once)."""
    if verify:
        verify_data(data)
    try:
        meta = ShardMetadata.read(data, "train")
    except ValueError as error:
        raise ConfigError(f"--data: {error}") from None
    if task and task != meta.task:
        raise ConfigError(f"--task: {task!r} but {data} holds {meta.task!r} data")
    return meta


def verify_data(data: str | Path | Location, splits: list[str] | None = None) -> None:
    """Check an ingest output's files (of `splits`, default all) against the SHA-256s in its manifest, streaming;
    ConfigError with one line per damaged, missing or foreign file (its path, what is wrong, the fix). An output
    from before faceray recorded checksums has nothing to check (`faceray verify` says so)."""
    try:
        verified_manifest(data, splits)
    except ValueError as error:
        raise ConfigError("\n".join(f"--data: {line}" for line in str(error).splitlines())) from None


def prepare_run(
    config: TrainConfig,
    target: Location,
    work: Path,
    resource_plan: dict[str, Any] | None = None,
    verify: bool = True,
) -> RunSetup:
    """Check the data (its files against the manifest's SHA-256s with `verify`) and the output folder `target`
    (--out), write train_config.json (with the resource plan) into it; `work` is the local folder outputs are
    written in (`faceray.storage.staging_folder` of `target`). Raises ConfigError naming the flag."""
    data = location(config.data, "--data")
    meta = training_data(data, config.task, verify)
    check_output(config, target)
    write_json(target / "train_config.json", {**config_to_dict(config), "resource_plan": resource_plan})
    labels = list(meta.labels)
    final = config.final_epochs is not None
    counts = label_counts(data, "train", len(labels))
    has_val = bool(shard_files(data, "val"))
    splits: tuple[str, ...] = ("train",)
    if final and has_val:
        counts = counts + label_counts(data, "val", len(labels))
        splits = ("train", "val")
    return RunSetup(data, work, target, meta, labels, counts, splits, has_val and not final, final)


def loop_settings(config: TrainConfig, setup: RunSetup) -> dict[str, Any]:
    """The plain settings a training loop needs besides the config (JSON-able: they travel to Ray Train workers)."""
    return {
        "config": dataclasses.asdict(config),
        "input_shape": list(setup.meta.image_shape),
        "num_classes": len(setup.labels),
        "class_weights": class_weights_for(setup.counts).tolist() if config.balance == "class-weight" else None,
        "has_val": setup.use_val,
        "epochs": config.final_epochs if setup.final and config.final_epochs else config.epochs,
        "data": setup.data.uri,
        "train_splits": list(setup.train_splits),
        "keep": setup.keep_fractions() if config.balance == "downsample" else None,
    }


def check_output(config: TrainConfig, out: Location) -> None:
    """Refuse to resume a run in `out` that was made with other settings."""
    saved = out / "train_config.json"
    if not saved.is_file():
        return
    previous = json.loads(saved.read_text())
    current = config_to_dict(config)
    ignored = {
        "address",
        "out",
        "fail_at_epoch",
        "max_failures",
        "cpus_per_worker",
        "gpus_per_worker",
        "tracking",
        "checkpoint_every",
        "progress_every",
    }
    differing = sorted(key for key in current if key not in ignored and previous.get(key) != current[key])
    if differing:
        raise ConfigError(f"--out: {out} holds a run with other settings ({', '.join(differing)}); use another --out")


def run_training(
    config: TrainConfig,
    callbacks: list[Any] | None = None,
    log: Any = print,
    stop: StopRequest | None = None,
    finished_checked: bool = False,
) -> dict[str, Any]:
    """Train with Ray Train, write the model directory, evaluate; returns a summary. Ray must be initialised.

    A finished run of the same settings in --out is returned as it is (finished_run), unless the caller has
    already asked (`finished_checked`, as `faceray train` does before starting Ray) or it is a sweep's trial.

    The resource plan (faceray.resources.plan_training) is made first: a request the cluster cannot hold fails
    here, in seconds, and the plan goes into train_config.json and, through `log`, to the console. With `stop`
    (faceray.stopping.graceful_stop), a signal makes the workers save a checkpoint at their next step and return;
    then `Stopped` is raised with the epoch and step to resume from. Runs with `callbacks` (a sweep's Ray Train
    trials) checkpoint at epoch ends only: each report is a result to Tune."""
    from faceray.resources import plan_training
    from faceray.runtime import read_cluster

    target = location(config.out, "--out", output=True)
    checks = callbacks is None and not finished_checked  # a sweep's trials report to Tune
    finished = finished_run(config, target, log) if checks else None
    if finished is not None:
        return finished
    plan = plan_training(read_cluster(), config.workers, config.cpus_per_worker, config.gpus_per_worker)
    if log is not None:
        log(plan.line())
    with staging_folder(target) as work:
        setup = prepare_run(config, target, work, plan.to_dict())
        progress_file = setup.out / EPOCH_LOG if log is not None else None
        flag = None
        if stop is not None:
            if stop.requested:
                raise stop.stopped("before training started (nothing to keep)")
            flag = make_stop_flag()
            stop.on_request(lambda: set_stop_flag(flag))
        trainer = make_trainer(config, setup, plan, callbacks, progress_file, flag)
        before = latest_checkpoint_name(setup.target)  # a stop made by an earlier run is not this one's
        saved = (
            (lambda: stop_checkpoint(setup.target, before) if stop.requested else None) if stop is not None else None
        )
        state, best_weights = fit_trainer(trainer, plan, progress_file, log, saved)
        if stop is not None and stop.requested:
            raise stop.stopped(stopped_where(state))
        if best_weights is None:
            raise RuntimeError("training finished without best weights in its checkpoint")
        return write_outputs(config, setup, state, best_weights)


def finished_run(config: TrainConfig, target: Location, log: Any = None) -> dict[str, Any] | None:
    """The summary of a finished run of the same settings in `target`, read from its files (and said to `log`); None
    when there is none, or with --tracking (the run is done again to be logged). The model card, last written with
    the ONNX export's record, means the run and its outputs are complete; a model.keras that is not the one the card
    recorded is said, and the run goes on from its last checkpoint, which writes it again. A finished `faceray train`
    run again changes nothing and starts no Ray Train workers (about 15 s, most of it TensorFlow's start-up in the
    worker)."""
    from faceray.model_card import CARD_FILE, ModelCard, check_model_file

    if config.tracking or not (target / CARD_FILE).is_file() or not (target / "evaluation.json").is_file():
        return None
    check_output(config, target)  # other settings are refused, as on a resume
    card = ModelCard.read(target)
    if not (card.extra.get("exports") or {}).get("onnx"):  # stopped between model.keras and its export: redo them
        return None
    try:
        check_model_file(target, card)
    except ValueError as error:  # the outputs are written again from the run's last checkpoint
        if log is not None:
            log(f"train: {error}; writing the model directory again from the last checkpoint")
        return None
    report = json.loads((target / "evaluation.json").read_text())
    if log is not None:
        log(f"train: {target.uri} holds this run, finished (its model_card.json): nothing to do")
    return {
        "out": target.uri,
        "metrics": card.extra.get("metrics", {}),
        "evaluation": {key: report[key] for key in ("split", "accuracy", "macro_f1", "chance_accuracy")},
        "already_finished": True,
    }


def latest_checkpoint(target: Location) -> dict[str, Any]:
    """Ray Train's record of the run's latest checkpoint ({"checkpoint_dir_name", "metrics"}; {} when none), from
    its checkpoint_manager_snapshot.json in OUT/ray_results."""
    snapshot = target / RAY_RESULTS / RUN_NAME / "checkpoint_manager_snapshot.json"
    try:
        return json.loads(snapshot.read_text()).get("latest_checkpoint_result") or {}
    except (OSError, ValueError):
        return {}


def latest_checkpoint_name(target: Location) -> str | None:
    return latest_checkpoint(target).get("checkpoint_dir_name")


def stop_checkpoint(target: Location, before: str | None) -> Location | None:
    """The checkpoint a stop request made in this run (not `before`, the latest when it started), once Ray Train
    has registered it as the run's latest, else None. The run can end from then on: rerunning resumes from it."""
    latest = latest_checkpoint(target)
    name = latest.get("checkpoint_dir_name")
    if not name or name == before or not (latest.get("metrics") or {}).get("stopped"):
        return None
    return target / RAY_RESULTS / RUN_NAME / name


def stopped_where(state: Any) -> str:
    """Where a stopped run's last checkpoint is: "at epoch 2, step 340" (1-based epoch) or "after epoch 2"."""
    return f"at epoch {state.epoch + 1}, step {state.step}" if state.step else f"after epoch {state.epoch}"


def make_trainer(
    config: TrainConfig,
    setup: RunSetup,
    plan: Any,
    callbacks: list[Any] | None,
    progress_file: Path | None,
    stop_flag: str | None = None,
) -> Any:
    """The Ray Train trainer of this run (TensorFlow's TF_CONFIG set up by train.tf_backend): the plan's CPUs per worker, the two latest checkpoints kept (each holds
    the best weights so far)."""
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.v2.api.data_parallel_trainer import DataParallelTrainer

    from faceray.train.tf_backend import TensorflowEnvironment

    checkpoint_every_s = 0.0 if callbacks else config.checkpoint_every * 60
    return DataParallelTrainer(
        train_loop_per_worker,
        backend_config=TensorflowEnvironment(),
        train_loop_config={
            **loop_settings(config, setup),
            "progress_file": str(progress_file or ""),
            "checkpoint_every_s": checkpoint_every_s,
            "stop_flag": stop_flag,
        },
        scaling_config=ScalingConfig(
            num_workers=config.workers,
            use_gpu=config.gpus_per_worker > 0,
            resources_per_worker={
                "CPU": plan.chosen["cpus_per_worker"],
                **({"GPU": config.gpus_per_worker} if config.gpus_per_worker else {}),
            },
        ),
        run_config=RunConfig(
            name=RUN_NAME,
            storage_path=(setup.target / RAY_RESULTS).path,  # locally the same folder as setup.out's
            storage_filesystem=None if setup.target.is_local else setup.target.filesystem,
            # controller_failure_limit 0: a worker group that cannot start (its start-up timeout,
            # RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S) ends the run with an error instead of retrying forever.
            failure_config=FailureConfig(max_failures=config.max_failures, controller_failure_limit=0),
            # The latest checkpoints, not the best: one inside an epoch is where a stopped run resumes.
            checkpoint_config=CheckpointConfig(num_to_keep=2),
            callbacks=callbacks,
        ),
    )


def fit_trainer(
    trainer: Any, plan: Any, progress_file: Path | None, log: Any, saved_early: Any = None
) -> tuple[Any, list[np.ndarray] | None]:
    """Run the trainer (relaying the workers' epoch lines from `progress_file` to `log`); returns the training
    state and best weights (None in a run stopped inside its first epoch) of its last checkpoint, or of the checkpoint
    `saved_early()` returns as soon as it returns one (a stopped run: Ray Train's teardown is not waited for). A
    worker group that could not start is said in the plan's words."""
    from faceray.train.state import read_training_state

    try:
        if progress_file is not None:
            with follow_lines(progress_file, log):
                result = fit_in_thread(trainer, saved_early)
        else:
            result = fit_in_thread(trainer, saved_early)
    except Exception as error:
        raise _explain_start_timeout(error, plan) from error
    if isinstance(result, Location):
        with local_copy(result) as folder:
            return read_training_state(Path(folder))
    if result.error is not None:
        raise _explain_start_timeout(result.error, plan)
    if result.checkpoint is None:
        raise RuntimeError("training finished without a checkpoint")
    with result.checkpoint.as_directory() as folder:
        return read_training_state(Path(folder))


def fit_in_thread(trainer: Any, early: Any = None) -> Any:
    """`trainer.fit()` in a helper thread, the main thread waiting: Ray Train then installs no SIGINT handler of its
    own (it would abort the workers without a checkpoint), and faceray.stopping's handlers run at once. Returns
    fit's result, or what `early()` returns as soon as it is not None (checked every 0.2 s)."""
    import threading

    outcome: dict[str, Any] = {}

    def fit() -> None:
        try:
            outcome["result"] = trainer.fit()
        except BaseException as error:  # raised again in the main thread
            outcome["error"] = error

    thread = threading.Thread(target=fit, daemon=True, name="faceray-train-fit")
    thread.start()
    while thread.is_alive():
        thread.join(0.2)
        found = early() if early is not None else None
        if found is not None:
            return found
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]


def _explain_start_timeout(error: BaseException, plan: Any) -> BaseException:
    """Ray Train's worker-group start timeout, said in the plan's words (other errors pass unchanged)."""
    text = f"{type(error).__name__}: {error}"
    if "WorkerGroupStartupTimeout" not in text and "worker group startup timed out" not in text.lower():
        return error
    return RuntimeError(
        f"Ray Train's workers did not start in time (RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S): "
        f"the plan was {plan.line()}; the cluster's free CPUs may be held by another job"
    )


def train_in_process(
    config: TrainConfig,
    report: Any,
    restore_from: Path | None = None,
    log: Any = None,
    cpus: float = 0.0,
    resource_plan: dict[str, Any] | None = None,
    finished: Any = None,
) -> dict[str, Any]:
    """One worker, in this process, without Ray Train or Ray Data: the same `run_epochs` core, checkpoint format and
    outputs as `run_training`. A single-worker sweep trial runs this inside its Tune trial (no Train controller or
    worker process to start, one TensorFlow import per trial). `report(metrics, folder)` is called after every epoch
    with a folder holding the checkpoint; `restore_from` resumes from one; `cpus` caps TensorFlow's thread pool;
    `finished(summary)` runs once the model directory is written, before the last report (a Tune scheduler may end
    the trial at that report)."""
    import tensorflow as tf

    from faceray.train.precision import check_gpus

    check_gpus(config.gpus_per_worker)
    if cpus >= 1:
        try:
            tf.config.threading.set_intra_op_parallelism_threads(int(cpus))
        except RuntimeError:  # TensorFlow already running in this process (a reused trial actor): keep its pool
            pass
    target = location(config.out, "--out")
    with staging_folder(target) as work:
        # The sweep verified its data once, before its trials.
        setup = prepare_run(config, target, work, resource_plan, verify=False)
        return _train_in_process(config, setup, report, restore_from, log, finished)


def _train_in_process(
    config: TrainConfig, setup: RunSetup, report: Any, restore_from: Path | None, log: Any, finished: Any
) -> dict[str, Any]:
    import tensorflow as tf

    from faceray.train.feed import split_batches
    from faceray.train.loop import (
        PlateauState,
        TrainingState,
        restore_training_state,
        run_epochs,
        save_training_state,
    )

    settings = loop_settings(config, setup)
    runner = build_runner(config, settings, tf.distribute.get_strategy(), config.batch_size)
    model, optimizer = runner.model, runner.optimizer
    state, best = TrainingState(plateau=PlateauState(lr=config.lr)), None
    if restore_from is not None:
        state, best = restore_training_state(restore_from, model, optimizer)
    feed = epoch_feed(config, setup.data, setup.train_splits, settings["keep"])

    def before_epoch(epoch: int) -> None:
        if restore_from is None and epoch == config.fail_at_epoch:
            raise RuntimeError(f"injected failure at epoch {epoch + 1} (fail_at_epoch, for tests)")

    summary: dict[str, Any] = {}

    def on_epoch_end(metrics: dict[str, float], state: TrainingState, best_weights: list[np.ndarray] | None) -> None:
        if state.epoch >= settings["epochs"] or state.plateau.stopped_early:
            summary.update(write_outputs(config, setup, state, best_weights))
            if finished is not None:
                finished(summary)
        with tempfile.TemporaryDirectory() as folder:
            save_training_state(Path(folder), model, optimizer, state, best_weights)
            report({key: float(value) for key, value in metrics.items()}, folder)

    best = run_epochs(
        runner,
        state,
        settings["epochs"],
        feed,
        (lambda: split_batches(setup.data, "val")) if setup.use_val else None,
        config.patience,
        config.lr_patience,
        on_epoch_end,
        best_weights=best,
        before_epoch=before_epoch,
        log=log,
        extra_metrics={"workers": 1.0},
        progress_every_s=config.progress_every,
    )
    return summary or write_outputs(config, setup, state, best)


def training_facts(config: TrainConfig) -> dict[str, Any]:
    """How the model was trained, for its card: device, precision, XLA, workers and the effective batch size."""
    return {
        "device": "gpu" if config.gpus_per_worker > 0 else "cpu",
        "gpus_per_worker": config.gpus_per_worker,
        "workers": config.workers,
        "precision": config.precision,
        "jit": config.jit,
        "batch_size_per_worker": config.batch_size,
        "effective_batch_size": config.batch_size * config.workers,
    }


def card_crop(crop_margin: float | None, meta: ShardMetadata) -> CropGeometry:
    """The crop geometry a model card records: --crop-margin when given, else the one the ingest recorded for the
    data, else (data written before faceray recorded it) the old 10% margin."""
    if crop_margin is not None:
        return CropGeometry(crop_margin, "set by --crop-margin")
    return meta.crop or UNRECORDED_CROP


def write_outputs(
    config: TrainConfig, setup: RunSetup, state: Any, best_weights: list[np.ndarray] | None
) -> dict[str, Any]:
    """The best weights into model.keras, history, evaluation, card and plots."""
    if best_weights is None:
        raise RuntimeError("training ended before any epoch finished: there are no weights to write")
    from faceray.exports import write_export
    from faceray.model_card import CARD_FILE, ModelCard, save_model_dir
    from faceray.train.evaluate import evaluate_model, plot_confusion_matrix, plot_learning_curves
    from faceray.train.model_dir import without_machine_paths
    from faceray.train.models import build_model
    from faceray.train.precision import set_precision

    meta, labels, counts, out, final = setup.meta, setup.labels, setup.counts, setup.out, setup.final
    set_precision("float32")  # the model directory holds a float32 model, whatever the training precision
    model = build_model(config.model, meta.image_shape, len(labels), config.bn_momentum)
    model.set_weights(best_weights)

    history = state.history
    with open(out / "history.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(history[0]))
        writer.writeheader()
        writer.writerows(history)
    title = f"{meta.task} / {config.model}"
    plot_learning_curves(history, out / "learning_curves.png", title)

    split = "test" if final else config.evaluate_split
    if not shard_files(setup.data, split):
        split = "val"
    images, targets = load_split_numpy(setup.data, split)
    report = evaluate_model(model, images, targets, labels)
    report["split"] = split
    write_json(out / "evaluation.json", report)
    plot_confusion_matrix(report, out / "confusion_matrix.png", f"{title} on {split}")

    best_row = min(history, key=lambda row: row.get("val_loss", row["loss"])) if not final else history[-1]
    metrics = {
        "epochs_run": state.epoch,
        "best_epoch": int(best_row["epoch"]),
        "stopped_early": state.plateau.stopped_early,
        "best_val_loss": best_row.get("val_loss"),
        "best_val_accuracy": best_row.get("val_accuracy"),
        f"{split}_accuracy": report["accuracy"],
        f"{split}_macro_f1": report["macro_f1"],
        "train_images_per_s": float(np.median([row["images_per_s"] for row in history])),
    }
    manifest = IngestManifest.read(setup.data).config
    card = ModelCard(
        meta.task,
        meta.image_shape,
        meta.color,
        config.model,
        card_crop(config.crop_margin, meta),
        extra=dict(
            trained_on={
                "data": setup.data.name,
                "train_label_counts": dict(zip(labels, counts.tolist())),
                "manifest": without_machine_paths(manifest),
            },
            config=without_machine_paths(config_to_dict(config)),
            metrics=metrics,
            training=training_facts(config),
        ),
    )
    save_model_dir(out, model, card)
    write_export(out, model, card)  # model.onnx, checked against the Keras model and recorded in the card
    summary = {
        "out": setup.target.uri,
        "metrics": metrics,
        "evaluation": {k: report[k] for k in ("split", "accuracy", "macro_f1", "chance_accuracy")},
    }
    if config.tracking:
        from faceray.train.experiments import log_training

        settings = without_machine_paths(config_to_dict(config)) or {}
        summary["tracking"] = log_training(out, settings, config.tracking, setup.target.uri)
    if not setup.target.is_local:  # before anything reports the run done (a Tune scheduler may end a trial then)
        upload_folder(out, setup.target, skip=(EPOCH_LOG, RAY_RESULTS), last=(CARD_FILE,))  # the card: complete
    return summary


def run_evaluation(model_dir: str | Path, data: str | Path, split: str = "test") -> dict[str, Any]:
    """Evaluate a model directory on a split of an ingest output (either local or in object storage); writes
    evaluation_<split>.json and a PNG into the model directory."""
    from faceray.model_card import load_model_dir
    from faceray.train.evaluate import evaluate_model, plot_confusion_matrix

    folder, shards = location(model_dir, "MODEL_DIR"), location(data, "--data")
    verify_data(shards, [split])
    with local_copy(folder) as local:
        model, card = load_model_dir(local)
    meta = ShardMetadata.read(shards, split)
    if meta.image_shape != card.input_shape or meta.task != card.task:
        raise ConfigError(
            f"--data: {data} holds {meta.task} images of shape {list(meta.image_shape)}; the model expects "
            f"{card.task} images of shape {list(card.input_shape)}"
        )
    images, targets = load_split_numpy(shards, split)
    report = evaluate_model(model, images, targets, list(card.labels))
    report["split"] = split
    report["data"] = shards.uri
    write_json(folder / f"evaluation_{split}.json", report)
    with local_folder(folder) as local:
        plot_confusion_matrix(report, local / f"confusion_matrix_{split}.png", f"{card.task} on {split}")
    return report
