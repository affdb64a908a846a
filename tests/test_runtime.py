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


def test_ray_s_pushed_errors_go_to_stderr_so_a_quiet_console_logs_them(ray_session, capfd):
    """Ray prints errors pushed to the driver (a service's stop: "(raylet) Task ServeController.graceful_shutdown
    failed…") on stdout whatever log_to_driver says; faceray sends them to stderr, the run log while quiet."""
    import ray._private.worker as ray_worker

    from faceray.runtime import send_ray_errors_to_stderr

    send_ray_errors_to_stderr()
    send_ray_errors_to_stderr()  # once is enough: a second call wraps nothing twice
    ray_worker.print_to_stdstream({"lines": ["Task X failed."], "pid": "raylet", "is_err": False}, False)
    captured = capfd.readouterr()
    assert "Task X failed." in captured.err and "Task X failed." not in captured.out
