"""The latency floor of the service's design on this machine, measured: what concurrency 1 costs before any work.

Deploys the same topology as `serve.app` (HTTP ingress -> detector deployment -> two classifier deployments
called together) with every computation removed: each deployment returns at once. The payloads keep their real
sizes (the downscaled grey frame to the detector, 3 crops of 64x64 to each classifier), and the replicas get the
same CPU share. Then, in one process and with nothing else running, it times the computations the real service
adds: JPEG decode, Haar detection at the bench's settings, and both classifiers on the crops.

floor = the no-op chain's p50 + decode + detect + classify, compared with the 30 ms target of bench/serve.py.

    python bench/serve_floor.py [--requests 200] [--max-side 400] [--scale-factor 1.2]
"""


import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

REPOSITORY = Path(__file__).resolve().parents[1]
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != REPOSITORY / "bench"]
sys.path.insert(0, str(REPOSITORY))
from bench.common import machine, print_report  # noqa: E402
from bench.serve import make_frames, model_dirs  # noqa: E402


def build_noop_app(replica_cpus: float) -> Any:
    """HTTP ingress -> Detector.detect -> (EmotionClassifier, GenderClassifier).classify, each returning at once."""
    from ray import serve
    from ray.serve.handle import DeploymentHandle

    # No `from __future__ import annotations` in this file: the app is pickled by value into its replicas, and
    # FastAPI must see `Request` itself, not the string "Request", in the endpoints' annotations.
    api = FastAPI()

    @serve.deployment(ray_actor_options={"num_cpus": replica_cpus})
    class Detector:
        def detect(self, small: np.ndarray, scale: float) -> list[tuple[int, int, int, int]]:
            return [(10, 10, 100, 100)] * 3

    @serve.deployment(ray_actor_options={"num_cpus": replica_cpus})
    class Classifier:
        async def classify(self, crops: np.ndarray) -> list[dict[str, Any]]:
            return [{"label": "neutral", "score": 1.0}] * len(crops)

    @serve.deployment(ray_actor_options={"num_cpus": replica_cpus}, max_ongoing_requests=64)
    @serve.ingress(api)
    class Ingress:
        def __init__(self, detector: DeploymentHandle, emotion: DeploymentHandle, gender: DeploymentHandle) -> None:
            self.detector, self.classifiers = detector, (emotion, gender)
            self.small = np.zeros((300, 400), np.uint8)
            self.crops = np.zeros((3, 64, 64, 1), np.uint8)

        @api.get("/healthz")
        async def healthz(self) -> dict[str, str]:
            return {"status": "ok"}

        @api.post("/v1/faces")
        async def faces(self, request: Request) -> JSONResponse:
            await request.body()
            boxes = await self.detector.detect.remote(self.small, 0.625)
            results = await asyncio.gather(*(handle.classify.remote(self.crops) for handle in self.classifiers))
            return JSONResponse({"faces": [{"box": list(box), "emotion": results[0][i], "gender": results[1][i]}
                                           for i, box in enumerate(boxes)]})

    return Ingress.bind(Detector.bind(), Classifier.options(name="EmotionClassifier").bind(),
                        Classifier.options(name="GenderClassifier").bind())


def http_p50(url: str, count: int, body: bytes | None) -> float:
    import requests

    session = requests.Session()
    latencies = []
    for _ in range(count):
        started = time.perf_counter()
        if body is None:
            session.get(url + "/healthz", timeout=30).raise_for_status()
        else:
            session.post(url + "/v1/faces", data=body, headers={"Content-Type": "image/jpeg"}, timeout=30).raise_for_status()
        latencies.append((time.perf_counter() - started) * 1000)
    return float(np.median(latencies[count // 10 :]))  # the first tenth warms up


def computation_ms(bodies: list[bytes], max_side: int, scale_factor: float) -> dict[str, float]:
    """Median ms per frame of decode, detection and both classifiers (crops as each model card asks), in this process."""
    from serve.classify import FaceClassifier
    from serve.vision import DetectorSettings, FaceDetector, crop_faces, decode_frame, downscale_for_detection

    detector = FaceDetector(DetectorSettings(max_side=max_side, scale_factor=scale_factor))
    folder = Path(tempfile.mkdtemp(prefix="faceray-bench-floor-"))
    classifiers = [FaceClassifier(path, "onnx") for path in model_dirs(folder).values()]
    decode, detect, classify, faces = [], [], [], []
    for body in bodies:
        started = time.perf_counter()
        frame = decode_frame(body)
        decoded = time.perf_counter()
        boxes = detector.detect_downscaled(*downscale_for_detection(frame, max_side))
        detected = time.perf_counter()
        for classifier in classifiers:
            card = classifier.card
            classifier.predict(crop_faces(frame, boxes, card["input_shape"][0], card["color"], card["crop_margin"]))
        classified = time.perf_counter()
        decode.append(decoded - started), detect.append(detected - decoded), classify.append(classified - detected)
        faces.append(len(boxes))
    return {"decode": 1000 * float(np.median(decode)), "detect": 1000 * float(np.median(detect)),
            "classify": 1000 * float(np.median(classify)), "faces_per_frame": float(np.mean(faces))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200, help="sequential requests per measurement")
    parser.add_argument("--max-side", type=int, default=400)
    parser.add_argument("--scale-factor", type=float, default=1.2)
    parser.add_argument("--replica-cpus", type=float, default=0.25, help="as ServeConfig.replica_cpus")
    arguments = parser.parse_args()
    from faceray.runtime import use_loopback_environment

    use_loopback_environment()
    bodies = [cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 85])[1].tobytes() for frame in make_frames(60)]
    computation = computation_ms(bodies, arguments.max_side, arguments.scale_factor)

    from ray import serve

    from faceray.runtime import free_loopback_port, init_ray, shutdown_ray

    init_ray()
    port = free_loopback_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(build_noop_app(arguments.replica_cpus), name="floor", route_prefix="/", blocking=False)
    url = f"http://127.0.0.1:{port}"
    try:
        http_p50(url, 20, None)
        healthz = http_p50(url, arguments.requests, None)
        chain = http_p50(url, arguments.requests, bodies[0])
    finally:
        serve.shutdown()
        shutdown_ray()
    floor = chain + computation["decode"] + computation["detect"] + computation["classify"]
    payload = {
        "benchmark": "serve_floor", "machine": machine(), "requests": arguments.requests,
        "detector": {"max_side": arguments.max_side, "scale_factor": arguments.scale_factor},
        "http_healthz_p50_ms": round(healthz, 1), "noop_chain_p50_ms": round(chain, 1),
        "computation_ms_p50": {name: round(value, 2) for name, value in computation.items()},
        "floor_ms": round(floor, 1), "target_p50_ms": 30, "floor_to_target": round(floor / 30, 2),
    }
    rows = [
        ("HTTP only (/healthz)", f"{healthz:6.1f} ms p50"),
        ("no-op chain", f"{chain:6.1f} ms p50   (HTTP -> ingress -> detector -> 2 classifiers, nothing computed)"),
        ("decode", f"{computation['decode']:6.1f} ms"),
        ("detect (Haar)", f"{computation['detect']:6.1f} ms   ({computation['faces_per_frame']:.2f} faces/frame found)"),
        ("classify (both)", f"{computation['classify']:6.1f} ms"),
        ("floor", f"{floor:6.1f} ms   target p50 <= 30 ms ({floor / 30:.2f}x the target)"),
    ]
    print_report("bench/serve_floor", rows, payload)


if __name__ == "__main__":
    main()
