"""Shared fixtures: tiny sample data in the real formats, real photos, and one Ray instance per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from faceray.runtime import use_loopback_environment

# Ray must stay on loopback (and TensorFlow off a faulty oneDNN kernel): set before any test starts Ray or TensorFlow.
use_loopback_environment()
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REFERENCE_DIR = Path(__file__).resolve().parents[2] / "shared" / "reference"


@pytest.fixture(scope="session")
def sample_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Sample IMDB-WIKI (160 rows) and FER-2013 (200 rows + malformed ones) in the real layouts."""
    from ingest.sample import write_sample

    folder = tmp_path_factory.mktemp("sample")
    write_sample(folder, imdb_count=160, fer_count=200, seed=7)
    return folder


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray for the whole test session (2 CPUs, loopback)."""
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
