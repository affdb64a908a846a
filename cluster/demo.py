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
    "full": DemoSize(
        imdb_images=1500, fer_rows=1500, emotion_epochs=8, gender_epochs=5, sweep_epochs=2, video_frames=60
    ),
    # small (the test suite's run): one sweep trial; each trial starts a Tune trial, a Train controller and a
    # worker, each importing TensorFlow (~11 s of CPU apiece on 2 cores). Sweeps proper are tested on their own.
    "small": DemoSize(
        imdb_images=300,
        fer_rows=400,
        emotion_epochs=2,
        gender_epochs=1,
        sweep_epochs=1,
        video_frames=30,
        sweep_learning_rates=(1e-3,),
    ),
}


class DemoFailed(RuntimeError):
    """A demo step that failed or whose result was wrong; the report names the step and the reason."""

    def __init__(self, reason: str, step: str = "") -> None:
        super().__init__(reason)
        self.step = step


class Progress:
    """Step headers with elapsed time, so a long run is never silent; remembers the step in progress."""

    def __init__(self, steps: int, log: Any = print) -> None:
        self.steps, self.step, self.started, self.log = steps, 0, time.perf_counter(), log
        self.timings: dict[str, float] = {}
        self.current: str = ""
        self._started_step = 0.0

    def __call__(self, title: str) -> None:
        self._close()
        self.step += 1
        self.log(f"[demo {self.step}/{self.steps} | {time.perf_counter() - self.started:4.0f}s] {title}")
        self.current, self._started_step = title, time.perf_counter()

    def _close(self) -> None:
        if self.current and self.current not in self.timings:
            self.timings[self.current] = round(time.perf_counter() - self._started_step, 1)

    def finish(self) -> float:
        self._close()
        return time.perf_counter() - self.started


def check_client(client: Any, frames_with_faces: int) -> None:
    """The serving step's check: the client read the whole video, most frames were answered, faces were found."""
    check(client.exit_reason == "end of video", f"client: stopped before the end of the video ({client.exit_reason})")
    check(
        client.responses >= max(1, client.frames_read // 2),
        f"client: only {client.responses} of {client.frames_read} frames were answered",
    )
    check(frames_with_faces > 0, "client: no face was found in any answered frame")


def check(condition: bool, reason: str) -> None:
    """A step's own check of its result: a wrong result fails the demo like an exception does."""
    if not condition:
        raise DemoFailed(reason)


def demo_video(path: Path, frames: int) -> Path:
    """A 640x480 video of real faces (scikit-image's astronaut) drifting across a plain background."""
    from skimage import data

    from faceray.serve.client import write_test_video

    astronaut = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)
    face = astronaut[20:240, 120:340]
    pictures = []
    for index in range(frames):
        frame = np.full((480, 640, 3), (70, 90, 110), np.uint8)
        x = 20 + int((640 - 240) * index / max(frames - 1, 1))
        frame[130:350, x : x + 220] = face
        pictures.append(frame)
    return write_test_video(path, pictures, fps=10.0)


def run_demo(out: str | Path = "runs/demo", size: str = "full", address: str | None = None, log: Any = print) -> Path:
    """Run every stage, each checking its own result; returns the path of report.md. A failed step raises
    DemoFailed after writing a report that names the step and the reason."""
    plan = SIZES[size]
    out = Path(out).resolve()
    clear_output(out)
    progress = Progress(8, log)
    facts: dict[str, Any] = {"size": size, "plan": asdict(plan), "failed": None}
    try:
        run_steps(out, plan, address, progress, facts, log)
    except BaseException as error:
        reason = str(error) if isinstance(error, DemoFailed) else f"{type(error).__name__}: {error}".strip()
        facts["failed"] = {"step": progress.current, "reason": reason}
        facts["timings_s"] = progress.timings
        facts["total_s"] = round(progress.finish(), 1)
        write_report(out, facts)
        if isinstance(error, KeyboardInterrupt):
            raise
        raise DemoFailed(reason, progress.current) from error
    facts["timings_s"] = progress.timings
    facts["total_s"] = round(progress.finish(), 1)
    report = write_report(out, facts)
    log(f"demo finished in {facts['total_s']:.0f} s: {report}")
    log("the demo's models learned synthetic faces; to try the paper's published models on your own face (webcam):")
    for command in TRY_REAL_FACES:
        log(f"  {command}")
    return report


def clear_output(out: Path) -> None:
    """Empty `out` for a fresh run, keeping the run log the CLI already writes there."""
    out.mkdir(parents=True, exist_ok=True)
    for entry in out.iterdir():
        if entry.name == "faceray.log":
            continue
        shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()


@dataclass
class DemoRun:
    """What every step of one demo run shares."""

    out: Path
    plan: DemoSize
    progress: Progress
    facts: dict[str, Any]
    log: Any

    def detail(self, line: str) -> None:
        """A line under the current step."""
        self.log("  " + line)


def run_steps(
    out: Path, plan: DemoSize, address: str | None, progress: Progress, facts: dict[str, Any], log: Any
) -> None:
    """The demo's steps, in order; each records its facts and checks its own result."""
    from faceray.runtime import init_ray, shutdown_ray

    run = DemoRun(out, plan, progress, facts, log)
    progress("starting a local Ray on 127.0.0.1")
    started_ray = init_ray(address)  # a Ray this process already runs is used, and left running
    try:
        sample = write_sample_data(run)
        ingest_datasets(run, sample)
        train_models(run)
        sweep_learning_rate(run)
        client = serve_and_run_client(run)
    finally:
        if started_ray:
            shutdown_ray()
    check_answers(run, client)


def write_sample_data(run: DemoRun) -> Any:
    from faceray.ingest.sample import write_sample

    plan = run.plan
    run.progress(
        f"sample data: {plan.imdb_images} IMDB-WIKI crops + {plan.fer_rows} FER-2013 rows (synthetic, real layouts)"
    )
    return write_sample(run.out / "data" / "sample", plan.imdb_images, plan.fer_rows, seed=0)


def ingest_datasets(run: DemoRun, sample: Any) -> None:
    from faceray.ingest.config import IngestConfig
    from faceray.ingest.inspect import inspect_output
    from faceray.ingest.pipeline import run_ingest, summary_line

    run.progress("ingest both datasets into Parquet shards with Ray Data")
    manifests = {}
    for name, settings in (
        ("imdb", dict(dataset="imdb", root=str(sample.imdb_root), out=str(run.out / "data" / "imdb64"))),
        ("fer", dict(dataset="fer", csv=str(sample.fer_csv), out=str(run.out / "data" / "fer48"))),
    ):
        manifest = run_ingest(
            resolve_config(IngestConfig, {**settings, "shard_rows": 500, "progress": False}),
            log=run.log if name == "imdb" else None,
        )
        inputs = manifest.inputs
        check(
            inputs["accepted"] > 0 and inputs["accepted"] + inputs["rejected"] == inputs["total"],
            f"ingest {name}: {inputs['accepted']} accepted + {inputs['rejected']} rejected of {inputs['total']} inputs",
        )
        inspect_output(settings["out"])
        manifests[name] = manifest
        run.detail(summary_line(manifest))
    run.facts["ingest"] = {
        name: {"inputs": manifest.inputs, "rejects": manifest.rejects, "throughput": manifest.this_run}
        for name, manifest in manifests.items()
    }


def train_models(run: DemoRun) -> None:
    from faceray.train.config import TrainConfig
    from faceray.train.pipeline import run_training

    run.progress("train the residual model (mini-Xception) for emotion and for gender with Ray Train")
    run.facts["train"] = {}
    plan = run.plan
    for task, data, epochs in (("emotion", "fer48", plan.emotion_epochs), ("gender", "imdb64", plan.gender_epochs)):
        # bn_momentum 0.9: the sample gives a few hundred steps, too few for the paper's 0.99.
        config = resolve_config(
            TrainConfig,
            dict(
                data=str(run.out / "data" / data),
                task=task,
                model="residual",
                epochs=epochs,
                bn_momentum=0.9,
                augment="off",
                out=str(run.out / "models" / task),
            ),
        )
        summary = run_training(config, log=run.detail)
        evaluation = summary["evaluation"]
        check((run.out / "models" / task / "model.keras").is_file(), f"train {task}: no model.keras was written")
        run.detail(
            f"{task}: {evaluation['split']} accuracy {evaluation['accuracy']:.3f} (majority-class chance "
            f"{evaluation['chance_accuracy']:.3f}), macro-F1 {evaluation['macro_f1']:.3f}"
        )
        run.facts["train"][task] = evaluation | {"metrics": summary["metrics"]}


def sweep_learning_rate(run: DemoRun) -> None:
    from faceray.train.sweep import format_table, run_sweep
    from faceray.train.sweep_config import SweepConfig

    rates = run.plan.sweep_learning_rates
    run.progress(f"a small sweep of the learning rate with Ray Tune ({len(rates)} trials)")
    space = run.out / "sweep_space.yaml"
    space.write_text(f"lr: [{', '.join(f'{rate:.1e}' for rate in rates)}]\naugment: 'off'\nbn_momentum: 0.9\n")
    # Trials side by side, as many as the machine holds (faceray.resources.plan_sweep), each training in its trial.
    config = dict(
        data=str(run.out / "data" / "fer48"),
        space=str(space),
        epochs=run.plan.sweep_epochs,
        scheduler="fifo",
        out=str(run.out / "sweep"),
    )
    sweep = run_sweep(resolve_config(SweepConfig, config), log=run.detail)
    failed_trials = [row["trial_id"] for row in sweep["rows"] if row["status"].startswith("failed")]
    check(not failed_trials and sweep["best"] is not None, f"sweep: trials failed: {', '.join(failed_trials) or 'all'}")
    run.facts["sweep_table"] = format_table(sweep["rows"], sweep["space_keys"])
    run.log("\n".join("  " + line for line in run.facts["sweep_table"].splitlines()))


def serve_and_run_client(run: DemoRun) -> Any:
    """Start the service on the two trained models, run the client headless over a generated video, stop it."""
    from faceray.runtime import free_loopback_port
    from faceray.serve.client import run_client
    from faceray.serve.config import ClientConfig, ServeConfig
    from faceray.serve.service import start_service, stop_service

    run.progress("start the face-classification service on Ray Serve")
    models = run.out / "models"
    config = dict(emotion_model=str(models / "emotion"), gender_model=str(models / "gender"), port=free_loopback_port())
    url = start_service(resolve_config(ServeConfig, config), log=run.detail)
    try:
        assert url is not None, "start_service returns a URL unless asked to stop"
        run.progress("run the client headless over a generated video")
        video = demo_video(run.out / "input.mp4", run.plan.video_frames)
        client_config = ClientConfig(
            source=str(video),
            url=url,
            output=str(run.out / "annotated.mp4"),
            jsonl=str(run.out / "client.jsonl"),
            display=False,
        )
        return run_client(client_config, log=run.detail)
    finally:
        stop_service()


def check_answers(run: DemoRun, client: Any) -> None:
    """The client's answers (client.jsonl) into the report's facts, checked; a frame of the video as a PNG."""
    out = run.out
    run.progress("check the client's answers and write the report")
    results = (
        [json.loads(line) for line in (out / "client.jsonl").read_text().splitlines()]
        if (out / "client.jsonl").exists()
        else []
    )
    totals = [result["timings_ms"]["total"] for result in results if result.get("timings_ms")]
    run.facts["serve"] = {
        "responses": client.responses,
        "frames_read": client.frames_read,
        "frames_dropped": client.frames_dropped,
        "reconnects": client.reconnects,
        "client_fps": round(client.fps, 2),
        "client_mean_latency_ms": round(client.mean_latency_ms, 1),
        "server_p50_ms": round(float(np.percentile(totals, 50)), 1) if totals else None,
        "frames_with_faces": sum(1 for result in results if result["faces"]),
        "exit_reason": client.exit_reason,
    }
    run.detail(
        f"client: {client.responses} of {client.frames_read} frames answered ({client.frames_dropped} dropped, never "
        f"queued), {run.facts['serve']['frames_with_faces']} with a face, {client.reconnects} reconnects; "
        f"{client.fps:.1f} frames/s, mean round trip {client.mean_latency_ms:.0f} ms; ended: {client.exit_reason}"
    )
    check_client(client, run.facts["serve"]["frames_with_faces"])
    snapshot_frame(out / "annotated.mp4", out / "annotated_frame.png")


def snapshot_frame(video: Path, png: Path) -> None:
    """Save the middle frame of the annotated video as a PNG for the report."""
    capture = cv2.VideoCapture(str(video))
    count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    capture.set(cv2.CAP_PROP_POS_FRAMES, max(0, count // 2))
    ok, frame = capture.read()
    capture.release()
    if ok:
        cv2.imwrite(str(png), frame)


TRY_REAL_FACES = (
    ". .venv/bin/activate   # the faceray command is in the project's .venv",
    "faceray fetch-weights paper --out models",
    "faceray serve --emotion-model models/emotion-paper --gender-model models/gender-paper",
    "faceray client --source 0",
)


def write_report(out: Path, facts: dict[str, Any]) -> Path:
    """report.md (and report.json) with the numbers and links to every PNG the stages wrote; a failed step is named
    at the top with its reason, and only the steps that finished have sections."""
    lines = ["# faceray demo report", ""]
    failed = facts.get("failed")
    if failed:
        lines += [
            f'> **FAILED at step "{failed["step"]}"**: {failed["reason"]}',
            ">",
            "> The sections below are the steps that finished. The run log (Ray's and TensorFlow's lines) is",
            "> `faceray.log` in this folder.",
            "",
        ]
    lines += [
        "> **The data here is synthetic**: drawn faces generated by `faceray sample` in the real IMDB-WIKI and",
        "> FER-2013 layouts, with a few broken inputs on purpose. Accuracy on it says nothing about real faces;",
        "> it shows that every stage runs end to end. For models that work on real faces, see the end.",
        "",
        f"Size: `{facts['size']}`; total {facts.get('total_s', '?')} s on a local Ray (127.0.0.1).",
    ]
    if "ingest" in facts:
        lines += [
            "",
            "## Ingest (Ray Data → Parquet)",
            "",
            "| dataset | inputs | accepted | rejected | img/s | rejects by reason |",
            "|---|---|---|---|---|---|",
        ]
        for name, item in facts["ingest"].items():
            reasons = ", ".join(f"{reason}: {count}" for reason, count in item["rejects"].items())
            lines.append(
                f"| {name} | {item['inputs']['total']} | {item['inputs']['accepted']} | {item['inputs']['rejected']} | "
                f"{item['throughput']['images_per_s']} | {reasons} |"
            )
        lines += [
            "",
            "![IMDB samples](data/imdb64/inspect/samples.png) ![FER samples](data/fer48/inspect/samples.png)",
            "",
            "![IMDB classes](data/imdb64/inspect/class_distribution.png) ![FER classes](data/fer48/inspect/class_distribution.png)",
        ]
    if facts.get("train"):
        lines += [
            "",
            "## Training (Ray Train, residual mini-Xception)",
            "",
            "| task | split | accuracy | chance (majority) | macro-F1 | epochs | median img/s |",
            "|---|---|---|---|---|---|---|",
        ]
        for task, item in facts["train"].items():
            lines.append(
                f"| {task} | {item['split']} | {item['accuracy']:.3f} | {item['chance_accuracy']:.3f} | "
                f"{item['macro_f1']:.3f} | {item['metrics']['epochs_run']} | {item['metrics']['train_images_per_s']:.0f} |"
            )
        for task in facts["train"]:
            lines += [
                "",
                f"![{task} learning curves](models/{task}/learning_curves.png) "
                f"![{task} confusion matrix](models/{task}/confusion_matrix.png)",
            ]
    if "sweep_table" in facts:
        lines += [
            "",
            "## Sweep (Ray Tune)",
            "",
            "```",
            facts["sweep_table"],
            "```",
            "",
            "![validation curves](sweep/curves.png)",
        ]
    if "serve" in facts:
        serve = facts["serve"]
        lines += [
            "",
            "## Serving (Ray Serve) and the client",
            "",
            f"- {serve['responses']} frames answered of {serve['frames_read']} read ({serve['frames_dropped']} dropped, "
            f"never queued); {serve['frames_with_faces']} with a face found; {serve.get('reconnects', 0)} reconnects; "
            f"the client ended at: {serve['exit_reason']}",
            f"- client: {serve['client_fps']} frames/s, mean round trip {serve['client_mean_latency_ms']} ms; "
            f"server p50 {serve['server_p50_ms']} ms (2 cores shared by every stage)",
            "- annotated video: [annotated.mp4](annotated.mp4), one frame below; per-frame results: `client.jsonl`",
            "",
            "![annotated frame](annotated_frame.png)",
        ]
    lines += ["", "## Time per step (s)", "", "| step | seconds |", "|---|---|"]
    lines += [f"| {step} | {seconds} |" for step, seconds in facts.get("timings_s", {}).items()]
    lines += [
        "",
        "## On real faces: the paper's published models",
        "",
        "Downloaded only when you run the first command (MIT licence, SHA-256 checked):",
        "",
        "```bash",
        *TRY_REAL_FACES,
        "```",
        "",
        "## On the real datasets, and on a cluster",
        "",
        "```bash",
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
        "```",
        "",
    ]
    report = out / "report.md"
    report.write_text("\n".join(lines))
    (out / "report.json").write_text(json.dumps(facts, indent=2, default=str))
    return report
