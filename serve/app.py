"""The Ray Serve application: one deployment that runs the in-process FaceAnalyzer (one hop, scaled by replicas).

`build_app(args)` is the app builder that `serve run serve/serve_config.yaml` and `faceray serve` use.
API:
  POST /v1/faces[?annotate=1]  body: JPEG or PNG bytes (image/jpeg, image/png, application/octet-stream)
                               or multipart/form-data with one file field
     -> {"image": {"width", "height"}, "faces": [{"box": [x, y, w, h], "emotion": {"label", "score", "scores"},
         "gender": {...}}], "timings_ms": {"decode", "detect", "classify", "total"}}; annotate=1 -> image/jpeg
  WebSocket /v1/stream         each binary message is one JPEG/PNG frame; each is answered, in order, with
     {"frame": n, "image", "faces" (with "track" ids, scores smoothed over time), "detected", "timings_ms"},
     or {"frame": n, "dropped": true, "reason": "queue"} when more than `stream_queue` frames wait (the oldest
     is dropped), or {"frame": n, "dropped": true, "reason": "deadline"} when it was not answered within
     `frame_deadline_s` of its arrival, or {"frame": n, "error"} for a frame that is not an image. Frames are
     numbered from 0 in arrival order. A stream lasts until the client closes it; the service closes it only
     with a close frame: 1008 "idle …" after `stream_idle_s` without a frame, 1013 when the replica already
     holds `max_streams`, 1008 for a page of another origin, and uvicorn's 1012 (service restart) when the
     replica shuts down. A lost replica drops the connection (1006 at the client).
  GET /healthz -> {"status": "ok"};  GET /v1/models -> the model cards, where they were loaded from, the detector
  GET /                        the live page (serve/web/: camera or a picked file -> /v1/stream -> faces drawn)
Browsers: same origin only. A stream opened by a page of another origin is closed (1008) and a cross-origin
POST gets no CORS header, unless that origin is in `allowed_origins`.
Errors are 4xx with {"error": "..."}; no face is "faces": []. A replica holding `max_http_requests` requests, or
`workers + http_queue` frames to analyse, answers 503 with Retry-After at once; a request not done within
`request_timeout_s` (its body included) gets 408.
CPU work runs on the replica's thread pool, never on its event loop, so /healthz answers while frames are analysed.
Serve's own request slots are sized so that admitted traffic can never fill them (ServeConfig.max_ongoing_requests).
"""

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from fastapi import FastAPI, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import FileResponse, JSONResponse, Response
from ray import serve

from faceray.config import resolve_config
from faceray.serve.config import ServeConfig

IMAGE_TYPES = {"image/jpeg", "image/jpg", "image/png", "application/octet-stream"}
WEB_DIR = Path(__file__).with_name("web")
WEB_FILES = {"index.html": "text/html", "page.js": "text/javascript", "page.css": "text/css"}
RETRY_AFTER_S = 1
# WebSocket close codes (RFC 6455, 7.4.1): policy (an idle stream, a foreign origin) and try again later (full).
CLOSE_POLICY, CLOSE_TRY_LATER = 1008, 1013

api = FastAPI(title="faceray", description="Face detection with emotion and gender classification.")


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def busy(message: str) -> JSONResponse:
    """503 for work shed at once: the client should try again in a second."""
    return JSONResponse({"error": message}, status_code=503, headers={"Retry-After": str(RETRY_AFTER_S)})


def milliseconds(seconds: float) -> float:
    return round(seconds * 1000, 2)


async def receive_frames(websocket: WebSocket, inbox: Any, idle_s: float) -> str:
    """Put every message of the stream into `inbox` until the client disconnects ("disconnected") or sends nothing
    for `idle_s` seconds ("idle"), then close the inbox; returns which.

    Defined above FaceService on purpose: Serve captures the class with the module globals that exist when it is
    decorated, so a helper defined below it is missing in the replica (NameError)."""
    try:
        while True:
            try:
                message = await asyncio.wait_for(websocket.receive(), timeout=idle_s)
            except TimeoutError:
                return "idle"
            if message["type"] == "websocket.disconnect":
                return "disconnected"
            data = message.get("bytes")
            inbox.put(b"" if data is None else data)  # a text message is not a frame: answered with an error
    except (WebSocketDisconnect, RuntimeError, OSError):
        return "disconnected"
    finally:
        inbox.close()


@serve.deployment
@serve.ingress(api)
class FaceService:
    """One replica: the FaceAnalyzer (models, cards and detector loaded once, at start) behind HTTP and WebSocket."""

    def __init__(self, config: ServeConfig) -> None:
        from faceray.serve.analyzer import FaceAnalyzer
        from faceray.serve.loopback import LOOPBACK_HOSTS, bind_internal_grpc_to_loopback

        self.config = config
        if self.config.host in LOOPBACK_HOSTS:  # a local service listens on loopback only, Serve's own port too
            bind_internal_grpc_to_loopback()
        self.analyzer = FaceAnalyzer(
            self.config.emotion_model,
            self.config.gender_model,
            self.config.detector_settings(),
            runtime=self.config.runtime,
            crop_margin=self.config.crop_margin,
            threads=self.config.classifier_threads or 0,
        )
        self.pool = ThreadPoolExecutor(self.config.workers, thread_name_prefix="faceray-analyze")
        # What this replica holds now (changed on its event loop only): open streams, HTTP requests, and HTTP frames
        # submitted to the pool and not finished (a frame abandoned at its deadline counts until its thread is done).
        self.open_streams = 0
        self.http_requests = 0
        self.http_frames = 0
        self.warm_up()
        self.description = self.analyzer.describe()

    def warm_up(self) -> None:
        """Make every pool thread's detector and run both models at a realistic batch now, so the first frames of
        the first client are not the slow ones (the demo's first frames took ~350 ms and were dropped without it)."""
        import threading

        import numpy as np

        blank = np.full((480, 640, 3), 90, np.uint8)
        together = threading.Barrier(self.config.workers)

        def one_thread() -> None:
            self.analyzer.detect(blank)
            together.wait(timeout=60)  # every worker thread takes one, so each makes its detector

        for future in [self.pool.submit(one_thread) for _ in range(self.config.workers)]:
            future.result()
        self.analyzer.classify(blank, [(200, 120, 160, 160)] * 4)

    def submit(self, function: Any, *args: Any) -> asyncio.Future[Any]:
        """Start CPU work on the replica's thread pool (the event loop keeps serving other requests): its future."""
        return asyncio.wrap_future(self.pool.submit(function, *args))

    @api.get("/healthz")
    async def healthz(self) -> dict[str, str]:
        return {"status": "ok"}

    @api.get("/")
    async def page(self) -> Response:
        return self.web_file("index.html")

    @api.get("/web/{name}")
    async def web(self, name: str) -> Response:
        return self.web_file(name) if name in WEB_FILES else error(404, f"no such file: {name}")

    def web_file(self, name: str) -> Response:
        """One file of the page (package data; nothing else on disk is served)."""
        return FileResponse(WEB_DIR / name, media_type=WEB_FILES[name], headers={"Cache-Control": "no-cache"})

    def origin_allowed(self, origin: str | None, host: str) -> bool:
        """A browser's Origin may call this service: none (not a browser), this service's own, or a configured one."""
        if not origin:
            return True
        return urlparse(origin).netloc == host or origin in self.config.allowed_origins

    def cors_headers(self, request: Request) -> dict[str, str]:
        origin = request.headers.get("origin")
        if origin and origin in self.config.allowed_origins:
            return {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}
        return {}

    @api.options("/v1/faces")
    async def preflight(self, request: Request) -> Response:
        headers = self.cors_headers(request)
        if not headers:
            return Response(status_code=403)
        return Response(
            status_code=204,
            headers={**headers, "Access-Control-Allow-Methods": "POST", "Access-Control-Allow-Headers": "Content-Type"},
        )

    @api.get("/v1/models")
    async def models(self) -> dict[str, Any]:
        return self.description

    async def read_limited_body(self, request: Request) -> bytes | None:
        """The request body, read as it streams in and abandoned past `max_body_bytes` (None), whatever the
        framing: a chunked upload without Content-Length is never buffered beyond the limit."""
        limit = self.config.max_body_bytes
        parts, size = [], 0
        async for part in request.stream():
            size += len(part)
            if size > limit:
                return None
            parts.append(part)
        return b"".join(parts)

    async def read_image_body(self, request: Request) -> bytes | JSONResponse:
        """The image bytes of a request, or the 4xx answer."""
        limit = self.config.max_body_bytes
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit:
            return error(413, f"body of {declared} bytes exceeds the limit of {limit} bytes")
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type not in IMAGE_TYPES and content_type not in ("", "multipart/form-data"):
            return error(
                415,
                f"content type {content_type!r} is not supported: send image/jpeg, image/png, "
                "application/octet-stream or multipart/form-data",
            )
        body = await self.read_limited_body(request)
        if body is None:
            return error(413, f"body exceeds the limit of {limit} bytes")
        if content_type == "multipart/form-data":
            request._body = body  # parse the bounded bytes already read (Starlette's form parser reads `_body`)
            form = await request.form()
            uploads = [value for value in form.values() if hasattr(value, "read")]
            if len(uploads) != 1:
                return error(400, f"multipart body must hold exactly one file field, found {len(uploads)}")
            body = await uploads[0].read()
        return body

    def analyze_bytes(self, body: bytes, annotate: bool) -> dict[str, Any] | bytes:
        """Decode, detect and classify (on a pool thread): the response payload, or annotated JPEG bytes."""
        import cv2

        from faceray.serve.vision import decode_frame, draw_faces

        started = time.perf_counter()
        frame = decode_frame(body)
        decoded = time.perf_counter()
        scored = self.analyzer.detect_scored(frame)
        detected = time.perf_counter()
        faces = self.analyzer.classify_scored(frame, scored)
        classified = time.perf_counter()
        if annotate:
            return cv2.imencode(".jpg", draw_faces(frame, faces))[1].tobytes()
        return {
            "image": {"width": int(frame.shape[1]), "height": int(frame.shape[0])},
            "faces": faces,
            "timings_ms": {
                "decode": milliseconds(decoded - started),
                "detect": milliseconds(detected - decoded),
                "classify": milliseconds(classified - detected),
                "total": milliseconds(classified - started),
            },
        }

    @api.post("/v1/faces")
    async def faces(self, request: Request, annotate: int = 0) -> Response:
        """Admission first (503 at once when full), then the whole request, body included, within the timeout."""
        if self.http_requests >= self.config.max_http_requests:
            return busy(f"this replica holds {self.config.max_http_requests} requests (--max-http-requests)")
        self.http_requests += 1
        try:
            return await asyncio.wait_for(self.answer_faces(request, bool(annotate)), self.config.request_timeout_s)
        except TimeoutError:
            return error(408, f"the request was not done within {self.config.request_timeout_s:g} s, its body included")
        finally:
            self.http_requests -= 1

    def analysis_full(self) -> JSONResponse | None:
        """The 503 when the replica already analyses (or queues) all the HTTP frames it may, else None."""
        if self.http_frames < self.config.workers + self.config.http_queue:
            return None
        return busy(f"this replica is analysing {self.http_frames} frames, its limit (--workers + --http-queue)")

    async def answer_faces(self, request: Request, annotate: bool) -> Response:
        from faceray.serve.vision import RequestImageError

        full = self.analysis_full()  # before the body is read: shedding costs no more than it must
        if full is not None:
            return full
        body = await self.read_image_body(request)
        if isinstance(body, JSONResponse):
            return body
        full = self.analysis_full()  # again: others may have filled it while this body arrived
        if full is not None:
            return full
        self.http_frames += 1
        analysis = self.submit(self.analyze_bytes, body, annotate)
        analysis.add_done_callback(self.http_frame_done)
        try:
            result = await asyncio.shield(analysis)  # a timed-out request leaves the frame counted until it ends
        except RequestImageError as problem:
            return error(400, str(problem))
        if isinstance(result, bytes):
            return Response(result, media_type="image/jpeg", headers=self.cors_headers(request))
        return JSONResponse(result, headers=self.cors_headers(request))

    def http_frame_done(self, analysis: asyncio.Future[Any]) -> None:
        self.http_frames -= 1
        if not analysis.cancelled():
            analysis.exception()  # retrieved here too: a request that timed out no longer awaits it

    @api.websocket("/v1/stream")
    async def stream(self, websocket: WebSocket) -> None:
        """One stream, until the client closes it: frames in, answers out in order (serve.inbox.answer_in_order)."""
        from faceray.serve.inbox import StreamInbox, answer_in_order

        if not self.origin_allowed(websocket.headers.get("origin"), websocket.headers.get("host", "")):
            await websocket.close(
                code=CLOSE_POLICY, reason="this origin may not use the stream (see --allowed-origins)"
            )
            return
        await websocket.accept()
        if self.open_streams >= self.config.max_streams:
            await websocket.close(
                code=CLOSE_TRY_LATER, reason=f"this replica holds {self.config.max_streams} streams: try again later"
            )
            return
        self.open_streams += 1
        session = self.analyzer.stream(detect_every=self.config.detect_every, smoothing=self.config.smoothing)
        inbox = StreamInbox(self.config.stream_queue)
        receiver = asyncio.create_task(receive_frames(websocket, inbox, self.config.stream_idle_s))
        try:
            await answer_in_order(
                inbox,
                lambda frame: self.submit(self.analyze_stream_frame, session, frame.number, frame.data),
                websocket.send_json,
                self.config.frame_deadline_s,
            )
            if await receiver == "idle":  # else the client (or uvicorn's shutdown, with 1012) closed it already
                idle = f"idle: no frame for {self.config.stream_idle_s:g} s; open a new stream to send more"
                await websocket.close(code=CLOSE_POLICY, reason=idle)
        except (WebSocketDisconnect, RuntimeError, OSError):
            pass  # the client went away (or the server is closing the connection) while we answered
        finally:
            self.open_streams -= 1
            receiver.cancel()

    def analyze_stream_frame(self, session: Any, frame_id: int, data: bytes) -> dict[str, Any]:
        """One stream frame (on a pool thread): the stream answer, or an error for bytes that are not an image."""
        from faceray.serve.vision import RequestImageError, decode_frame

        started = time.perf_counter()
        if len(data) > self.config.max_body_bytes:
            return {
                "frame": frame_id,
                "error": f"frame of {len(data)} bytes exceeds the limit of {self.config.max_body_bytes} bytes",
            }
        try:
            frame = decode_frame(data)
        except RequestImageError as problem:
            return {"frame": frame_id, "error": str(problem)}
        decoded = time.perf_counter()
        result = session.process(frame)
        return {
            "frame": frame_id,
            "image": {"width": int(frame.shape[1]), "height": int(frame.shape[0])},
            **result,
            "timings_ms": {
                "decode": milliseconds(decoded - started),
                **result["timings_ms"],
                "total": milliseconds(time.perf_counter() - started),
            },
        }


def build_app(args: ServeConfig | dict[str, Any]) -> serve.Application:
    """App builder: a ServeConfig (from `faceray serve`), or its fields as a mapping (the `args` of the Serve YAML),
    resolved and checked by the same `resolve_config` as the command line."""
    config = args if isinstance(args, ServeConfig) else resolve_config(ServeConfig, dict(args))
    # `options` is added by @serve.deployment, which the type checker does not follow.
    return FaceService.options(  # type: ignore[attr-defined]
        num_replicas=config.replicas,
        ray_actor_options={"num_cpus": config.replica_cpus},
        max_ongoing_requests=config.max_ongoing_requests(),
        # Set on purpose: a frame takes well under a second, so a replica that has not answered its health
        # check for 10 s is wedged and is replaced; a stopping replica finishes its frames within 5 s.
        health_check_period_s=2.0,
        health_check_timeout_s=10.0,
        graceful_shutdown_wait_loop_s=0.5,
        graceful_shutdown_timeout_s=5.0,
    ).bind(config)
