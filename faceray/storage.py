"""Where faceray reads and writes: local paths and object storage (s3://, gs://) alike, through pyarrow.fs (no Ray).

A `Location` is a pyarrow filesystem and a path in it. Every data and model location of faceray (ingest's --root,
--mat, --csv and --out; train's and sweep's --data and --out; the service's model directories) is resolved with
`Location.of`, so `s3://bucket/key`, `gs://bucket/key`, `file:///abs/path` and plain paths take the same code path.

Credentials and endpoints are the store's usual settings, read where a location is resolved:
  S3   AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY (or a profile / instance role), AWS_REGION, and AWS_ENDPOINT_URL for an
       S3-compatible server (MinIO, a test server on 127.0.0.1)
  GCS  Google's application default credentials
A location pickles with its endpoint (so a Ray task gets the driver's), not with its credentials: each process
reads those from its own environment, as the stores' SDKs do. URIs carry no options (`?endpoint_override=`) and no
credentials (`s3://key:secret@bucket`): a path handed on as text (a sweep's trials get their folders so) would lose
the first, and configs, manifests and logs would record the second.

Object stores have no rename. Writes here are whole objects: a store's object appears only when its bytes are
complete (they are buffered and put at once), a local file is written under a temporary name and renamed. Code
that needs "all or nothing" for a group of files writes a marker last (ingest's done-markers).
"""

from __future__ import annotations

import collections
import io
import itertools
import os
import posixpath
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import pyarrow.fs as pafs

STORE_SCHEMES = ("s3", "gs", "gcs")  # object stores pyarrow resolves from a URI
TEMPORARY_SUFFIX = ".tmp"  # a local file being written; never listed by `files`


def is_store_uri(where: str | os.PathLike[str]) -> bool:
    """Whether `where` names an object store (s3://, gs://, gcs://) rather than the local filesystem."""
    text = str(where)
    return "://" in text and text.split("://", 1)[0].lower() in STORE_SCHEMES


@dataclass(frozen=True)
class Location:
    """A file or folder: `filesystem` (pyarrow), `path` in it (an absolute POSIX path locally, `bucket/key` in a
    store) and `uri`, how people name it (the local path, or scheme://bucket/key)."""

    filesystem: pafs.FileSystem
    path: str
    uri: str

    @classmethod
    def of(cls, where: str | os.PathLike[str] | Location) -> Location:
        """Resolve a local path, a file:// URI or an object-store URI; ValueError names `where` when it is none."""
        if isinstance(where, Location):
            return where
        text = os.fspath(where)
        if not text:
            raise ValueError("an empty path")
        if "://" not in text:
            path = str(Path(text).expanduser().resolve())
            return cls(pafs.LocalFileSystem(), path, path)
        scheme, rest = text.split("://", 1)
        scheme = scheme.lower()
        if scheme not in (*STORE_SCHEMES, "file"):
            raise ValueError(f"{text!r}: unsupported scheme {scheme!r} (use a local path, file://, s3:// or gs://)")
        if scheme != "file" and ("?" in rest or "@" in rest.split("/", 1)[0]):
            raise ValueError(
                f"{scheme}://…: give the endpoint and credentials in the environment (AWS_ENDPOINT_URL, "
                "AWS_ACCESS_KEY_ID, …), not in the URI"
            )
        try:
            filesystem, path = pafs.FileSystem.from_uri(text)
        except (ValueError, OSError) as error:
            raise ValueError(f"{text!r}: not a usable location ({error})") from None
        if isinstance(filesystem, pafs.LocalFileSystem):
            return cls(filesystem, path, path)
        path = path.rstrip("/")
        if not path:
            raise ValueError(f"{text!r}: no bucket named")
        return cls(filesystem, path, f"{scheme}://{path}")

    def check_bucket(self) -> None:
        """FileNotFoundError naming the bucket when this store location's bucket does not exist (nothing to check
        locally: folders are made as needed)."""
        if self.is_local:
            return
        bucket = self.path.split("/", 1)[0]
        if self.filesystem.get_file_info(bucket).type == pafs.FileType.NotFound:
            raise FileNotFoundError(f"{self.uri}: there is no bucket {bucket!r} (create it first)")

    @property
    def is_local(self) -> bool:
        """Whether this is on the local filesystem (a path every library can open)."""
        return isinstance(self.filesystem, pafs.LocalFileSystem)

    def local_path(self) -> Path:
        """The local path; ValueError for a store location (use `local_folder` / `local_copy`)."""
        if not self.is_local:
            raise ValueError(f"{self.uri} is in object storage, not a local path")
        return Path(self.path)

    def __truediv__(self, name: str) -> Location:
        path = posixpath.join(self.path, name) if not self.is_local else str(Path(self.path) / name)
        return Location(self.filesystem, path, posixpath.join(self.uri, name) if not self.is_local else path)

    def __str__(self) -> str:
        return self.uri

    @property
    def name(self) -> str:
        return posixpath.basename(self.path.rstrip("/"))

    @property
    def parent(self) -> Location:
        parent_path = posixpath.dirname(self.path.rstrip("/"))
        if self.is_local:
            return Location(self.filesystem, parent_path, parent_path)
        return Location(self.filesystem, parent_path, self.uri[: len(self.uri) - len(self.name)].rstrip("/"))

    # -- reading ------------------------------------------------------------------------------------------------
    def info(self) -> pafs.FileInfo:
        return self.filesystem.get_file_info(self.path)

    def exists(self) -> bool:
        return self.info().type != pafs.FileType.NotFound

    def is_file(self) -> bool:
        return self.info().type == pafs.FileType.File

    def is_dir(self) -> bool:
        return self.info().type == pafs.FileType.Directory

    def read_bytes(self) -> bytes:
        """The whole file; FileNotFoundError names the location when it is missing."""
        try:  # pyarrow raises FileNotFoundError for a missing local file, object and bucket alike
            with self.filesystem.open_input_stream(self.path) as stream:
                return bytes(stream.read())
        except FileNotFoundError:
            raise FileNotFoundError(f"no file at {self.uri}") from None

    def read_text(self) -> str:
        return self.read_bytes().decode("utf-8")

    def open_input(self, buffer_size: int = 1 << 20) -> IO[bytes]:
        """A seekable binary reader (a plain file locally; buffered ranged reads from a store)."""
        if self.is_local:
            return open(self.path, "rb")
        raw = self.filesystem.open_input_file(self.path)
        return io.BufferedReader(raw, buffer_size=buffer_size)

    def files(self, suffix: str = "") -> list[Location]:
        """The files directly in this folder whose names end with `suffix`, sorted by name (none if it does not
        exist; local files being written are left out)."""
        selector = pafs.FileSelector(self.path, allow_not_found=True, recursive=False)
        names = sorted(
            posixpath.basename(info.path)
            for info in self.filesystem.get_file_info(selector)
            if info.type == pafs.FileType.File
            and info.path.endswith(suffix)
            and not info.path.endswith(TEMPORARY_SUFFIX)
        )
        return [self / name for name in names]

    # -- writing ------------------------------------------------------------------------------------------------
    @contextmanager
    def writer(self) -> Iterator[IO[bytes]]:
        """A binary stream whose bytes become this file whole when the block ends without error, or not at all.

        Locally: a temporary file in the same folder, renamed. In a store: buffered, then put as one object (a
        store has no rename; a partial upload never appears)."""
        if self.is_local:
            target = Path(self.path)
            target.parent.mkdir(parents=True, exist_ok=True)
            temporary = target.with_name(target.name + TEMPORARY_SUFFIX)
            try:
                with open(temporary, "wb") as handle:
                    yield handle
                os.replace(temporary, target)
            finally:
                temporary.unlink(missing_ok=True)
            return
        buffer = io.BytesIO()
        yield buffer
        self.write_bytes(buffer.getvalue())

    def write_bytes(self, data: bytes) -> None:
        """Write the whole file (see `writer`)."""
        if self.is_local:
            with self.writer() as handle:
                handle.write(data)
            return
        with self.filesystem.open_output_stream(self.path) as stream:
            stream.write(data)

    def write_text(self, text: str) -> None:
        self.write_bytes(text.encode("utf-8"))

    def delete(self) -> None:
        """Delete this file if it exists."""
        try:
            self.filesystem.delete_file(self.path)
        except FileNotFoundError:
            pass

    def delete_tree(self) -> None:
        """Delete this folder and everything in it, if it exists."""
        if self.is_dir():
            self.filesystem.delete_dir(self.path)

    def make_dir(self) -> None:
        """Create this folder (and its parents) locally; a store needs none (its folders are key prefixes)."""
        if self.is_local:
            Path(self.path).mkdir(parents=True, exist_ok=True)


def read_in_order(locations: Iterable[Location], threads: int = 16) -> Iterator[bytes | OSError]:
    """The bytes of each location in order, or the OSError reading it raised (FileNotFoundError when it is missing).

    Local files are read one at a time as the caller asks. A store's objects are fetched `threads` at a time, ahead
    of the caller (at most 2 x `threads` in flight): each object is one request, so latency, not bandwidth, bounds a
    one-at-a-time reader (measured on the moto test server: 210 images/s one by one)."""

    def read(location: Location) -> bytes | OSError:
        try:
            return location.read_bytes()
        except OSError as error:
            return error

    iterator = iter(locations)
    first = next(iterator, None)
    if first is None:
        return
    if first.is_local:
        yield from map(read, itertools.chain([first], iterator))
        return
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="faceray-read") as pool:
        window: collections.deque[Future[bytes | OSError]] = collections.deque()
        for location in itertools.chain([first], iterator):
            window.append(pool.submit(read, location))
            if len(window) >= 2 * threads:
                yield window.popleft().result()
        while window:
            yield window.popleft().result()


def download_folder(source: Location, target: Path, recursive: bool = False) -> list[Path]:
    """Copy the files of a folder (and its sub-folders when `recursive`) into the local `target`; returns them."""
    target.mkdir(parents=True, exist_ok=True)
    selector = pafs.FileSelector(source.path, allow_not_found=True, recursive=recursive)
    copied = []
    prefix = source.path.rstrip("/") + "/"
    for info in source.filesystem.get_file_info(selector):
        if info.type != pafs.FileType.File or info.path.endswith(TEMPORARY_SUFFIX):
            continue
        local = target / info.path[len(prefix) :] if info.path.startswith(prefix) else target / info.base_name
        local.parent.mkdir(parents=True, exist_ok=True)
        with source.filesystem.open_input_stream(info.path) as stream, open(local, "wb") as handle:
            shutil.copyfileobj(stream, handle, 1 << 20)
        copied.append(local)
    return copied


def upload_folder(
    source: Path, target: Location, skip: tuple[str, ...] = (), last: tuple[str, ...] = (), threads: int = 16
) -> list[Location]:
    """Copy every file under the local `source` to `target` (sub-folders kept; top-level names in `skip` left out),
    `threads` at a time; files named in `last` (at any depth) are written after all others (a folder's marker, such
    as a model directory's card, so a reader that finds it finds the rest). Returns the written locations."""
    first: list[tuple[Path, Location]] = []
    final: list[tuple[Path, Location]] = []
    for path in sorted(source.rglob("*")):
        relative = path.relative_to(source)
        if not path.is_file() or relative.parts[0] in skip or path.name.endswith(TEMPORARY_SUFFIX):
            continue
        (final if path.name in last else first).append((path, target / relative.as_posix()))

    def copy(pair: tuple[Path, Location]) -> Location:
        pair[1].write_bytes(pair[0].read_bytes())
        return pair[1]

    with ThreadPoolExecutor(max_workers=threads if not target.is_local else 1) as pool:
        written = list(pool.map(copy, first))
    return written + [copy(pair) for pair in final]


@contextmanager
def staging_folder(location: Location) -> Iterator[Path]:
    """A local folder to write the output folder `location`'s files in: the folder itself when local, else an
    empty temporary folder, removed when the block ends; the caller uploads (`upload_folder`) what it wants kept."""
    if location.is_local:
        location.make_dir()
        yield location.local_path()
        return
    with tempfile.TemporaryDirectory(prefix="faceray-stage-") as temporary:
        yield Path(temporary)


@contextmanager
def local_folder(
    location: Location, fetch: bool = False, skip: tuple[str, ...] = (), last: tuple[str, ...] = ()
) -> Iterator[Path]:
    """A local folder standing for the output folder `location`, for libraries that write only local files
    (Keras, Matplotlib): its `staging_folder`, which for a store first holds the store folder's top-level files when
    `fetch`, and whose files (except top-level names in `skip`; files named in `last` after the others) are
    uploaded when the block ends without error."""
    with staging_folder(location) as folder:
        if fetch and not location.is_local:
            download_folder(location, folder)
        yield folder
        if not location.is_local:
            upload_folder(folder, location, skip, last)


@contextmanager
def local_copy(location: Location) -> Iterator[Path]:
    """The files of the folder `location` in a local folder, for reading: the folder itself when local, else a
    temporary copy of its top-level files, removed when the block ends. FileNotFoundError when there is none."""
    if location.is_local:
        yield location.local_path()
        return
    with tempfile.TemporaryDirectory(prefix="faceray-copy-") as temporary:
        if not download_folder(location, Path(temporary)):
            raise FileNotFoundError(f"no files in {location.uri}")
        yield Path(temporary)
