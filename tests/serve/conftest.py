from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from faceray.runtime import free_loopback_port as free_port

# The test service's limits: a request timeout a held stream can outlive several times over in a test, an idle close
# a test can wait for, and a stream cap it can reach.
SERVICE_LIMITS = {"request_timeout_s": 1.5, "stream_idle_s": 2.5, "max_streams": 8}


def jpeg(image: np.ndarray) -> bytes:
    ok, encoded = cv2.imencode(".jpg", image)
    assert ok
    return encoded.tobytes()


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
