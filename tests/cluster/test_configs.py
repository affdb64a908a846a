"""Every shipped config file loads: ray_cluster.yaml through the launcher's own validation, KubeRay manifests,
the Serve config, the search spaces (tests/train) and ingest/train YAML settings files."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from faceray.config import resolve_config
from faceray.serve.config import ServeConfig

ROOT = Path(__file__).resolve().parents[2]


def test_ray_cluster_yaml_passes_the_launchers_validation():
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = yaml.safe_load((ROOT / "ray_cluster.yaml").read_text())
    prepared = prepare_config(config)
    validate_config(prepared)
    assert prepared["cluster_name"] == "faceray"
    assert any("pip install" in command and "faceray" in command for command in prepared["setup_commands"])
    assert any("RAY_AUTH_MODE=token" in command for command in prepared["head_start_ray_commands"])


@pytest.mark.parametrize(
    "name", ["rayjob-ingest.yaml", "rayjob-train.yaml", "rayjob-sweep.yaml", "rayjob-analyze.yaml"]
)
def test_kuberay_jobs_parse(name):
    import shlex

    from faceray.cli import build_parser

    manifest = yaml.safe_load((ROOT / "cluster" / "k8s" / name).read_text())
    assert manifest["apiVersion"] == "ray.io/v1" and manifest["kind"] == "RayJob"
    stage = name.removeprefix("rayjob-").removesuffix(".yaml")
    assert manifest["spec"]["entrypoint"].startswith(f"faceray {stage} ")
    arguments, extras = build_parser().parse_known_args(shlex.split(manifest["spec"]["entrypoint"])[1:])
    assert not extras and arguments.command == stage
    head = manifest["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]["containers"][0]
    assert {"name": "RAY_AUTH_MODE", "value": "token"} in head["env"]
    assert yaml.safe_load(manifest["spec"]["runtimeEnvYAML"])["working_dir"]


def test_rayservice_points_at_the_app_builder():
    manifest = yaml.safe_load((ROOT / "cluster" / "k8s" / "rayservice.yaml").read_text())
    assert manifest["kind"] == "RayService"
    serve_config = yaml.safe_load(manifest["spec"]["serveConfigV2"])
    [application] = serve_config["applications"]
    assert application["import_path"] == "faceray.serve.app:build_app"
    resolve_config(ServeConfig, application["args"])


def test_serve_config_yaml_builds_the_app(tmp_path):
    """serve/serve_config.yaml: its args resolve to a ServeConfig and the builder accepts them."""
    from faceray.serve.app import build_app

    serve_config = yaml.safe_load((ROOT / "serve" / "serve_config.yaml").read_text())
    assert serve_config["http_options"]["host"] == "127.0.0.1"
    [application] = serve_config["applications"]
    assert application["import_path"] == "faceray.serve.app:build_app"
    config = resolve_config(ServeConfig, application["args"])
    assert config.detector == "blazeface" and config.detect_every == 3
    assert build_app(application["args"]) is not None  # builds the deployment graph without starting it


def test_the_gpu_training_job_asks_kubernetes_for_gpus_and_its_command_parses():
    import shlex

    from faceray.cli import build_parser
    from faceray.train.config import TrainConfig

    manifest = yaml.safe_load((ROOT / "cluster" / "k8s" / "rayjob-train-gpu.yaml").read_text())
    [group] = manifest["spec"]["rayClusterSpec"]["workerGroupSpecs"]
    container = group["template"]["spec"]["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1" and container["image"].endswith("-gpu")
    arguments = build_parser().parse_args(shlex.split(manifest["spec"]["entrypoint"])[1:])
    config = resolve_config(TrainConfig, arguments)
    assert config.gpus_per_worker == 1 and config.precision == "mixed_float16" and config.workers == group["replicas"]
    dockerfile = (ROOT / "cluster" / "k8s" / "Dockerfile").read_text()
    assert "ARG EXTRAS" in dockerfile and "py311-gpu" in dockerfile  # the GPU image variant is documented


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of cluster/k8s/Dockerfile, continuation lines joined and comments dropped."""
    text = (ROOT / "cluster" / "k8s" / "Dockerfile").read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "") for line in lines]


def test_the_dockerfile_installs_every_package_and_serves_mounted_models():
    import json

    instructions = dockerfile_instructions()
    copied = {arguments.split()[-2] for name, arguments in instructions if name == "COPY"}
    packages = {"faceray", "ingest", "train", "serve", "cluster"}
    assert packages <= copied and {"pyproject.toml", "README.md"} & {
        part for name, a in instructions if name == "COPY" for part in a.split()
    }
    assert any(name == "RUN" and "pip install" in arguments for name, arguments in instructions)
    assert ("EXPOSE", "8000") in instructions
    [command] = [json.loads(arguments) for name, arguments in instructions if name == "CMD"]
    from faceray.cli import build_parser

    served = resolve_config(ServeConfig, build_parser().parse_args(command[1:]))
    assert served.host == "0.0.0.0" and served.port == 8000 and served.emotion_model == "/models/emotion"
    environment = " ".join(arguments for name, arguments in instructions if name == "ENV")
    assert "RAY_USAGE_STATS_ENABLED=0" in environment and "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0" in environment


def test_the_image_builds_where_a_docker_daemon_runs():
    import shutil
    import subprocess

    if shutil.which("docker") is None or subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
        pytest.skip("no Docker daemon on this machine")
    built = subprocess.run(
        ["docker", "build", "-f", "cluster/k8s/Dockerfile", "-t", "faceray:test", "."],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert built.returncode == 0, built.stderr[-3000:]
