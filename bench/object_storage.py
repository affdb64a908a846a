"""Object storage (issue 17): the same ingest and model loading from a local folder and from a bucket of an
S3-compatible server on 127.0.0.1 (moto's server, in its own process), measured alternately in one run.

Ingest of IMDB-WIKI-style crops reads one object per image; FER-2013 reads one CSV in ranged reads. The bucket's
numbers are moto's (a Python server on this machine, sharing its cores), not a cloud store's: read them as the cost
of faceray's object-storage path against the local one on the same data, and against what the server gives a bare
read loop, not as S3 throughput. A second pass goes through a loopback proxy that delays every request by
--latency-ms (a cloud store's round trip), where reading objects one at a time is what limits an ingest.

    python bench/object_storage.py [--imdb 2000] [--fer 4000] [--rounds 2] [--latency-ms 20]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[1]
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != REPOSITORY / "bench"]
sys.path.insert(0, str(REPOSITORY))
from bench.common import machine, print_report  # noqa: E402


def start_server() -> tuple[subprocess.Popen, str]:
    """moto's S3 server on a free loopback port, in a process of its own."""
    import requests

    from faceray.runtime import free_loopback_port

    port = free_loopback_port()
    moto = shutil.which("moto_server") or str(Path(sys.executable).parent / "moto_server")
    server = subprocess.Popen(
        [moto, "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    endpoint = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            requests.get(endpoint, timeout=1)
            return server, endpoint
        except requests.ConnectionError:
            time.sleep(0.1)
    server.kill()
    raise RuntimeError("moto_server did not start")


def start_latency_proxy(target_port: int, latency_s: float) -> str:
    """A TCP proxy on a free loopback port, in a thread, that holds each request a client sends (its first piece,
    after the connection was quiet for 5 ms) for `latency_s` before passing it on to 127.0.0.1:`target_port`;
    the rest of a request and the answers pass straight through."""
    import asyncio
    import threading

    from faceray.runtime import free_loopback_port

    port = free_loopback_port()
    ready = threading.Event()

    async def pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
        loop = asyncio.get_running_loop()
        last = 0.0
        try:
            while data := await reader.read(1 << 16):
                if delay and loop.time() - last > 0.005:  # a new request (not the next piece of one): one delay
                    await asyncio.sleep(delay)
                last = loop.time()
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def handle(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        server_reader, server_writer = await asyncio.open_connection("127.0.0.1", target_port)
        await asyncio.gather(pump(client_reader, server_writer, latency_s), pump(server_reader, client_writer, 0.0))

    async def serve() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", port)
        ready.set()
        async with server:
            await server.serve_forever()

    threading.Thread(target=lambda: asyncio.run(serve()), daemon=True).start()
    ready.wait(10)
    return f"http://127.0.0.1:{port}"


def ingest_rate(dataset: str, inputs: str, out: str) -> tuple[float, int]:
    """(inputs per second, inputs) of one `run_ingest` into a fresh `out`, on the running Ray."""
    from faceray.config import resolve_config
    from faceray.ingest.config import IngestConfig
    from faceray.ingest.pipeline import run_ingest

    paths = {"root": f"{inputs}/imdb_crop"} if dataset == "imdb" else {"csv": f"{inputs}/fer2013.csv"}
    config = resolve_config(IngestConfig, dict(dataset=dataset, out=out, progress=False, shard_rows=500, **paths))
    started = time.perf_counter()
    manifest = run_ingest(config)
    return manifest.inputs["total"] / (time.perf_counter() - started), manifest.inputs["total"]


def server_read_rate(folder: str, limit: int) -> dict[int, float]:
    """Objects per second the server gives a bare read loop over the first `limit` JPEGs under `folder` (pyarrow, no
    decoding), one at a time and 16 at a time: the ceiling a bucket ingest of IMDB-WIKI crops can reach here."""
    import pyarrow.fs as pafs

    from faceray.storage import Location, read_in_order

    root = Location.of(folder)
    selector = pafs.FileSelector(root.path, recursive=True)
    files = [
        Location(root.filesystem, info.path, info.path)
        for info in root.filesystem.get_file_info(selector)
        if info.path.endswith(".jpg")
    ][:limit]
    rates = {}
    for threads in (1, 16):
        started = time.perf_counter()
        for _ in read_in_order(files, threads) if threads > 1 else (file.read_bytes() for file in files):
            pass
        rates[threads] = len(files) / (time.perf_counter() - started)
    return rates


def load_seconds(model_dir: str) -> float:
    from faceray.serve.classify import FaceClassifier

    started = time.perf_counter()
    FaceClassifier(model_dir)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--imdb", type=int, default=2000)
    parser.add_argument("--fer", type=int, default=4000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--latency-ms", type=float, default=20.0, help="delay per request in the second pass")
    arguments = parser.parse_args()

    from faceray.runtime import init_ray, shutdown_ray, use_loopback_environment

    use_loopback_environment()
    server, endpoint = start_server()
    os.environ.update(
        AWS_ENDPOINT_URL=endpoint,
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench",
        AWS_REGION="us-east-1",
        AWS_EC2_METADATA_DISABLED="true",
    )
    work = Path(tempfile.mkdtemp(prefix="faceray-bench-storage-"))
    try:
        import boto3
        import numpy as np

        from faceray.faces import UNRECORDED_CROP
        from faceray.ingest.sample import write_sample
        from faceray.model_card import ModelCard, save_model_dir
        from faceray.storage import Location, upload_folder
        from faceray.train.models import build_model

        bucket = f"bench-{uuid.uuid4().hex[:8]}"
        boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=bucket)
        write_sample(work / "raw", imdb_count=arguments.imdb, fer_count=arguments.fer, seed=0)
        started = time.perf_counter()
        upload_folder(work / "raw", Location.of(f"s3://{bucket}/raw"))
        upload_s = time.perf_counter() - started
        model = build_model("residual", (64, 64, 1), 2)
        save_model_dir(work / "model", model, ModelCard("gender", (64, 64, 1), "gray", "residual", UNRECORDED_CROP))
        from faceray.exports import export_model

        export_model(work / "model")
        upload_folder(work / "model", Location.of(f"s3://{bucket}/model"))

        init_ray(num_cpus=os.cpu_count(), dashboard=False)
        proxy = start_latency_proxy(int(endpoint.rsplit(":", 1)[1]), arguments.latency_ms / 1000)
        passes = {"direct": endpoint, f"latency {arguments.latency_ms:g} ms": proxy}
        keys = ("imdb_local", "fer_local", *(f"{dataset} {name}" for name in passes for dataset in ("imdb", "fer")))
        rates: dict[str, list[float]] = {key: [] for key in keys}
        loads: dict[str, list[float]] = {"local": [], "s3": []}
        server_rates: dict[str, dict[int, float]] = {}
        counts = {}
        for dataset in ("imdb", "fer"):  # warm-up (first Ray tasks, page cache), not measured
            ingest_rate(dataset, str(work / "raw"), str(work / f"warm-up-{dataset}"))
        for index in range(arguments.rounds):
            for dataset in ("imdb", "fer"):
                rate, counts[dataset] = ingest_rate(dataset, str(work / "raw"), str(work / f"out-{dataset}-{index}"))
                rates[f"{dataset}_local"].append(rate)
                for name, address in passes.items():
                    os.environ["AWS_ENDPOINT_URL"] = address  # resolved here; the tasks get it with the paths
                    out = f"s3://{bucket}/out-{dataset}-{index}-{name.split()[0]}"
                    rate, _ = ingest_rate(dataset, f"s3://{bucket}/raw", out)
                    rates[f"{dataset} {name}"].append(rate)
                    os.environ["AWS_ENDPOINT_URL"] = endpoint
            loads["local"].append(load_seconds(str(work / "model")))
            loads["s3"].append(load_seconds(f"s3://{bucket}/model"))
        for name, address in passes.items():
            os.environ["AWS_ENDPOINT_URL"] = address
            server_rates[name] = server_read_rate(f"s3://{bucket}/raw/imdb_crop", 300)
        os.environ["AWS_ENDPOINT_URL"] = endpoint
        shutdown_ray()
    finally:
        server.terminate()
        server.wait(10)
        shutil.rmtree(work, ignore_errors=True)

    median = {key: float(np.median(values)) for key, values in rates.items()}
    load_median = {key: float(np.median(values)) for key, values in loads.items()}
    payload = {
        "benchmark": "object_storage",
        "machine": machine(),
        "server": "moto (S3 API) on 127.0.0.1, own process; the latency pass through a loopback proxy",
        "inputs": counts,
        "rounds": arguments.rounds,
        "latency_ms": arguments.latency_ms,
        "upload_raw_s": round(upload_s, 2),
        "ingest_inputs_per_s": {key: [round(value, 1) for value in values] for key, values in rates.items()},
        "ratio_bucket_to_local": {
            key: round(median[key] / median[f"{key.split()[0]}_local"], 3) for key in rates if " " in key
        },
        "server_objects_per_s": {
            name: {f"{threads}_at_a_time": round(rate, 1) for threads, rate in by_threads.items()}
            for name, by_threads in server_rates.items()
        },
        "ratio_imdb_ingest_to_server_limit": {
            name: round(median[f"imdb {name}"] / max(by_threads.values()), 3)
            for name, by_threads in server_rates.items()
        },
        "classifier_load_s": {key: [round(value, 3) for value in values] for key, values in loads.items()},
    }
    rows = [
        ("inputs", f"IMDB-WIKI {counts['imdb']} JPEG files, FER-2013 {counts['fer']} CSV rows"),
        ("ingest, local folder", f"imdb {median['imdb_local']:.0f}/s, fer {median['fer_local']:.0f}/s"),
    ]
    for name, by_threads in server_rates.items():
        rows += [
            (
                f"ingest, bucket ({name})",
                f"imdb {median[f'imdb {name}']:.0f}/s ({payload['ratio_bucket_to_local'][f'imdb {name}']:.2f}x local), "
                f"fer {median[f'fer {name}']:.0f}/s ({payload['ratio_bucket_to_local'][f'fer {name}']:.2f}x local)",
            ),
            (
                f"server read loop ({name})",
                f"{by_threads[1]:.0f} objects/s one at a time, {by_threads[16]:.0f} 16 at a time; the imdb ingest "
                f"reaches {payload['ratio_imdb_ingest_to_server_limit'][name]:.2f}x of the better",
            ),
        ]
    rows += [
        ("classifier load", f"local {load_median['local']:.3f} s, bucket {load_median['s3']:.3f} s (export)"),
        ("upload of the raw sample", f"{upload_s:.1f} s (16 at a time)"),
    ]
    print_report("bench/object_storage (moto on 127.0.0.1: not a cloud store's speed)", rows, payload)


if __name__ == "__main__":
    main()
