"""The Ray Data wrapper of offline analysis (`faceray analyze`): an actor pool of FaceAnalyzers reads and analyses
the inputs (images in blocks of IMAGES_PER_BLOCK, videos in segments of SEGMENT_FRAMES frames), and the driver writes
each input's faces when its last frame is back. The face pipeline is serve.analyzer's, each frame analysed as
`POST /v1/faces` analyses it.

Layout of OUT:
  OUT/faces/<key>.parquet     one row per face per analysed frame (serve.collection.faces_schema), one file per input
  OUT/summary.csv             one row per input: frames, frames with faces, faces per frame, each emotion's share
  OUT/timelines/<source>.png  emotion scores over time of each video's main faces
  OUT/annotated/<source>      with --annotate: the images and videos with the faces drawn
  OUT/manifest.json           inputs, settings, models (their checksums), counts, timing, the resource plan
  OUT/rejects.csv             every input not analysed: source,reason,detail
  OUT/_work/                  the plan and one done-marker per finished input (what resuming reads)
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute
import pyarrow.parquet as pq

from faceray.config import ConfigError, location, write_json
from faceray.console import terminal_stderr
from faceray.labels import EMOTION_LABELS
from faceray.serve.collection import (
    InputReject,
    MediaError,
    MediaInput,
    VideoInfo,
    assign_tracks,
    face_rows,
    faces_of_rows,
    faces_schema,
    list_inputs,
    local_media,
    open_video,
    plot_timeline,
    read_image,
    seek_exactly,
    summarize,
    video_frames,
)
from faceray.serve.config import AnalyzeConfig, check_models
from faceray.storage import Location, read_in_order

if TYPE_CHECKING:
    from faceray.model_card import ModelCard

WORK_DIR = "_work"
IMAGES_PER_BLOCK = 16  # images per actor task
SEGMENT_FRAMES = 128  # an actor task's share of a video: it seeks to the segment's first frame (~15 ms)
RESULT_FRAMES = 32  # an actor yields a segment's results every this many frames …
# … and Ray Data gathers the yields into blocks of about this many bytes before the driver sees them (by default
# 128 MB: a task's results arrived whole). 64 KB is ~64 frames of 5 faces: the bar moves about once a second per
# actor, also on a video read whole by one actor (one in object storage). 16 KB gave 146 blocks for 1,800 frames.
RESULT_BLOCK_BYTES = 64 << 10


def result_schema(emotion_labels: tuple[str, ...]) -> pa.Schema:
    """What the actors return: the faces' columns plus `key`, `kind` ("face", a "frame" analysed, a video segment's
    "end" (`frame` = frames read), an input's "reject"), `faces` (a frame's face count), `reason`/`detail` (a
    reject's), `node` (the Ray node that analysed it) and `analysed_at` (when, in seconds since the epoch)."""
    extra = [
        ("key", pa.string()),
        ("kind", pa.string()),
        ("faces", pa.int32()),
        ("reason", pa.string()),
        ("detail", pa.string()),
        ("node", pa.string()),
        ("analysed_at", pa.float64()),
    ]
    return pa.schema([*faces_schema(emotion_labels), *extra])


# -- the actors -------------------------------------------------------------------------------------------------------
class InputAnalyzer:
    """Ray Data actor: loads the FaceAnalyzer once, then reads and analyses blocks of inputs (columns key, uri, kind,
    start, stop: an image, or a video's segment of frames [start, stop), stop -1 for "to the end") into result rows.

    Each actor decodes what it analyses: decoding a 640x480 frame takes ~0.6 ms against ~13 ms to analyse it, and
    frames sent from read tasks to the actors cost more in Ray (serialising, the object store, scheduling) than the
    decoding itself (bench/analyze.py). Only the results, a few hundred bytes per face, leave the actor."""

    def __init__(self, models: dict[str, str], analyzer_settings: dict[str, Any], fps: float | None) -> None:
        import cv2
        import ray

        cv2.setNumThreads(1)  # one thread per actor, as its CPU: OpenCV's own pool only contends with the others

        from faceray.serve.analyzer import FaceAnalyzer

        self.analyzer = FaceAnalyzer(models.get("emotion"), models.get("gender"), **analyzer_settings)
        self.fps = fps
        self.labels = self.analyzer.emotion_labels
        self.schema = result_schema(self.labels)
        self.node = ray.get_runtime_context().get_node_id()

    def __call__(self, block: pa.Table) -> Iterator[pa.Table]:
        rows: list[dict[str, Any]] = []
        columns = (block.column(name).to_pylist() for name in ("key", "uri", "kind", "start", "stop"))
        for key, uri, kind, start, stop in zip(*columns):
            count = 0
            try:
                if kind == "image":  # decoded as the service decodes a request body
                    rows += self.frame_rows(key, 0, 0.0, read_image(uri))
                    continue
                with local_media(uri) as path:
                    for index, time_s, frame in video_frames(path, self.fps, start, None if stop < 0 else stop):
                        rows += self.frame_rows(key, index, time_s, frame)
                        count += 1
                        if count % RESULT_FRAMES == 0:
                            yield self.table(rows)
                            rows = []
            except MediaError as error:
                rows.append(_marker(key, "reject", reason=error.reason, detail=error.detail))
                continue
            except OSError as error:
                rows.append(_marker(key, "reject", reason="unreadable", detail=str(error)))
                continue
            rows.append(_marker(key, "end", frame=count))
        if rows:
            yield self.table(rows)

    def frame_rows(self, key: str, index: int, time_s: float, frame: npt.NDArray[np.uint8]) -> list[dict[str, Any]]:
        """One BGR frame (H, W, 3) analysed: a "face" row per face and its "frame" row."""
        faces = self.analyzer.analyze(frame)
        rows = [{**face, "key": key, "kind": "face"} for face in face_rows("", index, time_s, faces, self.labels)]
        rows.append(
            {
                "key": key,
                "kind": "frame",
                "frame": index,
                "faces": len(faces),
                "node": self.node,
                "analysed_at": time.time(),
            }
        )
        return rows

    def table(self, rows: list[dict[str, Any]]) -> pa.Table:
        return pa.Table.from_pylist([{name: row.get(name) for name in self.schema.names} for row in rows], self.schema)


def _marker(key: str, kind: str, frame: int = 0, reason: str | None = None, detail: str | None = None) -> dict:
    return {"key": key, "kind": kind, "frame": frame, "reason": reason, "detail": detail}


# -- the driver -------------------------------------------------------------------------------------------------------
@dataclass
class InputProgress:
    """What the driver holds of one input until its last frame is back: its faces (small Arrow tables)."""

    media: MediaInput
    segments: int  # a video's segments still to end or be rejected (0 for an image)
    expected: int = 0  # frames to come back (an image's 1; a video's segments add theirs as they end)
    frames_with_faces: int = 0
    analysed: list[int] = field(default_factory=list)  # the index of each frame analysed
    tables: list[pa.Table] = field(default_factory=list)
    nodes: Counter = field(default_factory=Counter)
    reject: InputReject | None = None

    @property
    def frames(self) -> int:
        return len(self.analysed)

    @property
    def complete(self) -> bool:
        """Every segment has ended or been rejected, and every frame read is analysed (a rejected video waits for its
        other segments' rows too: none arrive after it is written)."""
        if self.segments > 0:
            return False
        return self.reject is not None or self.frames >= self.expected


def done_marker(out: Location, media: MediaInput) -> Location:
    return out / WORK_DIR / "done" / f"{media.key}.json"


def model_identity(folder: str, card: ModelCard) -> dict[str, Any]:
    """A model's card fields that name the weights: its task, labels, file and export checksums."""
    return {
        "path": folder,
        "task": card.task,
        "labels": list(card.labels),
        "files": card.extra.get("files"),
        "exports": card.extra.get("exports"),
    }


def prepare_output(config: AnalyzeConfig, out: Location, models: dict[str, dict[str, Any]]) -> str:
    """Refuse to continue an analysis in --out made with other inputs, models or settings (or clear it with
    --overwrite); returns this plan's fingerprint."""
    settings = config.plan_fields()
    plan = {
        "settings": settings,
        "models": {task: {k: v for k, v in model.items() if k != "path"} for task, model in models.items()},
    }
    fingerprint = hashlib.sha256(json.dumps(plan, sort_keys=True, default=str).encode()).hexdigest()[:16]
    plan_path = out / WORK_DIR / "plan.json"
    if plan_path.exists():
        previous = json.loads(plan_path.read_text())
        if previous.get("fingerprint") == fingerprint:
            return fingerprint
        if not config.overwrite:
            changed = [name for name in settings if previous.get("settings", {}).get(name) != settings[name]] + (
                ["models"] if previous.get("models") != plan["models"] else []
            )
            raise ConfigError(
                f"--out: {out} holds an analysis of other {', '.join(changed) or 'settings'}; use another --out or "
                "pass --overwrite to replace it"
            )
        for name in ("faces", "timelines", "annotated", WORK_DIR):
            (out / name).delete_tree()
        for name in ("manifest.json", "summary.csv", "rejects.csv"):
            (out / name).delete()
    write_json(plan_path, {"fingerprint": fingerprint, **plan})
    return fingerprint


def finish_input(
    progress: InputProgress, out: Location, labels: tuple[str, ...], annotate: bool, fps: float | None
) -> dict[str, Any]:
    """Write one finished input's faces (OUT/faces/<key>.parquet), its timeline and annotated copy, then its
    done-marker, last (a stop before it redoes the input). Returns the marker."""
    media = progress.media
    marker: dict[str, Any] = {"source": media.source, "uri": media.uri, "kind": media.kind}
    if progress.reject is not None:
        marker["reject"] = {"reason": progress.reject.reason, "detail": progress.reject.detail}
    else:
        schema = faces_schema(labels)
        tables = [table.select(schema.names).cast(schema) for table in progress.tables]
        table = pa.concat_tables(tables) if tables else schema.empty_table()
        table = table.set_column(0, "source", pa.array([media.source] * table.num_rows, pa.string()))
        if media.kind == "video":
            table = assign_tracks(table, progress.analysed)
        buffer = io.BytesIO()
        pq.write_table(table, buffer)
        (out / "faces" / f"{media.key}.parquet").write_bytes(buffer.getvalue())
        marker["summary"] = summarize(media.source, media.kind, progress.frames, progress.frames_with_faces, table)
        marker["frames_by_node"] = dict(progress.nodes)
        if media.kind == "video":
            marker["timeline"] = _write_timeline(table, media, out)
        if annotate:
            marker["annotated"] = _write_annotated(table, media, out, fps)
    (done_marker(out, media)).write_text(json.dumps(marker))
    return marker


def _safe_name(source: str) -> str:
    return source.replace("://", "/").lstrip("/")


def _write_timeline(table: pa.Table, media: MediaInput, out: Location) -> str | None:
    import tempfile

    with tempfile.TemporaryDirectory(prefix="faceray-timeline-") as folder:
        path = f"{folder}/timeline.png"
        if not plot_timeline(table, media.source, path):
            return None
        target = out / "timelines" / (_safe_name(media.source) + ".png")
        with open(path, "rb") as handle:
            target.write_bytes(handle.read())
    return target.uri


def _write_annotated(table: pa.Table, media: MediaInput, out: Location, fps: float | None) -> str:
    """The input with its faces drawn: an image as JPEG/PNG like its source, a video as MP4 at the analysed rate."""
    import tempfile

    import cv2

    from faceray.serve.vision import draw_faces

    rows_by_frame: dict[int, list[dict[str, Any]]] = {}
    for row in table.to_pylist():
        rows_by_frame.setdefault(row["frame"], []).append(row)
    target = out / "annotated" / _safe_name(media.source)
    if media.kind == "image":
        frame = draw_faces(read_image(media.uri), faces_of_rows(rows_by_frame.get(0, [])))
        suffix = ".png" if media.uri.lower().endswith(".png") else ".jpg"
        ok, encoded = cv2.imencode(suffix, frame)
        target.write_bytes(encoded.tobytes())
        return target.uri
    target = out / "annotated" / (_safe_name(media.source).rsplit(".", 1)[0] + ".mp4")
    with local_media(media.uri) as path, tempfile.TemporaryDirectory(prefix="faceray-annotate-") as folder:
        capture, info = open_video(path)
        capture.release()
        rate = min(fps, info.fps) if fps else info.fps
        written = f"{folder}/annotated.mp4"
        writer = cv2.VideoWriter(written, cv2.VideoWriter_fourcc(*"mp4v"), rate, (info.width, info.height))
        try:
            for index, _, frame in video_frames(path, fps):
                writer.write(draw_faces(frame, faces_of_rows(rows_by_frame.get(index, []))))
        finally:
            writer.release()
        with open(written, "rb") as handle:
            target.write_bytes(handle.read())
    return target.uri


@dataclass(frozen=True)
class VideoHeader:
    """What the driver reads of a local video to plan it: its header, and whether OpenCV lands exactly on the frame
    a segment starts at (MP4, MKV and most indexed containers do; where it cannot, a segment decodes its way there
    from the first frame, and cutting the video would decode its start once per segment)."""

    info: VideoInfo
    seeks_exactly: bool


def video_header(media: MediaInput) -> VideoHeader | None:
    """A local video's header and seekability, read once in the driver; None for a video in object storage (not
    copied just to plan it) or one OpenCV cannot open (its read rejects it)."""
    if not Location.of(media.uri).is_local:
        return None
    try:
        capture, info = open_video(media.uri)
    except MediaError:
        return None
    try:
        return VideoHeader(info, info.frames <= SEGMENT_FRAMES or seek_exactly(capture, SEGMENT_FRAMES))
    finally:
        capture.release()


def video_segments(header: VideoHeader | None) -> list[tuple[int, int]]:
    """A video's segments of frames [start, stop) (stop -1: to the end), SEGMENT_FRAMES each, from the frame count
    its header gives; one segment when there is no header to go by or the container cannot seek exactly. The last
    segment reads to the end, so a header that counts too few frames loses none."""
    if header is None or not header.seeks_exactly:
        return [(0, -1)]
    starts = list(range(0, max(header.info.frames, 1), SEGMENT_FRAMES))
    return [(start, starts[index + 1] if index + 1 < len(starts) else -1) for index, start in enumerate(starts)]


def input_blocks(pending: list[MediaInput], fps: float | None) -> tuple[list[pa.Table], dict[str, int], int | None]:
    """The actor tasks' input blocks (each video segment alone, images IMAGES_PER_BLOCK at a time), each video's
    number of segments, and the frames the run will analyse by the headers (None when a video is in object
    storage)."""
    from concurrent.futures import ThreadPoolExecutor

    blocks: list[list[tuple[MediaInput, int, int]]] = []
    images: list[tuple[MediaInput, int, int]] = []
    segments: dict[str, int] = {}
    estimate: int | None = 0
    videos = [item for item in pending if item.kind == "video"]
    with ThreadPoolExecutor(8) as pool:  # ~10-25 ms a video, mostly in OpenCV (the GIL released)
        headers = dict(zip((item.key for item in videos), pool.map(video_header, videos)))
    for item in pending:
        if item.kind == "video":
            header = headers[item.key]
            parts = video_segments(header)
            segments[item.key] = len(parts)
            blocks += [[(item, start, stop)] for start, stop in parts]
            if header is not None and estimate is not None:
                estimate += header.info.sampled_frames(fps)
            elif not Location.of(item.uri).is_local:
                estimate = None
        else:
            images.append((item, 0, 0))
            estimate = None if estimate is None else estimate + 1
            if len(images) == IMAGES_PER_BLOCK:
                blocks.append(images)
                images = []
    if images:
        blocks.append(images)
    tables = [
        pa.table(
            {
                "key": [item.key for item, _, _ in block],
                "uri": [item.uri for item, _, _ in block],
                "kind": [item.kind for item, _, _ in block],
                "start": pa.array([start for _, start, _ in block], pa.int64()),
                "stop": pa.array([stop for _, _, stop in block], pa.int64()),
            }
        )
        for block in blocks
    ]
    return tables, segments, estimate


def analyze_inputs(
    pending: list[MediaInput],
    out: Location,
    config: AnalyzeConfig,
    models: dict[str, str],
    plan_chosen: dict[str, Any],
    labels: tuple[str, ...],
    markers: dict[str, dict[str, Any]],
) -> dict[str, Any]:
    """Run the pending inputs through Ray Data, finishing each input as its last frame comes back (its done-marker
    goes into `markers`, by input key). Returns
    "frames_by_node" (frames analysed per Ray node), "first_frames_after_s" (from the call to the first frame analysed:
    Ray Data's start and the actors' model loading) and "running_frames_per_s" (the rate from the first frame analysed
    to the last)."""
    import ray
    from tqdm import tqdm

    context = ray.data.DataContext.get_current()
    saved = (context.enable_progress_bars, context.print_on_execution_start, context.target_max_block_size)
    context.enable_progress_bars = False  # one bar in frames instead of Ray's operator bars
    context.print_on_execution_start = False
    # No frames travel (each actor decodes its own): the object store holds results only, and memory is flat in a
    # video's length (bench/analyze.py). Small result blocks let the progress bar move within a segment.
    context.target_max_block_size = RESULT_BLOCK_BYTES
    blocks, segments, estimate = input_blocks(pending, config.fps)
    waiting = {
        item.key: InputProgress(item, segments=segments.get(item.key, 0), expected=1 if item.kind == "image" else 0)
        for item in pending
    }
    nodes: Counter = Counter()
    started = time.time()
    span = [float("inf"), 0.0]  # when the first and the last frame were analysed (seconds since the epoch)
    settings = {"detector": config.detector_settings(), "crop_margin": config.crop_margin, "threads": 1}
    try:
        dataset = ray.data.from_arrow(blocks).map_batches(
            InputAnalyzer,
            batch_size=None,
            batch_format="pyarrow",
            fn_constructor_kwargs={"models": models, "analyzer_settings": settings, "fps": config.fps},
            num_cpus=plan_chosen["cpus_per_actor"],
            # Two tasks per actor at a time (one analysed, one waiting): work spreads over every actor, on every node.
            compute=ray.data.ActorPoolStrategy(size=plan_chosen["actors"], max_tasks_in_flight_per_actor=2),
        )
        with tqdm(
            total=estimate,
            unit="frame",
            disable=not config.progress,
            desc="analyze",
            dynamic_ncols=True,
            file=terminal_stderr(),
        ) as bar:
            for block in dataset.iter_batches(batch_size=None, batch_format="pyarrow"):
                frames = absorb_results(block, waiting)
                nodes.update(frames)
                bar.update(sum(frames.values()))
                times = block.column("analysed_at").drop_null()
                if len(times):
                    span[0] = min(span[0], pa.compute.min(times).as_py())
                    span[1] = max(span[1], pa.compute.max(times).as_py())
                for key in [key for key, progress in waiting.items() if progress.complete]:
                    markers[key] = finish_input(waiting.pop(key), out, labels, config.annotate, config.fps)
            bar.total = bar.n  # the estimate counted frames of inputs that were then rejected
            bar.refresh()
    finally:
        context.enable_progress_bars, context.print_on_execution_start, context.target_max_block_size = saved
    if waiting:  # every actor task ends each input it reads with an end or a reject: this is a bug, not bad input
        raise RuntimeError(
            f"{len(waiting)} inputs got no end of their frames: {[p.media.source for p in waiting.values()][:5]}"
        )
    analysed = sum(nodes.values())
    running = (analysed - 1) / (span[1] - span[0]) if analysed > 1 and span[1] > span[0] else 0.0
    return {
        "frames_by_node": dict(nodes),
        "first_frames_after_s": round(span[0] - started, 2) if analysed else None,
        "running_frames_per_s": round(running, 1),
    }


def absorb_results(block: pa.Table, waiting: dict[str, InputProgress]) -> Counter:
    """Add one block of actor results to the inputs' progress; returns the frames analysed in it per node."""
    keys = block.column("key").to_pylist()
    kinds = block.column("kind").to_pylist()
    frames = block.column("frame").to_pylist()
    counts = block.column("faces").to_pylist()
    nodes = block.column("node").to_pylist()
    face_rows_of: dict[str, list[int]] = {}
    analysed: Counter = Counter()
    for index, (key, kind) in enumerate(zip(keys, kinds)):
        progress = waiting[key]
        if kind == "face":
            face_rows_of.setdefault(key, []).append(index)
        elif kind == "frame":
            progress.frames_with_faces += counts[index] > 0
            progress.analysed.append(frames[index])
            progress.nodes[nodes[index]] += 1
            analysed[nodes[index]] += 1
        elif kind == "end":
            progress.expected += frames[index]
            progress.segments -= 1
        elif kind == "reject":
            reason = block.column("reason")[index].as_py()
            progress.reject = progress.reject or InputReject(
                progress.media.source, reason, block.column("detail")[index].as_py()
            )
            progress.segments = max(0, progress.segments - 1)
    for key, indices in face_rows_of.items():
        waiting[key].tables.append(block.take(pa.array(indices, pa.int64())))
    return analysed


def write_tables(
    out: Location, markers: list[dict[str, Any]], unsupported: list[InputReject], labels: tuple[str, ...]
) -> dict[str, int]:
    """OUT/summary.csv (one row per analysed input) and OUT/rejects.csv (every input not analysed); returns counts."""
    summaries = [marker["summary"] for marker in markers if "summary" in marker]
    columns = list(summarize("", "image", 0, 0, faces_schema(labels).empty_table()))
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(summaries)
    (out / "summary.csv").write_text(text.getvalue())
    rejects = [(reject.source, reject.reason, reject.detail) for reject in unsupported] + [
        (marker["source"], marker["reject"]["reason"], marker["reject"]["detail"])
        for marker in markers
        if "reject" in marker
    ]
    text = io.StringIO()
    reject_writer = csv.writer(text, lineterminator="\n")
    reject_writer.writerow(["source", "reason", "detail"])
    reject_writer.writerows(rejects)
    (out / "rejects.csv").write_text(text.getvalue())
    return {
        "inputs": len(markers) + len(unsupported),
        "analysed": len(summaries),
        "rejected": len(rejects),
        "images": sum(1 for summary in summaries if summary["kind"] == "image"),
        "videos": sum(1 for summary in summaries if summary["kind"] == "video"),
        "frames": sum(summary["frames"] for summary in summaries),
        "frames_with_faces": sum(summary["frames_with_faces"] for summary in summaries),
        "faces": sum(summary["faces"] for summary in summaries),
    }


def resolve_models(config: AnalyzeConfig) -> tuple[dict[str, str], dict[str, ModelCard]]:
    """{task: model directory} (the ones given, or the paper's from `faceray fetch-weights paper`) and their cards,
    checked as `faceray serve` checks them (serve.config.check_models: the slot, model.keras's checksum)."""
    from faceray.serve.analyzer import paper_models

    models = {
        task: folder for task, folder in (("emotion", config.emotion_model), ("gender", config.gender_model)) if folder
    }
    if not models:
        try:
            models = {task: str(folder) for task, folder in paper_models().items()}
        except ValueError as error:
            raise ConfigError(f"--emotion-model / --gender-model: {error}") from None
    return models, check_models(models)


def run_analyze(config: AnalyzeConfig, log: Any = None) -> dict[str, Any]:
    """Analyse every input into OUT (resumable per input). Ray must be initialised. Returns the manifest; `log` gets
    the plan line."""
    from faceray.resources import plan_analyze
    from faceray.runtime import read_cluster

    started = time.perf_counter()
    out = location(config.out, "--out", output=True)
    try:
        media, unsupported = list_inputs(config.inputs)
    except (FileNotFoundError, ValueError) as error:
        raise ConfigError(f"INPUT: {error}") from None
    models, cards = resolve_models(config)
    identities = {task: model_identity(folder, cards[task]) for task, folder in models.items()}
    labels = tuple(identities["emotion"]["labels"]) if "emotion" in identities else EMOTION_LABELS
    plan = plan_analyze(read_cluster(), config.actors)
    if log is not None:
        log(plan.line())
        log(
            f"analyze: {len(media)} inputs ({sum(item.kind == 'video' for item in media)} videos, "
            f"{sum(item.kind == 'image' for item in media)} images), {len(unsupported)} unsupported files"
        )
    out.make_dir()
    prepare_output(config, out, identities)
    markers = {  # the inputs an earlier run finished (read many at a time from object storage)
        item.key: json.loads(data)
        for item, data in zip(media, read_in_order(done_marker(out, item) for item in media))
        if not isinstance(data, OSError)
    }
    pending = [item for item in media if item.key not in markers]
    if not pending and (out / "manifest.json").exists():  # a finished analysis: leave every file as it is
        manifest = json.loads((out / "manifest.json").read_text())
        manifest["this_run"] = {"inputs_analysed": 0, "frames": 0, "elapsed_s": 0.0, "frames_per_s": 0.0}
        return manifest
    run = (
        analyze_inputs(pending, out, config, models, plan.chosen, labels, markers)
        if pending
        else {"frames_by_node": {}}
    )
    elapsed = time.perf_counter() - started
    counts = write_tables(out, [markers[item.key] for item in media], unsupported, labels)
    frames_this_run = sum(run["frames_by_node"].values())
    manifest = {
        "inputs": list(config.inputs),
        "settings": config.plan_fields(),
        "models": identities,
        "counts": counts,
        "this_run": {
            "inputs_analysed": len(pending),
            "frames": frames_this_run,
            "elapsed_s": round(elapsed, 2),
            "frames_per_s": round(frames_this_run / elapsed, 1) if elapsed else 0.0,
            **run,
        },
        "resource_plan": plan.to_dict(),
    }
    write_json(out / "manifest.json", manifest)
    return manifest


def summary_line(manifest: dict[str, Any]) -> str:
    """One line: inputs analysed and rejected, frames, faces and this run's rate."""
    counts, run = manifest["counts"], manifest["this_run"]
    action = (
        "already complete, nothing to do"
        if run["inputs_analysed"] == 0
        else f"{run['frames']} frames in {run['elapsed_s']:.1f} s ({run['frames_per_s']:.0f} frames/s)"
    )
    return (
        f"analyze: {counts['analysed']} inputs analysed ({counts['images']} images, {counts['videos']} videos), "
        f"{counts['rejected']} rejected of {counts['inputs']}; {counts['frames']} frames, {counts['faces']} faces; "
        f"{action}"
    )
