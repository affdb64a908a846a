"""Soak: the live path held for minutes, with polite and impolite clients, on one service on 127.0.0.1.

One service with the shipped settings (the published models when ../shared/reference exists, else untrained ones
of the same shape). 640x480 frames: bench/serve.py's scenes of 1..6 real faces for the streams, the real group photo
of ../shared/reference (else the first scene) for HTTP. All traffic is bounded in count and time, on loopback.
Scenarios (durations at --scale 1):
  stream    one stream paced at 30 frames/s for 10 min: reconnects, frames answered or dropped (and any neither),
            p50/p99 latency and the service's summed RSS per minute (growth after the first minute);
  streams   8 streams at 15 frames/s each for 5 min: the same per stream and in total, and evenness (the slowest
            stream's answered frames/s / the fastest's);
  http      POST /v1/faces at concurrency 8 for 5 min: p50/p95/p99 of answered requests, shed (503) and errors;
  page      the live page in headless Chromium with a fake camera at 30 frames/s for 2 min: reconnects, dropped,
            framesAnswered / framesSent;
  starve    one stream at 30 frames/s; after 15 s, 100 idle streams and 40 clients sending a body at 1 byte/s
            (reconnecting after each 408) join for 45 s: /healthz latency and the stream's frames/s, before/during;
  overload  64 clients posting the group photo in a closed loop for 60 s, honouring Retry-After (the target), then
            for 30 s sending a shed request again at once (a retry storm): answered p50/p99 against the unloaded p50
            measured just before (the baseline), 503s and their latency, /healthz meanwhile;
  replica   the replica SIGKILLed, then a POST every 0.1 s for 20 s: what each got and how fast, while Serve replaces it.
The service's summed RSS = every process of the local Ray this benchmark starts (Chromium and this process excluded),
sampled every 5 s. Prints a table and one JSON line; writes OUT/soak.png (latency and memory over time) and
OUT/soak.json.

    python bench/soak.py [--scale 1.0] [--scenarios stream,streams,http,page,starve,overload,replica] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import select
import socket
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

REPOSITORY = Path(__file__).resolve().parents[1]
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != REPOSITORY / "bench"]
sys.path.insert(0, str(REPOSITORY))
from bench.common import BackgroundLoop, machine, print_report  # noqa: E402

SCENARIOS = ("stream", "streams", "http", "page", "starve", "overload", "replica")
MINUTES = {"stream": 10.0, "streams": 5.0, "http": 5.0, "page": 2.0, "starve": 1.0, "overload": 1.0}


def quantiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p95": None, "p99": None}
    return {f"p{q}": round(float(np.percentile(values, q)), 1) for q in (50, 95, 99)}


class ServiceMemory(BackgroundLoop):
    """Samples the summed RSS of the local Ray's processes (descendants of this process, Chromium excluded) every
    `interval_s` seconds in a thread, keeping (seconds since start, bytes)."""

    def __init__(self, interval_s: float = 5.0) -> None:
        super().__init__()
        self.interval_s = interval_s
        self.started = time.monotonic()
        self.samples: list[tuple[float, int]] = []

    def sample(self) -> int:
        import psutil

        total = 0
        for process in psutil.Process().children(recursive=True):
            try:
                if "chrom" in process.name():
                    continue
                total += process.memory_info().rss
            except psutil.Error:
                pass
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append((time.monotonic() - self.started, self.sample()))
            self._stop.wait(self.interval_s)

    def per_minute(self, start: float, end: float) -> list[float]:
        """Mean MiB per whole minute of the window [start, end] (seconds since this sampler started)."""
        minutes: dict[int, list[int]] = {}
        for moment, size in self.samples:
            if start <= moment < end:
                minutes.setdefault(int((moment - start) // 60), []).append(size)
        return [round(float(np.mean(minutes[index])) / 2**20, 1) for index in sorted(minutes)]


def growth_after_first_minute(per_minute: list[float]) -> float | None:
    """The largest later minute's memory over the first minute's, minus 1 (None with under 2 minutes)."""
    if len(per_minute) < 2:
        return None
    return round(max(per_minute[1:]) / per_minute[0] - 1, 4)


@dataclass
class StreamRun:
    """What one paced stream client saw: send times and answers by (connection, frame), closes, reconnects."""

    sent: dict[tuple[int, int], float] = field(default_factory=dict)
    answered: list[tuple[float, float]] = field(default_factory=list)  # (seconds since start, latency ms)
    dropped: Counter = field(default_factory=Counter)
    errors: int = 0
    closes: list[tuple[int | None, str]] = field(default_factory=list)
    refused: int = 0  # connections closed at once with 1013

    @property
    def reconnects(self) -> int:
        return max(0, len(self.closes) - self.refused)

    def unanswered(self) -> int:
        return len(self.sent) - len(self.answered) - sum(self.dropped.values()) - self.errors

    def summary(self, seconds: float) -> dict[str, Any]:
        latencies = [latency for _, latency in self.answered]
        return {
            "sent": len(self.sent),
            "answered": len(self.answered),
            "dropped": dict(self.dropped),
            "errors": self.errors,
            "neither": self.unanswered(),
            "reconnects": self.reconnects,
            "closes": self.closes,
            "answered_fps": round(len(self.answered) / seconds, 2),
            **quantiles(latencies),
        }


def paced_stream(url: str, bodies: list[bytes], fps: float, seconds: float, origin: float) -> StreamRun:
    """One stream sending a frame every 1/fps s for `seconds` (not waiting for answers: a camera's pace), reading
    answers in a thread; reconnects (counted) if the stream ends early. Waits up to 5 s for the last answers."""
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    run = StreamRun()
    began = time.monotonic()
    index, connection = 0, 0
    while time.monotonic() - began < seconds:
        try:
            websocket = connect(url.replace("http://", "ws://") + "/v1/stream", max_size=None, compression=None)
        except Exception as problem:  # the service refused or is away: counted as a close
            run.closes.append((None, f"connect: {problem.__class__.__name__}"))
            time.sleep(0.5)
            continue
        outcome: dict[str, Any] = {}

        def read(socket_=websocket, number=connection, outcome=outcome) -> None:
            try:
                while True:
                    answer = json.loads(socket_.recv())
                    arrived = time.monotonic()
                    sent = run.sent[(number, answer["frame"])]
                    if answer.get("dropped"):
                        run.dropped[answer["reason"]] += 1
                    elif "error" in answer:
                        run.errors += 1
                    else:
                        run.answered.append((sent - origin, (arrived - sent) * 1000))
            except ConnectionClosed as closed:
                outcome["close"] = (closed.rcvd.code, closed.rcvd.reason) if closed.rcvd else (1006, "")

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        frame = 0
        try:
            while (now := time.monotonic()) - began < seconds and reader.is_alive():
                due = began + index / fps
                if due > now:
                    time.sleep(due - now)
                run.sent[(connection, frame)] = time.monotonic()
                websocket.send(bodies[index % len(bodies)])
                index, frame = index + 1, frame + 1
        except ConnectionClosed:
            pass
        if reader.is_alive():  # our end: wait for the answers in flight, then close
            waited = time.monotonic()
            while run.unanswered() > 0 and time.monotonic() - waited < 5:
                time.sleep(0.05)
            websocket.close()
            reader.join(timeout=5)
        else:
            code, reason = outcome.get("close", (None, ""))
            run.closes.append((code, reason))
            if code == 1013:
                run.refused += 1
            websocket.close()
        connection += 1
    return run


def per_minute_latency(answered: list[tuple[float, float]], start: float) -> list[dict[str, Any]]:
    minutes: dict[int, list[float]] = {}
    for moment, latency in answered:
        minutes.setdefault(int((moment - start) // 60), []).append(latency)
    return [
        {"minute": index + 1, "frames": len(minutes[index]), **quantiles(minutes[index])} for index in sorted(minutes)
    ]


def scenario_stream(url: str, bodies: list[bytes], seconds: float, memory: ServiceMemory) -> dict[str, Any]:
    start = time.monotonic() - memory.started
    run = paced_stream(url, bodies, 30, seconds, memory.started)
    end = time.monotonic() - memory.started
    rss = memory.per_minute(start, end)
    return {
        **run.summary(seconds),
        "per_minute": per_minute_latency(run.answered, start),
        "rss_mib_per_minute": rss,
        "rss_growth_after_first_minute": growth_after_first_minute(rss),
        "window_s": [round(start, 1), round(end, 1)],
        "latency_series": [(round(moment, 2), round(latency, 1)) for moment, latency in run.answered],
    }


def scenario_streams(url: str, bodies: list[bytes], seconds: float, memory: ServiceMemory) -> dict[str, Any]:
    start = time.monotonic() - memory.started
    with ThreadPoolExecutor(8) as pool:
        runs = list(pool.map(lambda _: paced_stream(url, bodies, 15, seconds, memory.started), range(8)))
    end = time.monotonic() - memory.started
    rates = [len(run.answered) / seconds for run in runs]
    rss = memory.per_minute(start, end)
    every = [answer for run in runs for answer in run.answered]
    return {
        "per_stream": [{key: value for key, value in run.summary(seconds).items()} for run in runs],
        "answered_fps_total": round(sum(rates), 2),
        "evenness": round(min(rates) / max(rates), 3) if max(rates) else 0.0,
        "reconnects": sum(run.reconnects for run in runs),
        "neither": sum(run.unanswered() for run in runs),
        "dropped": dict(sum((run.dropped for run in runs), Counter())),
        **quantiles([latency for _, latency in every]),
        "per_minute": per_minute_latency(every, start),
        "rss_mib_per_minute": rss,
        "rss_growth_after_first_minute": growth_after_first_minute(rss),
        "window_s": [round(start, 1), round(end, 1)],
    }


def post_once(session: Any, url: str, body: bytes) -> tuple[Any, float, str | None]:
    """One POST /v1/faces through `session` (a requests.Session, or the requests module): (status, or the name of
    the connection error; milliseconds; its Retry-After header)."""
    import requests

    sent = time.monotonic()
    try:
        response = session.post(url + "/v1/faces", data=body, headers={"Content-Type": "image/jpeg"}, timeout=30)
        status, retry = response.status_code, response.headers.get("Retry-After")
    except requests.RequestException as problem:
        status, retry = problem.__class__.__name__, None
    return status, (time.monotonic() - sent) * 1000, retry


def post_loop(url: str, body: bytes, seconds: float, results: list, honour_retry_after: bool) -> None:
    """POST `body` in a closed loop for `seconds`, appending (seconds since start, status, ms, Retry-After); a shed
    request is sent again after its Retry-After (+-25 %) when `honour_retry_after`, else at once."""
    import requests

    session = requests.Session()
    began = time.monotonic()
    while time.monotonic() - began < seconds:
        sent = time.monotonic()
        status, milliseconds, retry = post_once(session, url, body)
        results.append((sent - began, status, milliseconds, retry))
        if honour_retry_after and retry:  # with jitter, as polite clients do, so shed clients do not return in step
            time.sleep(float(retry) * random.uniform(0.75, 1.25))


def http_summary(results: list, seconds: float) -> dict[str, Any]:
    answered = [ms for _, status, ms, _ in results if status == 200]
    shed = [ms for _, status, ms, retry in results if status == 503 and retry]
    errors = Counter(str(status) for _, status, _, retry in results if status != 200 and not (status == 503 and retry))
    return {
        "requests": len(results),
        "answered": len(answered),
        "answered_per_s": round(len(answered) / seconds, 1),
        **quantiles(answered),
        "shed": len(shed),
        "shed_ms": quantiles(shed),
        "errors": dict(errors),
    }


def scenario_http(url: str, body: bytes, seconds: float) -> dict[str, Any]:
    """Concurrency 8, as clients that honour Retry-After would run it."""
    results: list = []
    with ThreadPoolExecutor(8) as pool:
        for _ in range(8):
            pool.submit(post_loop, url, body, seconds, results, True)
    summary = http_summary(results, seconds)
    summary["ratio_p99_to_p50"] = round(summary["p99"] / summary["p50"], 2) if summary["p50"] else None
    return summary


class HealthProbe(BackgroundLoop):
    """GET /healthz every `every_s` seconds in a thread (a fresh connection each time, as a load balancer's check)."""

    def __init__(self, url: str, every_s: float = 0.25) -> None:
        super().__init__()
        self.url, self.every_s = url, every_s
        self.samples: list[tuple[float, float | str]] = []

    def _run(self) -> None:
        import requests

        while not self._stop.is_set():
            sent = time.monotonic()
            try:
                ok = requests.get(self.url + "/healthz", timeout=10).status_code == 200
                self.samples.append((sent, (time.monotonic() - sent) * 1000 if ok else "not 200"))
            except requests.RequestException as problem:
                self.samples.append((sent, problem.__class__.__name__))
            self._stop.wait(self.every_s)

    def summary(self, start: float = 0.0, end: float = float("inf")) -> dict[str, Any]:
        window = [value for moment, value in self.samples if start <= moment < end]
        times = [value for value in window if isinstance(value, float)]
        return {
            "checks": len(window),
            "failed": len(window) - len(times),
            **quantiles(times),
            "max": round(max(times), 1) if times else None,
        }


class SlowBodies(BackgroundLoop):
    """`count` POSTs that send their body at 1 byte/s, each replaced by a new one when the service answers it (408 at
    the request timeout) or drops it; counts the answers by status line."""

    def __init__(self, url: str, count: int) -> None:
        host, port = url.removeprefix("http://").split(":")
        self.address = (host, int(port))
        self.count = count
        self.answers: Counter = Counter()
        super().__init__()

    def open_one(self) -> socket.socket:
        connection = socket.create_connection(self.address, timeout=10)
        head = (
            "POST /v1/faces HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/jpeg\r\nContent-Length: 100000\r\n\r\n"
        )
        connection.sendall(head.encode())
        connection.setblocking(False)
        return connection

    def _run(self) -> None:
        connections = [self.open_one() for _ in range(self.count)]
        while not self._stop.is_set():
            readable, _, _ = select.select(connections, [], [], 1.0)
            for connection in readable:
                try:
                    answer = connection.recv(200).decode(errors="replace")
                except OSError:
                    answer = ""
                self.answers[answer.split("\r\n")[0] or "closed"] += 1
                connection.close()
                connections[connections.index(connection)] = self.open_one()
            for connection in connections:
                try:
                    connection.send(b"\xff")
                except OSError:
                    pass
        for connection in connections:
            connection.close()


def scenario_starve(url: str, bodies: list[bytes], seconds: float) -> dict[str, Any]:
    """An active stream, joined after a quarter of the window by 100 idle streams and 40 slow bodies."""
    from websockets.sync.client import connect

    origin = time.monotonic()
    joined_at = seconds / 4
    idle: list[Any] = []
    refused = 0
    with HealthProbe(url) as probe, ThreadPoolExecutor(1) as pool:
        active = pool.submit(paced_stream, url, bodies, 30, seconds, origin)
        time.sleep(joined_at)
        with SlowBodies(url, 40) as slow:
            for _ in range(100):
                websocket = connect(url.replace("http://", "ws://") + "/v1/stream", max_size=None)
                idle.append(websocket)
            time.sleep(0.5)
            refused = sum(1 for websocket in idle if websocket.close_code == 1013)
            run = active.result()
        for websocket in idle:
            websocket.close()
    before = [moment for moment, _ in run.answered if moment < joined_at]
    during = [moment for moment, _ in run.answered if moment >= joined_at + 1]
    return {
        "idle_streams": len(idle),
        "idle_refused_1013": refused,
        "slow_body_answers": dict(slow.answers),
        "healthz_before": probe.summary(origin, origin + joined_at),
        "healthz_during": probe.summary(origin + joined_at + 1),
        "stream_fps_before": round(len(before) / joined_at, 2),
        "stream_fps_during": round(len(during) / (seconds - joined_at - 1), 2),
        "stream": run.summary(seconds),
    }


def scenario_overload(url: str, body: bytes, seconds: float) -> dict[str, Any]:
    """The unloaded baseline (one client), then 64 clients that honour Retry-After for `seconds` (the target), then
    64 that send a shed request again at once for half as long (a retry storm, reported beside it)."""
    unloaded: list = []
    post_loop(url, body, min(10.0, seconds / 4), unloaded, True)
    baseline = http_summary(unloaded, min(10.0, seconds / 4))
    phases = {}
    for name, polite, duration in (("polite", True, seconds), ("storm", False, seconds / 2)):
        results: list = []
        with HealthProbe(url) as probe, ThreadPoolExecutor(64) as pool:
            for _ in range(64):
                pool.submit(post_loop, url, body, duration, results, polite)
        loaded = http_summary(results, duration)
        phases[name] = {
            **loaded,
            "ratio_answered_p99_to_unloaded_p50": round(loaded["p99"] / baseline["p50"], 2) if loaded["p99"] else None,
            "healthz": probe.summary(),
        }
    return {"unloaded": baseline, **phases}


def scenario_replica(url: str, body: bytes) -> dict[str, Any]:
    """SIGKILL the replica, then send a POST every 0.1 s (not waiting for answers) for 20 s: what each got and how
    long it took, until answers are 200 again."""
    import signal

    import requests

    from faceray.serve.service import wait_for_replicas
    from tests.serve.test_service import service_replica

    os.kill(service_replica().pid, signal.SIGKILL)
    killed = time.monotonic()

    def one(_: int) -> tuple[float, Any, float, str | None]:
        sent = time.monotonic()
        status, milliseconds, retry = post_once(requests, url, body)
        return round(sent - killed, 2), status, round(milliseconds, 1), retry

    futures = []
    with ThreadPoolExecutor(64) as pool:
        while time.monotonic() - killed < 20:
            futures.append(pool.submit(one, 0))
            time.sleep(0.1)
        answers = [future.result() for future in futures]
    wait_for_replicas(1)
    failed = [ms for _, status, ms, _ in answers if status != 200]
    answered = [(sent, ms) for sent, status, ms, _ in answers if status == 200]
    return {
        "requests": len(answers),
        "statuses": dict(Counter(str(status) for _, status, _, _ in answers)),
        "first_200_answered_after_s": round(min(sent + ms / 1000 for sent, ms in answered), 2) if answered else None,
        "slowest_200_ms": max(ms for _, ms in answered) if answered else None,
        "failed_answer_ms": quantiles(failed) | {"max": max(failed) if failed else None},
        "with_retry_after": sum(1 for *_, retry in answers if retry),
        "first": answers[:3],
    }


def scenario_page(url: str, seconds: float, work: Path) -> dict[str, Any]:
    from skimage import data

    from tests.serve.test_service import CHROMEDRIVER, CHROMIUM, browser, wait_for, write_y4m

    if not (CHROMIUM and CHROMEDRIVER):
        return {"skipped": "Debian's chromium and chromium-driver are not installed"}
    frame = np.full((480, 640, 3), 100, np.uint8)
    frame[:, 64:576] = cv2.resize(cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR), (512, 480))
    camera = write_y4m(work / "camera.y4m", frame, frames=60, fps=30)
    driver = browser(camera, allow_camera=True)
    try:
        driver.get(url + "/")
        wait_for(driver, "return window.faceray.framesAnswered >= 1")
        time.sleep(seconds)
        state = driver.execute_script("return window.faceray")
    finally:
        driver.quit()
    return {
        "seconds": seconds,
        "frames_sent": state["framesSent"],
        "frames_answered": state["framesAnswered"],
        "dropped": state["dropped"],
        "reconnects": state["reconnects"],
        "closed": state["closed"],
        "answered_fps": round(state["framesAnswered"] / seconds, 1),
        "ratio_answered_to_sent": round(state["framesAnswered"] / max(1, state["framesSent"]), 3),
    }


def plot(results: dict[str, Any], memory: ServiceMemory, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (top, bottom) = plt.subplots(2, 1, figsize=(10, 6.5), sharex=False)
    series = results.get("stream", {}).get("latency_series", [])
    if series:
        moments = np.array([moment for moment, _ in series])
        latencies = np.array([latency for _, latency in series])
        start = moments.min()
        buckets = ((moments - start) // 10).astype(int)
        centers, p50, p99 = [], [], []
        for bucket in np.unique(buckets):
            values = latencies[buckets == bucket]
            centers.append((bucket * 10 + 5) / 60)
            p50.append(np.percentile(values, 50))
            p99.append(np.percentile(values, 99))
        top.plot(centers, p50, label="p50")
        top.plot(centers, p99, label="p99")
        top.set_title("one stream at 30 frames/s: answer latency per 10 s")
        top.set_xlabel("minutes")
        top.set_ylabel("ms")
        top.legend()
    moments = [moment / 60 for moment, _ in memory.samples]
    bottom.plot(moments, [size / 2**20 for _, size in memory.samples], color="black")
    for index, (name, result) in enumerate(results.items()):
        if isinstance(result, dict) and "window_s" in result:
            begin, end = result["window_s"]
            bottom.axvspan(begin / 60, end / 60, alpha=0.15, color=f"C{index}")
            bottom.text(begin / 60, 0, name, va="bottom")
    bottom.set_title("the service's summed RSS (every process of its local Ray)")
    bottom.set_xlabel("minutes since the service started")
    bottom.set_ylabel("MiB")
    bottom.set_ylim(bottom=0)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="multiplies every duration (0.05: a quick check)")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS), help=f"comma-separated, of {', '.join(SCENARIOS)}")
    parser.add_argument("--out", default="runs/bench/soak", help="folder for soak.png and soak.json")
    parser.add_argument("--set", action="append", default=[], help="a service setting NAME=VALUE (experiments)")
    arguments = parser.parse_args()
    chosen = [name for name in arguments.scenarios.split(",") if name]
    unknown = set(chosen) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenarios: {', '.join(sorted(unknown))}")
    from faceray.runtime import use_loopback_environment

    use_loopback_environment()
    from bench.serve import REFERENCE, jpeg_bodies, make_frames, model_dirs, service_config
    from faceray.runtime import init_ray, shutdown_ray
    from faceray.serve.service import start_service, stop_service

    out = Path(arguments.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="faceray-bench-soak-"))
    dirs = model_dirs(work)
    frames, _ = make_frames(120)
    bodies = jpeg_bodies(frames)
    group = REFERENCE / "test_image.jpg"
    photo = cv2.resize(cv2.imread(str(group)), (640, 480)) if group.is_file() else frames[30]
    [photo_body] = jpeg_bodies([photo])
    settings = dict(setting.split("=", 1) for setting in arguments.set)
    config = service_config(dirs, **settings)

    def seconds(name: str) -> float:
        return MINUTES[name] * 60 * arguments.scale

    memory = ServiceMemory()
    init_ray()
    results: dict[str, Any] = {}
    timings: dict[str, float] = {}
    try:
        url = start_service(config, log=None)
        with memory:  # sampled from here to the end of the scenarios
            for name in chosen:
                began = time.monotonic()
                print(f"-- {name} ({seconds(name) / 60:.1f} min)" if name in MINUTES else f"-- {name}", flush=True)
                if name == "stream":
                    results[name] = scenario_stream(url, bodies, seconds(name), memory)
                elif name == "streams":
                    results[name] = scenario_streams(url, bodies, seconds(name), memory)
                elif name == "http":
                    results[name] = scenario_http(url, photo_body, seconds(name))
                elif name == "page":
                    results[name] = scenario_page(url, seconds(name), work)
                elif name == "starve":
                    results[name] = scenario_starve(url, bodies, seconds(name))
                elif name == "overload":
                    results[name] = scenario_overload(url, photo_body, seconds(name))
                elif name == "replica":
                    results[name] = scenario_replica(url, photo_body)
                timings[name] = round(time.monotonic() - began, 1)
    finally:
        stop_service()
        shutdown_ray()
    plot(results, memory, out / "soak.png")
    series = results.get("stream", {}).pop("latency_series", None)
    payload = {
        "benchmark": "soak",
        "machine": machine(),
        "scale": arguments.scale,
        "settings": {name: getattr(config, name) for name in ("workers", "http_queue", "max_streams", "stream_queue")},
        "weights": "published" if (REFERENCE / "fer2013_mini_XCEPTION.102-0.66.hdf5").is_file() else "untrained",
        "http_picture": "group photo" if group.is_file() else "scene of faces",
        "seconds": timings,
        **results,
    }
    (out / "soak.json").write_text(json.dumps({**payload, "stream_latency_series": series}, indent=1))
    print_report("bench/soak", table(results), payload)
    print(f"plot: {out / 'soak.png'}")


def table(results: dict[str, Any]) -> list[tuple[str, str]]:
    rows = []
    if "stream" in results:
        row = results["stream"]
        worst = max((minute["p99"] or 0) for minute in row["per_minute"]) if row["per_minute"] else None
        rows.append(
            (
                "1 stream, 30/s",
                f"{row['answered_fps']} answered/s, reconnects {row['reconnects']}, dropped {row['dropped']}, "
                f"neither {row['neither']}; p50 {row['p50']} p99 {row['p99']} ms (worst minute p99 {worst}); "
                f"RSS/min {row['rss_mib_per_minute']} MiB, growth {row['rss_growth_after_first_minute']}",
            )
        )
    if "streams" in results:
        row = results["streams"]
        rows.append(
            (
                "8 streams, 15/s each",
                f"{row['answered_fps_total']} answered/s in total, evenness {row['evenness']}, reconnects "
                f"{row['reconnects']}, neither {row['neither']}, dropped {row['dropped']}; p50 {row['p50']} p99 "
                f"{row['p99']} ms; RSS growth {row['rss_growth_after_first_minute']}",
            )
        )
    if "http" in results:
        row = results["http"]
        rows.append(
            (
                "HTTP, concurrency 8",
                f"{row['answered_per_s']} answered/s, p50 {row['p50']} p95 {row['p95']} p99 {row['p99']} ms "
                f"(p99/p50 {row['ratio_p99_to_p50']}), shed {row['shed']}, errors {row['errors']}",
            )
        )
    if "page" in results:
        row = results["page"]
        rows.append(
            (
                "page, Chromium",
                row.get("skipped")
                or f"{row['answered_fps']} answered/s, answered/sent {row['ratio_answered_to_sent']}, reconnects "
                f"{row['reconnects']}, dropped {row['dropped']}",
            )
        )
    if "starve" in results:
        row = results["starve"]
        rows.append(
            (
                "100 idle + 40 slow bodies",
                f"/healthz p99 {row['healthz_before']['p99']} -> {row['healthz_during']['p99']} ms (max "
                f"{row['healthz_during']['max']}); stream {row['stream_fps_before']} -> {row['stream_fps_during']} "
                f"answered/s; idle refused {row['idle_refused_1013']}; slow bodies got {row['slow_body_answers']}",
            )
        )
    if "overload" in results:
        row = results["overload"]
        for name, label in (("polite", "64 clients, honour Retry-After"), ("storm", "64 clients, retry at once")):
            phase = row[name]
            rows.append(
                (
                    label,
                    f"answered p50 {phase['p50']} p99 {phase['p99']} ms = {phase['ratio_answered_p99_to_unloaded_p50']}x "
                    f"unloaded p50 {row['unloaded']['p50']} ms; {phase['answered_per_s']} answered/s; shed "
                    f"{phase['shed']} in p50 {phase['shed_ms']['p50']} p99 {phase['shed_ms']['p99']} ms; /healthz p99 "
                    f"{phase['healthz']['p99']} ms; errors {phase['errors']}",
                )
            )
    if "replica" in results:
        row = results["replica"]
        rows.append(
            (
                "replica killed",
                f"{row['requests']} requests over 20 s: {row['statuses']}; first 200 answered {row['first_200_answered_after_s']}"
                f" s after the kill, slowest 200 {row['slowest_200_ms']} ms; failures answered in max "
                f"{row['failed_answer_ms']['max']} ms, {row['with_retry_after']} with Retry-After",
            )
        )
    return rows


if __name__ == "__main__":
    main()
