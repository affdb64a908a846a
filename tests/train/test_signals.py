"""Stopping `faceray train` with a signal in the middle of an epoch, then resuming with the same command."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def start(command: list[str]) -> subprocess.Popen:
    return subprocess.Popen(
        command,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def test_sigterm_inside_an_epoch_keeps_a_checkpoint_and_the_same_command_resumes(fer_data, tmp_path, ray_session):
    import ray

    out = tmp_path / "run"
    command = [
        sys.executable, "-m", "faceray.cli", "train", "--data", str(fer_data), "--out", str(out), "--epochs", "3",
        "--batch-size", "8", "--augment", "off", "--bn-momentum", "0.9", "--progress-every", "0",
        "--address", ray.get_runtime_context().gcs_address,
    ]  # fmt: skip
    process = start(command)
    lines: list[str] = []
    assert process.stdout is not None
    for line in process.stdout:
        lines.append(line.rstrip())
        if re.match(r"epoch 1/3  step 1/\d+", line):  # the first step is done: stop inside the epoch
            process.send_signal(signal.SIGTERM)
            signalled = time.monotonic()
            break
    else:
        pytest.fail("no progress line:\n" + "\n".join(lines))
    rest, _ = process.communicate(timeout=60)
    seconds = time.monotonic() - signalled
    output = "\n".join(lines) + "\n" + rest
    assert process.returncode == 143, output
    assert seconds < 12, f"stopped {seconds:.1f} s after SIGTERM"
    stopped = re.search(r"stopped at epoch (\d+), step (\d+): run the same command to resume", output)
    assert stopped, output
    assert "Traceback" not in output and "\x1b[" not in output
    epoch, step = int(stopped.group(1)), int(stopped.group(2))
    states = [json.loads(path.read_text()) for path in (out / "ray_results").rglob("state.json")]
    assert any(state["epoch"] == epoch - 1 and state["step"] == step for state in states)

    resumed = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    first = re.search(r"epoch (\d+)/3  step (\d+)/", resumed.stdout)
    assert first and (int(first.group(1)), int(first.group(2))) == (epoch, step + 1), resumed.stdout
    history = (out / "history.csv").read_text().splitlines()
    assert len(history) == 4  # a header and epochs 1..3, the stopped epoch once
