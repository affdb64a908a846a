"""The client's reconnection: a service that goes away for a while is retried with backoff, the picture stays
live meanwhile, and a service gone for longer than --give-up-s ends the client cleanly (no Ray)."""

from __future__ import annotations

import time

import cv2
import numpy as np

from faceray.serve.client import ClientConfig, ServiceGone, run_client, write_test_video


class FlakyTransport:
    """Answers every frame with one face, except while the shared clock says the service is down."""

    smooths = True

    def __init__(self, service: dict) -> None:
        if service["down"]():
            raise ServiceGone("service at fake unreachable: ConnectionRefusedError")
        self.service = service
        self.sent: list[int] = []
        service["connections"] += 1

    @property
    def in_flight(self) -> int:
        return len(self.sent)

    def send(self, frame_index: int, data: bytes) -> None:
        if self.service["down"]():
            raise ServiceGone("service at fake unreachable: ConnectionResetError")
        self.sent.append(frame_index)

    def answers(self, block: bool):
        if self.service["down"]():
            raise ServiceGone("service at fake unreachable: ConnectionResetError")
        ready = [(index, {"faces": [{"box": [10, 10, 40, 40], "track": 1}]}) for index in self.sent]
        self.sent = []
        return ready

    def close(self) -> None:
        pass


def video(path, frames: int, fps: float = 20.0):
    return write_test_video(path, [np.full((120, 160, 3), 40 + index, np.uint8) for index in range(frames)], fps)


def test_an_outage_is_retried_and_the_picture_stays_live(tmp_path):
    started = time.monotonic()
    service = {"connections": 0, "down": lambda: 0.5 <= time.monotonic() - started < 1.5}  # down for 1 s
    output = tmp_path / "out.mp4"
    messages = []
    summary = run_client(
        ClientConfig(source=str(video(tmp_path / "in.mp4", 50)), output=str(output), display=False),
        log=messages.append,
        make_transport=lambda: FlakyTransport(service),
    )
    assert summary.exit_reason == "end of video" and summary.frames_read == 50
    assert summary.reconnects == 1 and service["connections"] == 2
    assert summary.responses > 0 and summary.frames_dropped > 0  # frames during the outage were shown, not sent
    assert any("retrying with backoff" in message for message in messages)
    assert any("service back" in message for message in messages)
    capture = cv2.VideoCapture(str(output))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 50  # every frame was drawn while the service was away
    capture.release()


def test_a_long_outage_ends_the_client_cleanly(tmp_path):
    started = time.monotonic()
    service = {"connections": 0, "down": lambda: time.monotonic() - started >= 0.3}  # gone for good
    summary = run_client(
        ClientConfig(source=str(video(tmp_path / "in.mp4", 200)), display=False, give_up_s=1.0),
        log=lambda message: None,
        make_transport=lambda: FlakyTransport(service),
    )
    assert "unreachable" in summary.exit_reason
    assert summary.frames_read < 200  # stopped after about 1 s of outage, not at the end of the video


class ClosingTransport(FlakyTransport):
    """A stream the service closes with `close` (a StreamClosed) once, at the 10th frame answered."""

    def __init__(self, service: dict, close) -> None:
        super().__init__(service)
        self.close_with = close

    def answers(self, block: bool):
        if self.service["connections"] == 1 and self.service.setdefault("answered", 0) >= 10:
            raise self.close_with
        ready = super().answers(block)
        self.service["answered"] = self.service.get("answered", 0) + len(ready)
        return ready


def run_closed_once(tmp_path, close, messages: list[str]):
    service = {"connections": 0, "down": lambda: False}
    summary = run_client(
        ClientConfig(source=str(video(tmp_path / "in.mp4", 40)), display=False, give_up_s=5.0),
        log=messages.append,
        make_transport=lambda: ClosingTransport(service, close),
    )
    return summary, service


def test_an_idle_close_reopens_the_stream_with_the_next_frame_and_is_no_outage(tmp_path):
    from faceray.serve.client import StreamClosed

    messages: list[str] = []
    summary, service = run_closed_once(tmp_path, StreamClosed(1008, "idle: no frame for 60 s"), messages)
    assert summary.exit_reason == "end of video" and service["connections"] == 2
    assert summary.reconnects == 0  # planned by the service, not a failure
    assert any("a new stream opens with the next frame" in message for message in messages)
    assert not any("retrying with backoff" in message for message in messages)


def test_a_restarting_service_is_retried_with_backoff_and_counted(tmp_path):
    from faceray.serve.client import StreamClosed

    messages: list[str] = []
    summary, service = run_closed_once(tmp_path, StreamClosed(1012, ""), messages)
    assert summary.exit_reason == "end of video" and service["connections"] == 2 and summary.reconnects == 1
    assert any("restarting or shutting down (close code 1012)" in message for message in messages)


def test_a_refusal_on_policy_stops_the_client_with_the_reason(tmp_path):
    from faceray.serve.client import StreamClosed

    reason = "this origin may not use the stream (see --allowed-origins)"
    summary, service = run_closed_once(tmp_path, StreamClosed(1008, reason), [])
    assert service["connections"] == 1 and reason in summary.exit_reason and summary.frames_read < 40
    assert summary.failed
