"""A quiet console: faceray's own progress on the terminal, Ray's and TensorFlow's log lines in a run log.

`quiet_console(log_path)` (used by the CLI around every command unless `--verbose`):
- file descriptor 2 goes to the log, so C++ lines (TensorFlow/absl start-up, oneDNN notes) land there, and so does
  everything written to `sys.stderr`: Python logging (Ray, Ray Data, Serve, TensorFlow, absl) and warnings;
- faceray's own messages and progress bars go to `terminal_stderr()` (and its progress lines to stdout);
- the Ray this process starts does not forward its workers' output (`forward_worker_output()` is False): the
  workers' lines stay in Ray's session logs, and faceray relays its own progress (epochs, trials) itself.
Nothing here runs at import.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

QUIET_ENVIRONMENT = {"TF_CPP_MIN_LOG_LEVEL": "2"}  # TensorFlow's own C++ INFO/WARNING lines, in every process
_state: dict[str, object] = {"quiet": False, "log_path": None}


def show_library_lines() -> None:
    """`--verbose`: native libraries' informational lines stay on the console (see `without_native_info_lines`)."""
    _state["verbose"] = True


@contextlib.contextmanager
def without_native_info_lines() -> Iterator[None]:
    """Around a native library call that prints an informational line on file descriptor 2 (LiteRT's "INFO: Created
    TensorFlow Lite XNNPACK delegate for CPU."): fd 2 goes to /dev/null for the call, unless `--verbose` asked for
    such lines or the console is quiet (fd 2 is then the run log, which keeps them). For the Python API, where
    nothing else would hide it."""
    if _state.get("verbose") or _state["quiet"]:
        yield
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):
        yield
        return
    try:
        with open(os.devnull, "w") as sink:
            os.dup2(sink.fileno(), 2)
            try:
                yield
            finally:
                os.dup2(saved, 2)
    finally:
        os.close(saved)


def forward_worker_output() -> bool:
    """Whether a Ray started now should forward its workers' stdout/stderr to this process (only when not quiet)."""
    return not _state["quiet"]


def terminal_stderr() -> TextIO:
    """Where faceray's own messages and progress bars go: the terminal's stderr (sys.stderr is the log while quiet)."""
    return _state.get("terminal") or sys.stderr  # type: ignore[return-value]


def log_path() -> Path | None:
    """The run log of the command in progress (None when verbose or outside the CLI)."""
    value = _state["log_path"]
    return Path(str(value)) if value else None


def last_log_path() -> Path | None:
    """Where the last quiet command's log ended up."""
    value = _state.get("last_log")
    return Path(str(value)) if value else None


@contextlib.contextmanager
def quiet_console(path: str | Path, move_to: str | Path | None = None) -> Iterator[Path]:
    """Send library output to `path` for the duration (see the module docstring); yields the log's path. With
    `move_to` (a run's OUT/faceray.log), the log is appended there at the end if that folder exists by then: a
    command never creates its output folder just for a log (a mistyped --out stays uncreated)."""
    path = Path(path).resolve()
    final = Path(move_to).resolve() if move_to else path
    path.parent.mkdir(parents=True, exist_ok=True)
    for name, value in QUIET_ENVIRONMENT.items():
        os.environ.setdefault(name, value)
    log_stream = open(path, "a", buffering=1, encoding="utf-8", errors="replace")
    sys.stdout.flush()
    sys.stderr.flush()
    terminal_fd = os.dup(2)
    original_stderr = sys.stderr
    os.dup2(log_stream.fileno(), 2)
    try:
        python_stderr_on_fd2 = sys.stderr.fileno() == 2
    except (AttributeError, OSError, ValueError):  # replaced (a test's capture): it is not fd 2
        python_stderr_on_fd2 = False
    # sys.stderr stays on fd 2, now the log: every library handler bound to it, whenever it was made, writes there.
    # faceray's own messages use terminal_stderr().
    terminal = (
        os.fdopen(os.dup(terminal_fd), "w", buffering=1, encoding="utf-8", errors="replace")
        if python_stderr_on_fd2
        else original_stderr
    )
    file_handler = logging.StreamHandler(log_stream)
    file_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(file_handler)
    logging.captureWarnings(True)
    _state.update(quiet=True, log_path=str(final), terminal=terminal)
    try:
        yield path
    finally:
        _state.update(quiet=False, log_path=None, terminal=None)
        logging.captureWarnings(False)
        root.removeHandler(file_handler)
        sys.stderr.flush()
        os.dup2(terminal_fd, 2)
        os.close(terminal_fd)
        if terminal is not original_stderr:
            terminal.close()
        log_stream.close()
        _state["last_log"] = str(path)
        if final != path and final.parent.is_dir():
            with open(final, "a", encoding="utf-8") as target, open(path, encoding="utf-8", errors="replace") as source:
                shutil.copyfileobj(source, target)
            path.unlink()
            _state["last_log"] = str(final)
