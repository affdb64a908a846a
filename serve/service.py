"""Starting and stopping the Serve application on a running Ray (thin wrapper)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from faceray.serve.config import ServeConfig

APP_NAME = "faceray"


def start_service(
    config: ServeConfig,
    wait_s: float = 180.0,
    stop: threading.Event | None = None,
    log: Callable[[str], None] | None = print,
) -> str | None:
    """Deploy the app on HTTP host:port; returns the base URL once /healthz and the stream answer (None if `stop` is
    set first).

    Replicas the cluster cannot hold are refused first (faceray.resources.plan_serve), not waited for."""
    import requests
    from ray import serve

    from faceray.resources import plan_serve
    from faceray.runtime import read_cluster
    from faceray.serve.app import build_app

    plan = plan_serve(read_cluster(), config.replicas, config.replica_cpus)
    if log is not None:
        log(plan.line())

    # No Serve request timeout: Serve's bounds a whole WebSocket connection (every stream was cut at 5.0 s) and a
    # client may switch it off with a header. The app enforces its own limits (ServeConfig.request_timeout_s,
    # stream_idle_s, frame_deadline_s).
    serve.start(http_options={"host": config.host, "port": config.port})
    serve.run(build_app(config), name=APP_NAME, route_prefix="/", blocking=False)
    url = f"http://{'127.0.0.1' if config.host in ('0.0.0.0', '') else config.host}:{config.port}"
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if stop is not None and stop.is_set():
            return None
        try:
            if requests.get(url + "/healthz", timeout=2).status_code == 200 and stream_answers(url):
                return url
        except requests.RequestException:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"the service did not answer {url}/healthz and /v1/stream within {wait_s:.0f} s")


def stream_answers(url: str, timeout_s: float = 5.0) -> bool:
    """Whether /v1/stream answers a message end to end (the service is ready when both of its paths are, not only
    /healthz). The probe is not an image, so it costs no analysis."""
    import json

    from websockets.sync.client import connect

    try:
        with connect(url.replace("http", "ws", 1) + "/v1/stream", open_timeout=timeout_s, close_timeout=1) as socket:
            socket.send(b"not an image")
            return "error" in json.loads(socket.recv(timeout=timeout_s))
    except Exception:
        return False


def wait_for_replicas(count: int, wait_s: float = 180.0) -> None:
    """Wait until the service's deployment has `count` running replicas (after a start or a lost replica)."""
    from ray import serve

    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        application = serve.status().applications.get(APP_NAME)
        deployment = application.deployments.get("FaceService") if application else None
        if deployment is not None and deployment.replica_states.get("RUNNING", 0) >= count:
            return
        time.sleep(0.2)
    raise TimeoutError(f"the service did not reach {count} running replicas within {wait_s:.0f} s")


def stop_service() -> None:
    """Stop the application, then Serve. The application goes first, while HAProxy still runs: its replicas drain
    and their servers close every open stream with a close frame (1012, service restart) that reaches the client;
    shutting Serve down at once stopped HAProxy with them and cut the streams without one."""
    from ray import serve

    try:
        serve.delete(APP_NAME)
    finally:
        serve.shutdown()
