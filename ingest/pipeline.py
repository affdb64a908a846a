"""The Ray Data wrapper of ingest: plan chunks, process pending ones in parallel, write the manifest.

Layout of OUT:
  OUT/<split>/part-NNNNN.parquet   shards (schema in ingest/shards.py)
  OUT/manifest.json                resolved config, counts per split and label, rejects per reason, throughput
  OUT/rejects.csv                  every rejected input: source,row,reason,detail
  OUT/_work/                       plan, per-chunk metadata, rejects and done-markers (what resuming reads)
"""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
import time
from collections import Counter, defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from faceray.config import ConfigError, config_to_dict, write_json
from faceray.labels import EMOTION_LABELS, GENDER_LABELS, SPLITS
from ingest.chunks import (
    WORK_DIR,
    ChunkSettings,
    chunk_name,
    done_marker,
    metadata_file,
    process_fer_chunk,
    process_imdb_chunk,
    reject_file,
)
from ingest.config import IngestConfig
from ingest.fer import chunk_byte_ranges
from ingest.imdb import LabelFilter, identity_key, label_rejections, read_imdb_metadata
from ingest.splits import assign_splits

MANIFEST = "manifest.json"
REJECTS = "rejects.csv"


def chunk_settings(config: IngestConfig) -> ChunkSettings:
    task, labels = ("gender", GENDER_LABELS) if config.dataset == "imdb" else ("emotion", EMOTION_LABELS)
    return ChunkSettings(
        dataset=config.dataset, out=str(Path(config.out).resolve()), size=config.image_size, color=config.color,
        task=task, labels=labels,
        root=str(Path(config.root or Path(config.mat).parent).resolve()) if config.dataset == "imdb" else "",
        csv=str(Path(config.csv).resolve()) if config.csv else "",
    )


def resolve_mat_path(config: IngestConfig) -> Path:
    if config.mat:
        return Path(config.mat)
    for name in ("imdb.mat", "wiki.mat"):
        if (Path(config.root) / name).is_file():
            return Path(config.root) / name
    raise ConfigError(f"--root: no imdb.mat or wiki.mat in {config.root!r} (or pass --mat)")


def plan_imdb(config: IngestConfig, out: Path) -> list[dict[str, Any]]:
    """Read the .mat, apply label filters and splits, write one metadata file per chunk; returns chunk specs."""
    frame = read_imdb_metadata(resolve_mat_path(config))
    label_filter = LabelFilter(
        drop_unknown_gender=config.drop_unknown_gender,
        min_face_score=config.min_face_score if config.min_face_score >= 0 else None,
        drop_second_face=config.drop_second_face,
    )
    frame = pd.concat([frame, label_rejections(frame, label_filter)], axis=1)
    if config.by_identity:
        keys: Iterable[str] = (
            identity_key(celeb, name, path) for celeb, name, path in zip(frame["celeb_id"], frame["name"], frame["full_path"])
        )
    else:
        keys = frame["full_path"]
    frame["split"] = assign_splits(keys, config.split, config.seed)
    specs = []
    for chunk_id, start in enumerate(range(0, len(frame), config.shard_rows)):
        part = frame.iloc[start : start + config.shard_rows]
        target = metadata_file(out, chunk_id)
        if not done_marker(out, chunk_id).exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            part.to_parquet(target.with_name(target.name + ".tmp"), index=False)
            target.with_name(target.name + ".tmp").replace(target)
        specs.append({"chunk": chunk_id, "rows": len(part), "first_row": start, "start": 0, "end": 0})
    return specs


def plan_fer(config: IngestConfig) -> list[dict[str, Any]]:
    """Chunk the FER CSV by byte ranges (one streaming pass, nothing held in memory)."""
    if not Path(config.csv).is_file():
        raise ConfigError(f"--csv: no such file {config.csv!r}")
    return [
        {"chunk": chunk_id, "rows": count, "first_row": first, "start": start, "end": end}
        for chunk_id, (first, count, start, end) in enumerate(chunk_byte_ranges(config.csv, config.shard_rows))
    ]


def plan_fingerprint(config: IngestConfig) -> str:
    return hashlib.sha256(json.dumps(config.plan_fields(), sort_keys=True, default=str).encode()).hexdigest()[:16]


def prepare_output(config: IngestConfig, out: Path) -> None:
    """Refuse to mix runs with different settings in one output directory (or clear it with --overwrite)."""
    plan_path = out / WORK_DIR / "plan.json"
    fingerprint = plan_fingerprint(config)
    if plan_path.exists():
        previous = json.loads(plan_path.read_text())
        if previous.get("fingerprint") == fingerprint:
            return
        if not config.overwrite:
            raise ConfigError(
                f"--out: {out} holds an ingest made with other settings ({previous.get('settings')}); "
                "use another --out or pass --overwrite to replace it"
            )
        for name in (*SPLITS, WORK_DIR, MANIFEST, REJECTS):
            target = out / name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
    write_json(plan_path, {"fingerprint": fingerprint, "settings": config.plan_fields()})


def _process_chunk_batch(batch: dict[str, np.ndarray], settings: ChunkSettings) -> dict[str, np.ndarray]:
    """Ray Data UDF: process each chunk spec in the batch; returns its summary as JSON text."""
    summaries = []
    for index in range(len(batch["chunk"])):
        chunk_id = int(batch["chunk"][index])
        if settings.dataset == "imdb":
            summary = process_imdb_chunk(chunk_id, settings)
        else:
            summary = process_fer_chunk(
                chunk_id, int(batch["first_row"][index]), int(batch["start"][index]), int(batch["end"][index]), settings
            )
        summaries.append(json.dumps(summary))
    return {"chunk": batch["chunk"], "summary": np.array(summaries, dtype=object)}


def process_chunks(pending: list[dict[str, Any]], settings: ChunkSettings, progress: bool, parallelism: int | None = None) -> None:
    """Run the pending chunks through Ray Data (one task per chunk, streaming), with a progress bar in images."""
    import ray
    from tqdm import tqdm

    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False  # one bar in images instead of Ray's operator bars
    context.print_on_execution_start = False
    dataset = ray.data.from_items(pending, override_num_blocks=len(pending)).map_batches(
        _process_chunk_batch,
        batch_size=1,
        fn_kwargs={"settings": settings},
        num_cpus=1,
        compute=ray.data.TaskPoolStrategy(size=parallelism) if parallelism else None,
    )
    total = sum(spec["rows"] for spec in pending)
    with tqdm(total=total, unit="img", disable=not progress, desc=f"ingest {settings.dataset}", dynamic_ncols=True) as bar:
        for row in dataset.iter_rows():
            bar.update(json.loads(row["summary"])["total"])


def collect_summaries(out: Path, specs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    summaries = []
    for spec in specs:
        marker = done_marker(out, spec["chunk"])
        if not marker.exists():
            raise RuntimeError(f"chunk {chunk_name(spec['chunk'])} did not finish; rerun the same command to resume")
        summaries.append(json.loads(marker.read_text()))
    return summaries


def write_rejects_csv(out: Path, specs: list[dict[str, Any]]) -> None:
    """Merge the per-chunk reject files into OUT/rejects.csv (streamed, chunk by chunk)."""
    temporary = out / (REJECTS + ".tmp")
    with open(temporary, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["source", "row", "reason", "detail"])
        for spec in specs:
            path = reject_file(out, spec["chunk"])
            if path.exists():
                table = pq.read_table(path)
                writer.writerows(zip(*(table.column(name).to_pylist() for name in ("source", "row", "reason", "detail"))))
    temporary.replace(out / REJECTS)


def build_manifest(
    config: IngestConfig, settings: ChunkSettings, summaries: list[dict[str, Any]], processed: set[int], elapsed: float
) -> dict[str, Any]:
    """Counts per split and label, rejects per reason, and this run's throughput."""
    per_split: dict[str, Counter[str]] = defaultdict(Counter)
    rejected: Counter[str] = Counter()
    total = 0
    for summary in summaries:
        total += summary["total"]
        rejected.update(summary["rejected"])
        for split, counts in summary["accepted"].items():
            per_split[split].update({settings.labels[int(label)]: count for label, count in counts.items()})
    accepted = sum(sum(counts.values()) for counts in per_split.values())
    if accepted + sum(rejected.values()) != total:
        raise RuntimeError(f"count mismatch: {accepted} accepted + {sum(rejected.values())} rejected != {total} inputs")
    images_processed = sum(summary["total"] for summary in summaries if summary["chunk"] in processed)
    return {
        "dataset": config.dataset,
        "task": settings.task,
        "labels": list(settings.labels),
        "image_shape": list(settings.image_shape),
        "color": settings.color,
        "config": config_to_dict(config),
        "inputs": {"total": total, "accepted": accepted, "rejected": sum(rejected.values())},
        "splits": {
            split: {"count": sum(per_split[split].values()), "labels": {label: per_split[split].get(label, 0) for label in settings.labels}}
            for split in SPLITS
        },
        "rejects": dict(rejected.most_common()),
        "chunks": len(summaries),
        "this_run": {
            "chunks_processed": len(processed),
            "images_processed": images_processed,
            "elapsed_s": round(elapsed, 3),
            "images_per_s": round(images_processed / elapsed, 1) if elapsed > 0 and images_processed else 0.0,
        },
        "schema": "see ingest/shards.py: image binary (uint8 HxWxC), label int16, source string, + dataset extras",
    }


def run_ingest(config: IngestConfig, parallelism: int | None = None) -> dict[str, Any]:
    """Ingest one dataset into OUT (resumable). Ray must be initialised. Returns the manifest."""
    out = Path(config.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    prepare_output(config, out)
    settings = chunk_settings(config)
    started = time.perf_counter()
    specs = plan_imdb(config, out) if config.dataset == "imdb" else plan_fer(config)
    pending = [spec for spec in specs if not done_marker(out, spec["chunk"]).exists()]
    if not pending and (out / MANIFEST).exists():
        # A finished ingest: leave every file as it is (the manifest keeps the run that did the work).
        manifest = json.loads((out / MANIFEST).read_text())
        manifest["this_run"] = {"chunks_processed": 0, "images_processed": 0, "elapsed_s": 0.0, "images_per_s": 0.0}
        return manifest
    if pending:
        process_chunks(pending, settings, config.progress, parallelism)
    elapsed = time.perf_counter() - started
    summaries = collect_summaries(out, specs)
    manifest = build_manifest(config, settings, summaries, {spec["chunk"] for spec in pending}, elapsed)
    if pending or not (out / REJECTS).exists():
        write_rejects_csv(out, specs)
    write_json(out / MANIFEST, manifest)
    return manifest


def summary_line(manifest: dict[str, Any]) -> str:
    """One line: accepted/rejected counts per split and the run's throughput."""
    inputs, run = manifest["inputs"], manifest["this_run"]
    splits = " ".join(f"{split}={manifest['splits'][split]['count']}" for split in SPLITS)
    if run["chunks_processed"] == 0:
        action = "already complete, nothing to do"
    else:
        action = f"{run['images_processed']} inputs in {run['elapsed_s']:.1f}s ({run['images_per_s']:.0f} img/s)"
    return (
        f"{manifest['dataset']}: {inputs['accepted']} accepted ({splits}), {inputs['rejected']} rejected "
        f"of {inputs['total']}; {action}"
    )
