"""Training throughput: `faceray train` (Ray Train, 1 and 2 workers) vs plain Keras `fit` on in-memory numpy.

Same model (residual mini-Xception), same image size, same per-worker batch size, same data, in one run.
Throughput is the median images/s of the epochs after the first (the first includes tracing).
Target: faceray with 1 worker >= 0.9 x Keras fit.

    python bench/train.py [--images 2000] [--size 64] [--epochs 3] [--batch-size 32]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPOSITORY = Path(__file__).resolve().parents[1]
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != REPOSITORY / "bench"]
sys.path.insert(0, str(REPOSITORY))
from bench.common import machine, print_report  # noqa: E402


def keras_fit_rate(images: np.ndarray, labels: np.ndarray, epochs: int, batch_size: int) -> float:
    import keras

    from faceray.train.models import build_model

    keras.utils.set_random_seed(0)
    model = build_model("residual", images.shape[1:], 7)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    pixels = images.astype(np.float32)
    rates = []
    for _ in range(epochs):
        started = time.perf_counter()
        model.fit(pixels, labels, batch_size=batch_size, epochs=1, verbose=0, shuffle=True)
        rates.append(len(images) / (time.perf_counter() - started))
    return float(np.median(rates[1:]))


def faceray_rate(data: Path, out: Path, workers: int, epochs: int, batch_size: int) -> float:
    import csv

    from faceray.config import resolve_config
    from faceray.train.config import TrainConfig
    from faceray.train.pipeline import run_training

    config = resolve_config(
        TrainConfig,
        dict(
            data=str(data),
            task="emotion",
            model="residual",
            workers=workers,
            epochs=epochs,
            batch_size=batch_size,
            augment="off",
            out=str(out),
            patience=100,
        ),
    )
    run_training(config)
    with open(out / "history.csv") as handle:
        rates = [float(row["images_per_s"]) for row in csv.DictReader(handle)]
    return float(np.median(rates[1:]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    arguments = parser.parse_args()
    from faceray.runtime import use_loopback_environment

    use_loopback_environment()

    from faceray.config import resolve_config
    from faceray.ingest.config import IngestConfig
    from faceray.ingest.pipeline import run_ingest
    from faceray.ingest.sample import write_fer_sample
    from faceray.runtime import init_ray, shutdown_ray
    from faceray.shards import load_split_numpy

    work = Path(tempfile.mkdtemp(prefix="faceray-bench-train-"))
    write_fer_sample(work / "fer2013.csv", arguments.images, np.random.default_rng(0))
    init_ray()
    data = work / "fer"
    run_ingest(
        resolve_config(
            IngestConfig,
            dict(dataset="fer", csv=str(work / "fer2013.csv"), out=str(data), size=arguments.size, progress=False),
        )
    )
    images, labels = load_split_numpy(data, "train")

    fit = keras_fit_rate(images, labels, arguments.epochs, arguments.batch_size)
    one = faceray_rate(data, work / "one", 1, arguments.epochs, arguments.batch_size)
    two = faceray_rate(data, work / "two", 2, arguments.epochs, arguments.batch_size)
    shutdown_ray()
    payload = {
        "benchmark": "train",
        "machine": machine(),
        "train_images": int(len(images)),
        "image_size": arguments.size,
        "batch_size": arguments.batch_size,
        "epochs": arguments.epochs,
        "keras_fit_img_per_s": round(fit, 1),
        "faceray_1_worker_img_per_s": round(one, 1),
        "faceray_2_workers_img_per_s": round(two, 1),
        "ratio_1_worker_to_fit": round(one / fit, 3),
        "ratio_2_workers_to_fit": round(two / fit, 3),
    }
    rows = [
        ("data", f"{len(images)} train images {arguments.size}x{arguments.size} grey, batch {arguments.batch_size}"),
        ("Keras fit (numpy)", f"{fit:7.0f} img/s"),
        ("faceray train, 1 worker", f"{one:7.0f} img/s   ratio {one / fit:.2f} (target >= 0.9)"),
        ("faceray train, 2 workers", f"{two:7.0f} img/s   ratio {two / fit:.2f} (2 workers share 2 cores)"),
    ]
    print_report("bench/train", rows, payload)


if __name__ == "__main__":
    main()
