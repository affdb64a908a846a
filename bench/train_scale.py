"""Training at the real size: `faceray train` on the full-size IMDB-WIKI output and on a 10 % subset, in one run.

The outputs are written directly as `faceray ingest` writes them (bench/verify.py's writer: 382,058 accepted rows of
the 460,723-row imdb.mat, 80/10/10 per chunk of 2,000, 64x64 grey faces from a pool of 20,000, zstd with page
checksums, every file's SHA-256 in manifest.json); the subset is the first 10 % of the chunks. Then, for each size,
the user's command (`faceray train --data OUT --task gender --epochs 1`, the embedded local Ray) runs as a
subprocess for `--window` seconds after its first step and is stopped with SIGTERM. Measured from outside:
- time from the plan line to the first progress line, and to the first step;
- images/s (the last progress line's: all steps since the epoch started, on all workers);
- peak summed PSS of the command's process tree (driver, Ray's processes, the Train worker), sampled every 2 s;
- the most Ray worker processes alive at once, and console lines with Ray's warnings or colour codes;
- the stop: seconds from SIGTERM to exit, the exit status and the stop line;
- at full size, the same command again: where it resumes (epoch and step) and its time to the first step.
Baselines in the same run: Keras `fit` on the same model and batch size over the first `--fit-rows` rows of the
full output held in memory; and the feed alone (train.feed, no model) over the full output's training split.
Targets (issue 26): first line within 60 s of the plan line; peak PSS <= 3 GiB and within 20 % of the subset's;
images/s at full size >= 0.9 x the subset's; stop within 10 s with exit 143; the resumed run starts at the next step.

    python bench/train_scale.py [--rows 382058] [--window 90] [--fit-rows 16384] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
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
from bench.common import BackgroundLoop, machine, print_report  # noqa: E402
from bench.verify import CHUNK_ROWS, write_output  # noqa: E402

PROGRESS = re.compile(r"epoch (\d+)/\d+  step (\d+)/(\d+)  loss \S+  acc \S+  (?:(\d+) img/s|first step)")
GIB = 1 << 30


class TreePss(BackgroundLoop):
    """Peak summed PSS (proportional set size: shared pages counted once over the tree) of a process and its
    descendants, and the most Ray worker processes among them, sampled every `interval_s`."""

    def __init__(self, pid: int, interval_s: float = 2.0) -> None:
        super().__init__()
        self.pid, self.interval_s = pid, interval_s
        self.peak_bytes = 0
        self.peak_workers = 0
        self.samples: list[tuple[float, int]] = []

    def _run(self) -> None:
        import psutil

        started = time.monotonic()
        while not self._stop.is_set():
            try:
                root = psutil.Process(self.pid)
                processes = [root, *root.children(recursive=True)]
            except psutil.NoSuchProcess:
                return
            total, workers = 0, 0
            for process in processes:
                try:
                    total += process.memory_full_info().pss
                    command = " ".join(process.cmdline())
                    workers += "default_worker.py" in command or process.name().startswith("ray::")
                except psutil.Error:
                    pass
            self.samples.append((time.monotonic() - started, total))
            self.peak_bytes = max(self.peak_bytes, total)
            self.peak_workers = max(self.peak_workers, workers)
            self._stop.wait(self.interval_s)


def run_command(data: Path, out: Path, window_s: float, stop_after_first: bool = False) -> dict[str, Any]:
    """`faceray train` on `data` until `window_s` after its first step (or right after it), then SIGTERM."""
    command = [
        sys.executable, "-m", "faceray.cli", "train", "--data", str(data), "--task", "gender", "--epochs", "1",
        "--out", str(out), "--progress-every", "10",
    ]  # fmt: skip
    environment = {**os.environ, "PYTHONUNBUFFERED": "1", "FACERAY_LOG_DIR": str(out.parent / "logs")}
    started = time.monotonic()
    process = subprocess.Popen(
        command, cwd=REPOSITORY, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=environment
    )
    lines: list[tuple[float, str]] = []
    assert process.stdout is not None
    reader = threading.Thread(
        target=lambda: [lines.append((time.monotonic() - started, line.rstrip())) for line in process.stdout],  # type: ignore[union-attr]
        daemon=True,
    )
    reader.start()
    signalled = None
    with TreePss(process.pid) as memory:
        while process.poll() is None:
            progress = [(at, line) for at, line in lines if PROGRESS.search(line)]
            if (
                progress
                and signalled is None
                and (stop_after_first or time.monotonic() - started - progress[0][0] >= window_s)
            ):
                process.send_signal(signal.SIGTERM)
                signalled = time.monotonic() - started
            time.sleep(0.2)
    exited = time.monotonic() - started
    reader.join(5)
    plan_at = next((at for at, line in lines if line.startswith("resources: train:")), None)
    progress = [(at, PROGRESS.search(line)) for at, line in lines if PROGRESS.search(line)]
    first_at, first = progress[0] if progress else (None, None)
    last = progress[-1][1] if progress else None
    stop_line = next((line for _, line in lines if "stopped" in line), None)
    return {
        "exit_status": process.returncode,
        "plan_line_s": plan_at,
        "first_progress_s": first_at,
        "first_line_after_plan_s": None if first_at is None or plan_at is None else round(first_at - plan_at, 1),
        "first_step": None if first is None else [int(first.group(1)), int(first.group(2))],
        "steps_per_epoch": None if last is None else int(last.group(3)),
        "last_step": None if last is None else int(last.group(2)),
        "images_per_s": None if last is None or last.group(4) is None else int(last.group(4)),
        "progress_lines": len(progress),
        "peak_pss_gib": round(memory.peak_bytes / GIB, 2),
        "pss_gib_at": [
            [round(at), round(value / GIB, 2)] for at, value in memory.samples[:: max(1, len(memory.samples) // 12)]
        ],
        "peak_ray_workers": memory.peak_workers,
        "ray_lines_on_console": [
            line for _, line in lines if "\x1b[" in line or "(raylet)" in line or "WARNING" in line
        ],
        "stop_s": None if signalled is None else round(exited - signalled, 1),
        "stop_line": stop_line,
        "console": [line for _, line in lines][-8:],
    }


def keras_fit_rate(data: Path, rows: int, batch_size: int = 32) -> float:
    """Keras `fit` (the same model, batch size, no augmentation) on the first `rows` training rows in memory: the
    median images/s of two epochs after a warm-up one."""
    import keras

    from faceray.shards import ShardMetadata, read_shard_numpy, shard_files
    from faceray.train.models import build_model

    metadata = ShardMetadata.read(data, "train")
    images, labels = [], []
    for path in shard_files(data, "train"):
        part_images, part_labels = read_shard_numpy(path, metadata)
        images.append(part_images)
        labels.append(part_labels)
        if sum(len(part) for part in labels) >= rows:
            break
    pixels = np.concatenate(images)[:rows].astype(np.float32)
    targets = np.concatenate(labels)[:rows]
    keras.utils.set_random_seed(0)
    model = build_model("residual", pixels.shape[1:], 2)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy")
    model.fit(pixels[: batch_size * 20], targets[: batch_size * 20], batch_size=batch_size, epochs=1, verbose=0)
    rates = []
    for _ in range(2):
        began = time.perf_counter()
        model.fit(pixels, targets, batch_size=batch_size, epochs=1, verbose=0, shuffle=True)
        rates.append(rows / (time.perf_counter() - began))
    return float(np.median(rates))


def feed_rate(data: Path, batch_size: int = 32) -> tuple[float, int]:
    """The feed alone (train.feed with its prefetch thread, no model) over one epoch of the training split:
    (images/s, rows)."""
    from faceray.train.feed import FeedPlan, prefetched, worker_batches

    plan = FeedPlan.read(data, ["train"])
    began = time.perf_counter()
    rows = 0
    for _, labels in prefetched(worker_batches(plan, batch_size, 0, 0)):
        rows += len(labels)
    return rows / (time.perf_counter() - began), rows


def subset(full: Path, out: Path, fraction: float) -> None:
    """The first `fraction` of `full`'s chunks as an ingest output of its own (files linked, manifest rewritten)."""
    from faceray.shards import IngestManifest

    manifest = IngestManifest.read(full)
    assert manifest.files is not None
    keep = int(manifest.chunks * fraction)
    files = {name: record for name, record in manifest.files.items() if int(name.split("-")[-1][:5]) < keep}
    for name in files:
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        os.link(full / name, out / name)
    rows = keep * CHUNK_ROWS
    manifest = type(manifest)(
        **{
            **manifest.__dict__,
            "inputs": {"total": rows, "accepted": rows, "rejected": 0},
            "chunks": keep,
            "files": files,
        }
    )
    manifest.save(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=382_058, help="accepted rows (the full-size IMDB-WIKI output)")
    parser.add_argument("--window", type=float, default=90.0, help="seconds of training after the first step")
    parser.add_argument("--fit-rows", type=int, default=16384, help="rows Keras fit trains on (in memory)")
    parser.add_argument("--out", default=None, help="write the outputs here and keep them (default: temporary)")
    arguments = parser.parse_args()
    from faceray.runtime import use_loopback_environment

    use_loopback_environment()
    work = Path(arguments.out or tempfile.mkdtemp(prefix="faceray-bench-scale-"))
    full, small = work / "imdb64", work / "imdb64-10pct"
    began = time.perf_counter()
    if not (full / "manifest.json").exists():
        shutil.rmtree(full, ignore_errors=True)
        write_output(full, arguments.rows, np.random.default_rng(0))
    shutil.rmtree(small, ignore_errors=True)
    subset(full, small, 0.1)
    written_s = time.perf_counter() - began
    try:
        for folder in ("run-10pct", "run-full"):
            shutil.rmtree(work / folder, ignore_errors=True)
        at_subset = run_command(small, work / "run-10pct", arguments.window)
        at_full = run_command(full, work / "run-full", arguments.window)
        resumed = run_command(full, work / "run-full", 0.0, stop_after_first=True)
        feed, feed_rows = feed_rate(full)
        fit = keras_fit_rate(full, arguments.fit_rows)
    finally:
        if arguments.out is None:
            shutil.rmtree(work, ignore_errors=True)
    stopped = re.search(r"stopped at epoch (\d+), step (\d+)", at_full["stop_line"] or "")
    resumes_at_next = bool(stopped) and resumed["first_step"] == [int(stopped.group(1)), int(stopped.group(2)) + 1]
    payload = {
        "benchmark": "train_scale",
        "machine": machine(),
        "rows": arguments.rows,
        "write_s": round(written_s, 1),
        "subset_10pct": at_subset,
        "full": at_full,
        "resumed": resumed,
        "resumes_at_the_next_step": resumes_at_next,
        "feed_alone_images_per_s": round(feed),
        "feed_alone_rows": feed_rows,
        "keras_fit_images_per_s": round(fit),
        "ratio_full_to_subset_images_per_s": round(
            (at_full["images_per_s"] or 0) / max(at_subset["images_per_s"] or 1, 1), 3
        ),
        "ratio_full_to_subset_pss": round(at_full["peak_pss_gib"] / max(at_subset["peak_pss_gib"], 1e-9), 3),
        "ratio_full_to_keras_fit": round((at_full["images_per_s"] or 0) / fit, 3),
    }
    rows = [
        ("data", f"{arguments.rows:,} rows full, 10 % subset; written in {written_s:.0f} s"),
        (
            "first line after plan (10 % / full)",
            f"{at_subset['first_line_after_plan_s']} s / {at_full['first_line_after_plan_s']} s (target <= 60)",
        ),
        (
            "images/s (10 % / full)",
            f"{at_subset['images_per_s']} / {at_full['images_per_s']} = {payload['ratio_full_to_subset_images_per_s']} "
            "(target >= 0.9)",
        ),
        ("Keras fit, in memory", f"{fit:.0f} img/s; faceray at full size / fit = {payload['ratio_full_to_keras_fit']}"),
        ("feed alone, full size", f"{feed:,.0f} img/s over {feed_rows:,} rows"),
        (
            "peak PSS (10 % / full)",
            f"{at_subset['peak_pss_gib']} / {at_full['peak_pss_gib']} GiB = {payload['ratio_full_to_subset_pss']} "
            "(target <= 3 GiB, <= 1.2)",
        ),
        ("Ray worker processes at most", f"{at_subset['peak_ray_workers']} / {at_full['peak_ray_workers']}"),
        (
            "Ray lines on the console",
            f"{len(at_subset['ray_lines_on_console'])} / {len(at_full['ray_lines_on_console'])}",
        ),
        (
            "SIGTERM (full)",
            f"exit {at_full['exit_status']} in {at_full['stop_s']} s: {at_full['stop_line']}",
        ),
        (
            "same command again",
            f"first step {resumed['first_step']} after {resumed['first_progress_s']} s; "
            f"resumes at the next step: {resumes_at_next}",
        ),
    ]
    print_report("bench/train_scale", rows, payload)
    print(json.dumps({"console_full": at_full["console"]}))


if __name__ == "__main__":
    main()
