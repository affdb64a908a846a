"""Command line of the serving stage: `faceray serve` and `faceray client`."""

from __future__ import annotations

import argparse
import time

from faceray.config import add_config_arguments, resolve_config
from serve.config import ServeConfig


def register(subparsers: argparse._SubParsersAction) -> None:
    serve_parser = subparsers.add_parser(
        "serve",
        help="run the face-classification service on Ray Serve",
        description="Serve POST /v1/faces, the WebSocket stream /v1/stream, GET /healthz and GET /v1/models.",
    )
    serve_parser.add_argument("--config", help="YAML file of settings (flags override it)")
    add_config_arguments(serve_parser, ServeConfig)
    serve_parser.set_defaults(handler=run_serve)

    client = subparsers.add_parser("client", help="webcam/video client: send frames, draw faces, exit cleanly")
    client.add_argument("--source", default="0", help="webcam index or video file (default: 0)")
    client.add_argument("--url", default="http://127.0.0.1:8000", help="service URL (default: http://127.0.0.1:8000)")
    client.add_argument("--output", default="", help="write the annotated video here (.mp4)")
    client.add_argument("--jsonl", default="", help="write one JSON line of results per answered frame here")
    client.add_argument("--no-display", dest="display", action="store_false", help="headless: no window")
    client.add_argument("--max-frames", type=int, default=0, help="stop after this many frames (default: 0 = no limit)")
    client.add_argument(
        "--max-in-flight",
        type=int,
        default=2,
        help="requests outstanding at once; other frames are dropped (default: 2)",
    )
    client.add_argument(
        "--fast",
        dest="realtime",
        action="store_false",
        help="read a video file as fast as possible instead of at its frame rate (more frames dropped)",
    )
    client.add_argument(
        "--transport",
        choices=("stream", "http"),
        default="stream",
        help="stream: one WebSocket to /v1/stream, faces tracked by the service (default); "
        "http: one POST /v1/faces per frame",
    )
    client.add_argument(
        "--give-up-after",
        dest="give_up_s",
        type=float,
        default=30.0,
        help="seconds of continuous service outage before the client stops; shorter outages are "
        "retried with backoff while the picture stays live (default: 30)",
    )
    client.add_argument(
        "--smoothing", type=float, default=0.6, help="weight of the past in each face's scores, 0..1 (default: 0.6)"
    )
    client.set_defaults(handler=run_client_command)


def run_serve(arguments: argparse.Namespace) -> int:
    """Start the service and keep it up until Ctrl-C or SIGTERM, then stop it and the local Ray in seconds.

    Both signals are handled here (not left to KeyboardInterrupt), also while the service starts and in
    shells that start background jobs with SIGINT ignored.
    """
    import signal
    import threading

    from faceray.runtime import init_ray, shutdown_ray
    from serve.service import start_service, stop_service

    config = resolve_config(ServeConfig, arguments, arguments.config)
    stop = threading.Event()

    def request_stop(signal_number: int, frame: object) -> None:
        stop.set()

    for signal_number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signal_number, request_stop)
    init_ray(config.address or None)
    try:
        url = start_service(config, stop=stop)
        if url:
            print(
                f"faceray service at {url} (the live page at /; POST /v1/faces, WebSocket /v1/stream, GET /healthz, "
                "GET /v1/models); Ctrl-C stops it",
                flush=True,
            )
            stop.wait()
        print("stopping the service", flush=True)
    finally:
        started = time.monotonic()
        stop_service()
        shutdown_ray()
        print(f"stopped in {time.monotonic() - started:.1f} s", flush=True)
    return 0


def run_client_command(arguments: argparse.Namespace) -> int:
    from faceray.config import ConfigError
    from serve.client import ClientConfig, run_client

    if arguments.max_in_flight < 1 or not 0 <= arguments.smoothing < 1:
        raise ConfigError("--max-in-flight must be >= 1 and --smoothing in [0, 1)")
    config = ClientConfig(
        source=arguments.source,
        url=arguments.url,
        output=arguments.output,
        jsonl=arguments.jsonl,
        display=arguments.display,
        max_frames=arguments.max_frames,
        max_in_flight=arguments.max_in_flight,
        smoothing=arguments.smoothing,
        realtime=arguments.realtime,
        transport=arguments.transport,
        give_up_s=arguments.give_up_s,
    )
    try:
        summary = run_client(config)
    except ValueError as problem:
        raise ConfigError(f"--source: {problem}") from None
    print(
        f"client stopped ({summary.exit_reason}): {summary.frames_read} frames read, {summary.frames_sent} sent, "
        f"{summary.frames_dropped} dropped, {summary.responses} answered, {summary.fps:.1f} fps, "
        f"mean latency {summary.mean_latency_ms:.0f} ms"
    )
    return 1 if "unreachable" in summary.exit_reason or "service error" in summary.exit_reason else 0
