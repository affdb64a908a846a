"""A quiet console: faceray's own progress on the terminal, Ray's and TensorFlow's log lines in a run log.

`quiet_console(log_path)` (used by the CLI around every command unless `--verbose`):
- file descriptor 2 goes to the log, so C++ lines (TensorFlow/absl start-up, oneDNN notes) land there;
- `sys.stderr` is a new stream on the terminal's stderr, so faceray's own messages, progress bars and errors show;
- Python logging (Ray, Ray Data, Tune, TensorFlow, absl) and warnings go to the log, not the terminal;
- the Ray this process starts does not forward its workers' output (`forward_worker_output()` is False): the
  workers' lines stay in Ray's session logs, and faceray relays its own progress (epochs, trials) itself.
Nothing here runs at import.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path

QUIET_ENVIRONMENT = {"TF_CPP_MIN_LOG_LEVEL": "2"}  # TensorFlow's own C++ INFO/WARNING lines, in every process
LIBRARY_LOGGERS = ("ray", "tensorflow", "absl", "keras", "py.warnings", "urllib3", "filelock", "matplotlib")
_state: dict[str, object] = {"quiet": False, "log_path": None}


def forward_worker_output() -> bool:
    """Whether a Ray started now should forward its workers' stdout/stderr to this process (only when not quiet)."""
    return not _state["quiet"]


def log_path() -> Path | None:
    """The run log of the command in progress (None when verbose or outside the CLI)."""
    value = _state["log_path"]
    return Path(str(value)) if value else None


def route_library_logs() -> None:
    """Point every library logger's terminal handler at the run log (call after importing Ray: it adds its own)."""
    if not _state["quiet"]:
        return
    stream = _state.get("log_stream")
    for name in LIBRARY_LOGGERS:
        logger = logging.getLogger(name)
        for handler in logger.handlers:
            if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler):
                handler.setStream(stream)  # type: ignore[arg-type]


@contextlib.contextmanager
def quiet_console(path: str | Path) -> Iterator[Path]:
    """Send library output to `path` for the duration (see the module docstring); yields the log's path."""
    path = Path(path).resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    for name, value in QUIET_ENVIRONMENT.items():
        os.environ.setdefault(name, value)
    log_stream = open(path, "a", buffering=1, encoding="utf-8", errors="replace")
    sys.stdout.flush()
    sys.stderr.flush()
    terminal_fd = os.dup(2)
    original_stderr = sys.stderr
    os.dup2(log_stream.fileno(), 2)
    terminal = os.fdopen(os.dup(terminal_fd), "w", buffering=1, encoding="utf-8", errors="replace")
    try:
        python_stderr_on_fd2 = sys.stderr.fileno() == 2
    except (AttributeError, OSError, ValueError):  # replaced (a test's capture): it is not fd 2, leave it
        python_stderr_on_fd2 = False
    if python_stderr_on_fd2:
        sys.stderr = terminal
    file_handler = logging.StreamHandler(log_stream)
    file_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(file_handler)
    logging.captureWarnings(True)
    _state.update(quiet=True, log_path=str(path), log_stream=log_stream)
    route_library_logs()
    try:
        yield path
    finally:
        _state.update(quiet=False, log_path=None, log_stream=None)
        logging.captureWarnings(False)
        root.removeHandler(file_handler)
        with contextlib.suppress(Exception):
            for name in LIBRARY_LOGGERS:
                for handler in logging.getLogger(name).handlers:
                    if isinstance(handler, logging.StreamHandler) and getattr(handler, "stream", None) is log_stream:
                        handler.setStream(original_stderr)
        sys.stderr.flush()
        sys.stderr = original_stderr
        os.dup2(terminal_fd, 2)
        os.close(terminal_fd)
        terminal.close()
        log_stream.close()
