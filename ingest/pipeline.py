"""The Ray Data wrapper of ingest: plan chunks, process pending ones in parallel, write the manifest.

Layout of OUT:
  OUT/<split>/part-NNNNN.parquet   shards (format in faceray/shards.py)
  OUT/manifest.json                resolved config, counts per split and label, rejects per reason, throughput
  OUT/rejects.csv                  every rejected input: source,row,reason,detail
  OUT/_work/                       plan, per-chunk rejects and done-markers (what resuming reads)
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
import time
from collections import Counter, defaultdict
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from faceray.config import ConfigError, config_to_dict, location, write_json
from faceray.console import terminal_stderr
from faceray.ingest.chunks import (
    WORK_DIR,
    ChunkSettings,
    chunk_name,
    done_marker,
    finished_chunks,
    process_chunk,
    reject_file,
)
from faceray.ingest.config import IngestConfig
from faceray.ingest.sources import ChunkSpec, SourceInputs, get_source
from faceray.labels import SPLITS
from faceray.shards import MANIFEST_FILE, REJECTS_FILE, IngestManifest, check_ingest_output
from faceray.storage import Location, read_in_order


def chunk_settings(config: IngestConfig, out: Location) -> ChunkSettings:
    source = get_source(config.dataset)
    inputs = SourceInputs(size=config.image_size, color=config.color, settings=source.inputs(config))
    return ChunkSettings(dataset=source.name, out=out, inputs=inputs)


def plan_fingerprint(config: IngestConfig) -> str:
    return hashlib.sha256(json.dumps(config.plan_fields(), sort_keys=True, default=str).encode()).hexdigest()[:16]


def prepare_output(config: IngestConfig, out: Location) -> None:
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
        for name in (*SPLITS, WORK_DIR):
            (out / name).delete_tree()
        for name in (MANIFEST_FILE, REJECTS_FILE):
            (out / name).delete()
    write_json(plan_path, {"fingerprint": fingerprint, "settings": config.plan_fields()})


def _process_block(rows: pa.Table, specs: dict[int, ChunkSpec], settings: ChunkSettings) -> pa.Table:
    """Ray Data UDF: one block = one chunk (column `chunk` names it, beside its metadata rows when the source
    planned with a table) -> its summary as JSON.

    Blocks stay Arrow on the way in and out: with no-op tasks, 20 pandas batches took 0.15-0.3 s longer than 20
    Arrow ones on 2 cores.
    """
    chunk_id = int(rows.column("chunk")[0].as_py())
    metadata = rows.drop_columns(["chunk"]) if rows.num_columns > 1 else None
    summary = process_chunk(specs[chunk_id], metadata, settings)
    return pa.table({"chunk": [chunk_id], "summary": [json.dumps(summary)]})


def process_chunks(
    pending: list[ChunkSpec],
    settings: ChunkSettings,
    progress: bool,
    parallelism: int | None = None,
    metadata: pa.Table | None = None,
) -> None:
    """Run the pending chunks through Ray Data (one block and one task per chunk, streaming), with a progress
    bar in images. A block carries its chunk's rows of `metadata` when the source planned with a table."""
    import ray
    from tqdm import tqdm

    context = ray.data.DataContext.get_current()
    saved = (context.enable_progress_bars, context.print_on_execution_start, context.op_resource_reservation_enabled)
    context.enable_progress_bars = False  # one bar in images instead of Ray's operator bars
    context.print_on_execution_start = False
    # One operator, nothing downstream to reserve CPUs for. With reservation on, a 2-CPU machine ran one task for
    # the first second and left ~0.2 s idle between tasks (measured: 8 half-second tasks took 3.2 s, not 2.2 s).
    context.op_resource_reservation_enabled = False
    try:
        if metadata is not None:
            blocks = [
                metadata.slice(spec.first_row, spec.rows).append_column("chunk", pa.array([spec.chunk] * spec.rows))
                for spec in pending
            ]
        else:
            blocks = [pa.table({"chunk": pa.array([spec.chunk], pa.int64())}) for spec in pending]
        source = ray.data.from_arrow(blocks)
        dataset = source.map_batches(
            _process_block,
            batch_size=None,  # the whole block: one chunk
            batch_format="pyarrow",
            fn_kwargs={"specs": {spec.chunk: spec for spec in pending}, "settings": settings},
            num_cpus=1,
            compute=ray.data.TaskPoolStrategy(size=parallelism) if parallelism else None,
        )
        total = sum(spec.rows for spec in pending)
        with tqdm(
            total=total,
            unit="img",
            disable=not progress,
            desc=f"ingest {settings.dataset}",
            dynamic_ncols=True,
            file=terminal_stderr(),
        ) as bar:
            for row in dataset.iter_rows():
                bar.update(json.loads(row["summary"])["total"])
    finally:
        context.enable_progress_bars, context.print_on_execution_start, context.op_resource_reservation_enabled = saved


def collect_summaries(out: Location, specs: list[ChunkSpec]) -> list[dict[str, Any]]:
    """Every chunk's summary, from its done-marker (read many at a time from object storage)."""
    summaries = []
    for spec, data in zip(specs, read_in_order(done_marker(out, spec.chunk) for spec in specs)):
        if isinstance(data, FileNotFoundError):
            raise RuntimeError(f"chunk {chunk_name(spec.chunk)} did not finish; rerun the same command to resume")
        if isinstance(data, OSError):
            raise data
        summaries.append(json.loads(data))
    return summaries


def write_rejects_csv(out: Location, specs: list[ChunkSpec]) -> None:
    """Merge the per-chunk reject files into OUT/rejects.csv (chunk by chunk, written whole)."""
    present = {location.name for location in (out / WORK_DIR / "rejects").files(".parquet")}
    files = [reject_file(out, spec.chunk) for spec in specs]
    with (out / REJECTS_FILE).writer() as handle:
        text = io.TextIOWrapper(handle, newline="", encoding="utf-8")
        writer = csv.writer(text)
        writer.writerow(["source", "row", "reason", "detail"])
        for data in read_in_order(file for file in files if file.name in present):
            if isinstance(data, OSError):
                raise data
            table = pq.read_table(pa.BufferReader(data))
            writer.writerows(zip(*(table.column(name).to_pylist() for name in ("source", "row", "reason", "detail"))))
        text.flush()
        text.detach()  # the file's own writer closes it: the file is complete only then


def label_name(labels: tuple[str, ...], label: int) -> str:
    return labels[label] if label >= 0 else "unknown"


def build_manifest(
    config: IngestConfig, settings: ChunkSettings, summaries: list[dict[str, Any]], processed: set[int], elapsed: float
) -> IngestManifest:
    """Counts per split and label, rejects per reason, and this run's throughput."""
    metadata = settings.metadata
    per_split: dict[str, Counter[str]] = defaultdict(Counter)
    rejected: Counter[str] = Counter()
    total = 0
    for summary in summaries:
        total += summary["total"]
        rejected.update(summary["rejected"])
        for split, counts in summary["accepted"].items():
            per_split[split].update({label_name(metadata.labels, int(label)): count for label, count in counts.items()})
    accepted = sum(sum(counts.values()) for counts in per_split.values())
    if accepted + sum(rejected.values()) != total:
        raise RuntimeError(f"count mismatch: {accepted} accepted + {sum(rejected.values())} rejected != {total} inputs")
    images_processed = sum(summary["total"] for summary in summaries if summary["chunk"] in processed)
    # Every file's record, from the chunks' markers (None when a chunk was written before faceray recorded them).
    files = (
        None
        if any("files" not in summary for summary in summaries)
        else {name: record for summary in summaries for name, record in summary["files"].items()}
    )
    return IngestManifest(
        dataset=config.dataset,
        metadata=metadata,
        config=config_to_dict(config),
        inputs={"total": total, "accepted": accepted, "rejected": sum(rejected.values())},
        splits={
            split: {
                "count": sum(per_split[split].values()),
                "labels": {
                    label: per_split[split].get(label, 0)
                    for label in (*metadata.labels, *(["unknown"] if per_split[split].get("unknown") else []))
                },
            }
            for split in SPLITS
        },
        rejects=dict(rejected.most_common()),
        chunks=len(summaries),
        this_run={
            "chunks_processed": len(processed),
            "images_processed": images_processed,
            "elapsed_s": round(elapsed, 3),
            "images_per_s": round(images_processed / elapsed, 1) if elapsed > 0 and images_processed else 0.0,
        },
        files=files,
    )


def run_ingest(config: IngestConfig, parallelism: int | None = None, log: Any = None) -> IngestManifest:
    """Ingest one dataset into OUT (resumable). Ray must be initialised. Returns the manifest (with the resource
    plan); `log` gets the plan's line."""
    from faceray.resources import plan_ingest
    from faceray.runtime import read_cluster

    plan = plan_ingest(read_cluster(), parallelism or 0)
    if log is not None:
        log(plan.line())
    out = location(config.out, "--out", output=True)
    out.make_dir()
    prepare_output(config, out)
    settings = chunk_settings(config, out)
    started = time.perf_counter()
    specs, metadata = get_source(config.dataset).plan(config)
    if config.repair:
        unmark_damaged_chunks(out, specs, log)
    finished = finished_chunks(out, [spec.chunk for spec in specs])
    pending = [spec for spec in specs if spec.chunk not in finished]
    if not pending and (out / MANIFEST_FILE).exists():
        # A finished ingest: leave every file as it is (the manifest keeps the run that did the work).
        idle = {"chunks_processed": 0, "images_processed": 0, "elapsed_s": 0.0, "images_per_s": 0.0}
        return dataclasses.replace(IngestManifest.read(out), this_run=idle)
    if pending:
        process_chunks(pending, settings, config.progress, parallelism, metadata)
    elapsed = time.perf_counter() - started
    summaries = collect_summaries(out, specs)
    manifest = build_manifest(config, settings, summaries, {spec.chunk for spec in pending}, elapsed)
    manifest = dataclasses.replace(manifest, resource_plan=plan.to_dict())
    if pending or not (out / REJECTS_FILE).exists():
        write_rejects_csv(out, specs)
    manifest.save(out)
    return manifest


def unmark_damaged_chunks(out: Location, specs: list[ChunkSpec], log: Any = None) -> set[int]:
    """--repair: check the output against its manifest; drop the done-marker of every chunk whose files are damaged
    or missing (the resume then redoes exactly those) and move shards the ingest did not write to
    OUT/_work/removed/. Returns the chunks unmarked."""
    if not (out / MANIFEST_FILE).exists():
        return set()  # not finished yet: the resume itself redoes what is unfinished
    manifest, problems = check_ingest_output(out)
    if manifest.files is None:
        raise ConfigError(
            f"--repair: {out} recorded no checksums (made before faceray did): use --overwrite to redo it"
        )
    chunk_of = {
        (out / name).uri: summary["chunk"]
        for summary in collect_summaries(out, specs)
        for name in summary.get("files", {})
    }
    damaged = set()
    for problem in problems:
        if problem.path in chunk_of:
            damaged.add(chunk_of[problem.path])
        else:  # a stray shard: kept aside, never deleted
            stray = Location.of(problem.path)
            (out / WORK_DIR / "removed" / f"{stray.parent.name}-{stray.name}").write_bytes(stray.read_bytes())
            stray.delete()
        if log is not None:
            log(f"repair: {problem.path}: {problem.what}")
    for chunk in sorted(damaged):
        done_marker(out, chunk).delete()
    if log is not None:
        log(f"repair: {len(problems)} damaged or foreign files; {len(damaged)} chunks to redo")
    return damaged


def summary_line(manifest: IngestManifest) -> str:
    """One line: accepted/rejected counts per split and the run's throughput."""
    inputs, run = manifest.inputs, manifest.this_run
    splits = " ".join(f"{split}={manifest.splits[split]['count']}" for split in SPLITS)
    if run["chunks_processed"] == 0:
        action = "already complete, nothing to do"
    else:
        action = f"{run['images_processed']} inputs in {run['elapsed_s']:.1f}s ({run['images_per_s']:.0f} img/s)"
    return (
        f"{manifest.dataset}: {inputs['accepted']} accepted ({splits}), {inputs['rejected']} rejected "
        f"of {inputs['total']}; {action}"
    )
