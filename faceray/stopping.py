"""Stopping a long command on SIGINT or SIGTERM: keep what is finished, say how to resume, exit 130 or 143.

Pure Python (no Ray). `graceful_stop()` is used by train, sweep and ingest around the part of the command that runs
after Ray started (Ray installs its own SIGTERM handler in `ray.init`, which exits without a word):

- the first signal sets `StopRequest.signal_number` and calls the `on_request` callbacks (training tells its
  workers, which save a checkpoint at their next step and return); with `interrupt=True` it raises `Stopped` in the
  main thread instead (an ingest's finished chunks and a sweep's reported checkpoints are already on disk);
- if the command has not ended `grace_s` seconds later (start-up, a worker that does not answer), a watchdog
  prints the stop line and exits the process with the signal's code; a second signal does so at once;
- `Stopped.line` is the one line the CLI prints: what stopped, what is kept, "run the same command to resume".
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
RESUME = "run the same command to resume"


def exit_code(signal_number: int) -> int:
    """The shell's exit status of a command stopped by `signal_number`: 130 for SIGINT, 143 for SIGTERM."""
    return 128 + int(signal_number)


class Stopped(Exception):
    """A command stopped on a signal; `line` says what was kept and how to resume, `code` is its exit status."""

    def __init__(self, signal_number: int, line: str) -> None:
        super().__init__(line)
        self.signal_number = signal_number
        self.line = line

    @property
    def code(self) -> int:
        return exit_code(self.signal_number)


@dataclass
class StopRequest:
    """What `graceful_stop` hands the command: whether (and by which signal) a stop was asked for."""

    what: str  # the command's noun for the stop line: "training", "the ingest", "the sweep"
    signal_number: int | None = None
    callbacks: list[Callable[[], None]] = field(default_factory=list)
    asked: threading.Event = field(default_factory=threading.Event)
    ended: bool = False  # the block has ended (its stop line is printed by the CLI)

    @property
    def requested(self) -> bool:
        return self.signal_number is not None

    def on_request(self, callback: Callable[[], None]) -> None:
        """Call `callback()` (from the signal handler) when a stop is asked for; at once if it already was."""
        self.callbacks.append(callback)
        if self.requested:
            callback()

    @contextlib.contextmanager
    def as_stop(self, detail: str) -> Iterator[None]:
        """In the block: an exception raised once a stop was asked for (`Stopped` itself, wrapped by a library such as
        Tune, or a failure that the stop caused) becomes `stopped(detail)`; other exceptions pass unchanged."""
        try:
            yield
        except Stopped:
            raise
        except Exception:
            if self.requested:
                raise self.stopped(detail) from None
            raise

    def stopped(self, detail: str) -> Stopped:
        """The `Stopped` to raise once the command has wound down: "stopped <detail>: run the same command to resume"."""
        return Stopped(self.signal_number or signal.SIGINT, f"stopped {detail}: {RESUME}")


@contextlib.contextmanager
def graceful_stop(
    what: str,
    kept: str,
    grace_s: float = 10.0,
    interrupt: bool = False,
    write: Callable[[str], None] | None = None,
) -> Iterator[StopRequest]:
    """Handle SIGINT and SIGTERM in the block (main thread only; elsewhere a no-op). `kept` ends the watchdog's line
    ("the last checkpoint is kept"); `write` prints a line on the terminal (default: stderr). The previous handlers
    come back at the end."""
    request = StopRequest(what)
    if threading.current_thread() is not threading.main_thread():
        yield request
        return
    write = write or _write_stderr
    watchdog: list[threading.Timer] = []

    def give_up() -> None:
        number = request.signal_number or signal.SIGINT
        if not request.ended:
            write(f"stopped {what} after {grace_s:.0f} s without a clean end ({kept}): {RESUME}")
        exit_now(exit_code(number))

    def handle(signal_number: int, frame: object) -> None:
        if request.requested:  # the second signal: no more waiting
            write(f"stopped {what} at once on a second signal ({kept}): {RESUME}")
            exit_now(exit_code(signal_number))
        request.signal_number = signal_number
        request.asked.set()
        write(f"{signal.Signals(signal_number).name}: stopping {what} ({kept}); a second one stops at once")
        timer = threading.Timer(grace_s, give_up)
        timer.daemon = True
        timer.start()
        watchdog.append(timer)
        for callback in list(request.callbacks):
            try:
                callback()
            except Stopped:  # a callback that ends the block here
                raise
            except Exception as error:  # a callback that fails must not stop the handler
                write(f"while stopping {what}: {type(error).__name__}: {error}")
        if interrupt:
            raise request.stopped(f"{what} ({kept})")

    previous = {number: signal.getsignal(number) for number in STOP_SIGNALS}
    for number in STOP_SIGNALS:
        signal.signal(number, handle)
    try:
        yield request
    finally:
        # After a stop the watchdog stays: the process is on its way out, and Python's shutdown (Ray's atexit
        # hooks) must not take longer than the grace period either.
        request.ended = True
        if not request.requested:
            for timer in watchdog:
                timer.cancel()
        for number, handler in previous.items():
            signal.signal(number, handler)


def _write_stderr(line: str) -> None:
    from faceray.console import terminal_stderr

    print(line, file=terminal_stderr(), flush=True)


def exit_now(code: int) -> None:
    """End the process now (a watchdog thread, a second signal, or the CLI once a stopped command printed its line:
    what is kept is saved): flush what was printed and skip Python's shutdown
    (it would wait for Ray's threads and processes). An embedded Ray's GCS and raylet die with their parent (Ray
    starts them with the kernel's parent-death signal), and its workers with the raylet; killing them from here
    first would race Ray's own exit of this process (status 1) when its raylet dies."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    end_ray_agents()
    os._exit(code)


def end_ray_agents() -> None:
    """SIGKILL to the descendants of this process that outlive their raylet (Ray's dashboard and runtime-env agents:
    measured, they stayed for minutes after their driver was gone). The raylet and GCS are left to die with this
    process (see `exit_now`)."""
    import psutil

    with contextlib.suppress(psutil.Error):
        for child in psutil.Process().children(recursive=True):
            with contextlib.suppress(psutil.Error):
                if child.name().startswith(("ray::DashboardAgent", "ray::RuntimeEnvAgent")):
                    child.kill()
