"""A real two-node Ray cluster on loopback: submit ingest through the job API, check the job and its shards."""

from __future__ import annotations

import json
import sys

import pytest

from faceray.runtime import free_loopback_port as free_port
from cluster.jobs import entrypoint, is_local_address, list_jobs, submit

pytestmark = pytest.mark.slow


def test_entrypoint_quotes_arguments_and_checks_the_stage():
    assert entrypoint("ingest", ["fer", "--csv", "a b.csv"], "/venv/bin/python") == \
        "/venv/bin/python -m faceray.cli ingest fer --csv 'a b.csv'"
    with pytest.raises(ValueError, match="unknown stage"):
        entrypoint("rm", [], "python")
    assert is_local_address("http://127.0.0.1:8265") and not is_local_address("http://192.0.2.10:8265")


def test_submit_ingest_to_a_two_node_cluster(sample_dir, tmp_path, monkeypatch):
    from ray.cluster_utils import Cluster

    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)  # restored afterwards: job_client sets it for the client
    port = free_port()
    # Each node's dashboard agent gets its own free port: both run on this machine, and another Ray here
    # (the test session's) may hold the default one.
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": True, "dashboard_port": port,
                                                            "dashboard_agent_listen_port": free_port()})
    try:
        cluster.add_node(num_cpus=1, dashboard_agent_listen_port=free_port())
        cluster.wait_for_nodes()
        address = f"http://127.0.0.1:{port}"
        out = tmp_path / "fer"
        logs = tmp_path / "logs.txt"
        with open(logs, "w") as handle:
            job_id, status = submit(address, "ingest", ["fer", "--csv", str(sample_dir / "fer2013.csv"), "--out", str(out),
                                                        "--shard-rows", "50", "--no-progress"], python=sys.executable, out=handle)
        assert status == "SUCCEEDED", logs.read_text()[-3000:]
        manifest = json.loads((out / "manifest.json").read_text())
        assert manifest["inputs"]["total"] == 206 and manifest["inputs"]["rejected"] == 6
        assert list((out / "train").glob("*.parquet"))
        assert "accepted" in logs.read_text()
        jobs = list_jobs(address)
        assert any(job["job_id"] == job_id and job["status"] == "SUCCEEDED" for job in jobs)
    finally:
        cluster.shutdown()
