"""Ingest throughput: the reference loop vs. this machine's limit vs. `faceray ingest`, in one run.

(a) naive: the reference code's loop, cv2.imread at full size + grey + resize, one Python process
(b) limit: a process pool on all cores doing only read + decode + resize in memory (best decoder)
(c) faceray: `faceray ingest imdb` end to end into Parquet through Ray Data (.mat read, plan, decode, write,
    manifest), timed on a warm Ray (after a first run that starts the worker processes). Also the command
    itself, once, on its own fresh Ray: its wall time and the peak RSS of its whole process tree (driver, GCS,
    raylet, workers, Ray Data's actors); that RSS is the figure for the memory target
(b) and (c) alternate for --rounds rounds (default 3) so a busy moment of the machine hits both; the medians
are compared.
Targets on a 2-core machine: (c) >= 0.8 x (b) and >= 2 x (a); peak RSS < 2 GiB at 100,000 images.

    python bench/ingest.py [--images 20000] [--naive-images 3000] [--rounds 3] [--data DIR]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

# This file's folder must not shadow the `ingest` package: import from the repository root instead.
REPOSITORY = Path(__file__).resolve().parents[1]
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != REPOSITORY / "bench"]
sys.path.insert(0, str(REPOSITORY))
from bench.common import TreeMemorySampler, machine, print_report, timed  # noqa: E402


def make_images(root: Path, count: int, seed: int) -> list[Path]:
    from faceray.ingest.imdb import read_imdb_metadata
    from faceray.ingest.sample import write_imdb_sample

    mat = root / "imdb.mat"
    if not mat.exists() or len(read_imdb_metadata(mat)) != count:
        if root.exists():
            shutil.rmtree(root)
        write_imdb_sample(root, count, np.random.default_rng(seed), clean=True, unique_pictures=400)
    return [root / path for path in read_imdb_metadata(mat)["full_path"]]


def naive_one(path: Path) -> np.ndarray:
    import cv2

    image = cv2.imread(str(path))
    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    return cv2.resize(grey, (64, 64))


def decode_chunk(paths: list[str]) -> int:
    from faceray.ingest.images import decode_and_resize

    for path in paths:
        with open(path, "rb") as handle:
            decode_and_resize(handle.read(), 64, "gray")
    return len(paths)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20000)
    parser.add_argument("--naive-images", type=int, default=3000, help="images timed for the slow loop (a)")
    parser.add_argument("--data", default=None, help="folder for the generated JPEGs (kept between runs)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rounds", type=int, default=3, help="alternating (b)/(c) measurements; medians are reported")
    arguments = parser.parse_args()

    from faceray.runtime import use_loopback_environment

    use_loopback_environment()
    data = Path(arguments.data or Path(tempfile.gettempdir()) / f"faceray-bench-ingest-{arguments.images}")
    root = data / "imdb_crop"
    print(f"generating/reusing {arguments.images} JPEGs in {root} ...", file=sys.stderr)
    paths = make_images(root, arguments.images, arguments.seed)
    mean_kb = np.mean([path.stat().st_size for path in paths[:500]]) / 1024

    # (a) the reference loop, on a subset (it is slow)
    subset = paths[: arguments.naive_images]
    _, naive_s = timed(lambda: [naive_one(path) for path in subset])
    naive_rate = len(subset) / naive_s

    # (c) as users run it: the `faceray ingest` command on a fresh Ray, with the peak RSS of its process tree
    # (driver, GCS, raylet, workers, Ray Data's actors). Its time includes starting Ray.
    cli_out = data / "out-cli"
    if cli_out.exists():
        shutil.rmtree(cli_out)
    command = [
        sys.executable,
        "-m",
        "faceray.cli",
        "ingest",
        "imdb",
        "--root",
        str(root),
        "--out",
        str(cli_out),
        "--min-face-score",
        "-1",
        "--no-drop-unknown-gender",
        "--no-drop-second-face",
        "--no-progress",
    ]
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=REPOSITORY, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    with TreeMemorySampler(pid=process.pid) as sampler:
        _, errors = process.communicate()
    cli_s = time.perf_counter() - started
    if process.returncode != 0:
        raise SystemExit(f"faceray ingest failed:\n{errors.decode()[-2000:]}")
    peak_tree_bytes = sampler.peak_bytes

    # (b) and (c) alternate for --rounds rounds on one warm Ray so that both see the same machine; medians compared.
    from faceray.config import resolve_config
    from faceray.ingest.config import IngestConfig
    from faceray.ingest.pipeline import run_ingest
    from faceray.runtime import init_ray, shutdown_ray

    cores = os.cpu_count() or 1
    chunks = [[str(path) for path in paths[start : start + 500]] for start in range(0, len(paths), 500)]
    init_ray(dashboard=False)  # as `faceray ingest` starts it

    def ingest_once(out: Path) -> tuple[dict, float]:
        if out.exists():
            shutil.rmtree(out)
        config = resolve_config(
            IngestConfig,
            dict(
                dataset="imdb",
                root=str(root),
                out=str(out),
                progress=False,
                min_face_score=-1,
                drop_unknown_gender=False,
                drop_second_face=False,
            ),
        )
        return timed(run_ingest, config)

    ingest_once(data / "out")  # the first run on this Ray starts the worker processes (like the pool's warm-up)
    pool_rates, faceray_rates = [], []
    with multiprocessing.get_context("spawn").Pool(cores) as pool:
        pool.map(decode_chunk, chunks[:cores])  # warm the workers (imports)
        for _ in range(arguments.rounds):
            _, pool_s = timed(lambda: sum(pool.map(decode_chunk, chunks)))
            pool_rates.append(len(paths) / pool_s)
            manifest, faceray_s = ingest_once(data / "out")
            faceray_rates.append(manifest.inputs["accepted"] / faceray_s)
    shutdown_ray()
    pool_rate, faceray_rate = float(np.median(pool_rates)), float(np.median(faceray_rates))
    faceray_s = manifest.inputs["accepted"] / faceray_rate

    payload = {
        "benchmark": "ingest",
        "machine": machine(),
        "images": len(paths),
        "mean_jpeg_kb": round(float(mean_kb), 1),
        "naive_img_per_s": round(naive_rate, 1),
        "pool_limit_img_per_s": round(pool_rate, 1),
        "faceray_img_per_s": round(faceray_rate, 1),
        "faceray_seconds": round(faceray_s, 2),
        "rounds": arguments.rounds,
        "pool_limit_img_per_s_each_round": [round(rate, 1) for rate in pool_rates],
        "faceray_img_per_s_each_round": [round(rate, 1) for rate in faceray_rates],
        "faceray_command_seconds": round(cli_s, 2),
        "ratio_faceray_to_limit": round(faceray_rate / pool_rate, 3),
        "ratio_faceray_to_naive": round(faceray_rate / naive_rate, 2),
        "peak_rss_command_tree_mib": round(peak_tree_bytes / 2**20, 1),
        "accepted": manifest.inputs["accepted"],
        "rejected": manifest.inputs["rejected"],
    }
    rows = [
        ("images (mean JPEG)", f"{len(paths)} ({mean_kb:.0f} KB)"),
        ("(a) naive loop", f"{naive_rate:8.0f} img/s  (on {len(subset)})"),
        ("(b) pool limit", f"{pool_rate:8.0f} img/s  (median of {' '.join(f'{rate:.0f}' for rate in pool_rates)})"),
        (
            "(c) faceray ingest",
            f"{faceray_rate:8.0f} img/s  (median of {' '.join(f'{rate:.0f}' for rate in faceray_rates)})",
        ),
        ("(c) times", f"{faceray_s:8.1f} s on a warm Ray; the `faceray ingest` command {cli_s:.1f} s (starts Ray)"),
        ("(c)/(b)", f"{faceray_rate / pool_rate:8.2f}   target >= 0.8"),
        ("(c)/(a)", f"{faceray_rate / naive_rate:8.2f}   target >= 2"),
        (
            "peak RSS, command",
            f"{peak_tree_bytes / 2**20:8.0f} MiB (`faceray ingest` and every process it started)   target < 2048 at 100,000",
        ),
    ]
    print_report("bench/ingest", rows, payload)


if __name__ == "__main__":
    main()
