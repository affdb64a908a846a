"""The embedded local Ray: its workers know which Ray is theirs."""

from __future__ import annotations

import os

import pytest


@pytest.mark.slow
def test_workers_are_pinned_to_faceray_s_ray(ray_session):
    """Ray Train's placement-group cleaner and the state API look for "the" local Ray; on a machine running another
    Ray they found two and failed. faceray's workers get this Ray's address as RAY_ADDRESS."""
    import ray

    @ray.remote(num_cpus=0)
    def address_seen_by_a_worker() -> str | None:
        return os.environ.get("RAY_ADDRESS")

    assert ray.get(address_seen_by_a_worker.remote()) == ray.get_runtime_context().gcs_address
    assert "RAY_GCS_SERVER_PORT" not in os.environ  # a Ray started by a child process chooses its own port
