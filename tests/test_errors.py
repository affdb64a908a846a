"""Root causes on the console: Ray's wrappers unwrapped to what happened, where, and what to do, in one line
without colour codes (faceray.errors, on the exceptions Ray really hands back)."""

from __future__ import annotations

import errno

import pytest

from faceray.errors import explain, root_cause


def ray_task_error(cause: BaseException, function: str = "MapBatches(_process_block)") -> BaseException:
    """A RayTaskError as the driver receives it: colour codes in its name line, the worker's traceback as text."""
    from ray.exceptions import RayTaskError

    traceback = (
        f"\x1b[36mray::{function}()\x1b[39m (pid=123, ip=127.0.0.1)\n"
        'Traceback (most recent call last):\n  File "chunks.py", line 9, in write\n'
        f"{type(cause).__module__}.{type(cause).__name__}: {cause}"
    )
    return RayTaskError(function, traceback, cause).as_instanceof_cause()


def test_a_full_disk_inside_a_ray_data_task_names_the_folder_its_free_space_and_that_a_rerun_resumes(tmp_path):
    from ray.exceptions import UserCodeException

    full = OSError(errno.ENOSPC, "No space left on device")
    wrapped = UserCodeException("user code failed")
    wrapped.__cause__ = full
    line = explain(ray_task_error(wrapped), str(tmp_path / "out"))
    assert line.startswith(f"no space left on the device of {tmp_path / 'out'} (") and "MB free in" in line
    assert "running the same command again resumes" in line
    assert "\x1b" not in line and "RayTaskError" not in line and "ray::" not in line


def test_the_cause_survives_as_text_only_and_is_still_found():
    """Pickling between processes drops `__cause__`: the innermost exception line of the traceback is read."""
    from ray.exceptions import RayTaskError

    text = (
        "\x1b[36mray::MapBatches(_process_block)()\x1b[39m (pid=1)\nTraceback (most recent call last):\n"
        "ray.exceptions.UserCodeException: user code failed\n\nThe above exception was the direct cause:\n"
        "OSError: [Errno 13] Permission denied: '/data/out/train/part-00001.parquet'"
    )
    error = RayTaskError("MapBatches", text, RuntimeError("opaque")).as_instanceof_cause()
    error.cause = None
    cause = root_cause(error)
    assert (cause.name, cause.errno, cause.filename) == ("OSError", 13, "/data/out/train/part-00001.parquet")
    assert explain(error).startswith("permission denied on /data/out/train/part-00001.parquet: give a folder")


def test_a_worker_group_failure_gives_the_worker_s_cause():
    from ray.train.v2.api.exceptions import WorkerGroupError

    from faceray.shards import FormatError

    damaged = FormatError("/d/train/part-00003.parquet: label 12 at row 4 is not a class of this data; rerun --repair")
    error = WorkerGroupError("Training failed due to worker errors", {1: RuntimeError("other"), 0: damaged})
    assert explain(error) == f"a damaged file: {damaged}"


@pytest.mark.parametrize(
    ("cause", "words"),
    [
        (
            RuntimeError("HAProxy failed to start: cannot bind socket 127.0.0.1:8000: Address already in use"),
            "port 8000",
        ),
        (MemoryError("Task was killed due to the node running low on memory (memory monitor)"), "out of memory"),
        (OSError("Parquet magic bytes not found in footer"), "a damaged file"),
    ],
)
def test_each_known_cause_says_what_to_do(cause, words):
    line = explain(ray_task_error(cause, "HAProxyManager.ready"))
    assert words in line and "ray::" not in line and "\x1b" not in line


def test_an_unknown_cause_is_its_own_first_line():
    assert explain(ray_task_error(ValueError("bad value\nmore"))) == "ValueError: bad value"


def test_a_real_out_of_memory_kill_is_said_as_such():
    """Ray's own memory monitor, set to act at 1 % of the node's memory in a Ray of its own, kills a task's worker:
    the OutOfMemoryError that reaches the driver is explained as out of memory with what to do."""
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent(
        """
        import os, time
        os.environ["RAY_memory_usage_threshold"] = "0.01"
        os.environ["RAY_memory_monitor_refresh_ms"] = "100"
        from faceray.runtime import init_ray, shutdown_ray
        import ray
        init_ray(None, num_cpus=1, dashboard=False)

        @ray.remote(max_retries=0)
        def hold():
            block = bytearray(64 << 20)
            time.sleep(30)
            return len(block)

        try:
            ray.get(hold.remote(), timeout=60)
        except Exception as error:
            from faceray.errors import explain
            print("EXPLAINED:", explain(error))
        shutdown_ray()
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180)
    line = next((line for line in result.stdout.splitlines() if line.startswith("EXPLAINED:")), "")
    assert line.startswith("EXPLAINED: out of memory: Ray's memory monitor stopped a worker"), (
        result.stdout + result.stderr
    )
    assert "--batch-size" in line and "\x1b[" not in line and "RayTaskError" not in line
