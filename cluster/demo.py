"""`faceray demo`: the whole workflow on a local Ray with generated sample data, then a Markdown report.

sample data -> ingest IMDB-WIKI and FER-2013 -> train the residual model for emotion and for gender ->
a small sweep -> start the service -> the client, headless, over a generated video -> stop -> report.md
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from faceray.config import resolve_config


@dataclass(frozen=True)
class DemoSize:
    imdb_images: int
    fer_rows: int
    emotion_epochs: int
    gender_epochs: int
    sweep_epochs: int
    video_frames: int
    sweep_learning_rates: tuple[float, ...] = (1e-3, 1e-2)


SIZES = {
    "full": DemoSize(imdb_images=1500, fer_rows=1500, emotion_epochs=8, gender_epochs=5, sweep_epochs=2, video_frames=60),
    # small (the test suite's run): one sweep trial; each trial starts a Tune trial, a Train controller and a
    # worker, each importing TensorFlow (~11 s of CPU apiece on 2 cores). Sweeps proper are tested on their own.
    "small": DemoSize(imdb_images=300, fer_rows=400, emotion_epochs=2, gender_epochs=1, sweep_epochs=1, video_frames=12,
                      sweep_learning_rates=(1e-3,)),
}


class Progress:
    """Step headers with elapsed time, so a 10-minute run is never silent."""

    def __init__(self, steps: int) -> None:
        self.steps, self.step, self.started = steps, 0, time.perf_counter()
        self.timings: dict[str, float] = {}
        self._current: tuple[str, float] | None = None

    def __call__(self, title: str) -> None:
        self._close()
        self.step += 1
        print(f"\n[demo {self.step}/{self.steps} | {time.perf_counter() - self.started:5.0f}s] {title}", flush=True)
        self._current = (title, time.perf_counter())

    def _close(self) -> None:
        if self._current:
            self.timings[self._current[0]] = round(time.perf_counter() - self._current[1], 1)
            self._current = None

    def finish(self) -> float:
        self._close()
        return time.perf_counter() - self.started


def demo_video(path: Path, frames: int) -> Path:
    """A 640x480 video of real faces (scikit-image's astronaut) drifting across a plain background."""
    from skimage import data

    from serve.client import write_test_video

    astronaut = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)
    face = astronaut[20:240, 120:340]
    pictures = []
    for index in range(frames):
        frame = np.full((480, 640, 3), (70, 90, 110), np.uint8)
        x = 20 + int((640 - 240) * index / max(frames - 1, 1))
        frame[130:350, x : x + 220] = face
        pictures.append(frame)
    return write_test_video(path, pictures, fps=10.0)


def run_demo(out: str | Path = "runs/demo", size: str = "full", address: str | None = None) -> Path:
    """Run every stage; returns the path of report.md."""
    from faceray.runtime import free_loopback_port, init_ray, shutdown_ray
    from ingest.config import IngestConfig
    from ingest.inspect import inspect_output
    from ingest.pipeline import run_ingest
    from ingest.sample import write_sample
    from serve.client import ClientConfig, run_client
    from serve.config import ServeConfig
    from serve.service import start_service, stop_service
    from train.config import TrainConfig
    from train.pipeline import run_training
    from train.sweep import format_table, run_sweep
    from train.sweep_config import SweepConfig

    plan = SIZES[size]
    out = Path(out).resolve()
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    progress = Progress(8)
    facts: dict[str, Any] = {"size": size, "plan": asdict(plan)}

    progress("starting a local Ray on 127.0.0.1")
    init_ray(address)
    try:
        progress(f"sample data: {plan.imdb_images} IMDB-WIKI crops + {plan.fer_rows} FER-2013 rows (synthetic, real layouts)")
        sample = write_sample(out / "data" / "sample", plan.imdb_images, plan.fer_rows, seed=0)

        progress("ingest both datasets into Parquet shards with Ray Data")
        manifests = {}
        for name, settings in (
            ("imdb", dict(dataset="imdb", root=str(sample.imdb_root), out=str(out / "data" / "imdb64"))),
            ("fer", dict(dataset="fer", csv=str(sample.fer_csv), out=str(out / "data" / "fer48"))),
        ):
            manifests[name] = run_ingest(resolve_config(IngestConfig, {**settings, "shard_rows": 500}))
            table, _ = inspect_output(settings["out"])
            print(table)
        facts["ingest"] = {name: {"inputs": manifest["inputs"], "rejects": manifest["rejects"], "throughput": manifest["this_run"]}
                           for name, manifest in manifests.items()}

        progress("train the residual model (mini-Xception) for emotion and for gender with Ray Train")
        trained = {}
        for task, data, epochs in (("emotion", "fer48", plan.emotion_epochs), ("gender", "imdb64", plan.gender_epochs)):
            # bn_momentum 0.9: the sample gives a few hundred steps, too few for the paper's 0.99.
            config = resolve_config(TrainConfig, dict(data=str(out / "data" / data), task=task, model="residual",
                                                      epochs=epochs, bn_momentum=0.9, augment="off",
                                                      out=str(out / "models" / task)))
            trained[task] = run_training(config)
            print(f"{task}: {trained[task]['evaluation']}")
        facts["train"] = {task: summary["evaluation"] | {"metrics": summary["metrics"]} for task, summary in trained.items()}

        progress(f"a small sweep of the learning rate with Ray Tune ({len(plan.sweep_learning_rates)} trials)")
        space = out / "sweep_space.yaml"
        rates = ", ".join(f"{rate:.1e}" for rate in plan.sweep_learning_rates)
        space.write_text(f"lr: [{rates}]\naugment: 'off'\nbn_momentum: 0.9\n")
        # Trials side by side, as many as the machine holds (faceray.resources.plan_sweep), each training in its trial.
        sweep = run_sweep(resolve_config(SweepConfig, dict(data=str(out / "data" / "fer48"), space=str(space),
                                                           epochs=plan.sweep_epochs, scheduler="fifo",
                                                           out=str(out / "sweep"))))
        sweep_table = format_table(sweep["rows"], sweep["space_keys"])
        print(sweep_table)

        progress("start the face-classification service on Ray Serve")
        port = free_loopback_port()
        url = start_service(resolve_config(ServeConfig, dict(emotion_model=str(out / "models" / "emotion"),
                                                             gender_model=str(out / "models" / "gender"), port=port)))
        try:
            progress("run the client headless over a generated video")
            video = demo_video(out / "input.mp4", plan.video_frames)
            summary = run_client(ClientConfig(source=str(video), url=url, output=str(out / "annotated.mp4"),
                                              jsonl=str(out / "client.jsonl"), display=False))
            print(f"client: {summary}")
        finally:
            stop_service()
    finally:
        shutdown_ray()

    progress("write the report")
    results = [json.loads(line) for line in (out / "client.jsonl").read_text().splitlines()]
    totals = [result["timings_ms"]["total"] for result in results if result.get("timings_ms")]
    facts["serve"] = {
        "responses": summary.responses, "frames_read": summary.frames_read, "frames_dropped": summary.frames_dropped,
        "client_fps": round(summary.fps, 2), "client_mean_latency_ms": round(summary.mean_latency_ms, 1),
        "server_p50_ms": round(float(np.percentile(totals, 50)), 1) if totals else None,
        "frames_with_faces": sum(1 for result in results if result["faces"]),
    }
    snapshot_frame(out / "annotated.mp4", out / "annotated_frame.png")
    facts["timings_s"] = progress.timings
    facts["total_s"] = round(progress.finish(), 1)
    report = write_report(out, facts, sweep_table)
    print(f"\ndemo finished in {facts['total_s']:.0f} s: {report}")
    return report


def snapshot_frame(video: Path, png: Path) -> None:
    """Save the middle frame of the annotated video as a PNG for the report."""
    capture = cv2.VideoCapture(str(video))
    count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    capture.set(cv2.CAP_PROP_POS_FRAMES, max(0, count // 2))
    ok, frame = capture.read()
    capture.release()
    if ok:
        cv2.imwrite(str(png), frame)


def write_report(out: Path, facts: dict[str, Any], sweep_table: str) -> Path:
    """report.md with the numbers and links to every PNG the stages wrote."""
    ingest, train, serve = facts["ingest"], facts["train"], facts["serve"]
    lines = [
        "# faceray demo report",
        "",
        "> **The data here is synthetic**: drawn faces generated by `faceray sample` in the real IMDB-WIKI and",
        "> FER-2013 layouts, with a few broken inputs on purpose. Accuracy on it says nothing about real faces;",
        "> it shows that every stage runs end to end. The commands for the real datasets are at the end.",
        "",
        f"Size: `{facts['size']}`; total {facts['total_s']} s on a local Ray (127.0.0.1).",
        "",
        "## Ingest (Ray Data → Parquet)",
        "",
        "| dataset | inputs | accepted | rejected | img/s | rejects by reason |",
        "|---|---|---|---|---|---|",
    ]
    for name, item in ingest.items():
        reasons = ", ".join(f"{reason}: {count}" for reason, count in item["rejects"].items())
        lines.append(f"| {name} | {item['inputs']['total']} | {item['inputs']['accepted']} | {item['inputs']['rejected']} | "
                     f"{item['throughput']['images_per_s']} | {reasons} |")
    lines += ["", "![IMDB samples](data/imdb64/inspect/samples.png) ![FER samples](data/fer48/inspect/samples.png)", "",
              "![IMDB classes](data/imdb64/inspect/class_distribution.png) ![FER classes](data/fer48/inspect/class_distribution.png)", "",
              "## Training (Ray Train, residual mini-Xception)", "",
              "| task | split | accuracy | chance (majority) | macro-F1 | epochs | median img/s |", "|---|---|---|---|---|---|---|"]
    for task, item in train.items():
        lines.append(f"| {task} | {item['split']} | {item['accuracy']:.3f} | {item['chance_accuracy']:.3f} | {item['macro_f1']:.3f} | "
                     f"{item['metrics']['epochs_run']} | {item['metrics']['train_images_per_s']:.0f} |")
    for task in train:
        lines += ["", f"![{task} learning curves](models/{task}/learning_curves.png) ![{task} confusion matrix](models/{task}/confusion_matrix.png)"]
    lines += ["", "## Sweep (Ray Tune)", "", "```", sweep_table, "```", "", "![validation curves](sweep/curves.png)", "",
              "## Serving (Ray Serve) and the client", "",
              f"- {serve['responses']} frames answered of {serve['frames_read']} read ({serve['frames_dropped']} dropped, "
              f"never queued); {serve['frames_with_faces']} with a face found",
              f"- client: {serve['client_fps']} frames/s, mean round trip {serve['client_mean_latency_ms']} ms; "
              f"server p50 {serve['server_p50_ms']} ms (2 cores shared by every stage)",
              "- annotated video: [annotated.mp4](annotated.mp4), one frame below; per-frame results: `client.jsonl`", "",
              "![annotated frame](annotated_frame.png)", "",
              "## Time per step (s)", "", "| step | seconds |", "|---|---|"]
    lines += [f"| {step} | {seconds} |" for step, seconds in facts["timings_s"].items()]
    lines += ["", "## On the real datasets, and on a cluster", "", "```bash",
              "# IMDB-WIKI crops (imdb_crop/ with imdb.mat) and FER-2013 (fer2013.csv), downloaded by you",
              "faceray ingest imdb --root data/imdb_crop --out data/imdb64 --by-identity",
              "faceray ingest fer --csv data/fer2013.csv --out data/fer64 --size 64",
              "faceray train --data data/fer64 --task emotion --model residual --epochs 100 --out models/emotion",
              "faceray train --data data/imdb64 --task gender --model residual --epochs 30 --out models/gender",
              "faceray sweep --data data/fer64 --space train/spaces/report.yaml --final --out runs/sweep",
              "faceray serve --emotion-model models/emotion --gender-model models/gender",
              "faceray client --source 0",
              "# the same stages on a Ray cluster (ray up ray_cluster.yaml), data on shared storage:",
              "faceray submit ingest imdb --root /data/imdb_crop --out /data/imdb64 --address http://HEAD:8265",
              "faceray submit train --data /data/fer64 --task emotion --workers 4 --out /data/models/emotion --address http://HEAD:8265",
              "```", ""]
    report = out / "report.md"
    report.write_text("\n".join(lines))
    (out / "report.json").write_text(json.dumps(facts, indent=2, default=str))
    return report
