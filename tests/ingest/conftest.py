"""The IMDB-WIKI sample ingested once for the session (tests that change it work on a copy)."""

from __future__ import annotations

from pathlib import Path

import pytest

from faceray.config import resolve_config
from faceray.ingest.config import IngestConfig

LISTENERS: dict[str, set] = {}


def imdb_config(sample_dir: Path, out: Path, **overrides) -> IngestConfig:
    settings = dict(dataset="imdb", root=str(sample_dir / "imdb_crop"), out=str(out), shard_rows=40, progress=False)
    settings.update(overrides)
    return resolve_config(IngestConfig, settings)


@pytest.fixture(scope="session")
def imdb_out(sample_dir, ray_session, tmp_path_factory) -> Path:
    """The sample's IMDB-WIKI ingest (its listeners recorded in LISTENERS["ingest"]); read-only for tests."""
    from faceray.ingest.pipeline import run_ingest
    from tests.conftest import ListenerWatch

    out = tmp_path_factory.mktemp("imdb_out")
    with ListenerWatch() as watch:
        run_ingest(imdb_config(sample_dir, out))
    LISTENERS["ingest"] = watch.found
    return out
