from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from faceray.runtime import free_loopback_port as free_port

# The test service's limits: a request timeout a held stream can outlive several times over in a test, an idle close
# a test can wait for, and a stream cap it can reach.
SERVICE_LIMITS = {"request_timeout_s": 1.5, "stream_idle_s": 2.5, "max_streams": 8}


@pytest.fixture(scope="session")
def astronaut_bgr() -> np.ndarray:
    """scikit-image's astronaut (a real photo, 512x512): one face, at about x 175-275, y 65-165. BGR order."""
    from skimage import data

    return cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)


def jpeg(image: np.ndarray) -> bytes:
    ok, encoded = cv2.imencode(".jpg", image)
    assert ok
    return encoded.tobytes()


@pytest.fixture(scope="session")
def model_dirs(tmp_path_factory) -> dict[str, Path]:
    """Emotion and gender model directories: the published weights when ../shared/reference exists, else tiny
    untrained models with the same cards (the API contract does not depend on the weights)."""
    from faceray.faces import UNRECORDED_CROP
    from faceray.model_card import ModelCard, save_model_dir
    from faceray.train.model_dir import import_legacy_model
    from faceray.train.models import build_model
    from tests.conftest import REFERENCE_DIR

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
def stored_model_dirs(s3_server, model_dirs) -> dict[str, str]:
    """The same model directories in a bucket of the S3 test server (127.0.0.1), as s3:// URIs."""
    import uuid

    import boto3

    from faceray.storage import Location, upload_folder

    bucket = f"faceray-models-{uuid.uuid4().hex[:8]}"
    boto3.client("s3", endpoint_url=s3_server).create_bucket(Bucket=bucket)
    stored = {}
    for task in ("emotion", "gender"):
        stored[task] = f"s3://{bucket}/{task}"
        upload_folder(Path(model_dirs[task]), Location.of(stored[task]))
    return stored


@pytest.fixture(scope="module")
def service(ray_session, stored_model_dirs):
    """The Serve app on a free loopback port, serving the model directories from object storage (the S3 test
    server: the replicas read the cards and ONNX exports from the bucket), shut down after the module. Tests compare
    its answers with the in-process analyzer on the local directories. Its limits are small so that tests can pass
    them in seconds (SERVICE_LIMITS)."""
    from faceray.config import resolve_config
    from faceray.serve.config import ServeConfig
    from faceray.serve.service import start_service, stop_service

    config = resolve_config(
        ServeConfig,
        dict(
            emotion_model=stored_model_dirs["emotion"],
            gender_model=stored_model_dirs["gender"],
            port=free_port(),
            max_body_bytes=3_000_000,
            **SERVICE_LIMITS,
        ),
    )
    url = start_service(config)
    yield url
    stop_service()
