"""Command line of the training stage: `faceray train`, `faceray evaluate`, `faceray import-model`."""

from __future__ import annotations

import argparse
import os

from faceray.config import add_config_arguments, resolve_config
from faceray.stopping import StopRequest
from faceray.train.config import TrainConfig
from faceray.train.sweep_config import SweepConfig


def register(subparsers: argparse._SubParsersAction) -> None:
    train = subparsers.add_parser(
        "train",
        help="train the residual or basic model with Ray Train (data-parallel)",
        description="Train on an ingest output; writes a model directory.",
    )
    train.add_argument("--config", help="YAML file of settings (flags override it)")
    add_config_arguments(train, TrainConfig)
    train.set_defaults(handler=run_train)

    sweep = subparsers.add_parser(
        "sweep",
        help="sweep learning rate, augmentation and more with Ray Tune",
        description="Every trial runs `faceray train`'s code; see train/spaces/*.yaml.",
    )
    sweep.add_argument("--config", help="YAML file of settings (flags override it)")
    add_config_arguments(sweep, SweepConfig)
    sweep.set_defaults(handler=run_sweep_command)

    evaluate = subparsers.add_parser(
        "evaluate",
        help="evaluate a model directory on a split of an ingest output",
        description="Accuracy, per-class precision, recall and F1 and a confusion matrix of a model directory on a "
        "split; writes evaluation_<split>.json and confusion_matrix_<split>.png into the model directory.",
    )
    evaluate.add_argument("model_dir", help="a model directory (model.keras + model_card.json)")
    evaluate.add_argument("--data", required=True, help="an ingest output folder")
    evaluate.add_argument(
        "--split", default="test", choices=("train", "val", "test"), help="split to evaluate (default: test)"
    )
    evaluate.set_defaults(handler=run_evaluate)

    importer = subparsers.add_parser(
        "import-model",
        help="turn a published Keras .hdf5 into a faceray model directory",
        description="Load a published Keras .hdf5 (such as the paper's), check it, and write a model directory: "
        "model.keras, model.onnx and a model card with labels, input shape, colour and crop geometry.",
    )
    importer.add_argument("hdf5", help="e.g. fer2013_mini_XCEPTION.102-0.66.hdf5")
    importer.add_argument("--task", required=True, choices=("emotion", "gender"), help="what the model classifies")
    importer.add_argument("--out", required=True, help="model directory to write")
    importer.add_argument(
        "--input-shape", default="64,64,1", help="H,W,C the file expects (default: 64,64,1, the paper's)"
    )
    importer.add_argument("--color", default="gray", choices=("gray", "rgb"), help="colour mode (default: gray)")
    importer.add_argument(
        "--crop-margin",
        type=float,
        default=None,
        help="face-box margin per side (default: the crop geometry of the task's training data: 0.4 for gender, IMDB-WIKI crops; 0.1 for emotion, FER-2013)",
    )
    importer.set_defaults(handler=run_import)

    export = subparsers.add_parser(
        "export",
        help="write a model directory's model.onnx (checked against its Keras model, recorded in the card)",
        description="For directories made before faceray wrote exports; training and import-model write one already.",
    )
    export.add_argument("model_dir", help="a model directory (model.keras + model_card.json)")
    export.add_argument("--format", default="onnx", choices=("onnx",), help="export format (default: onnx)")
    export.set_defaults(handler=run_export)

    fetch = subparsers.add_parser(
        "fetch-weights",
        help="download the paper's published models (checked) as model directories",
        description="Downloads on purpose only: each file's SHA-256 is pinned in train/weights.py. "
        "Writes OUT/emotion-paper/ and OUT/gender-paper/.",
    )
    fetch.add_argument(
        "name", choices=("paper",), help="paper: the paper's mini-Xception emotion and gender models (MIT)"
    )
    fetch.add_argument(
        "--out",
        default=None,
        help="folder for the model directories (default: $FACERAY_MODELS or ~/.cache/faceray/models, where "
        "FaceAnalyzer() finds them)",
    )
    fetch.add_argument(
        "--base-url",
        default=None,
        help="a mirror with the repository's trained_models/ layout (default: github oarriaga/face_classification)",
    )
    fetch.set_defaults(handler=run_fetch_weights)


def run_train(arguments: argparse.Namespace) -> int:
    from faceray.config import location
    from faceray.runtime import init_ray
    from faceray.stopping import graceful_stop
    from faceray.train.pipeline import finished_run, run_training, training_data

    config = resolve_config(TrainConfig, arguments, arguments.config)
    training_data(config.data, config.task)  # before Ray starts: a wrong --data or --task is refused at once
    summary = finished_run(config, location(config.out, "--out", output=True), log=print)
    if summary is None:  # not the same command again after it finished: Ray is needed
        init_ray(config.address or None)  # before the handlers: ray.init installs its own for SIGTERM
        kept = "the last checkpoint is kept"
        with graceful_stop("training", kept) as stop, stop.as_stop(f"training ({kept})"):
            summary = run_training(config, stop=stop, finished_checked=True)
    evaluation = summary["evaluation"]
    print(
        f"model: {summary['out']}  {evaluation['split']} accuracy {evaluation['accuracy']:.3f} "
        f"(chance {evaluation['chance_accuracy']:.3f}), macro-F1 {evaluation['macro_f1']:.3f}"
    )
    return 0


def run_sweep_command(arguments: argparse.Namespace) -> int:
    from faceray.runtime import init_ray
    from faceray.stopping import graceful_stop
    from faceray.train.pipeline import training_data
    from faceray.train.sweep import format_table, run_sweep

    config = resolve_config(SweepConfig, arguments, arguments.config)
    training_data(config.data, config.task)
    init_ray(config.address or None)  # before the handlers: ray.init installs its own for SIGTERM
    os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"  # Tune's would replace faceray's (faceray.stopping)
    kept = "finished trials and the trials' last checkpoints are kept"
    # 20 s: Tune ends its trial actors and saves the experiment state once more (measured 1.5-9.2 s).
    with graceful_stop("the sweep", kept, grace_s=20) as stop, stop.as_stop(f"the sweep ({kept})"):
        stop.on_request(lambda: end_sweep(stop, f"the sweep ({kept})"))
        summary = run_sweep(config, stop=stop)
    print(format_table(summary["rows"], summary["space_keys"]))
    best = summary["best"]
    if best is None:
        print("every trial failed: see results.csv")
        return 1
    print(f"best: trial {best['trial_id']} val_acc {best['best_val_accuracy']:.3f} -> {config.out}/best.json")
    if summary["final"]:
        evaluation = summary["final"]["evaluation"]
        print(f"final model: {summary['final']['out']}  test accuracy {evaluation['accuracy']:.3f}")
    return 0


def end_sweep(stop: StopRequest, detail: str) -> None:
    """On a stop request: while Tune runs trials, ask it to end them the way it ends on SIGUSR1 (it saves the
    experiment state one last time, so the same command resumes from every trial's last result); at any other
    moment (planning, the --final run) stop at once."""
    import signal

    handler = signal.getsignal(signal.SIGUSR1)
    if callable(handler) and getattr(handler, "__name__", "") == "signal_interrupt_tune_run":
        handler(signal.SIGUSR1, None)
    else:
        raise stop.stopped(detail)


def run_evaluate(arguments: argparse.Namespace) -> int:
    from faceray.config import ConfigError
    from faceray.model_card import ModelCard
    from faceray.shards import IngestManifest
    from faceray.train.pipeline import run_evaluation

    try:  # before TensorFlow loads: a wrong path is one line
        ModelCard.read(arguments.model_dir)
    except ValueError as error:
        raise ConfigError(str(error)) from None
    try:
        IngestManifest.read(arguments.data)
    except ValueError as error:
        raise ConfigError(f"--data: {error}") from None
    report = run_evaluation(arguments.model_dir, arguments.data, arguments.split)
    print(format_evaluation(report))
    print(
        f"written: {arguments.model_dir.rstrip('/')}/evaluation_{arguments.split}.json and "
        f"confusion_matrix_{arguments.split}.png"
    )
    return 0


def format_evaluation(report: dict) -> str:
    """Per-class precision, recall, F1 and support as a table, then accuracy against chance."""
    rows = [("class", "precision", "recall", "F1", "images")]
    rows += [
        (name, f"{item['precision']:.3f}", f"{item['recall']:.3f}", f"{item['f1']:.3f}", str(item["support"]))
        for name, item in report["per_class"].items()
    ]
    widths = [max(len(row[index]) for row in rows) for index in range(5)]
    table = "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths)) for row in rows)
    return (
        f"{table}\n{report['split']}: accuracy {report['accuracy']:.3f} (majority-class chance "
        f"{report['chance_accuracy']:.3f}), macro-F1 {report['macro_f1']:.3f} on {report['count']} images"
    )


def run_import(arguments: argparse.Namespace) -> int:
    from faceray.config import ConfigError, location
    from faceray.model_card import CARD_FILE
    from faceray.storage import local_folder
    from faceray.train.model_dir import import_legacy_model

    try:
        shape = tuple(int(part) for part in arguments.input_shape.split(","))
        if len(shape) != 3:
            raise ValueError
    except ValueError:
        raise ConfigError(f"--input-shape: {arguments.input_shape!r} is not H,W,C") from None
    from faceray.config import models_cache

    out = location(arguments.out or str(models_cache()), "--out", output=True)
    try:
        with local_folder(out, last=(CARD_FILE,)) as folder:  # written locally; uploaded for object storage
            import_legacy_model(arguments.hdf5, arguments.task, folder, shape, arguments.color, arguments.crop_margin)
    except ValueError as error:
        raise ConfigError(str(error)) from None
    print(f"wrote model directory {out}")
    return 0


def run_export(arguments: argparse.Namespace) -> int:
    from faceray.config import ConfigError
    from faceray.exports import export_model

    try:
        card = export_model(arguments.model_dir, arguments.format)
    except ValueError as error:
        raise ConfigError(str(error)) from None
    record = card.extra["exports"][arguments.format]
    print(
        f"wrote {arguments.model_dir.rstrip('/')}/{record['file']} ({record['bytes'] / 1e3:.0f} kB, sha256 "
        f"{record['sha256'][:12]}..., largest difference from Keras {record['max_abs_difference']:.1e})"
    )
    return 0


def run_fetch_weights(arguments: argparse.Namespace) -> int:
    from faceray.config import ConfigError, location, models_cache
    from faceray.model_card import CARD_FILE
    from faceray.storage import local_folder
    from faceray.train.weights import PAPER_BASE_URL, DownloadError, fetch_weights

    out = location(arguments.out or str(models_cache()), "--out", output=True)
    try:
        with local_folder(out, last=(CARD_FILE,)) as local:  # written locally; uploaded for object storage
            written = fetch_weights(arguments.name, local, arguments.base_url or PAPER_BASE_URL)
    except DownloadError as error:
        raise ConfigError(str(error)) from None
    folders = {task: out / folder.name for task, folder in written.items()}
    print(
        "try them on your own face (webcam), in two terminals:\n"
        f"  faceray serve --emotion-model {folders['emotion']} --gender-model {folders['gender']}\n"
        "  faceray client --source 0"
    )
    return 0
