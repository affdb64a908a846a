"""Shared fixtures: tiny sample data in the real formats, real photos, and one Ray instance per session."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    import numpy as np

from faceray.runtime import use_loopback_environment

# Ray must stay on loopback (and TensorFlow off a faulty oneDNN kernel): set before any test starts Ray or TensorFlow.
use_loopback_environment()
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Object storage only on loopback: fake credentials, no instance-metadata lookups (169.254.169.254), and an endpoint
# that goes nowhere until the `s3_server` fixture points it at its server.
os.environ.update(
    AWS_ACCESS_KEY_ID="faceray-test",
    AWS_SECRET_ACCESS_KEY="faceray-test",
    AWS_REGION="us-east-1",
    AWS_EC2_METADATA_DISABLED="true",
    AWS_ENDPOINT_URL="http://127.0.0.1:9",
)

REFERENCE_DIR = Path(__file__).resolve().parents[2] / "shared" / "reference"


@pytest.fixture(scope="session")
def sample_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Sample IMDB-WIKI (160 rows) and FER-2013 (200 rows + malformed ones) in the real layouts."""
    from faceray.ingest.sample import write_sample

    folder = tmp_path_factory.mktemp("sample")
    write_sample(folder, imdb_count=160, fer_count=200, seed=7)
    return folder


@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    """An S3-compatible server (moto) on 127.0.0.1 for the whole session; AWS_ENDPOINT_URL points at it.

    Started before Ray (`ray_session` asks for it): Ray's processes inherit the environment they start with, as a
    user's do when the store's settings are in their shell."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    os.environ["AWS_ENDPOINT_URL"] = endpoint
    yield endpoint
    server.stop()


@pytest.fixture
def bucket(s3_server: str, request: pytest.FixtureRequest) -> str:
    """A new, empty bucket on the test server, as `s3://NAME`."""
    import re
    import uuid

    import boto3

    name = re.sub(r"[^a-z0-9-]", "-", request.node.name.lower())[:40].strip("-") + "-" + uuid.uuid4().hex[:8]
    boto3.client("s3", endpoint_url=s3_server).create_bucket(Bucket=name)
    return f"s3://{name}"


@pytest.fixture(scope="session")
def ray_session(s3_server: str):
    """One local Ray for the whole test session (2 CPUs, loopback), started after the S3 test server."""
    from faceray.runtime import init_ray, shutdown_ray

    init_ray(num_cpus=2)
    yield
    shutdown_ray()


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    """../shared/reference with the paper's published weights; tests using it skip when it is absent."""
    if not (REFERENCE_DIR / "fer2013_mini_XCEPTION.102-0.66.hdf5").is_file():
        pytest.skip("../shared/reference (published weights) not available")
    return REFERENCE_DIR


def is_loopback(address: str) -> bool:
    """127.0.0.0/8, ::1 and IPv4-mapped 127.x (::ffff:127.0.0.1)."""
    import ipaddress

    ip = ipaddress.ip_address(address.split("%")[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def non_loopback_listeners() -> set[tuple[str, str, int]]:
    """(process name, address, port) of every socket listening on something other than loopback that belongs to
    this process or one it started (the test session's Ray: GCS, raylet, workers, Serve's replicas and HAProxy)."""
    import psutil

    me = psutil.Process()
    ours = {me.pid, *(child.pid for child in me.children(recursive=True))}
    found = set()
    for connection in psutil.net_connections(kind="inet"):
        if connection.status == psutil.CONN_LISTEN and connection.pid in ours and not is_loopback(connection.laddr.ip):
            try:
                name = psutil.Process(connection.pid).name()
            except psutil.Error:
                name = "?"
            found.add((name, connection.laddr.ip, connection.laddr.port))
    return found


class ListenerWatch:
    """Samples non_loopback_listeners() in a thread while a block runs (servers that live only during a run,
    such as TensorFlow's collective server in a training worker, are caught too). `found` holds every one seen."""

    def __init__(self, interval_s: float = 0.25) -> None:
        import threading

        self.interval_s = interval_s
        self.found: set[tuple[str, str, int]] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while True:
            self.found |= non_loopback_listeners()
            if self._stop.wait(self.interval_s):
                break

    def __enter__(self) -> ListenerWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.found |= non_loopback_listeners()


@pytest.fixture(scope="session")
def model_dirs(tmp_path_factory) -> dict[str, Path]:
    """Emotion and gender model directories: the published weights when ../shared/reference exists, else tiny
    untrained models with the same cards (the API contract does not depend on the weights)."""
    from faceray.faces import UNRECORDED_CROP
    from faceray.model_card import ModelCard, save_model_dir
    from faceray.train.model_dir import import_legacy_model
    from faceray.train.models import build_model

    folder = tmp_path_factory.mktemp("models")
    if (REFERENCE_DIR / "fer2013_mini_XCEPTION.102-0.66.hdf5").is_file():
        return {
            "emotion": import_legacy_model(
                REFERENCE_DIR / "fer2013_mini_XCEPTION.102-0.66.hdf5", "emotion", folder / "emotion"
            ),
            "gender": import_legacy_model(
                REFERENCE_DIR / "gender_mini_XCEPTION.21-0.95.hdf5", "gender", folder / "gender"
            ),
            "published": True,
        }
    dirs = {}
    for task, classes, shape in (("emotion", 7, (48, 48, 1)), ("gender", 2, (64, 64, 1))):
        model = build_model("residual", shape, classes)
        dirs[task] = save_model_dir(folder / task, model, ModelCard(task, shape, "gray", "residual", UNRECORDED_CROP))
    dirs["published"] = False
    return dirs


@pytest.fixture(scope="session")
def astronaut_bgr() -> np.ndarray:
    """scikit-image's astronaut (a real photo, 512x512): one face, at about x 175-275, y 65-165. BGR order."""
    import cv2
    from skimage import data

    return cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)
