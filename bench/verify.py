"""What verifying an ingest output costs: the full-size IMDB-WIKI output's shards and manifest checked against the
SHA-256s recorded when they were written, against reading it once as training does.

The output is written directly (no ingest run): 382,058 accepted rows of the 460,723-row imdb.mat as measured
from a full-size replica (80/10/10 per chunk of 2,000), 64x64 grey faces from a pool of 20,000 made like that
replica's (`faceray sample`'s drawn faces through JPEG and faceray's preprocessing), zstd with page checksums, each
file's record in manifest.json, exactly as `faceray ingest` writes them. Then, in alternating rounds (the page cache is warm for
both): verify = faceray.shards.check_ingest_output (every file streamed through SHA-256); read once = every shard of
every split through faceray.shards.read_shard_numpy (Parquet decode, labels checked, pixels to numpy), the feed's
path. Target: verify <= 10 % of one read.

    python bench/verify.py [--rows 382058] [--rounds 2] [--out DIR]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

REPOSITORY = Path(__file__).resolve().parents[1]
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != REPOSITORY / "bench"]
sys.path.insert(0, str(REPOSITORY))
from bench.common import machine, print_report  # noqa: E402

CHUNK_ROWS = 2000


def face_pool(count: int, rng: np.random.Generator) -> np.ndarray:
    """`count` uint8 (64, 64) faces as the full-size replica had them: `faceray sample`'s drawn faces at 100..700 px,
    JPEG at quality 70..95, decoded and cut to 64x64 grey by faceray's own preprocessing (so the shards compress as
    that replica's did: 603 MB for 382,058 rows)."""
    from faceray.faces import face_pixels
    from faceray.ingest.sample import draw_face

    faces = np.empty((count, 64, 64), np.uint8)
    for index in range(count):
        side = int(rng.integers(100, 700))
        picture = draw_face(rng, side, int(rng.integers(0, 7)), int(rng.integers(0, 2)))
        encoded = cv2.imencode(".jpg", picture, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(70, 95))])[1]
        decoded = cv2.imdecode(encoded, cv2.IMREAD_COLOR)
        faces[index] = face_pixels(decoded, 64, "gray")[:, :, 0]
    return faces


def write_output(out: Path, rows: int, rng: np.random.Generator) -> tuple[int, int]:
    """Write the shards, rejects-free, and manifest.json with every file's record; returns (files, bytes)."""
    from faceray.faces import IMDB_WIKI_CROP
    from faceray.labels import labels_for_task
    from faceray.shards import BASE_FIELDS, IngestManifest, ShardMetadata, write_shard

    metadata = ShardMetadata((64, 64, 1), "gray", "gender", labels_for_task("gender"), "imdb", IMDB_WIKI_CROP)
    schema = metadata.schema()
    assert [field.name for field in schema] == [field.name for field in BASE_FIELDS]
    pool = face_pool(20_000, rng)
    files, counts = {}, {"train": 0, "val": 0, "test": 0}
    for chunk, start in enumerate(range(0, rows, CHUNK_ROWS)):
        size = min(CHUNK_ROWS, rows - start)
        picks = rng.integers(0, len(pool), size)
        labels = rng.integers(0, 2, size)
        bounds = {
            "train": (0, int(size * 0.8)),
            "val": (int(size * 0.8), int(size * 0.9)),
            "test": (int(size * 0.9), size),
        }
        for split, (first, last) in bounds.items():
            name = f"{split}/part-{chunk:05d}.parquet"
            columns = {
                "image": [pool[pick].tobytes() for pick in picks[first:last]],
                "label": [int(label) for label in labels[first:last]],
                "source": [f"{chunk:02d}/nm{start + row}_rm1_1970-1-1_2000.jpg" for row in range(first, last)],
            }
            files[name] = write_shard(out / name, columns, schema)
            counts[split] += last - first
    IngestManifest(
        dataset="imdb",
        metadata=metadata,
        config={"written by": "bench/verify.py"},
        inputs={"total": 460_723, "accepted": rows, "rejected": 460_723 - rows},
        splits={split: {"count": count, "labels": {}} for split, count in counts.items()},
        rejects={"written by bench/verify.py": 460_723 - rows},
        chunks=len(files) // 3,
        this_run={},
        files=files,
    ).save(out)
    return len(files), sum(record["bytes"] for record in files.values())


def read_once(out: Path) -> int:
    """Every shard of every split through the training feed's reader; the rows read."""
    from faceray.labels import SPLITS
    from faceray.shards import ShardMetadata, read_shard_numpy, shard_files

    total = 0
    for split in SPLITS:
        metadata = ShardMetadata.read(out, split)
        for path in shard_files(out, split):
            images, labels = read_shard_numpy(path, metadata)
            total += len(labels)
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=382_058, help="accepted rows (the full-size IMDB-WIKI output)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", default=None, help="write the output here (default: a temporary folder, removed)")
    arguments = parser.parse_args()
    from faceray.shards import check_ingest_output

    out = Path(arguments.out or tempfile.mkdtemp(prefix="faceray-bench-verify-"))
    started = time.perf_counter()
    count, size = write_output(out, arguments.rows, np.random.default_rng(0))
    written_s = time.perf_counter() - started
    verify_s, read_s = [], []
    try:
        for _ in range(arguments.rounds):
            began = time.perf_counter()
            manifest, problems = check_ingest_output(out)
            verify_s.append(time.perf_counter() - began)
            assert problems == [], problems[:3]
            began = time.perf_counter()
            rows = read_once(out)
            read_s.append(time.perf_counter() - began)
            assert rows == arguments.rows
    finally:
        if arguments.out is None:
            shutil.rmtree(out, ignore_errors=True)
    verify, read = float(np.median(verify_s)), float(np.median(read_s))
    payload = {
        "benchmark": "verify",
        "machine": machine(),
        "rows": arguments.rows,
        "files": count,
        "bytes": size,
        "write_s": round(written_s, 1),
        "verify_s": [round(value, 2) for value in verify_s],
        "read_once_s": [round(value, 2) for value in read_s],
        "verify_mb_per_s": round(size / verify / 1e6, 1),
        "ratio_verify_to_read": round(verify / read, 3),
    }
    rows = [
        ("output", f"{arguments.rows:,} rows, {count} files, {size / 1e6:,.0f} MB (written in {written_s:.0f} s)"),
        (
            "verify (SHA-256 of every file)",
            f"{verify:.2f} s (rounds {', '.join(f'{v:.2f}' for v in verify_s)}), {size / verify / 1e6:,.0f} MB/s",
        ),
        ("read once (the feed's reader)", f"{read:.2f} s (rounds {', '.join(f'{v:.2f}' for v in read_s)})"),
        ("verify / read", f"{verify / read:.3f}  (target <= 0.10)"),
    ]
    print_report("bench/verify", rows, payload)


if __name__ == "__main__":
    main()
