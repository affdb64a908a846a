from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


@pytest.fixture(scope="session")
def fer_data(tmp_path_factory, ray_session) -> Path:
    """FER-2013 sample (640 drawn faces, 48x48 grey) ingested into shards: about 510 train / 65 val / 65 test."""
    from faceray.config import resolve_config
    from faceray.ingest.config import IngestConfig
    from faceray.ingest.pipeline import run_ingest
    from faceray.ingest.sample import write_fer_sample

    folder = tmp_path_factory.mktemp("fer_train")
    write_fer_sample(folder / "fer2013.csv", 640, np.random.default_rng(11))
    out = folder / "fer48"
    run_ingest(
        resolve_config(IngestConfig, dict(dataset="fer", csv=str(folder / "fer2013.csv"), out=str(out), progress=False))
    )
    return out
