"""The Ray Serve application: HTTP ingress -> detector deployment -> one classifier deployment per model.

`build_app(args)` is the app builder that `serve run serve/serve_config.yaml` and `faceray serve` use.
API:
  POST /v1/faces[?annotate=1]  body: JPEG/PNG bytes (image/jpeg, image/png, application/octet-stream)
                               or multipart/form-data with one file field
     -> {"image": {"width", "height"}, "faces": [{"box": [x, y, w, h], "emotion": {"label", "score", "scores"},
         "gender": {...}}], "timings_ms": {"decode", "detect", "classify", "total"}}; annotate=1 -> image/jpeg
  GET /healthz -> {"status": "ok"};  GET /v1/models -> the model cards
Errors are 4xx with {"error": "..."}; no face is "faces": [].
"""


import asyncio
import time
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from ray import serve
from ray.serve.handle import DeploymentHandle

from faceray.config import resolve_config
from serve.config import ServeConfig

IMAGE_TYPES = {"image/jpeg", "image/jpg", "image/png", "application/octet-stream"}

api = FastAPI(title="faceray", description="Face detection with emotion and gender classification.")


@serve.deployment
class Detector:
    """Haar face detection; one cascade per replica."""

    def __init__(self, settings: dict[str, Any]) -> None:
        from serve.vision import DetectorSettings, FaceDetector

        self.detector = FaceDetector(DetectorSettings(**settings))

    def detect(self, small: np.ndarray, scale: float) -> list[tuple[int, int, int, int]]:
        """Boxes (x, y, w, h) in frame pixels, from the grey image the ingress made (vision.downscale_for_detection)."""
        return self.detector.detect_downscaled(small, scale)


@serve.deployment
class Classifier:
    """One model directory; crops from concurrent requests are classified in one batched call."""

    def __init__(self, model_dir: str, runtime: str = "onnx", threads: int = 0) -> None:
        from serve.classify import FaceClassifier

        self.classifier = FaceClassifier(model_dir, runtime, threads)

    def reconfigure(self, user_config: dict[str, Any]) -> None:
        """Batch size and wait come from user_config, so they change without a redeploy."""
        self.classify.set_max_batch_size(int(user_config.get("max_batch_size", 16)))
        self.classify.set_batch_wait_timeout_s(float(user_config.get("batch_wait_ms", 5.0)) / 1000.0)

    def card(self) -> dict[str, Any]:
        return self.classifier.card

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.005)
    async def classify(self, crop_sets: list[np.ndarray]) -> list[list[dict[str, Any]]]:
        """Each request's crops (k_i, H, W, C) -> per face {"label", "score", "scores"}; one model call for all."""
        sizes = [len(crops) for crops in crop_sets]
        if sum(sizes) == 0:
            return [[] for _ in crop_sets]
        probabilities = self.classifier.predict(np.concatenate([crops for crops in crop_sets if len(crops)]))
        described = self.classifier.describe(probabilities)
        results, start = [], 0
        for size in sizes:
            results.append(described[start : start + size])
            start += size
        return results


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


@serve.deployment
@serve.ingress(api)
class FaceAPI:
    """HTTP ingress: validates and decodes the image, detects, crops per model card, classifies."""

    def __init__(self, detector: DeploymentHandle, classifiers: dict[str, DeploymentHandle], settings: dict[str, Any]) -> None:
        self.detector = detector
        self.classifiers = classifiers
        self.settings = settings
        self.cards: dict[str, dict[str, Any]] = {}

    async def _cards(self) -> dict[str, dict[str, Any]]:
        if not self.cards:
            for task, handle in self.classifiers.items():
                self.cards[task] = await handle.card.remote()
        return self.cards

    @api.get("/healthz")
    async def healthz(self) -> dict[str, str]:
        return {"status": "ok"}

    @api.get("/v1/models")
    async def models(self) -> dict[str, Any]:
        return await self._cards()

    @api.post("/v1/faces")
    async def faces(self, request: Request, annotate: int = 0) -> Response:
        from serve.vision import RequestImageError, crop_faces, decode_frame, downscale_for_detection, draw_faces

        started = time.perf_counter()
        limit = self.settings["max_body_bytes"]
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit:
            return error(413, f"body of {declared} bytes exceeds the limit of {limit} bytes")
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type == "multipart/form-data":
            form = await request.form()
            uploads = [value for value in form.values() if hasattr(value, "read")]
            if len(uploads) != 1:
                return error(400, f"multipart body must hold exactly one file field, found {len(uploads)}")
            body = await uploads[0].read()
        elif content_type in IMAGE_TYPES or content_type == "":
            body = await request.body()
        else:
            return error(415, f"content type {content_type!r} is not supported: send image/jpeg, image/png, "
                              "application/octet-stream or multipart/form-data")
        if len(body) > limit:
            return error(413, f"body of {len(body)} bytes exceeds the limit of {limit} bytes")
        try:
            frame = decode_frame(body)
        except RequestImageError as problem:
            return error(400, str(problem))
        decoded = time.perf_counter()
        small, scale = downscale_for_detection(frame, self.settings["max_side"])  # only this travels to the detector
        boxes = await self.detector.detect.remote(small, scale)
        detected = time.perf_counter()
        cards = await self._cards()
        margin = self.settings["crop_margin"]
        calls = {}
        for task, handle in self.classifiers.items():
            card = cards[task]
            crops = crop_faces(frame, boxes, card["input_shape"][0], card["color"], card["crop_margin"] if margin < 0 else margin)
            calls[task] = handle.classify.remote(crops)
        results = dict(zip(calls, await asyncio.gather(*calls.values())))
        classified = time.perf_counter()
        faces = [{"box": [int(value) for value in box], **{task: results[task][index] for task in results}}
                 for index, box in enumerate(boxes)]
        if annotate:
            import cv2

            ok, encoded = cv2.imencode(".jpg", draw_faces(frame, faces))
            return Response(encoded.tobytes(), media_type="image/jpeg")
        payload = {
            "image": {"width": int(frame.shape[1]), "height": int(frame.shape[0])},
            "faces": faces,
            "timings_ms": {
                "decode": round((decoded - started) * 1000, 2),
                "detect": round((detected - decoded) * 1000, 2),
                "classify": round((classified - detected) * 1000, 2),
                "total": round((time.perf_counter() - started) * 1000, 2),
            },
        }
        return JSONResponse(payload)


def build_app(args: dict[str, Any]) -> serve.Application:
    """App builder: `args` are ServeConfig fields (from the Serve YAML or `faceray serve`)."""
    config = args if isinstance(args, ServeConfig) else resolve_config(ServeConfig, dict(args))
    actor = {"num_cpus": config.replica_cpus}
    detection = {"max_side": config.max_side, "scale_factor": config.scale_factor, "min_neighbors": config.min_neighbors,
                 "min_size": config.min_size}
    detector = Detector.options(ray_actor_options=actor).bind(detection)
    batching = {"max_batch_size": config.max_batch_size, "batch_wait_ms": config.batch_wait_ms}
    classifiers = {}
    for task, model_dir in (("emotion", config.emotion_model), ("gender", config.gender_model)):
        if model_dir:
            classifiers[task] = Classifier.options(
                name=f"{task.capitalize()}Classifier", num_replicas=config.replicas, ray_actor_options=actor,
                user_config=batching, max_ongoing_requests=max(2 * config.max_batch_size, 8),
            ).bind(str(model_dir), config.runtime, config.classifier_threads)
    settings = {"max_body_bytes": config.max_body_bytes, "crop_margin": config.crop_margin, "max_side": config.max_side}
    return FaceAPI.options(ray_actor_options=actor, max_ongoing_requests=64).bind(detector, classifiers, settings)
