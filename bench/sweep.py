"""Sweep wall time: issue 18's sweep (4 grid points x 2 epochs, ASHA, no --trial-cpus) on this machine.

In one run, on the same ingested data, each variant twice in alternating rounds (shared machines are noisy):
- `--max-concurrent 2` (the planner sizes trials to the machine; one-worker trials train in the Tune trial)
- `--max-concurrent 1` (the baseline of issue 18: one trial at a time)
- `--max-concurrent 2` with every trial in its own Ray Train run (the previous design; 0.5 CPU per trial, the
  setting the old demo needed), for issue 13's "measure both side by side before choosing".
Every trial must end `finished` or `stopped early (ASHA)`.

    python bench/sweep.py [--images 1200] [--epochs 2] [--rounds 2]
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPOSITORY = Path(__file__).resolve().parents[1]
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != REPOSITORY / "bench"]
sys.path.insert(0, str(REPOSITORY))
from bench.common import machine, print_report  # noqa: E402

VARIANTS = {
    "concurrent_2": dict(max_concurrent=2),
    "concurrent_1": dict(max_concurrent=1),
    "concurrent_2_ray_train_trials": dict(max_concurrent=2, trial_cpus=0.5, trials_in_ray_train=True),
}


def run_variant(data: Path, space: Path, out: Path, epochs: int, settings: dict) -> tuple[float, list[str]]:
    from faceray.config import resolve_config
    from faceray.train.sweep import run_sweep
    from faceray.train.sweep_config import SweepConfig

    config = resolve_config(
        SweepConfig, dict(data=str(data), space=str(space), epochs=epochs, scheduler="asha", out=str(out), **settings)
    )
    started = time.perf_counter()
    run_sweep(config, log=lambda line: None, verbose=0)
    seconds = time.perf_counter() - started
    with open(out / "results.csv") as handle:
        statuses = [row["status"] for row in csv.DictReader(handle)]
    return seconds, statuses


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1200)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--variants", default=",".join(VARIANTS), help="comma-separated subset of " + ", ".join(VARIANTS)
    )
    arguments = parser.parse_args()
    from faceray.runtime import use_loopback_environment

    use_loopback_environment()
    from faceray.config import resolve_config
    from faceray.ingest.config import IngestConfig
    from faceray.ingest.pipeline import run_ingest
    from faceray.ingest.sample import write_fer_sample
    from faceray.runtime import init_ray, shutdown_ray

    work = Path(tempfile.mkdtemp(prefix="faceray-bench-sweep-"))
    write_fer_sample(work / "fer2013.csv", arguments.images, np.random.default_rng(0))
    space = work / "space.yaml"
    space.write_text("lr: [1.0e-3, 3.0e-3]\naugment: ['off', 'paper']\nbn_momentum: 0.9\n")  # 4 grid points
    init_ray()
    data = work / "fer"
    run_ingest(
        resolve_config(
            IngestConfig, dict(dataset="fer", csv=str(data.parent / "fer2013.csv"), out=str(data), progress=False)
        )
    )
    names = [name for name in arguments.variants.split(",") if name]
    seconds: dict[str, list[float]] = {name: [] for name in names}
    statuses: dict[str, list[str]] = {name: [] for name in names}
    for round_index in range(arguments.rounds):
        for name in names if round_index % 2 == 0 else reversed(names):
            took, ended = run_variant(data, space, work / f"{name}_{round_index}", arguments.epochs, VARIANTS[name])
            seconds[name].append(round(took, 1))
            statuses[name] += ended
            print(f"round {round_index + 1} {name}: {took:.1f} s, trials {ended}", flush=True)
    shutdown_ray()
    median = {name: statistics.median(values) for name, values in seconds.items()}
    baseline = median.get("concurrent_1")
    payload = {
        "benchmark": "sweep",
        "machine": machine(),
        "trials": 4,
        "epochs": arguments.epochs,
        "images": arguments.images,
        "seconds": seconds,
        "median_s": median,
        "all_trials_ended_well": {
            name: all(status in ("finished", "stopped early (ASHA)") for status in ended)
            for name, ended in statuses.items()
        },
    }
    rows = [
        (
            "sweep",
            f"4 trials x {arguments.epochs} epochs, ASHA, {arguments.images} FER sample rows, {arguments.rounds} rounds",
        )
    ]
    for name in names:
        ratio = f"  ratio to concurrent_1 {median[name] / baseline:.2f}" if baseline else ""
        rows.append((name, f"{median[name]:6.1f} s{ratio}  (runs {seconds[name]})"))
        if baseline:
            payload[f"ratio_{name}_to_concurrent_1"] = round(median[name] / baseline, 3)
    if "concurrent_2" in median and "concurrent_2_ray_train_trials" in median:
        payload["ratio_ray_train_trials_to_in_trial"] = round(
            median["concurrent_2_ray_train_trials"] / median["concurrent_2"], 3
        )
        rows.append(("Ray Train trials / in-trial", f"{payload['ratio_ray_train_trials_to_in_trial']:.2f}"))
    print_report("bench/sweep", rows, payload)


if __name__ == "__main__":
    main()
