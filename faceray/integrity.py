"""Integrity of what faceray writes: the SHA-256 and size of every output file, recorded beside it (the ingest
manifest's `files`) and checked before the files are used, so a flipped bit, a truncated copy or a stray file is
refused with its name instead of being trained on (pure: hashlib over faceray.storage, no Ray).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from faceray.storage import Location

READ_BYTES = 1 << 22  # hashed 4 MiB at a time: hashlib releases the GIL for blocks this large


def digest_bytes(data: bytes) -> dict[str, Any]:
    """The record of a file's bytes: {"sha256": hex, "bytes": size}."""
    return {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}


def digest_file(location: str | Path | Location) -> dict[str, Any]:
    """The record of a file (local or in object storage), streamed: {"sha256": hex, "bytes": size}."""
    hasher, size = hashlib.sha256(), 0
    with Location.of(location).open_input(READ_BYTES) as handle:
        while block := handle.read(READ_BYTES):
            hasher.update(block)
            size += len(block)
    return {"sha256": hasher.hexdigest(), "bytes": size}


@dataclass(frozen=True)
class FileProblem:
    """One file that is not what was written: where it is, what is wrong, what to do."""

    path: str
    what: str
    fix: str

    def __str__(self) -> str:
        return f"{self.path}: {self.what}; {self.fix}"


def check_file(location: Location, recorded: Mapping[str, Any], fix: str) -> FileProblem | None:
    """None when the file has its recorded size and SHA-256, else what is wrong with it."""
    try:
        actual = digest_file(location)
    except FileNotFoundError:
        return FileProblem(location.uri, "missing", fix)
    except OSError as error:
        return FileProblem(location.uri, f"unreadable ({error})", fix)
    if actual["bytes"] != recorded["bytes"]:
        what = f"{actual['bytes']:,} bytes where {recorded['bytes']:,} were written (truncated, or written to since)"
    elif actual["sha256"] != recorded["sha256"]:
        what = "changed since it was written (its SHA-256 differs: a damaged copy or an edit)"
    else:
        return None
    return FileProblem(location.uri, what, fix)


def check_files(
    root: str | Path | Location, recorded: Mapping[str, Mapping[str, Any]], fix: str, threads: int = 2
) -> list[FileProblem]:
    """Every file of `recorded` (paths relative to `root`) checked, `threads` at a time; the problems by path."""
    root = Location.of(root)
    names = sorted(recorded)
    with ThreadPoolExecutor(max(1, threads)) as pool:
        found = pool.map(lambda name: check_file(root / name, recorded[name], fix), names)
        return [problem for problem in found if problem is not None]
