"""The webcam / video client: sends frames to the service, tracks and draws faces, exits cleanly (no Ray).

Frames are sent as JPEG with at most `max_in_flight` requests outstanding; a frame that finds them all busy
is dropped (never queued), so the picture stays live. Exits at once on ESC, q, Ctrl-C, end of video or when the
service goes away, releasing the capture and writer, closing windows and flushing outputs.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from serve.tracking import FaceTracker
from serve.vision import draw_faces

QUIT_KEYS = {27, ord("q"), ord("Q")}


@dataclass(frozen=True)
class ClientConfig:
    """Settings of `faceray client`."""

    source: str = "0"
    url: str = "http://127.0.0.1:8000"
    output: str = ""
    jsonl: str = ""
    display: bool = True
    max_frames: int = 0
    max_in_flight: int = 2
    jpeg_quality: int = 85
    timeout_s: float = 10.0
    smoothing: float = 0.6
    realtime: bool = True  # read video files at their own frame rate, as a camera would deliver them


@dataclass
class ClientSummary:
    frames_read: int = 0
    frames_sent: int = 0
    frames_dropped: int = 0
    responses: int = 0
    exit_reason: str = ""
    mean_latency_ms: float = 0.0
    fps: float = 0.0


def display_available() -> bool:
    """Whether an OpenCV window can open here (a display server on Linux; always elsewhere)."""
    if sys.platform.startswith("linux"):
        return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    return True


def open_capture(source: str) -> cv2.VideoCapture:
    """A webcam by index ('0') or a video file/URL; raises ValueError when it cannot be opened."""
    capture = cv2.VideoCapture(int(source)) if source.isdigit() else cv2.VideoCapture(source)
    if not capture.isOpened():
        capture.release()
        raise ValueError(f"cannot open video source {source!r}")
    return capture


class ServiceGone(RuntimeError):
    """The service cannot be reached any more."""


def run_client(config: ClientConfig, session: Any = None, log=print) -> ClientSummary:
    """Run the capture -> request -> draw loop until a quit key, Ctrl-C, end of video, max_frames or service loss."""
    import requests

    session = session or requests.Session()
    endpoint = config.url.rstrip("/") + "/v1/faces"
    show = config.display
    if show and not display_available():
        log("no display available (DISPLAY is not set): running headless; pass --no-display to silence this")
        show = False
    capture = open_capture(config.source)
    writer: cv2.VideoWriter | None = None
    jsonl = open(config.jsonl, "w") if config.jsonl else None
    tracker = FaceTracker(smoothing=config.smoothing)
    summary = ClientSummary()
    pending: deque[tuple[int, float, Future]] = deque()
    latencies: deque[float] = deque(maxlen=30)
    shown_faces: list[dict[str, Any]] = []
    pool = ThreadPoolExecutor(max_workers=config.max_in_flight, thread_name_prefix="faceray-client")
    started = time.perf_counter()

    def post(data: bytes) -> dict[str, Any]:
        try:
            response = session.post(endpoint, data=data, headers={"Content-Type": "image/jpeg"}, timeout=config.timeout_s)
        except requests.RequestException as problem:
            raise ServiceGone(f"service at {config.url} unreachable: {problem.__class__.__name__}") from None
        if response.status_code >= 500:
            raise ServiceGone(f"service error {response.status_code}: {response.text[:200]}")
        response.raise_for_status()
        return response.json()

    def collect(block: bool) -> None:
        nonlocal shown_faces
        while pending and (block or pending[0][2].done()):
            frame_index, sent_at, future = pending.popleft()
            result = future.result()  # raises ServiceGone
            latencies.append((time.perf_counter() - sent_at) * 1000)
            summary.responses += 1
            tracks = tracker.update(result["faces"])
            shown_faces = [track.as_face() for track in tracks]
            if jsonl is not None:
                jsonl.write(json.dumps({"frame": frame_index, "faces": result["faces"], "smoothed": shown_faces,
                                        "timings_ms": result.get("timings_ms")}) + "\n")

    is_file = not config.source.isdigit()
    frame_interval = 1.0 / (capture.get(cv2.CAP_PROP_FPS) or 25.0) if is_file and config.realtime else 0.0
    next_frame_at = time.perf_counter()
    try:
        while True:
            if frame_interval:
                next_frame_at += frame_interval
                time.sleep(max(0.0, next_frame_at - time.perf_counter()))
            ok, frame = capture.read()
            if not ok:
                summary.exit_reason = "end of video"
                break
            summary.frames_read += 1
            if len(pending) < config.max_in_flight:
                ok, encoded = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, config.jpeg_quality])
                pending.append((summary.frames_read - 1, time.perf_counter(), pool.submit(post, encoded.tobytes())))
                summary.frames_sent += 1
            else:
                summary.frames_dropped += 1
            collect(block=False)
            elapsed = time.perf_counter() - started
            latency = float(np.mean(latencies)) if latencies else 0.0
            overlay = f"{summary.responses / elapsed:.1f} fps  {latency:.0f} ms  faces {len(shown_faces)}"
            annotated = draw_faces(frame, shown_faces, overlay)
            if config.output:
                if writer is None:
                    fps = capture.get(cv2.CAP_PROP_FPS) or 15.0
                    writer = cv2.VideoWriter(config.output, cv2.VideoWriter_fourcc(*"mp4v"), fps, annotated.shape[1::-1])
                writer.write(annotated)
            if show:
                cv2.imshow("faceray", annotated)
                if (cv2.waitKey(1) & 0xFF) in QUIT_KEYS:
                    summary.exit_reason = "quit key"
                    break
            if config.max_frames and summary.frames_read >= config.max_frames:
                summary.exit_reason = "max frames"
                break
        collect(block=True)
    except KeyboardInterrupt:
        summary.exit_reason = "interrupted (Ctrl-C)"
    except ServiceGone as problem:
        summary.exit_reason = str(problem)
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
        capture.release()
        if writer is not None:
            writer.release()
        if jsonl is not None:
            jsonl.close()
        if show:
            cv2.destroyAllWindows()
            cv2.waitKey(1)
    elapsed = time.perf_counter() - started
    summary.fps = summary.responses / elapsed if elapsed > 0 else 0.0
    summary.mean_latency_ms = float(np.mean(latencies)) if latencies else 0.0
    return summary


def write_test_video(path: Path, frames: list[np.ndarray], fps: float = 10.0) -> Path:
    """Write BGR frames as an MP4 (for tests and the demo)."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, frames[0].shape[1::-1])
    for frame in frames:
        writer.write(frame)
    writer.release()
    return path
