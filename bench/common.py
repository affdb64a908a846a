"""Helpers shared by the benchmarks: machine description, RSS sampling, table + JSON output."""

from __future__ import annotations

import json
import os
import platform
import threading
import time
from typing import Any, Self


def machine() -> dict[str, Any]:
    """Cores, CPU model and Python of this machine (benchmarks state where they ran)."""
    model = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {"cores": os.cpu_count(), "cpu": model, "python": platform.python_version()}


class BackgroundLoop:
    """A context manager that runs `_run` in a daemon thread while its block runs; `_stop` is set when the block
    ends (and the thread joined). Subclasses loop until `_stop` is set."""

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


class TreeMemorySampler(BackgroundLoop):
    """Samples the summed RSS of a process (default: this one) and all its descendants in a thread. A local Ray
    started by that process (GCS, raylet, workers) descends from it; other Ray instances do not count."""

    def __init__(self, interval_s: float = 0.2, pid: int | None = None, pss: bool = False) -> None:
        super().__init__()
        self.interval_s = interval_s
        self.pid = pid
        self.pss = pss  # proportional set size: shared memory (Ray's object store) counted once, not per process
        self.peak_bytes = 0
        self.cpu_seconds: dict[int, tuple[str, float]] = {}  # pid -> (process title, CPU seconds at its last sample)

    def cpu_by_name(self) -> dict[str, float]:
        """CPU seconds (user + system, as last sampled) of the tree's processes, summed by process title (Ray names
        its workers "ray::<task or actor>"); processes that ended between samples miss their last interval."""
        totals: dict[str, float] = {}
        for name, seconds in self.cpu_seconds.values():
            totals[name] = round(totals.get(name, 0.0) + seconds, 2)
        return dict(sorted(totals.items(), key=lambda item: -item[1]))

    def _sample(self) -> int:
        import psutil

        try:
            root = psutil.Process(self.pid)
            processes = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return 0
        total = 0
        for process in processes:
            try:
                total += process.memory_full_info().pss if self.pss else process.memory_info().rss
                times = process.cpu_times()
                title = (process.cmdline() or [process.name()])[0].split(" ")[0]
                title = title if title.startswith("ray::") else process.name()
                self.cpu_seconds[process.pid] = (title.split("(")[0], times.user + times.system)
            except psutil.Error:  # the process ended between listing and reading
                pass
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_bytes = max(self.peak_bytes, self._sample())
            self._stop.wait(self.interval_s)


def print_report(name: str, rows: list[tuple[str, str]], payload: dict[str, Any]) -> None:
    """A short two-column table, then one JSON line."""
    width = max(len(label) for label, _ in rows) + 2
    print(f"== {name} ({payload['machine']['cores']} cores, {payload['machine']['cpu']})")
    for label, value in rows:
        print(f"{label.ljust(width)}{value}")
    print(json.dumps(payload, sort_keys=True))


def timed(function, *args, **kwargs) -> tuple[Any, float]:
    started = time.perf_counter()
    result = function(*args, **kwargs)
    return result, time.perf_counter() - started
