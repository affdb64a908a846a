"""A real two-node Ray cluster on loopback: submit ingest through the job API, check the job and its shards; submit
analyze with the README's command line, its actors on both nodes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from faceray.cluster.jobs import entrypoint, is_local_address, list_jobs, submit
from faceray.runtime import free_loopback_port as free_port

pytestmark = pytest.mark.slow


def test_entrypoint_quotes_arguments_and_checks_the_stage():
    assert (
        entrypoint("ingest", ["fer", "--csv", "a b.csv"], "/venv/bin/python")
        == "/venv/bin/python -m faceray.cli ingest fer --csv 'a b.csv'"
    )
    with pytest.raises(ValueError, match="unknown stage"):
        entrypoint("rm", [], "python")
    assert is_local_address("http://127.0.0.1:8265") and not is_local_address("http://192.0.2.10:8265")


def readme_cluster_line() -> str:
    """The README's cluster recipe, exactly as written there."""
    import re

    text = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    found = re.search(r"`(faceray submit analyze [^`]*--address http://HEAD:8265)`", text)
    assert found, "the README's cluster recipe is not `faceray submit analyze … --address http://HEAD:8265`"
    return found.group(1)


def test_submit_ingest_to_a_two_node_cluster(sample_dir, tmp_path, monkeypatch, model_dirs, astronaut_bgr):
    import shlex

    import cv2
    from ray.cluster_utils import Cluster

    from faceray.serve.client import write_test_video
    from tests.serve.test_analyzer import moving_face_frames

    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)  # restored afterwards: job_client sets it for the client
    # The README's analyze finds the paper's models in the models cache: the cluster's processes (started from this
    # one) see this one.
    cache = tmp_path / "models-cache"
    cache.mkdir()
    for task in ("emotion", "gender"):
        (cache / f"{task}-paper").symlink_to(Path(model_dirs[task]).resolve())
    monkeypatch.setenv("FACERAY_MODELS", str(cache))
    port = free_port()
    # Each node's dashboard agent gets its own free port: both run on this machine, and another Ray here
    # (the test session's) may hold the default one.
    cluster = Cluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": 1,
            "include_dashboard": True,
            "dashboard_port": port,
            "dashboard_agent_listen_port": free_port(),
        },
    )
    try:
        # Its own runtime_env folder, as a second machine would have: sharing the head's on one machine, its agent
        # removed and unpacked the job's working_dir again while the job's driver imported from it (seen in 3 of 3
        # full-suite runs: FileNotFoundError for faceray/resources.py, "Removing …_ray_pkg_…" in its setup log).
        cluster.add_node(
            num_cpus=1, dashboard_agent_listen_port=free_port(), runtime_env_dir_name="runtime_resources_node2"
        )
        cluster.wait_for_nodes()
        address = f"http://127.0.0.1:{port}"
        out = tmp_path / "fer"
        logs = tmp_path / "logs.txt"
        with open(logs, "w") as handle:
            job_id, status = submit(
                address,
                "ingest",
                [
                    "fer",
                    "--csv",
                    str(sample_dir / "fer2013.csv"),
                    "--out",
                    str(out),
                    "--shard-rows",
                    "50",
                    "--no-progress",
                ],
                python=sys.executable,
                out=handle,
            )
        assert status == "SUCCEEDED", logs.read_text()[-3000:]
        manifest = json.loads((out / "manifest.json").read_text())
        assert manifest["inputs"]["total"] == 206 and manifest["inputs"]["rejected"] == 6
        assert list((out / "train").glob("*.parquet"))
        assert "accepted" in logs.read_text()
        jobs = list_jobs(address)
        assert any(job["job_id"] == job_id and job["status"] == "SUCCEEDED" for job in jobs)
        assert manifest["resource_plan"]["cluster"].startswith("2 CPUs, 0 GPUs on 2 nodes")
        # The resource planner, run against this live cluster from a client, places work on both nodes.
        environment = {
            **{name: value for name, value in os.environ.items() if not name.startswith("RAY_ADDRESS")},
            "RAY_AUTH_MODE": "token",
        }
        probe = subprocess.run(
            [sys.executable, "-c", PLAN_PROBE, cluster.address],
            env=environment,
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert probe.returncode == 0, probe.stderr[-3000:]
        planned = json.loads(probe.stdout.strip().splitlines()[-1])
        assert planned["nodes"] == 2 and planned["sweep_nodes"] == [0, 1] and "across 2 nodes" in planned["line"]

        # The README's cluster line, word for word (--address last), with this head for HEAD:8265 and local folders
        # for /shared: `faceray submit` reads its own --address there, and the job's actors run on both nodes.
        recordings = tmp_path / "recordings"
        recordings.mkdir()
        write_test_video(recordings / "walk.mp4", moving_face_frames(astronaut_bgr, 120, step=3), fps=10.0)
        for index in range(20):
            cv2.imwrite(str(recordings / f"photo_{index:02d}.jpg"), astronaut_bgr)
        line = (
            readme_cluster_line()
            .replace("http://HEAD:8265", address)
            .replace("/shared/recordings", str(recordings))
            .replace("/shared/analysis", str(tmp_path / "analysis"))
        )
        words = shlex.split(line)
        command = [str(Path(sys.executable).with_name(words[0])), *words[1:]]
        submitted = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=300)
        assert submitted.returncode == 0, (submitted.stdout + submitted.stderr)[-3000:]
        analysis = json.loads((tmp_path / "analysis" / "manifest.json").read_text())
        assert analysis["counts"]["frames"] == 140 and analysis["counts"]["rejected"] == 0
        by_node = analysis["this_run"]["frames_by_node"]
        assert len(by_node) == 2 and sum(by_node.values()) == 140, by_node
        assert "across 2 nodes" in submitted.stdout + submitted.stderr
    finally:
        cluster.shutdown()


PLAN_PROBE = """
import json, sys
from faceray.runtime import read_cluster, use_loopback_environment
use_loopback_environment()
import ray
ray.init(address=sys.argv[1], logging_level="ERROR")
from faceray.resources import plan_sweep
cluster = read_cluster()
sweep = plan_sweep(cluster, trials=2, max_concurrent=2)
print(json.dumps({"nodes": len(cluster.nodes), "sweep_nodes": sorted(sweep.placement), "line": sweep.line()}))
"""


def faceray_jobs_list(address: str, environment: dict[str, str]) -> subprocess.CompletedProcess:
    base = {name: value for name, value in os.environ.items() if not name.startswith("RAY_AUTH")}
    command = [str(Path(sys.executable).with_name("faceray")), "jobs", "list", "--address", address]
    return subprocess.run(command, env={**base, **environment}, capture_output=True, text=True, timeout=180)


TOKEN_HEAD = """
import os, sys
os.environ["RAY_AUTH_MODE"] = "token"  # set before Ray is imported: this head enforces tokens
from faceray.runtime import free_loopback_port, use_loopback_environment
use_loopback_environment()
from ray.cluster_utils import Cluster
port = free_loopback_port()
cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": True, "dashboard_port": port,
                                                        "dashboard_agent_listen_port": free_loopback_port()})
print(port, flush=True)
sys.stdin.read()  # until the test closes stdin
cluster.shutdown()
"""


def test_every_way_of_giving_the_token_works_and_a_bad_one_is_refused_clearly(tmp_path):
    """Against a loopback head with token auth (in its own process: Ray reads the auth mode once per process):
    RAY_AUTH_TOKEN (without RAY_AUTH_MODE), RAY_AUTH_TOKEN_PATH and ~/.ray/auth_token are accepted; a wrong or
    missing token and an absent cluster get one clear line, no traceback."""
    head = subprocess.Popen(
        [sys.executable, "-c", TOKEN_HEAD],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={name: value for name, value in os.environ.items() if not name.startswith("RAY_AUTH")},
    )
    try:
        address = f"http://127.0.0.1:{int(head.stdout.readline())}"
        token = (Path.home() / ".ray" / "auth_token").read_text().strip()
        token_file = tmp_path / "token"
        token_file.write_text(token)
        for environment in ({"RAY_AUTH_TOKEN": token}, {"RAY_AUTH_TOKEN_PATH": str(token_file)}, {}):
            result = faceray_jobs_list(address, environment)
            assert result.returncode == 0, (environment.keys(), result.stderr[-2000:])
        empty_home = tmp_path / "home"
        empty_home.mkdir()
        refusals = {
            "wrong": ({"RAY_AUTH_TOKEN": "0" * 32}, "Invalid authentication token"),
            "missing": ({"RAY_AUTH_TOKEN_PATH": str(tmp_path / "absent"), "HOME": str(empty_home)}, "cannot be opened"),
        }
        for name, (environment, words) in refusals.items():
            result = faceray_jobs_list(address, environment)
            assert result.returncode == 2, (name, result.stderr[-2000:])
            assert "refused the token" in result.stderr and words in result.stderr, (name, result.stderr[-2000:])
            assert "Traceback" not in result.stderr, name
    finally:
        head.stdin.close()
        head.wait(timeout=120)
    absent = faceray_jobs_list(f"http://127.0.0.1:{free_port()}", {})
    assert absent.returncode == 2 and "no Ray cluster answers" in absent.stderr and "Traceback" not in absent.stderr


def test_submit_reads_its_own_flags_after_the_stage_and_refuses_them_twice(monkeypatch):
    """The README's form, `faceray submit STAGE ... --address URL`: the address is submit's (before, it went to the
    stage and the job went to the default http://127.0.0.1:8265); given before and after the stage, it is refused."""
    import faceray.cluster.jobs as jobs
    from faceray.cli import main

    calls = []
    monkeypatch.setattr(jobs, "submit", lambda *args, **kwargs: calls.append(args) or ("job", "SUCCEEDED"))
    line = "submit ingest fer --csv data/fer2013.csv --out data/fer48 --address http://127.0.0.1:8266 --job-id j1"
    assert main(line.split()) == 0
    address, stage, arguments, *_, job_id = calls[0]
    assert (address, stage, job_id) == ("http://127.0.0.1:8266", "ingest", "j1")
    assert arguments == ["fer", "--csv", "data/fer2013.csv", "--out", "data/fer48"]
    with pytest.raises(SystemExit) as exited:
        main(["submit", "--address", "http://a:8265", "train", "--data", "d", "--address=http://b:8265"])
    assert exited.value.code == 2 and len(calls) == 1
