"""`faceray submit` and `faceray jobs`: run stages as Ray Jobs on a cluster through the job submission API.

Token authentication stays on: the client sends the token from ~/.ray/auth_token (or RAY_AUTH_TOKEN /
RAY_AUTH_TOKEN_PATH) with RAY_AUTH_MODE=token.
"""

from __future__ import annotations

import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from faceray.console import terminal_stderr

PROJECT_ROOT = Path(__file__).resolve().parents[1]
STAGES = ("sample", "ingest", "inspect", "train", "evaluate", "sweep", "analyze", "import-model", "demo")
UPLOAD_EXCLUDES = [
    ".venv",
    ".git",
    "runs",
    "data",
    "*.parquet",
    "*.hdf5",
    "*.keras",
    "*.mp4",
    "__pycache__",
    "*.egg-info",
    # Tool caches and test outputs: .mypy_cache alone is ~56 MB after `make lint`, which made every job's upload and
    # unpack on each node take that much longer.
    ".mypy_cache",
    ".ruff_cache",
    ".pytest_cache",
    "test-artefacts",
    ".typecheck",
    "site",
]
TERMINAL = {"SUCCEEDED", "FAILED", "STOPPED"}


class ClusterAccessError(RuntimeError):
    """The cluster's job API cannot be used: unreachable, or the token is missing or wrong. Says which and how to fix."""


def job_client(address: str) -> Any:
    """A JobSubmissionClient for http://HEAD:8265 that sends the cluster's token.

    Any of Ray's ways of giving the token works: RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token. Ray's
    client sends none of them unless RAY_AUTH_MODE=token, so that is set here unless the user set a mode.
    """
    os.environ.setdefault("RAY_AUTH_MODE", "token")
    from ray.exceptions import AuthenticationError
    from ray.job_submission import JobSubmissionClient

    try:
        return JobSubmissionClient(address)
    except AuthenticationError as problem:
        given = next((name for name in ("RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH") if os.environ.get(name)), "")
        reason = (str(problem.message).strip().splitlines() or ["no reason given"])[0]
        raise ClusterAccessError(
            f"the cluster at {address} refused the token ({reason}); "
            + (
                f"check {given}"
                if given
                else "give the cluster's token in RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token"
            )
        ) from None
    except ConnectionError as problem:
        raise ClusterAccessError(
            f"no Ray cluster answers at {address} ({problem.__class__.__name__}): start one "
            "(ray start --head) or pass --address http://HEAD:8265"
        ) from None


def is_local_address(address: str) -> bool:
    return (urlparse(address).hostname or "") in ("127.0.0.1", "localhost", "::1")


def entrypoint(stage: str, arguments: list[str], python: str) -> str:
    """The job's command line: faceray's module entry point under the chosen interpreter."""
    if stage not in STAGES:
        import difflib

        close = difflib.get_close_matches(stage, STAGES, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise ValueError(f"unknown stage {stage!r}{hint}: expected one of {', '.join(STAGES)}")
    return " ".join(shlex.quote(part) for part in [python, "-m", "faceray.cli", stage, *arguments])


def runtime_env(with_requirements: bool) -> dict[str, Any]:
    """working_dir = this project (data and environments excluded); optionally its pip requirements."""
    environment: dict[str, Any] = {
        "working_dir": str(PROJECT_ROOT),
        "excludes": UPLOAD_EXCLUDES,
        "env_vars": {"RAY_USAGE_STATS_ENABLED": "0"},
    }
    if with_requirements:
        import tomllib

        project = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]
        environment["pip"] = list(project["dependencies"])
    return environment


def submit(
    address: str,
    stage: str,
    arguments: list[str],
    python: str = "auto",
    follow: bool = True,
    with_requirements: bool = False,
    submission_id: str | None = None,
    out=sys.stdout,
) -> tuple[str, str]:
    """Submit a stage as a Ray Job; with `follow`, stream its logs until it ends. Returns (job id, status)."""
    interpreter = (
        sys.executable if python == "auto" and is_local_address(address) else ("python" if python == "auto" else python)
    )
    command = entrypoint(stage, arguments, interpreter)  # an unknown stage is refused before connecting
    client = job_client(address)
    deadline = time.monotonic() + 60
    while True:
        try:
            job_id = client.submit_job(
                entrypoint=command, runtime_env=runtime_env(with_requirements), submission_id=submission_id
            )
            break
        except RuntimeError as problem:
            # A freshly started head answers this until its job agent is up.
            if "No available agent" not in str(problem) or time.monotonic() > deadline:
                raise
            time.sleep(1.0)
    print(f"submitted {job_id}: faceray {stage} {' '.join(arguments)}", file=terminal_stderr())
    if not follow:
        return job_id, str(client.get_job_status(job_id))
    return job_id, follow_job(client, job_id, out)


def follow_job(client: Any, job_id: str, out=sys.stdout, poll_s: float = 1.0) -> str:
    """Print new log text until the job ends; returns its final status name."""
    shown = 0
    while True:
        status = str(getattr(client.get_job_status(job_id), "value", client.get_job_status(job_id)))
        logs = client.get_job_logs(job_id)
        if len(logs) > shown:
            out.write(logs[shown:])
            out.flush()
            shown = len(logs)
        if status in TERMINAL:
            return status
        time.sleep(poll_s)


def list_jobs(address: str) -> list[dict[str, Any]]:
    return [
        {
            "job_id": job.submission_id or job.job_id,
            "status": str(getattr(job.status, "value", job.status)),
            "entrypoint": job.entrypoint,
        }
        for job in job_client(address).list_jobs()
    ]


def job_logs(address: str, job_id: str) -> str:
    return job_client(address).get_job_logs(job_id)


def stop_job(address: str, job_id: str) -> bool:
    return bool(job_client(address).stop_job(job_id))
