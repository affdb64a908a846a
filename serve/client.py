"""The webcam / video client: sends frames to the service, tracks and draws faces, exits cleanly (no Ray).

Frames are sent as JPEG over one WebSocket (/v1/stream, the default: the service tracks and smooths faces) or as
one HTTP request each, with at most `max_in_flight` frames outstanding; a frame that finds them all busy is
dropped (never queued), so the picture stays live. Exits at once on ESC, q, Ctrl-C, end of video or when the
service goes away, releasing the capture and writer, closing windows and flushing outputs.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from faceray.serve.config import ClientConfig
from faceray.serve.tracking import FaceTracker
from faceray.serve.vision import draw_faces

QUIT_KEYS = {27, ord("q"), ord("Q")}


@dataclass
class ClientSummary:
    frames_read: int = 0
    frames_sent: int = 0
    frames_dropped: int = 0
    responses: int = 0
    exit_reason: str = ""
    failed: bool = False  # stopped by the service (gone, refusing) rather than by the user or the video
    reconnects: int = 0
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


class StreamClosed(ServiceGone):
    """The service (or the network) ended the stream; `code` and `reason` are the close frame's (1006 and "" when
    the connection broke without one, as when a replica is lost). What the client does depends on the code: an idle
    stream is reopened with the next frame, a refusal on policy stops the client, anything else is retried with
    backoff."""

    MEANINGS = {
        1001: "the service is going away",
        1006: "the connection to the service broke without a close frame (a replica lost?)",
        1008: "the service refused the stream",
        1011: "the service failed",
        1012: "the service is restarting or shutting down",
        1013: "the service holds all the streams it can: try again later",
    }

    def __init__(self, code: int, reason: str) -> None:
        self.code, self.reason = code, reason
        meaning = self.MEANINGS.get(code, "the service closed the stream")
        super().__init__(f"{meaning} (close code {code}{': ' + reason if reason else ''})")

    @property
    def idle(self) -> bool:
        """Closed because no frame came for a while: reopen when there is one to send, without backoff."""
        return self.code == 1008 and self.reason.startswith("idle")

    @property
    def final(self) -> bool:
        """Refused for what this client is or sends (origin, data): reconnecting would be refused again."""
        return self.code in (1003, 1007, 1008, 1009, 1010) and not self.idle


class HttpTransport:
    """One POST /v1/faces per frame on a small thread pool; the client tracks and smooths faces itself."""

    smooths = False

    def __init__(self, config: ClientConfig, session: Any = None) -> None:
        import requests

        self.config = config
        self.session = session or requests.Session()
        self.endpoint = config.url.rstrip("/") + "/v1/faces"
        self.pool = ThreadPoolExecutor(max_workers=config.max_in_flight, thread_name_prefix="faceray-client")
        self.pending: deque[tuple[int, Future]] = deque()

    @property
    def in_flight(self) -> int:
        return len(self.pending)

    def _post(self, data: bytes) -> dict[str, Any]:
        import requests

        try:
            response = self.session.post(
                self.endpoint, data=data, headers={"Content-Type": "image/jpeg"}, timeout=self.config.timeout_s
            )
        except requests.RequestException as problem:
            raise ServiceGone(f"service at {self.config.url} unreachable: {problem.__class__.__name__}") from None
        if response.status_code == 503 and "Retry-After" in response.headers:  # shed under load: this frame only
            return {"dropped": True, "reason": "busy"}
        if response.status_code >= 500:
            raise ServiceGone(f"service error {response.status_code}: {response.text[:200]}")
        response.raise_for_status()
        return response.json()

    def send(self, frame_index: int, data: bytes) -> None:
        self.pending.append((frame_index, self.pool.submit(self._post, data)))

    def answers(self, block: bool) -> list[tuple[int, dict[str, Any]]]:
        """Answers that have arrived, in frame order (all outstanding ones when `block`); raises ServiceGone."""
        ready = []
        while self.pending and (block or self.pending[0][1].done()):
            frame_index, future = self.pending.popleft()
            ready.append((frame_index, future.result()))
        return ready

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)


class StreamTransport:
    """One WebSocket to /v1/stream: frames go out as binary messages, answers come back in order with the faces
    tracked and their scores smoothed by the service."""

    smooths = True

    def __init__(self, config: ClientConfig) -> None:
        import queue
        import threading
        from contextlib import ExitStack

        from websockets.sync.client import connect

        self.config = config
        url = config.url.rstrip("/").replace("https://", "wss://").replace("http://", "ws://") + "/v1/stream"
        self.connection = ExitStack()
        try:
            self.socket = self.connection.enter_context(
                connect(url, open_timeout=config.timeout_s, max_size=None, compression=None)
            )
        except (OSError, TimeoutError) as problem:
            raise ServiceGone(f"service at {config.url} unreachable: {problem.__class__.__name__}") from None
        except Exception as problem:  # websockets' handshake errors (an HTTP error status, a non-WebSocket server)
            raise ServiceGone(f"service at {config.url} refused the stream: {problem}") from None
        self.sent: deque[int] = deque()  # frame indexes of this client, in the order the service numbers them
        self.inbox: queue.Queue[dict[str, Any] | Exception] = queue.Queue()
        self.reader = threading.Thread(target=self._read, name="faceray-stream-reader", daemon=True)
        self.reader.start()

    def _read(self) -> None:
        from websockets.exceptions import ConnectionClosed

        try:
            while True:
                self.inbox.put(json.loads(self.socket.recv()))
        except ConnectionClosed as closed:  # with the service's close frame, if one came
            frame = closed.rcvd
            self.inbox.put(StreamClosed(frame.code, frame.reason) if frame else StreamClosed(1006, ""))
        except Exception as problem:  # the connection broke otherwise: report it to the loop
            self.inbox.put(problem)

    @property
    def in_flight(self) -> int:
        return len(self.sent)

    def send(self, frame_index: int, data: bytes) -> None:
        try:
            self.socket.send(data)
        except Exception as problem:
            raise ServiceGone(f"service at {self.config.url} unreachable: {problem.__class__.__name__}") from None
        self.sent.append(frame_index)

    def answers(self, block: bool) -> list[tuple[int, dict[str, Any]]]:
        import queue

        ready = []
        while self.sent:
            try:
                message = self.inbox.get(timeout=self.config.timeout_s) if block else self.inbox.get_nowait()
            except queue.Empty:
                if block:
                    raise ServiceGone(
                        f"service at {self.config.url} unreachable: no answer in {self.config.timeout_s:g} s"
                    ) from None
                break
            if isinstance(message, StreamClosed):
                raise message
            if isinstance(message, Exception):
                raise ServiceGone(f"service at {self.config.url} unreachable: {message}")
            frame_index = self.sent.popleft()
            if "error" in message:
                raise ServiceGone(f"service error on frame {frame_index}: {message['error']}")
            ready.append((frame_index, message))
        return ready

    def close(self) -> None:
        try:
            self.connection.close()
        except Exception:  # closing a broken connection: nothing left to release
            pass
        self.reader.join(timeout=2)


class Reconnector:
    """The client's link to the service: makes a transport, and after a failure tries again with exponential
    backoff (0.5 s doubling to 5 s) until the service is back or `give_up_s` of continuous outage has passed."""

    def __init__(self, make_transport: Callable[[], Any], give_up_s: float, log: Callable[[str], None]) -> None:
        self.make_transport, self.give_up_s, self.log = make_transport, give_up_s, log
        self.transport: Any = None
        self.outage_since: float | None = time.monotonic()  # not connected yet
        self.next_attempt = 0.0
        self.backoff = 0.5
        self.reconnects = 0
        self.problem = ""

    def current(self) -> Any:
        """The transport, (re)connecting when one is due; None while the service is away. Raises ServiceGone once
        the outage has lasted `give_up_s`."""
        if self.transport is not None:
            return self.transport
        now = time.monotonic()
        if now >= self.next_attempt:
            try:
                self.transport = self.make_transport()
            except ServiceGone as problem:
                self.lost(problem)
                return None
            if self.reconnects and self.outage_since is not None:
                self.log(f"service back after {now - self.outage_since:.1f} s")
            self.outage_since, self.backoff = None, 0.5
        return self.transport

    def lost(self, problem: ServiceGone) -> None:
        """The transport failed: drop it and schedule the next attempt (ServiceGone when it is time to give up, or at
        once when the service refused this client). An idle stream closed by the service is no outage: a new one
        opens with the next frame."""
        now = time.monotonic()
        if isinstance(problem, StreamClosed) and problem.final:
            raise ServiceGone(str(problem))
        if isinstance(problem, StreamClosed) and problem.idle:
            if self.transport is not None:
                self.transport.close()
                self.transport = None
                self.log(f"{problem}; a new stream opens with the next frame")
            self.next_attempt = now
            return
        if self.transport is not None:
            self.transport.close()
            self.transport = None
            self.reconnects += 1
            self.log(f"{problem}; retrying with backoff for up to {self.give_up_s:g} s")
        if self.outage_since is None:
            self.outage_since = now
        self.problem = str(problem)
        if now - self.outage_since >= self.give_up_s:
            raise ServiceGone(str(problem))
        self.next_attempt = now + self.backoff
        self.backoff = min(self.backoff * 2, 5.0)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class ClientSession:
    """The state of one client run: the capture, the connection (with reconnects), the frames in flight, the faces
    on screen and the outputs. `run_client` drives it one frame at a time."""

    def __init__(
        self, config: ClientConfig, session: Any, log: Callable[[str], None], make_transport: Callable[[], Any] | None
    ) -> None:
        self.config = config
        self.show = config.display
        if self.show and not display_available():
            log("no display available (DISPLAY is not set): running headless; pass --no-display to silence this")
            self.show = False
        self.capture = open_capture(config.source)
        self.writer: cv2.VideoWriter | None = None
        self.jsonl = open(config.jsonl, "w") if config.jsonl else None
        self.tracker = FaceTracker(smoothing=config.smoothing)
        self.summary = ClientSummary()
        self.sent_at: dict[int, float] = {}
        self.latencies: deque[float] = deque(maxlen=30)
        self.shown_faces: list[dict[str, Any]] = []
        if make_transport is None:
            make_transport = (
                (lambda: StreamTransport(config))
                if config.transport == "stream"
                else (lambda: HttpTransport(config, session))
            )
        self.link = Reconnector(make_transport, config.give_up_s, log)
        self.started = time.perf_counter()
        is_file = not config.source.isdigit()
        fps = self.capture.get(cv2.CAP_PROP_FPS) or 25.0
        self.frame_interval = 1.0 / fps if is_file and config.realtime else 0.0
        self.next_frame_at = time.perf_counter()

    def wait_for_next_frame(self) -> None:
        """Pace a video file at its frame rate, taking answers as they come meanwhile (the round trip is then
        measured when the answer arrives, not at the next frame)."""
        if not self.frame_interval:
            return
        self.next_frame_at += self.frame_interval
        while (remaining := self.next_frame_at - time.perf_counter()) > 0:
            if self.link.transport is not None and self.link.transport.in_flight:
                self.collect(block=False)
            time.sleep(min(remaining, 0.002))

    def read_frame(self) -> np.ndarray | None:
        """The next BGR frame, or None at the end of the video."""
        ok, frame = self.capture.read()
        if not ok:
            return None
        self.summary.frames_read += 1
        return frame

    def send(self, frame: np.ndarray) -> None:
        """Send the frame if the connection is up and has room; else it is dropped (the picture stays live)."""
        transport = self.link.current()
        if transport is None or transport.in_flight >= self.config.max_in_flight:
            self.summary.frames_dropped += 1
            return
        _, encoded = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, self.config.jpeg_quality])
        index = self.summary.frames_read - 1
        self.sent_at[index] = time.perf_counter()
        try:
            transport.send(index, encoded.tobytes())
            self.summary.frames_sent += 1
        except ServiceGone as problem:
            self.lose_connection(problem)

    def lose_connection(self, problem: ServiceGone) -> None:
        self.summary.frames_dropped += len(self.sent_at)  # the frames in flight are lost with the connection
        self.sent_at.clear()
        self.shown_faces = []
        self.link.lost(problem)  # raises ServiceGone when it is time to give up

    def collect(self, block: bool) -> None:
        """Take the answers that arrived (all of those in flight when `block`): faces to show, JSON lines."""
        transport = self.link.transport
        if transport is None:
            return
        try:
            answers = transport.answers(block)
        except ServiceGone as problem:
            self.lose_connection(problem)
            return
        for frame_index, result in answers:
            self.latencies.append((time.perf_counter() - self.sent_at.pop(frame_index)) * 1000)
            if result.get("dropped"):  # the service dropped it (only when it falls behind)
                self.summary.frames_dropped += 1
                continue
            self.summary.responses += 1
            if transport.smooths:
                self.shown_faces = result["faces"]
            else:
                self.shown_faces = [track.as_face() for track in self.tracker.update(result["faces"])]
            if self.jsonl is not None:
                line = {
                    "frame": frame_index,
                    "faces": result["faces"],
                    "smoothed": self.shown_faces,
                    "timings_ms": result.get("timings_ms"),
                }
                self.jsonl.write(json.dumps(line) + "\n")

    def annotate(self, frame: np.ndarray) -> np.ndarray:
        """The frame with the faces on screen and a status line (rate and latency, or the outage)."""
        if self.link.transport is None:
            overlay = f"service unavailable, reconnecting ({self.link.problem[:60]})"
        else:
            elapsed = time.perf_counter() - self.started
            latency = float(np.mean(self.latencies)) if self.latencies else 0.0
            overlay = f"{self.summary.responses / elapsed:.1f} fps  {latency:.0f} ms  faces {len(self.shown_faces)}"
        return draw_faces(frame, self.shown_faces, overlay)

    def output(self, annotated: np.ndarray) -> str | None:
        """Write the annotated frame to the video file and the window; returns why to stop, if it is time."""
        if self.config.output:
            if self.writer is None:
                fps = self.capture.get(cv2.CAP_PROP_FPS) or 15.0
                fourcc = cv2.VideoWriter_fourcc(*"mp4v")
                self.writer = cv2.VideoWriter(self.config.output, fourcc, fps, annotated.shape[1::-1])
            self.writer.write(annotated)
        if self.show:
            cv2.imshow("faceray", annotated)
            if (cv2.waitKey(1) & 0xFF) in QUIT_KEYS:
                return "quit key"
        if self.config.max_frames and self.summary.frames_read >= self.config.max_frames:
            return "max frames"
        return None

    def close(self) -> None:
        """Release the connection, the capture, the outputs and the window (also after Ctrl-C)."""
        self.link.close()
        self.capture.release()
        if self.writer is not None:
            self.writer.release()
        if self.jsonl is not None:
            self.jsonl.close()
        if self.show:
            cv2.destroyAllWindows()
            cv2.waitKey(1)

    def outage_without_answers(self) -> str | None:
        """The connection problem, when the service is down and never answered while the video lasted."""
        if self.link.transport is None and self.summary.responses == 0 and self.link.problem:
            return self.link.problem
        return None

    def finish(self) -> ClientSummary:
        """The summary, with the rates over the whole run."""
        summary = self.summary
        summary.reconnects = self.link.reconnects
        elapsed = time.perf_counter() - self.started
        summary.fps = summary.responses / elapsed if elapsed > 0 else 0.0
        summary.mean_latency_ms = float(np.mean(self.latencies)) if self.latencies else 0.0
        return summary


def run_client(
    config: ClientConfig, session: Any = None, log=print, make_transport: Callable[[], Any] | None = None
) -> ClientSummary:
    """Run the capture -> request -> draw loop until a quit key, Ctrl-C, end of video, max_frames, or an outage of
    the service longer than `give_up_s` (shorter ones are retried with backoff while the picture stays live).
    `make_transport` replaces the configured transport (tests)."""
    client = ClientSession(config, session, log, make_transport)
    try:
        while True:
            client.wait_for_next_frame()
            frame = client.read_frame()
            if frame is None:
                client.summary.exit_reason = "end of video"
                break
            client.send(frame)
            client.collect(block=False)
            stop = client.output(client.annotate(frame))
            if stop:
                client.summary.exit_reason = stop
                break
        client.collect(block=True)
        outage = client.outage_without_answers()
        client.summary.exit_reason = outage or client.summary.exit_reason
        client.summary.failed = outage is not None
    except KeyboardInterrupt:
        client.summary.exit_reason = "interrupted (Ctrl-C)"
    except ServiceGone as problem:
        client.summary.exit_reason = str(problem)
        client.summary.failed = True
    finally:
        client.close()
    return client.finish()


def write_test_video(path: Path, frames: list[np.ndarray], fps: float = 10.0) -> Path:
    """Write BGR frames as an MP4 (for tests and the demo)."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, frames[0].shape[1::-1])
    for frame in frames:
        writer.write(frame)
    writer.release()
    return path
