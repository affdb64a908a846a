"""Real-time serving: the in-process FaceAnalyzer, the service over HTTP and over its WebSocket stream, and the
paper's reference loop, on the same frames in one run.

Frames: 640x480 like a video, scenes of 1 to 6 real faces (scikit-image's astronaut pasted at several places and
sizes) held for 6 frames each while the picture pans; the number of faces present is known, so recall is exact
(the stream misses new faces for up to k-1 frames after a scene cut, as it would in a real video). Rows:
- reference loop (one process): Haar detectMultiScale(gray, 1.3, 5), then `predict` per face per model;
- in-process FaceAnalyzer.analyze per frame (the floor the service is compared with), and a stream session;
- HTTP POST /v1/faces at concurrency 1 and 8 (concurrency-1 rows and their in-process floors in alternating
  rounds, medians reported); one WebSocket stream (each frame sent when the last is answered)
  and 4 concurrent streams; all bounded, on 127.0.0.1;
- recall of each detector (faces found / faces present) on these frames and on the real group photo of
  ../shared/reference when it exists; the classifier's cost per face.
Targets on 2 cores: HTTP p50 <= 20 ms, stream p50 <= 15 ms, one stream >= 30 frames/s, concurrency 8 and 4
streams >= 20x the reference loop, service <= 1.5x the in-process analyzer.

    python bench/serve.py [--requests 120] [--detector blazeface|haar] [--detect-every 3]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import cv2
import numpy as np

REPOSITORY = Path(__file__).resolve().parents[1]
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != REPOSITORY / "bench"]
sys.path.insert(0, str(REPOSITORY))
from bench.common import machine, print_report  # noqa: E402

REFERENCE = REPOSITORY.parent / "shared" / "reference"


def make_frames(count: int, hold: int = 6) -> tuple[list[np.ndarray], list[int]]:
    """640x480 BGR frames like a video: scenes of 1..6 astronaut faces, each held for `hold` frames while the
    picture pans 3 px per frame; returns the frames and the number of faces in each."""
    from skimage import data

    astronaut = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)
    face = astronaut[20:240, 120:340]  # the face with some context
    rng = np.random.default_rng(0)
    slots = [(x, y) for y in (10, 250) for x in (10, 215, 420)]
    frames, counts = [], []
    scene_index = 0
    while len(frames) < count:
        faces = 1 + scene_index % 6
        scene = np.full((480, 640, 3), rng.integers(60, 160, 3), np.uint8)
        for slot in rng.permutation(len(slots))[:faces]:
            side = int(rng.integers(150, 200))
            x, y = slots[slot]
            scene[y : y + side, x : x + side] = cv2.resize(face, (side, side))
        for step in range(min(hold, count - len(frames))):
            frames.append(np.roll(scene, 3 * step, axis=1))
            counts.append(faces)
        scene_index += 1
    return frames, counts


def model_dirs(folder: Path) -> dict[str, Path]:
    from faceray.faces import UNRECORDED_CROP
    from faceray.model_card import ModelCard, save_model_dir
    from faceray.train.model_dir import import_legacy_model
    from faceray.train.models import build_model

    if (REFERENCE / "fer2013_mini_XCEPTION.102-0.66.hdf5").is_file():
        return {
            "emotion": import_legacy_model(
                REFERENCE / "fer2013_mini_XCEPTION.102-0.66.hdf5", "emotion", folder / "emotion"
            ),
            "gender": import_legacy_model(REFERENCE / "gender_mini_XCEPTION.21-0.95.hdf5", "gender", folder / "gender"),
        }
    return {
        task: save_model_dir(
            folder / task,
            build_model("residual", (64, 64, 1), classes),
            ModelCard(task, (64, 64, 1), "gray", "residual", UNRECORDED_CROP),
        )
        for task, classes in (("emotion", 7), ("gender", 2))
    }


def jpeg_bodies(frames: list[np.ndarray]) -> list[bytes]:
    """The frames (BGR) as the JPEG request bodies every serving benchmark sends (quality 85)."""
    return [cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 85])[1].tobytes() for frame in frames]


def service_config(dirs: dict[str, Path], **settings: Any) -> Any:
    """The service's ServeConfig over the benchmark's model directories, on a free loopback port, plus `settings`."""
    from faceray.config import resolve_config
    from faceray.runtime import free_loopback_port
    from faceray.serve.config import ServeConfig

    models = dict(emotion_model=str(dirs["emotion"]), gender_model=str(dirs["gender"]), port=free_loopback_port())
    return resolve_config(ServeConfig, {**models, **settings})


def reference_loop(frames: list[np.ndarray], dirs: dict[str, Path]) -> float:
    """The paper's demo loop: frames/s."""
    from faceray.model_card import load_model_dir

    models = {task: load_model_dir(folder)[0] for task, folder in dirs.items()}
    cascade = cv2.CascadeClassifier(str(Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml"))
    started = time.perf_counter()
    for frame in frames:
        grey = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        for x, y, w, h in cascade.detectMultiScale(grey, 1.3, 5):
            crop = cv2.resize(grey[y : y + h, x : x + w], (64, 64)).astype(np.float32)[None, :, :, None]
            for model in models.values():
                model.predict(crop, verbose=0)
    return len(frames) / (time.perf_counter() - started)


def recall(detector_name: str, frames: list[np.ndarray], counts: list[int]) -> dict[str, float]:
    """Faces found / faces present (found capped at present per frame) and ms per frame, one thread."""
    from faceray.serve.detect import DetectorSettings, make_detector

    detector = make_detector(DetectorSettings(name=detector_name))
    detector.detect(frames[0])
    started = time.perf_counter()
    found = [min(len(detector.detect(frame)), present) for frame, present in zip(frames, counts)]
    elapsed = time.perf_counter() - started
    result = {"recall": round(sum(found) / sum(counts), 3), "ms_per_frame": round(elapsed / len(frames) * 1000, 2)}
    group = REFERENCE / "test_image.jpg"
    if group.is_file():
        photo = cv2.resize(cv2.imread(str(group)), (640, 480), interpolation=cv2.INTER_AREA)
        result["group_photo_found_of_6"] = len(detector.detect(photo))
    return result


def percentiles(values: list[float]) -> dict[str, float]:
    return {f"p{q}": round(float(np.percentile(values, q)), 1) for q in (50, 95)}


def measure_in_process(process, bodies: list[bytes]) -> dict[str, float]:
    """Latencies and frames/s of `process(frame)` over the frames, in this process (decode included, as in the
    service)."""
    from faceray.serve.vision import decode_frame

    latencies = []
    started = time.perf_counter()
    for body in bodies:
        began = time.perf_counter()
        process(decode_frame(body))
        latencies.append((time.perf_counter() - began) * 1000)
    return {"fps": round(len(bodies) / (time.perf_counter() - started), 1), **percentiles(latencies)}


def median_row(rounds: list[dict[str, float]]) -> dict[str, float]:
    """The median of each figure over rounds."""
    return {
        key: round(float(np.median([row[key] for row in rounds])), 1)
        for key in rounds[0]
        if key not in ("recall", "shed")
    }


def measure_http(url: str, bodies: list[bytes], concurrency: int) -> tuple[dict, list[dict]]:
    """Latencies (of the answered attempt) and frames/s for len(bodies) POSTs at `concurrency`, with the requests
    the service shed (503 with Retry-After) sent again after it (+-25 %), as a polite client does; the answers."""
    import random

    import requests

    sessions = [requests.Session() for _ in range(concurrency)]
    shed = []

    def one(index: int) -> tuple[float, dict]:
        while True:
            began = time.perf_counter()
            response = sessions[index % concurrency].post(
                url + "/v1/faces", data=bodies[index], headers={"Content-Type": "image/jpeg"}, timeout=60
            )
            if response.status_code != 503 or "Retry-After" not in response.headers:
                break
            shed.append(index)
            time.sleep(float(response.headers["Retry-After"]) * random.uniform(0.75, 1.25))
        response.raise_for_status()
        return (time.perf_counter() - began) * 1000, response.json()

    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        results = list(pool.map(one, range(len(bodies))))
    elapsed = time.perf_counter() - started
    return (
        {
            "fps": round(len(bodies) / elapsed, 1),
            **percentiles([latency for latency, _ in results]),
            "shed": len(shed),
        },
        [answer for _, answer in results],
    )


def measure_streams(url: str, bodies: list[bytes], streams: int) -> tuple[dict, list[dict]]:
    """`streams` WebSockets, each sending the frames one after another (the next when the last is answered)."""
    from websockets.sync.client import connect

    def run_stream(index: int) -> tuple[list[float], list[dict]]:
        latencies, answers = [], []
        with connect(url.replace("http://", "ws://") + "/v1/stream", max_size=None, compression=None) as websocket:
            for body in bodies:
                began = time.perf_counter()
                websocket.send(body)
                answers.append(json.loads(websocket.recv(timeout=60)))
                latencies.append((time.perf_counter() - began) * 1000)
        return latencies, answers

    started = time.perf_counter()
    with ThreadPoolExecutor(streams) as pool:
        results = list(pool.map(run_stream, range(streams)))
    elapsed = time.perf_counter() - started
    latencies = [latency for stream_latencies, _ in results for latency in stream_latencies]
    return ({"fps": round(streams * len(bodies) / elapsed, 1), **percentiles(latencies)}, results[0][1])


def faces_found(answers: list[dict], counts: list[int]) -> float:
    return round(sum(min(len(answer["faces"]), present) for answer, present in zip(answers, counts)) / sum(counts), 3)


def per_face_ms(dirs: dict[str, Path]) -> float:
    """The emotion classifier's time per face in batches of 6 (a full frame's faces), ONNX Runtime."""
    from faceray.serve.classify import FaceClassifier

    classifier = FaceClassifier(dirs["emotion"], "onnx")
    batch = np.random.default_rng(0).integers(0, 256, (6, 64, 64, 1)).astype(np.uint8)
    classifier.predict(batch)
    started = time.perf_counter()
    for _ in range(50):
        classifier.predict(batch)
    return (time.perf_counter() - started) / (50 * 6) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=120, help="frames per row")
    parser.add_argument("--reference-frames", type=int, default=12)
    parser.add_argument("--detector", choices=("blazeface", "haar"), default="blazeface")
    parser.add_argument("--detect-every", type=int, default=3, help="stream: full detection every k-th frame")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds of the concurrency-1 rows (medians)")
    arguments = parser.parse_args()
    from faceray.runtime import use_loopback_environment

    use_loopback_environment()

    from faceray.runtime import init_ray, shutdown_ray
    from faceray.serve.analyzer import FaceAnalyzer
    from faceray.serve.service import start_service, stop_service

    work = Path(tempfile.mkdtemp(prefix="faceray-bench-serve-"))
    dirs = model_dirs(work)
    frames, counts = make_frames(arguments.requests)
    bodies = jpeg_bodies(frames)
    # Every n-th frame, so the reference loop sees the same mix of 1..6 faces as the other rows.
    reference_fps = reference_loop(frames[:: max(1, len(frames) // arguments.reference_frames)], dirs)
    recalls = {name: recall(name, frames, counts) for name in ("blazeface", "haar")}
    face_ms = per_face_ms(dirs)
    config = service_config(dirs, detector=arguments.detector, detect_every=arguments.detect_every)
    analyzer = FaceAnalyzer(
        dirs["emotion"], dirs["gender"], config.detector_settings(), threads=config.classifier_threads or 0
    )

    init_ray()
    url = start_service(config)
    rounds: dict[str, list[dict[str, float]]] = {"analyze": [], "stream_session": [], "http_1": [], "stream_1": []}
    try:
        measure_http(url, bodies[:10], 1)  # warm-up
        measure_streams(url, bodies[:10], 1)
        measure_in_process(analyzer.analyze, bodies[:10])
        # Alternating rounds (the machine's speed drifts): each service row beside its in-process floor.
        for _ in range(arguments.rounds):
            rounds["analyze"].append(measure_in_process(analyzer.analyze, bodies))
            http_1, http_answers = measure_http(url, bodies, 1)
            rounds["http_1"].append(http_1)
            rounds["stream_session"].append(
                measure_in_process(analyzer.stream(detect_every=arguments.detect_every).process, bodies)
            )
            stream_1, stream_answers = measure_streams(url, bodies, 1)
            rounds["stream_1"].append(stream_1)
        http_8, _ = measure_http(url, bodies, 8)
        stream_4, _ = measure_streams(url, bodies, 4)
    finally:
        stop_service()
        shutdown_ray()
    in_process = {name: median_row(rounds[name]) for name in ("analyze", "stream_session")}
    http_1, stream_1 = median_row(rounds["http_1"]), median_row(rounds["stream_1"])
    ratios_http = [
        round(service["p50"] / floor["p50"], 2) for service, floor in zip(rounds["http_1"], rounds["analyze"])
    ]

    floor_p50 = in_process["analyze"]["p50"]
    payload = {
        "benchmark": "serve",
        "machine": machine(),
        "frames": len(bodies),
        "faces_per_frame": round(float(np.mean(counts)), 2),
        "weights": "published" if (REFERENCE / "fer2013_mini_XCEPTION.102-0.66.hdf5").is_file() else "untrained",
        "detector": arguments.detector,
        "detect_every": arguments.detect_every,
        "reference_fps": round(reference_fps, 2),
        "in_process": in_process,
        "http_concurrency_1": {**http_1, "recall": faces_found(http_answers, counts)},
        "stream_1": {**stream_1, "recall": faces_found(stream_answers, counts)},
        "http_concurrency_8": http_8,
        "streams_4": stream_4,
        "ratio_http_8_to_reference": round(http_8["fps"] / reference_fps, 1),
        "ratio_streams_4_to_reference": round(stream_4["fps"] / reference_fps, 1),
        "ratio_http_p50_to_in_process": round(http_1["p50"] / floor_p50, 2),
        "ratio_http_p50_to_in_process_by_round": ratios_http,
        "rounds": arguments.rounds,
        "ratio_stream_p50_to_in_process_stream": round(stream_1["p50"] / in_process["stream_session"]["p50"], 2),
        "detector_recall": recalls,
        "classifier_ms_per_face_batch_6": round(face_ms, 3),
    }

    def latency(row: dict) -> str:
        return f"{row['fps']:7.1f} frames/s  p50 {row['p50']:5.1f}  p95 {row['p95']:5.1f} ms"

    rows = [
        ("reference loop (paper)", f"{reference_fps:7.2f} frames/s"),
        ("in-process analyze", latency(in_process["analyze"]) + "   (the floor)"),
        ("in-process stream session", latency(in_process["stream_session"])),
        (
            "HTTP, concurrency 1",
            latency(http_1) + f"   p50 target <= 20; {payload['ratio_http_p50_to_in_process']}x floor (<= 1.5; "
            f"rounds {', '.join(str(ratio) for ratio in ratios_http)})",
        ),
        ("stream, 1 connection", latency(stream_1) + "   p50 target <= 15, >= 30 frames/s"),
        (
            "HTTP, concurrency 8",
            latency(http_8) + f"   {payload['ratio_http_8_to_reference']}x reference (>= 20); "
            f"{http_8['shed']} shed (503) and sent again",
        ),
        ("4 streams", latency(stream_4) + f"   {payload['ratio_streams_4_to_reference']}x reference (>= 20)"),
        (
            "recall, service HTTP/stream",
            f"{payload['http_concurrency_1']['recall']} / {payload['stream_1']['recall']} "
            f"of {sum(counts)} faces present",
        ),
    ]
    for name, values in recalls.items():
        group = f", group photo {values['group_photo_found_of_6']} of 6" if "group_photo_found_of_6" in values else ""
        rows.append((f"detector {name}", f"recall {values['recall']}  {values['ms_per_frame']} ms/frame{group}"))
    rows.append(("classifier per face", f"{face_ms:.3f} ms (ONNX Runtime, batches of 6)"))
    print_report("bench/serve", rows, payload)


if __name__ == "__main__":
    main()
