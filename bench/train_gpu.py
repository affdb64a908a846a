"""GPU training throughput (issue 16): `faceray train` on one GPU against plain Keras `fit` on the same GPU.

Same model (residual mini-Xception 64x64x1 -> 2), same batch size, same generated data, in one run, in float32 and
in mixed precision (mixed_float16). faceray's Ray Train worker reads the Parquet shards itself (train/feed.py); the
baseline holds the images in a numpy array in memory (in a separate process, so that the two never share the GPU).
Throughput is the median images/s of the epochs after the first (the first includes tracing and XLA compilation).
While each runs, `nvidia-smi` is sampled for GPU utilisation. The data feed alone (shards -> numpy batches, no
model) is measured too: where the limit is when the GPU waits.

Targets on one H100/H200-class GPU: faceray >= 0.8 x Keras fit, and >= 20,000 img/s with mixed precision.

    python bench/train_gpu.py [--images 100000] [--batch-size 512] [--epochs 4] [--precisions float32,mixed_float16]
    python bench/train_gpu.py --smoke     # tiny sizes on the CPU: checks the benchmark itself, measures nothing
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

REPOSITORY = Path(__file__).resolve().parents[1]
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != REPOSITORY / "bench"]
sys.path.insert(0, str(REPOSITORY))
from bench.common import machine, print_report  # noqa: E402

SIZE = 64


class GpuSampler:
    """Mean and peak GPU utilisation (%) and memory (MiB) from `nvidia-smi`, sampled every 0.5 s in a thread."""

    def __init__(self) -> None:
        self.samples: list[tuple[float, float]] = []
        self._process: subprocess.Popen[str] | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> GpuSampler:
        if shutil.which("nvidia-smi"):
            command = ["nvidia-smi", "--query-gpu=utilization.gpu,memory.used", "--format=csv,noheader,nounits"]
            self._process = subprocess.Popen([*command, "-lms", "500"], stdout=subprocess.PIPE, text=True)
            self._thread = threading.Thread(target=self._read, daemon=True)
            self._thread.start()
        return self

    def _read(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        for line in self._process.stdout:
            parts = [part.strip() for part in line.split(",")]
            if len(parts) >= 2 and parts[0].replace(".", "").isdigit():
                self.samples.append((float(parts[0]), float(parts[1])))

    def __exit__(self, *exc: object) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait(timeout=5)

    def summary(self) -> dict[str, float | None]:
        if not self.samples:
            return {"gpu_util_mean_pct": None, "gpu_util_peak_pct": None, "gpu_memory_peak_mib": None}
        utilisation = [sample[0] for sample in self.samples]
        return {
            "gpu_util_mean_pct": round(float(np.mean(utilisation)), 1),
            "gpu_util_peak_pct": round(float(np.max(utilisation)), 1),
            "gpu_memory_peak_mib": round(float(max(sample[1] for sample in self.samples)), 0),
        }


def write_data(folder: Path, count: int, seed: int = 0) -> None:
    """`count` training and count/10 validation images (64x64 grey, two classes with a learnable difference) as
    faceray shards with a manifest: what `faceray ingest` writes, without decoding JPEGs first."""
    from faceray.faces import IMDB_WIKI_CROP
    from faceray.labels import GENDER_LABELS
    from faceray.shards import IngestManifest, ShardMetadata, write_shard

    meta = ShardMetadata((SIZE, SIZE, 1), "gray", "gender", GENDER_LABELS, "imdb", IMDB_WIKI_CROP)
    rng = np.random.default_rng(seed)
    counts = {"train": count, "val": max(count // 10, 256), "test": 256}
    for split, total in counts.items():
        for part, start in enumerate(range(0, total, 10_000)):
            rows = min(10_000, total - start)
            labels = rng.integers(0, 2, rows)
            base = rng.integers(40, 200, (rows, 1, 1, 1))
            images = np.clip(base + rng.normal(0, 30, (rows, SIZE, SIZE, 1)), 0, 255).astype(np.uint8)
            images[labels == 1, 16:48, 16:48] //= 2  # class 1: a darker centre
            write_shard(
                folder / split / f"part-{part:05d}.parquet",
                {
                    "image": [image.tobytes() for image in images],
                    "label": labels.tolist(),
                    "source": [f"generated:{split}:{start + index}" for index in range(rows)],
                },
                meta.schema(),
            )
    splits = {split: {"count": total, "labels": {}} for split, total in counts.items()}
    accepted = sum(counts.values())
    IngestManifest("imdb", meta, {}, {"total": accepted, "accepted": accepted, "rejected": 0}, splits, {}, 1, {}).save(
        folder
    )


def keras_fit(data: Path, precision: str, epochs: int, batch_size: int, gpus: float) -> dict[str, Any]:
    """Plain Keras `fit` on the training split held in memory (run in its own process by `main`)."""
    import keras

    from faceray.shards import load_split_numpy
    from faceray.train.models import build_model
    from faceray.train.precision import check_gpus, set_precision

    check_gpus(gpus)  # memory growth, and a clear error when TensorFlow sees no GPU
    images, labels = load_split_numpy(data, "train")
    set_precision(precision)
    keras.utils.set_random_seed(0)
    model = build_model("residual", (SIZE, SIZE, 1), 2)
    optimizer = keras.optimizers.Adam(1e-3)
    if precision == "mixed_float16":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    pixels = images.astype(np.float32)
    rates = []
    with GpuSampler() as sampler:
        for _ in range(epochs):
            started = time.perf_counter()
            model.fit(pixels, labels, batch_size=batch_size, epochs=1, verbose=0, shuffle=True)
            rates.append(len(images) / (time.perf_counter() - started))
    return {
        "img_per_s": float(np.median(rates[1:])),
        "epoch_rates": [round(rate) for rate in rates],
        **sampler.summary(),
    }


def faceray_train(data: Path, out: Path, precision: str, epochs: int, batch_size: int, gpus: float) -> dict[str, Any]:
    import csv

    from faceray.config import resolve_config
    from faceray.train.config import TrainConfig
    from faceray.train.pipeline import run_training

    config = resolve_config(
        TrainConfig,
        dict(
            data=str(data),
            task="gender",
            model="residual",
            workers=1,
            gpus_per_worker=gpus,
            precision=precision,
            epochs=epochs,
            batch_size=batch_size,
            augment="off",
            patience=100,
            out=str(out),
        ),
    )
    with GpuSampler() as sampler:
        run_training(config, log=None)
    with open(out / "history.csv") as handle:
        rates = [float(row["images_per_s"]) for row in csv.DictReader(handle)]
    card = json.loads((out / "model_card.json").read_text())
    return {
        "img_per_s": float(np.median(rates[1:])),
        "epoch_rates": [round(rate) for rate in rates],
        "card_training": card.get("training"),
        **sampler.summary(),
    }


def feed_rate(data: Path, batch_size: int, seconds: float = 20.0) -> float:
    """Images/s the training feed (train.feed: the worker's own shard reads, a 16,384-row shuffle buffer, 4 batches
    prefetched by a thread, as a GPU worker has it) delivers to one consumer that does nothing with them."""
    from faceray.train.feed import FeedPlan, prefetched, worker_batches

    plan = FeedPlan.read(data, ["train"])
    count, epoch, started = 0, 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        for _, labels in prefetched(worker_batches(plan, batch_size, 0, epoch), depth=4):
            count += len(labels)
            if time.perf_counter() - started >= seconds:
                break
        epoch += 1
    return count / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=100_000)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--precisions", default="float32,mixed_float16")
    parser.add_argument("--smoke", action="store_true", help="tiny, on the CPU: checks the benchmark runs")
    parser.add_argument("--keras-fit-only", default="", help=argparse.SUPPRESS)  # the baseline's own process
    arguments = parser.parse_args()
    from faceray.runtime import use_loopback_environment

    use_loopback_environment()
    if arguments.keras_fit_only:
        data, precision = arguments.keras_fit_only.split("|")
        gpus = 0.0 if arguments.smoke else 1.0
        print("RESULT " + json.dumps(keras_fit(Path(data), precision, arguments.epochs, arguments.batch_size, gpus)))
        return
    if arguments.smoke:
        arguments.images, arguments.epochs, arguments.batch_size = 2_000, 2, 64
    gpus = 0.0 if arguments.smoke else 1.0
    from faceray.runtime import init_ray, shutdown_ray

    work = Path(tempfile.mkdtemp(prefix="faceray-bench-train-gpu-"))
    data = work / "data"
    write_data(data, arguments.images)
    results: dict[str, Any] = {}
    for precision in arguments.precisions.split(","):
        command = [sys.executable, __file__, "--keras-fit-only", f"{data}|{precision}", "--epochs",
                   str(arguments.epochs), "--batch-size", str(arguments.batch_size), *(["--smoke"] if arguments.smoke else [])]  # fmt: skip
        finished = subprocess.run(command, capture_output=True, text=True, check=False)
        lines = [line for line in finished.stdout.splitlines() if line.startswith("RESULT ")]
        if not lines:
            raise SystemExit(f"the Keras fit baseline failed ({precision}):\n{finished.stderr[-3000:]}")
        baseline = json.loads(lines[-1].removeprefix("RESULT "))
        init_ray()
        try:
            measured = faceray_train(data, work / f"out-{precision}", precision, arguments.epochs,
                                     arguments.batch_size, gpus)  # fmt: skip
            feed = feed_rate(data, arguments.batch_size, 5.0 if arguments.smoke else 20.0)
        finally:
            shutdown_ray()
        results[precision] = {
            "keras_fit": baseline,
            "faceray": measured,
            "feed_only_img_per_s": round(feed),
            "ratio_faceray_to_fit": round(measured["img_per_s"] / baseline["img_per_s"], 3),
        }
    payload = {
        "benchmark": "train_gpu",
        "machine": machine(),
        "smoke": arguments.smoke,
        "train_images": arguments.images,
        "batch_size": arguments.batch_size,
        "epochs": arguments.epochs,
        "results": results,
    }
    rows = [("data", f"{arguments.images} generated 64x64 grey images, batch {arguments.batch_size}, 1 GPU")]
    for precision, result in results.items():
        fit, ours = result["keras_fit"], result["faceray"]
        rows += [
            (f"{precision}: Keras fit", f"{fit['img_per_s']:8.0f} img/s  GPU {fit['gpu_util_mean_pct']}%"),
            (
                f"{precision}: faceray train",
                f"{ours['img_per_s']:8.0f} img/s  GPU {ours['gpu_util_mean_pct']}%  ratio "
                f"{result['ratio_faceray_to_fit']:.2f} (target >= 0.8)",
            ),
            (f"{precision}: feed only", f"{result['feed_only_img_per_s']:8.0f} img/s (train.feed -> numpy, no model)"),
        ]
    print_report("bench/train_gpu", rows, payload)


if __name__ == "__main__":
    main()
