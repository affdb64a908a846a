"""`serve run serve/serve_config.yaml`, Ray Serve's own CLI, deploys the app from the shipped config file."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
import yaml

from tests.serve.conftest import free_port, jpeg

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def test_serve_run_with_the_shipped_config(ray_session, model_dirs, astronaut_bgr, tmp_path):
    import ray

    config = yaml.safe_load((ROOT / "serve" / "serve_config.yaml").read_text())
    port = free_port()
    config["http_options"]["port"] = port
    config["applications"][0]["args"].update(
        emotion_model=str(model_dirs["emotion"]), gender_model=str(model_dirs["gender"])
    )
    path = tmp_path / "serve_config.yaml"
    path.write_text(yaml.safe_dump(config))
    serve_command = Path(sys.executable).with_name("serve")
    address = ray.get_runtime_context().gcs_address  # the test session's Ray (loopback)
    process = subprocess.Popen(
        [str(serve_command), "run", "--address", address, str(path)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "RAY_ADDRESS": address},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and process.poll() is None:
            try:
                if requests.get(url + "/healthz", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                time.sleep(1)
        response = requests.post(
            url + "/v1/faces", data=jpeg(astronaut_bgr), headers={"Content-Type": "image/jpeg"}, timeout=60
        )
        assert response.status_code == 200 and len(response.json()["faces"]) == 1
    finally:
        process.send_signal(signal.SIGINT)
        try:
            output, _ = process.communicate(timeout=90)
        except subprocess.TimeoutExpired:
            process.kill()
            output, _ = process.communicate()
        from ray import serve

        serve.shutdown()
    assert process.returncode is not None, output[-2000:]
