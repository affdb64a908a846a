"""Command line of the serving stage: `faceray serve` and `faceray client`."""

from __future__ import annotations

import argparse
import time

from faceray.config import add_config_arguments, resolve_config
from faceray.serve.config import AnalyzeConfig, ClientConfig, ServeConfig


def register(subparsers: argparse._SubParsersAction) -> None:
    serve_parser = subparsers.add_parser(
        "serve",
        help="run the face-classification service on Ray Serve",
        description="Serve POST /v1/faces, the WebSocket stream /v1/stream, GET /healthz and GET /v1/models.",
    )
    serve_parser.add_argument("--config", help="YAML file of settings (flags override it)")
    add_config_arguments(serve_parser, ServeConfig)
    serve_parser.set_defaults(handler=run_serve)

    client = subparsers.add_parser(
        "client",
        help="webcam/video client: send frames, draw faces, exit cleanly",
        description="Stream a webcam, a video file or a folder of images to a running service over /v1/stream, draw "
        "the faces it finds, and optionally write an annotated video and one JSON line per frame.",
    )
    client.add_argument("--config", help="YAML file of settings (flags override it)")
    add_config_arguments(client, ClientConfig)
    client.set_defaults(handler=run_client_command)

    analyze = subparsers.add_parser(
        "analyze",
        help="analyse photo and video collections into tables of faces, on Ray Data",
        description="Detect and classify every face in images and videos (files, folders walked recursively, globs; "
        "local, s3:// or gs://) with the service's face pipeline on a Ray Data actor pool, and write OUT/faces/ "
        "(Parquet, one row per face per frame), OUT/summary.csv, OUT/timelines/, OUT/rejects.csv and "
        "OUT/manifest.json. Resumable per input: run the same command again after a stop.",
    )
    analyze.add_argument("inputs", nargs="+", metavar="INPUT", help="image or video file, folder or glob")
    analyze.add_argument("--config", help="YAML file of settings (flags override it)")
    add_config_arguments(analyze, AnalyzeConfig)
    analyze.set_defaults(handler=run_analyze_command)


def check_model_dirs(config: ServeConfig) -> None:
    """Check each model directory before Ray starts (serve.config.check_models). Local paths are checked only for the
    embedded local Ray: a cluster's nodes have their own disks."""
    from faceray.serve.config import check_models
    from faceray.storage import is_store_uri

    given = {"emotion": config.emotion_model, "gender": config.gender_model}
    check_models(
        {task: where for task, where in given.items() if where and (is_store_uri(where) or not config.address)},
        config.runtime,
    )


def check_port(config: ServeConfig) -> None:
    """For the embedded local Ray: ConfigError naming --port when another program already listens there (found by
    HAProxy only 18 s later, deep inside Ray, otherwise)."""
    import errno
    import socket

    from faceray.config import ConfigError

    if config.address:
        return
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((config.host, config.port))
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                raise ConfigError(
                    f"--port: {config.host}:{config.port} is already in use by another program: stop it or give "
                    "another --port"
                ) from None
            raise


def run_serve(arguments: argparse.Namespace) -> int:
    """Start the service and keep it up until Ctrl-C or SIGTERM, then stop it and the local Ray in seconds.

    Both signals are handled here (not left to KeyboardInterrupt), also while the service starts and in
    shells that start background jobs with SIGINT ignored.
    """
    import signal
    import threading

    from faceray.runtime import init_ray, shutdown_ray
    from faceray.serve.service import start_service, stop_service

    config = resolve_config(ServeConfig, arguments, arguments.config)
    check_model_dirs(config)
    check_port(config)
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


def run_analyze_command(arguments: argparse.Namespace) -> int:
    from faceray.console import terminal_stderr
    from faceray.runtime import init_ray
    from faceray.serve.offline import run_analyze, summary_line
    from faceray.stopping import graceful_stop

    config = resolve_config(AnalyzeConfig, arguments, arguments.config, inputs=tuple(arguments.inputs))
    init_ray(config.address or None, dashboard=False)  # before the handlers: ray.init installs its own for SIGTERM
    kept = "finished inputs are kept"
    with graceful_stop("the analysis", kept, interrupt=True) as stop, stop.as_stop(f"the analysis ({kept})"):
        manifest = run_analyze(config, log=print)
    print(summary_line(manifest))
    print(
        f"faces: {config.out}/faces/  summary: {config.out}/summary.csv  rejects: {config.out}/rejects.csv",
        file=terminal_stderr(),
    )
    return 0


def run_client_command(arguments: argparse.Namespace) -> int:
    from faceray.config import ConfigError
    from faceray.serve.client import run_client

    config = resolve_config(ClientConfig, arguments, arguments.config)
    try:
        summary = run_client(config)
    except ValueError as problem:
        raise ConfigError(f"--source: {problem}") from None
    print(
        f"client stopped ({summary.exit_reason}): {summary.frames_read} frames read, {summary.frames_sent} sent, "
        f"{summary.frames_dropped} dropped, {summary.responses} answered, {summary.reconnects} reconnects, "
        f"{summary.fps:.1f} fps, "
        f"mean latency {summary.mean_latency_ms:.0f} ms"
    )
    return 1 if summary.failed else 0
