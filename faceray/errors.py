"""Root causes for the console: an exception that comes back from a Ray task, actor or worker group is unwrapped
to what happened, and said in one line with where and what to do, without Ray's wrapper names or colour codes
(pure: it reads exceptions and their text; nothing here imports Ray).

Ray hands the driver wrappers (RayTaskError(UserCodeException), WorkerGroupError, ...) whose message starts with
the task's name and colour codes; the exception that matters is their `cause`, a `__cause__`, one of a worker
group's failures, or, once pickling has dropped those, the innermost exception line of the traceback text they
carry.
"""

from __future__ import annotations

import errno
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
# The last "SomeError: message" line of a traceback (module paths allowed: ray.exceptions.OutOfMemoryError: ...).
EXCEPTION_LINE = re.compile(r"^(?:[A-Za-z_][\w.]*\.)?([A-Z]\w*(?:Error|Exception|Exit|Interrupt)): (.+)$", re.M)
RAY_WRAPPERS = ("RayTaskError", "RayActorError", "UserCodeException", "WorkerGroupError", "TrainingFailedError")


@dataclass(frozen=True)
class RootCause:
    """The exception that matters: its class name, its message (one line, no colour codes) and its errno/filename
    when it is an OSError that survived."""

    name: str
    message: str
    errno: int | None = None
    filename: str | None = None


def strip_colour(text: str) -> str:
    return ANSI.sub("", text)


def _inner(error: BaseException) -> BaseException | None:
    """The exception `error` wraps, if any."""
    failures = getattr(error, "worker_failures", None)
    if isinstance(failures, dict) and failures:
        return failures[sorted(failures)[0]]
    cause = getattr(error, "cause", None)
    if isinstance(cause, BaseException) and cause is not error:
        return cause
    return error.__cause__ or (None if error.__suppress_context__ else error.__context__)


def _is_wrapper(name: str) -> bool:
    return any(wrapper in name for wrapper in RAY_WRAPPERS)


def root_cause(error: BaseException) -> RootCause:
    """Follow the wrappers down to the innermost exception. When that is still one of Ray's wrappers (pickling
    between processes dropped what it wrapped), read the innermost real exception line from the traceback texts
    the chain carries, deepest first: the driver's UserCodeException wraps a RayTaskError whose text holds the
    worker's traceback."""
    chain, seen = [error], {id(error)}
    while (inner := _inner(chain[-1])) is not None and id(inner) not in seen:
        chain.append(inner)
        seen.add(id(inner))
    innermost = next((link for link in reversed(chain) if isinstance(link, OSError)), chain[-1])
    name = type(innermost).__name__
    text = strip_colour(str(innermost))
    if _is_wrapper(name) or "ray::" in text:
        for link in reversed(chain):
            found = [line for line in EXCEPTION_LINE.findall(strip_colour(str(link))) if not _is_wrapper(line[0])]
            if found:
                name, text = found[-1]
                break
    number = getattr(innermost, "errno", None)
    filename = getattr(innermost, "filename", None)
    if number is None:  # the errno of an OSError that only survived as text: "[Errno 28] No space left on device"
        match = re.search(r"\[Errno (\d+)\]", text)
        number = int(match.group(1)) if match else None
    if filename is None:
        match = re.search(r"\[Errno \d+\] [^:]+: '([^']+)'", text)
        filename = match.group(1) if match else None
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return RootCause(name, first, number, str(filename) if filename else None)


def _free_space(folder: str | None) -> str:
    """'N MB free in FOLDER' for the nearest existing folder, or '' when it cannot be told."""
    if not folder or "://" in folder:
        return ""
    path = Path(folder).expanduser().resolve()
    existing = next((candidate for candidate in (path, *path.parents) if candidate.exists()), None)
    if existing is None:
        return ""
    return f"{shutil.disk_usage(existing).free / 1e6:,.1f} MB free in {existing}"


def explain(error: BaseException, out: str | None = None) -> str:
    """One line for the console: what happened, where, and what to do. `out` is the command's output folder, if
    it has one (named for a full disk)."""
    cause = root_cause(error)
    where = cause.filename or out
    text = f"{cause.name}: {cause.message}"
    if cause.errno == errno.ENOSPC or "No space left on device" in cause.message:
        free = _free_space(cause.filename and str(Path(cause.filename).parent) or out)
        return (
            f"no space left on the device of {where or 'the output'}"
            + (f" ({free})" if free else "")
            + ": free some space or choose another --out; running the same command again resumes where it stopped"
        )
    if cause.errno in (errno.EACCES, errno.EPERM, errno.EROFS) or "Permission denied" in cause.message:
        return f"permission denied on {where or 'a file'}: give a folder you can write ({text})"
    if cause.errno == errno.EADDRINUSE or "Address already in use" in cause.message:
        port = re.search(r":(\d{2,5})\b", cause.message)
        return (
            f"the port{' ' + port.group(1) if port else ''} is already in use by another program: stop it or give "
            f"another --port ({text})"
        )
    if cause.name in ("OutOfMemoryError",) or "memory monitor" in cause.message or "OOM" in cause.message:
        return (
            "out of memory: Ray's memory monitor stopped a worker to keep the machine alive; give the job fewer "
            f"workers or a smaller --batch-size, or a machine with more memory ({text})"
        )
    if cause.name == "FormatError" or any(
        words in cause.message
        for words in ("Parquet magic bytes", "ZSTD decompression failed", "Couldn't deserialize thrift", "Corrupt")
    ):
        return f"a damaged file: {cause.message}" + (
            "" if "--repair" in cause.message else "; run `faceray verify` on the data or model folder to find it"
        )
    return text
