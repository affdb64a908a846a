"""Operator faults: a lost replica never makes requests hang and the service heals itself; Ctrl-C stops
`faceray serve` and its local Ray in seconds."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import requests

from tests.serve.conftest import free_port, jpeg

pytestmark = pytest.mark.slow


def test_a_killed_replica_fails_requests_fast_and_is_replaced(service, astronaut_bgr):
    """One replica (the fixture's), SIGKILLed: no request waits past the service's request timeout (5 s) and
    answers come back by themselves once Serve has replaced it."""
    from websockets.sync.client import connect

    from tests.serve.test_service import closing_frame, service_replica, stream_url

    body = jpeg(astronaut_bgr)
    assert requests.post(f"{service}/v1/faces", data=body, timeout=30).status_code == 200
    stream = connect(stream_url(service), max_size=None)
    stream.send(body)
    assert "faces" in json.loads(stream.recv(timeout=30))
    os.kill(service_replica().pid, signal.SIGKILL)
    killed = time.monotonic()
    # The open stream ends at once with the replica, without a close frame (1006 at the client), never hangs.
    assert closing_frame(stream, 10) is None and time.monotonic() - killed < 5
    stream.close()
    statuses = []
    while time.monotonic() - killed < 120:
        began = time.monotonic()
        try:
            status = requests.post(
                f"{service}/v1/faces", data=body, headers={"Content-Type": "image/jpeg"}, timeout=30
            ).status_code
        except requests.ConnectionError:
            status = "connection error"
        # Answered by the 5 s request timeout at the latest (plus slack for a loaded machine), where the first
        # design left requests hanging for ~57 s.
        assert time.monotonic() - began < 15, "a request hung while the replica was being replaced"
        statuses.append(status)
        if status == 200:
            break
        time.sleep(0.5)
    assert statuses[-1] == 200, statuses  # healed without help


def test_ctrl_c_stops_faceray_serve_and_its_ray_in_seconds(model_dirs, ray_session):
    from websockets.sync.client import connect

    from tests.serve.test_service import closing_frame

    port = free_port()
    command = [
        str(Path(sys.executable).with_name("faceray")),
        "serve",
        "--emotion-model",
        str(model_dirs["emotion"]),
        "--gender-model",
        str(model_dirs["gender"]),
        "--port",
        str(port),
    ]
    # Its own local Ray, as a user's: without the test session's RAY_ADDRESS, which would make it join that one.
    # (and without its HAProxy ports, which the test session's own service holds).
    inherited = ("RAY_ADDRESS", "RAY_SERVE_HAPROXY_STATS_PORT", "RAY_SERVE_HAPROXY_METRICS_PORT")
    environment = {name: value for name, value in os.environ.items() if name not in inherited}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=environment)
    lines = []
    try:
        deadline = time.monotonic() + 240
        for line in process.stdout:
            lines.append(line)
            if "Ctrl-C stops it" in line or time.monotonic() > deadline:
                break
        assert lines and "Ctrl-C stops it" in lines[-1], "".join(lines[-30:])
        assert requests.get(f"http://127.0.0.1:{port}/healthz", timeout=10).json() == {"status": "ok"}
        tree = psutil.Process(process.pid).children(recursive=True)
        assert any(child.name() == "haproxy" for child in tree) and len(tree) > 3
        stream = connect(f"ws://127.0.0.1:{port}/v1/stream")  # a user's live page, open while the service stops
        stream.send(b"not an image")
        assert "error" in json.loads(stream.recv(timeout=30))
        process.send_signal(signal.SIGINT)
        stopped = time.monotonic()
        # The stream ends with the service, never left hanging. Its close frame is 1012 (service restart), the code
        # uvicorn sends to every open WebSocket when Serve stops the replica's server, and the client retries with
        # backoff. In about 1 stop of 4 measured here Serve does not run the replica's graceful shutdown at all: the
        # controller force-kills it after its 6 s grace and the stream ends without a close frame (1006 at the
        # client, which also retries); that is Serve's, not solved here (see the README's Faults).
        frame = closing_frame(stream, 15)
        assert frame is None or frame.code == 1012, frame
        assert time.monotonic() - stopped < (5 if frame is not None else 12)
        stream.close()
        process.wait(timeout=30)
        assert time.monotonic() - stopped < 15, "faceray serve took too long to stop"
        assert process.returncode == 0, "".join(lines[-20:])
        time.sleep(1)
        left = [child for child in tree if child.is_running() and child.status() != psutil.STATUS_ZOMBIE]
        assert left == [], [child.name() for child in left]
    finally:
        if process.poll() is None:
            process.kill()


def test_a_port_held_by_another_program_is_refused_before_ray_starts(model_dirs, capsys):
    """It took 18 s and ended in Ray's HAProxyManager.ready(), 'Address already in use' only in the log."""
    import socket

    from faceray.cli import main

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        began = time.monotonic()
        with pytest.raises(SystemExit) as exited:
            main(["serve", "--emotion-model", str(model_dirs["emotion"]), "--port", str(port)])
    assert exited.value.code == 2 and time.monotonic() - began < 5
    assert f"--port: 127.0.0.1:{port} is already in use by another program" in capsys.readouterr().err
