"""Serving latency and throughput over HTTP vs the paper's reference loop, in one run.

Frames: 640x480 with 1 to 6 real faces (scikit-image's astronaut, pasted at several places and sizes).
Reference loop (one process): Haar detectMultiScale(gray, 1.3, 5) on the full frame, then `predict` per face
per model. Service: POST /v1/faces on 127.0.0.1 at concurrency 1 and 8 (bounded: a fixed number of requests).
Also: classifier cost per face in batches of 32. Models: the published weights when ../shared/reference exists
(imported with faceray import-model), else untrained models of the same architecture (the same speed).
Targets on 2 cores: >= 5x the reference throughput at concurrency 8; p50 <= 30 ms at concurrency 1;
<= 1 ms per face in batches.

    python bench/serve.py [--requests 80] [--max-side 400] [--scale-factor 1.2] [--runtime onnx|tensorflow]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np

REPOSITORY = Path(__file__).resolve().parents[1]
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != REPOSITORY / "bench"]
sys.path.insert(0, str(REPOSITORY))
from bench.common import machine, print_report  # noqa: E402

REFERENCE = REPOSITORY.parent / "shared" / "reference"


def make_frames(count: int) -> list[np.ndarray]:
    """640x480 BGR frames holding 1..6 astronaut faces each."""
    from skimage import data

    astronaut = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)
    face = astronaut[20:240, 120:340]  # the face with some context
    rng = np.random.default_rng(0)
    slots = [(x, y) for y in (10, 250) for x in (10, 220, 430)]
    frames = []
    for index in range(count):
        faces = 1 + index % 6
        frame = np.full((480, 640, 3), rng.integers(60, 160, 3), np.uint8)
        for slot in rng.permutation(len(slots))[:faces]:
            side = int(rng.integers(150, 200))
            x, y = slots[slot]
            frame[y : y + side, x : x + side] = cv2.resize(face, (side, side))
        frames.append(frame)
    return frames


def model_dirs(folder: Path) -> dict[str, Path]:
    from train.model_dir import import_legacy_model, make_card, save_model_dir
    from train.models import build_model

    if (REFERENCE / "fer2013_mini_XCEPTION.102-0.66.hdf5").is_file():
        return {"emotion": import_legacy_model(REFERENCE / "fer2013_mini_XCEPTION.102-0.66.hdf5", "emotion", folder / "emotion"),
                "gender": import_legacy_model(REFERENCE / "gender_mini_XCEPTION.21-0.95.hdf5", "gender", folder / "gender")}
    return {task: save_model_dir(folder / task, build_model("residual", (64, 64, 1), classes),
                                 make_card(task, (64, 64, 1), "gray", "residual", 0.1))
            for task, classes in (("emotion", 7), ("gender", 2))}


def reference_loop(frames: list[np.ndarray], dirs: dict[str, Path]) -> tuple[float, float]:
    """The paper's demo loop: frames/s and mean faces found per frame."""
    from train.model_dir import load_model_dir

    models = {task: load_model_dir(folder)[0] for task, folder in dirs.items()}
    cascade = cv2.CascadeClassifier(str(Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml"))
    found = 0
    started = time.perf_counter()
    for frame in frames:
        grey = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        faces = cascade.detectMultiScale(grey, 1.3, 5)
        found += len(faces)
        for x, y, w, h in faces:
            crop = cv2.resize(grey[y : y + h, x : x + w], (64, 64)).astype(np.float32)[None, :, :, None]
            for model in models.values():
                model.predict(crop, verbose=0)
    return len(frames) / (time.perf_counter() - started), found / len(frames)


def per_face_ms(dirs: dict[str, Path], runtime: str) -> float:
    """The emotion classifier's time per face in batches of 32, as the service runs it."""
    from serve.classify import FaceClassifier

    classifier = FaceClassifier(dirs["emotion"], runtime)
    batch = np.random.default_rng(0).integers(0, 256, (32, 64, 64, 1)).astype(np.uint8)
    classifier.predict(batch)
    started = time.perf_counter()
    for _ in range(20):
        classifier.predict(batch)
    return (time.perf_counter() - started) / (20 * 32) * 1000


def measure_http(url: str, bodies: list[bytes], concurrency: int) -> tuple[np.ndarray, float, float, dict[str, float]]:
    """Latencies (ms), frames/s, mean faces per frame and the service's median timings_ms for len(bodies)
    requests at `concurrency`."""
    import requests

    session = requests.Session()

    def one(body: bytes) -> tuple[float, dict]:
        started = time.perf_counter()
        response = session.post(url + "/v1/faces", data=body, headers={"Content-Type": "image/jpeg"}, timeout=60)
        response.raise_for_status()
        return (time.perf_counter() - started) * 1000, response.json()

    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        results = list(pool.map(one, bodies))
    elapsed = time.perf_counter() - started
    answers = [answer for _, answer in results]
    timings = {name: round(float(np.median([answer["timings_ms"][name] for answer in answers])), 1)
               for name in answers[0]["timings_ms"]}
    return (np.array([latency for latency, _ in results]), len(bodies) / elapsed,
            float(np.mean([len(answer["faces"]) for answer in answers])), timings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=80, help="requests per concurrency level")
    parser.add_argument("--reference-frames", type=int, default=12)
    parser.add_argument("--max-side", type=int, default=400, help="detector's max side (400 with 1.2 finds every face here)")
    parser.add_argument("--scale-factor", type=float, default=1.2)
    parser.add_argument("--runtime", choices=("onnx", "tensorflow"), default="onnx", help="the service's classifier runtime")
    arguments = parser.parse_args()
    from faceray.runtime import use_loopback_environment

    use_loopback_environment()

    from faceray.config import resolve_config
    from faceray.runtime import free_loopback_port, init_ray, shutdown_ray
    from serve.config import ServeConfig
    from serve.service import start_service, stop_service

    work = Path(tempfile.mkdtemp(prefix="faceray-bench-serve-"))
    dirs = model_dirs(work)
    frames = make_frames(max(arguments.requests, arguments.reference_frames))
    bodies = [cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 85])[1].tobytes() for frame in frames][: arguments.requests]
    reference_fps, reference_faces = reference_loop(frames[: arguments.reference_frames], dirs)
    face_ms = {runtime: per_face_ms(dirs, runtime) for runtime in ("onnx", "tensorflow")}

    init_ray()
    url = start_service(resolve_config(ServeConfig, dict(emotion_model=str(dirs["emotion"]), gender_model=str(dirs["gender"]),
                                                         port=free_loopback_port(), max_side=arguments.max_side,
                                                         scale_factor=arguments.scale_factor, runtime=arguments.runtime)))
    try:
        measure_http(url, bodies[:8], 1)  # warm-up
        latencies_1, fps_1, faces_1, timings_1 = measure_http(url, bodies, 1)
        latencies_8, fps_8, faces_8, _ = measure_http(url, bodies, 8)
    finally:
        stop_service()
        shutdown_ray()

    def percentiles(values: np.ndarray) -> dict[str, float]:
        return {f"p{q}": round(float(np.percentile(values, q)), 1) for q in (50, 95, 99)}

    payload = {
        "benchmark": "serve", "machine": machine(), "requests": len(bodies), "weights": "published" if (REFERENCE / "fer2013_mini_XCEPTION.102-0.66.hdf5").is_file() else "untrained",
        "detector": {"max_side": arguments.max_side, "scale_factor": arguments.scale_factor},
        "reference_fps": round(reference_fps, 2), "reference_faces_per_frame": round(reference_faces, 2),
        "concurrency_1": {"fps": round(fps_1, 2), "faces_per_frame": round(faces_1, 2), **percentiles(latencies_1),
                          "service_timings_ms_p50": timings_1},
        "concurrency_8": {"fps": round(fps_8, 2), "faces_per_frame": round(faces_8, 2), **percentiles(latencies_8)},
        "ratio_concurrency_8_to_reference": round(fps_8 / reference_fps, 2),
        "runtime": arguments.runtime,
        "classifier_ms_per_face_batch_32": {runtime: round(value, 3) for runtime, value in face_ms.items()},
    }
    rows = [
        ("reference loop", f"{reference_fps:6.2f} frames/s  ({reference_faces:.1f} faces/frame found)"),
        ("service, concurrency 1", f"{fps_1:6.2f} frames/s  p50 {payload['concurrency_1']['p50']} p95 {payload['concurrency_1']['p95']} "
                                   f"p99 {payload['concurrency_1']['p99']} ms  ({faces_1:.1f} faces/frame)"),
        ("service, concurrency 8", f"{fps_8:6.2f} frames/s  p50 {payload['concurrency_8']['p50']} p95 {payload['concurrency_8']['p95']} "
                                   f"p99 {payload['concurrency_8']['p99']} ms"),
        ("inside the service, c1", "p50 ms: " + ", ".join(f"{name} {value}" for name, value in timings_1.items())
                                   + " (the rest is HTTP and Serve's proxy)"),
        ("ratio c8 / reference", f"{fps_8 / reference_fps:6.2f}   target >= 5"),
        ("p50 at concurrency 1", f"{payload['concurrency_1']['p50']:6.1f} ms   target <= 30"),
        ("classifier per face", f"{face_ms['onnx']:6.3f} ms ONNX Runtime, {face_ms['tensorflow']:.3f} ms TensorFlow "
                                f"(batches of 32)   target <= 1"),
    ]
    print_report("bench/serve", rows, payload)


if __name__ == "__main__":
    main()
