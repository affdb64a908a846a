"""Photo and video collections for offline analysis (pure OpenCV/pyarrow, no Ray): finding the inputs, reading a video
in frames, the table of faces and its summary. `faceray analyze` (serve/offline.py) runs these on Ray Data;
`FaceAnalyzer.analyze_video` runs them in-process.

Frames are uint8 (H, W, 3) in BGR order, as OpenCV decodes them. Boxes are [x, y, w, h] in frame pixels.
"""

from __future__ import annotations

import fnmatch
import glob
import hashlib
import os
import posixpath
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from faceray.labels import EMOTION_LABELS

if TYPE_CHECKING:
    from faceray.storage import Location

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".wmv")
GLOB_CHARACTERS = "*?["


class MediaError(ValueError):
    """An input that cannot be analysed; `reason` is one of "empty", "undecodable", "unsupported"."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class MediaInput:
    """One file to analyse: `uri` (a local path or scheme://bucket/key), `source` (how tables name it: relative to
    the folder holding its input, or the input as given), `kind` ("image" or "video") and `key` (a stable id)."""

    uri: str
    source: str
    kind: str

    @property
    def key(self) -> str:
        return hashlib.sha256(self.uri.encode()).hexdigest()[:20]


@dataclass(frozen=True)
class InputReject:
    """A rejected input: `source`, `reason` ("unsupported", "empty", "undecodable", "unreadable": an I/O error) and
    what was wrong."""

    source: str
    reason: str
    detail: str


def media_kind(name: str) -> str | None:
    """ "image", "video" or None (not a supported suffix), from a file name."""
    suffix = posixpath.splitext(name.lower())[1]
    return "image" if suffix in IMAGE_SUFFIXES else "video" if suffix in VIDEO_SUFFIXES else None


def list_inputs(inputs: Sequence[str]) -> tuple[list[MediaInput], list[InputReject]]:
    """Expand INPUT arguments (image and video files, folders walked recursively, globs; local, s3:// or gs://)
    into the files to analyse, in a stable order, and the files found that are not images or videos (rejected as
    "unsupported"). Hidden files and folders (a leading ".") are skipped. A file found twice is analysed once.
    FileNotFoundError names an input that is missing or a glob that matches nothing."""
    from faceray.storage import Location

    found: dict[str, MediaInput] = {}
    rejects: dict[str, InputReject] = {}
    for text in inputs:
        for location, source in _expand(text, Location):
            if location.uri in found or location.uri in rejects:
                continue
            kind = media_kind(location.name)
            if kind is None:
                suffix = posixpath.splitext(location.name)[1] or "no suffix"
                rejects[location.uri] = InputReject(
                    source,
                    "unsupported",
                    f"{suffix}: not an image ({', '.join(IMAGE_SUFFIXES)}) or a video ({', '.join(VIDEO_SUFFIXES)})",
                )
            else:
                found[location.uri] = MediaInput(location.uri, source, kind)
    return list(found.values()), list(rejects.values())


def _expand(text: str, location_class: type[Location]) -> list[tuple[Location, str]]:
    """(file, source) pairs for one INPUT argument."""
    from pyarrow import fs as pafs

    scheme, _, rest = text.rpartition("://")
    pattern_start = min((index for index, char in enumerate(rest) if char in GLOB_CHARACTERS), default=-1)
    if pattern_start < 0:
        location = location_class.of(text)
        info = location.info()
        if info.type == pafs.FileType.File:
            return [(location, text if scheme else os.path.normpath(text))]
        if info.type != pafs.FileType.Directory:
            raise FileNotFoundError(f"{text}: no such file or folder")
        return [(file, _relative(file, location)) for file in _walk(location)]
    # A glob: list the folder before its first pattern character, keep what matches.
    root_text = (f"{scheme}://" if scheme else "") + posixpath.dirname(rest[:pattern_start])
    if not scheme:
        matches = sorted(glob.glob(os.path.expanduser(text), recursive=True))
        pairs = []
        root = location_class.of(root_text or ".")
        for match in matches:
            location = location_class.of(match)
            if location.is_dir():
                pairs += [(file, _relative(file, root)) for file in _walk(location)]
            elif location.is_file() and not _hidden(location.name):
                pairs.append((location, _relative(location, root)))
    else:
        root = location_class.of(root_text)
        wanted = location_class.of(text).path
        pairs = [(file, _relative(file, root)) for file in _walk(root) if fnmatch.fnmatchcase(file.path, wanted)]
    if not pairs:
        raise FileNotFoundError(f"{text}: matches no file")
    return pairs


def _walk(folder: Location) -> list[Location]:
    """Every file under `folder`, recursively, sorted, hidden ones left out."""
    from pyarrow import fs as pafs

    selector = pafs.FileSelector(folder.path, allow_not_found=True, recursive=True)
    infos = folder.filesystem.get_file_info(selector)
    paths = sorted(info.path for info in infos if info.type == pafs.FileType.File)
    base = folder.path.rstrip("/")
    files = []
    for path in paths:
        relative = path[len(base) :].lstrip("/")
        if any(_hidden(part) for part in relative.split("/")):
            continue
        files.append(folder / relative)
    return files


def _hidden(name: str) -> bool:
    return name.startswith(".")


def _relative(file: Location, root: Location) -> str:
    """`file`'s path from the folder that holds `root` (so a folder input's name starts its files' sources)."""
    base = posixpath.dirname(root.path.rstrip("/"))
    return file.path[len(base) :].lstrip("/") if base else file.path.lstrip("/")


# -- reading frames ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class VideoInfo:
    """What a video's header says: frames per second, frame count (an estimate for some containers) and size."""

    fps: float
    frames: int
    width: int
    height: int

    def sampled_frames(self, fps: float | None) -> int:
        """About how many frames `video_frames` yields at `fps` (None: every frame)."""
        if not fps or fps >= self.fps:
            return self.frames
        return int(np.ceil(self.frames * fps / self.fps))


def open_video(path: str | Path) -> tuple[Any, VideoInfo]:
    """An opened cv2.VideoCapture and its VideoInfo; MediaError when the file is empty or no video."""
    import cv2

    if os.path.getsize(path) == 0:
        raise MediaError("empty", "empty file (0 bytes)")
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        capture.release()
        raise MediaError("undecodable", "not a video OpenCV can open (unknown container or codec, or damaged)")
    fps = capture.get(cv2.CAP_PROP_FPS)
    info = VideoInfo(
        fps=fps if fps and np.isfinite(fps) and fps > 0 else 25.0,
        frames=max(0, int(capture.get(cv2.CAP_PROP_FRAME_COUNT))),
        width=int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)),
        height=int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)),
    )
    return capture, info


def seek_exactly(capture: Any, frame: int) -> bool:
    """Ask an opened cv2.VideoCapture for `frame`; whether it landed there exactly (MP4, MKV and most indexed
    containers do)."""
    import cv2

    capture.set(cv2.CAP_PROP_POS_FRAMES, frame)
    return int(capture.get(cv2.CAP_PROP_POS_FRAMES)) == frame


def read_image(uri: str) -> npt.NDArray[np.uint8]:
    """An image file (local or in object storage) decoded as the service decodes a request body: BGR (H, W, 3).
    MediaError when it is empty or cannot be decoded; OSError when it cannot be read."""
    from faceray.serve.vision import decode_frame
    from faceray.storage import Location

    data = Location.of(uri).read_bytes()
    if not data:
        raise MediaError("empty", "empty file (0 bytes)")
    try:
        return decode_frame(data)
    except ValueError as error:
        raise MediaError("undecodable", str(error)) from None


def keeps_frame(index: int, video_fps: float, fps: float | None) -> bool:
    """Whether frame `index` of a video at `video_fps` is sampled at `fps` frames per second (None: all): the
    first frame of each 1/fps interval."""
    if not fps or fps >= video_fps:
        return True
    return index == 0 or int(index * fps / video_fps) != int((index - 1) * fps / video_fps)


def video_frames(
    path: str | Path, fps: float | None = None, start: int = 0, stop: int | None = None
) -> Iterator[tuple[int, float, npt.NDArray[np.uint8]]]:
    """(frame index, time in seconds, BGR frame) of each sampled frame of frames [start, stop) (stop None: to the
    end), decoded one at a time (never the whole video in memory). Frame indices and sampling are the same as a read
    from the start gives: a segment seeks to `start`, and where the container cannot seek exactly there it decodes
    its way from the first frame. MediaError when the file is empty, not a video, or has no frame."""
    capture, info = open_video(path)
    try:
        if start > 0 and not seek_exactly(capture, start):  # no exact seek: decode up to `start`
            capture.release()
            capture, info = open_video(path)
            for _ in range(start):
                if not capture.grab():
                    return
        index = start
        while stop is None or index < stop:
            if keeps_frame(index, info.fps, fps):
                ok, frame = capture.read()
            else:
                ok, frame = capture.grab(), None
            if not ok:
                break
            if frame is not None:
                yield index, index / info.fps, frame
            index += 1
        if index == 0:
            raise MediaError("undecodable", "no frame could be decoded")
    finally:
        capture.release()


# -- the table of faces -----------------------------------------------------------------------------------------------
def faces_schema(emotion_labels: Sequence[str] = EMOTION_LABELS) -> pa.Schema:
    """`OUT/faces/` and `analyze_video`'s columns: one row per face per analysed frame. `box` is [x, y, w, h];
    `track` is a face's id across one video's frames (null for an image)."""
    return pa.schema(
        [
            ("source", pa.string()),
            ("frame", pa.int64()),
            ("time_s", pa.float64()),
            ("box", pa.list_(pa.int32(), 4)),
            ("detector_score", pa.float64()),
            ("emotion", pa.string()),
            ("emotion_score", pa.float64()),
            *[(f"emotion_{label}", pa.float64()) for label in emotion_labels],
            ("gender", pa.string()),
            ("gender_score", pa.float64()),
            ("track", pa.int64()),
        ]
    )


def emotion_columns(schema: pa.Schema) -> list[str]:
    """The per-emotion score columns of a `faces_schema` ("emotion_angry", …), in the model's label order."""
    return [name for name in schema.names if name.startswith("emotion_") and name != "emotion_score"]


def face_rows(
    source: str, frame: int, time_s: float, faces: list[dict[str, Any]], emotion_labels: Sequence[str] = EMOTION_LABELS
) -> list[dict[str, Any]]:
    """Rows of `faces_schema` for one frame's face items (as `FaceAnalyzer.analyze` returns them), `track` null."""
    rows = []
    for face in faces:
        emotion = face.get("emotion") or {}
        gender = face.get("gender") or {}
        scores = emotion.get("scores") or {}
        rows.append(
            {
                "source": source,
                "frame": frame,
                "time_s": time_s,
                "box": [int(value) for value in face["box"]],
                "detector_score": face.get("detector_score"),
                "emotion": emotion.get("label"),
                "emotion_score": emotion.get("score"),
                **{f"emotion_{label}": scores.get(label) for label in emotion_labels},
                "gender": gender.get("label"),
                "gender_score": gender.get("score"),
                "track": None,
            }
        )
    return rows


def assign_tracks(table: pa.Table, analysed_frames: Sequence[int] | None = None) -> pa.Table:
    """One video's face rows, sorted by frame (faces of a frame in their order), with `track` set as the stream
    tracks faces: greedy box overlap between consecutive analysed frames (serve.tracking.FaceTracker). With
    `analysed_frames` (every analysed frame's index), frames without a face count as frames a track missed."""
    from faceray.serve.tracking import FaceTracker

    order = np.lexsort((np.arange(table.num_rows), table.column("frame").to_numpy()))
    table = table.take(pa.array(order, pa.int64()))
    frames = table.column("frame").to_pylist()
    boxes = table.column("box").to_pylist()
    by_frame: dict[int, list[Any]] = {}
    for frame, box in zip(frames, boxes):
        by_frame.setdefault(frame, []).append(box)
    tracker = FaceTracker(smoothing=0.0)
    tracks: list[int] = []
    for frame in sorted(set(analysed_frames or ()) | set(by_frame)):
        seen = tracker.update([{"box": box} for box in by_frame.get(frame, [])])
        tracks += [track.track_id for track in seen]
    index = table.schema.get_field_index("track")
    return table.set_column(index, "track", pa.array(tracks, pa.int64()))


def summarize(source: str, kind: str, frames: int, frames_with_faces: int, table: pa.Table) -> dict[str, Any]:
    """One `OUT/summary.csv` row: frames analysed, frames with faces, faces per frame and each emotion's share of
    the faces (0 when there were none)."""
    emotions = [name[len("emotion_") :] for name in emotion_columns(table.schema)]
    labels = table.column("emotion").to_pylist()
    faces = table.num_rows
    shares = {f"share_{label}": round(labels.count(label) / faces, 4) if faces else 0.0 for label in emotions}
    return {
        "source": source,
        "kind": kind,
        "frames": frames,
        "frames_with_faces": frames_with_faces,
        "faces": faces,
        "faces_per_frame": round(faces / frames, 4) if frames else 0.0,
        **shares,
    }


# One colour per emotion in the timelines, far apart (matplotlib colour names); other labels get matplotlib's cycle.
EMOTION_COLOURS = {
    "angry": "red",
    "disgust": "olive",
    "fear": "purple",
    "happy": "orange",
    "sad": "blue",
    "surprise": "deepskyblue",
    "neutral": "grey",
}


def plot_timeline(table: pa.Table, source: str, path: str | Path, tracks: int = 3) -> bool:
    """A PNG of emotion scores over time for the video's `tracks` longest-seen faces (one panel each); False when
    the video has no face."""
    if table.num_rows == 0:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    emotions = emotion_columns(table.schema)
    track_ids = table.column("track").to_numpy(zero_copy_only=False)
    ids, counts = np.unique(track_ids, return_counts=True)
    main = [int(track) for track in ids[np.argsort(-counts, kind="stable")][:tracks]]
    figure, axes = plt.subplots(len(main), 1, figsize=(9, 2.4 * len(main) + 0.6), sharex=True, squeeze=False)
    times = table.column("time_s").to_numpy()
    for axis, track in zip(axes[:, 0], main):
        rows = track_ids == track
        for name in emotions:
            label = name[len("emotion_") :]
            axis.plot(
                times[rows],
                table.column(name).to_numpy(zero_copy_only=False)[rows],
                label=label,
                lw=1,
                color=EMOTION_COLOURS.get(label),
            )
        axis.set_ylim(0, 1)
        axis.set_ylabel(f"face {track}")
    axes[0, 0].legend(loc="upper right", ncol=len(emotions), fontsize=7)
    axes[0, 0].set_title(f"{source}: emotion scores over time")
    axes[-1, 0].set_xlabel("time (s)")
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)
    return True


@contextmanager
def local_media(where: str | Path) -> Iterator[Path]:
    """A local path to the file `where` for OpenCV, which reads only local files: the file itself, or a temporary
    copy of an s3:// or gs:// object, removed when the block ends."""
    from faceray.storage import Location

    location = Location.of(where)
    if location.is_local:
        yield location.local_path()
        return
    suffix = posixpath.splitext(location.name)[1]
    with tempfile.NamedTemporaryFile(prefix="faceray-media-", suffix=suffix) as copy:
        with location.open_input() as stream:
            shutil.copyfileobj(stream, copy, 1 << 20)
        copy.flush()
        yield Path(copy.name)


def faces_of_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Face items (as `draw_faces` takes them) from one frame's `faces_schema` rows."""
    return [
        {
            "box": row["box"],
            "emotion": {"label": row["emotion"], "score": row["emotion_score"]} if row["emotion"] else None,
            "gender": {"label": row["gender"], "score": row["gender_score"]} if row["gender"] else None,
        }
        for row in rows
    ]
