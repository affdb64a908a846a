"""Resource plans: a stage's request against the cluster it runs on, decided before anything starts.

Pure Python (no Ray): `faceray.runtime.read_cluster()` turns a live Ray into `ClusterResources`; the planners
here turn a request (workers, concurrent trials, replicas, GPUs) into CPU shares that fit, or refuse it with a
message that names the flag and the numbers. Every plan is printed in one line and saved with the run.

Rules, on purpose:
- a train worker, a sweep trial's worker and a Serve replica get at least `MIN_SHARE` (0.5) CPU: below that a
  TensorFlow process (~1 GB, its own thread pools) trains or answers slower than fewer processes would;
- every training process (a Ray Train worker, a sweep trial) reads its own shards in a thread (train.feed), so no
  CPU is kept back for Ray Data read tasks: the plan's CPUs are all the training's (no read task can starve, the
  2-core hang in ../shared/RAY_NOTES.md);
- each bundle (one worker, one trial, one replica) must fit on one node: shares are packed onto the nodes
  first-fit, largest first, so a plan on two 1-CPU nodes uses both;
- a cluster that autoscales is not refused: the plan says it will wait, and for how many CPUs/GPUs.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from faceray.config import ConfigError

MIN_SHARE = 0.5
SHARE_STEP = 0.05


class ResourceError(ConfigError):
    """A request that this cluster can never hold; the message names the flag and the numbers."""


@dataclass(frozen=True)
class NodeResources:
    """One live node: its CPUs and GPUs (Ray's logical resources)."""

    cpus: float
    gpus: float = 0.0
    name: str = ""


@dataclass(frozen=True)
class ClusterResources:
    """The nodes a plan may use; `autoscaling` clusters can grow, so a request beyond them waits instead."""

    nodes: tuple[NodeResources, ...]
    autoscaling: bool = False
    available_cpus: float | None = None  # free right now (other jobs may hold the rest); None = unknown

    @classmethod
    def single_node(cls, cpus: float, gpus: float = 0.0) -> ClusterResources:
        return cls((NodeResources(cpus, gpus, "local"),))

    @property
    def cpus(self) -> float:
        return sum(node.cpus for node in self.nodes)

    @property
    def gpus(self) -> float:
        return sum(node.gpus for node in self.nodes)

    def describe(self) -> str:
        """E.g. '2 CPUs, 0 GPUs on 1 node' or '4 CPUs, 1 GPU on 2 nodes (1+3 CPUs), autoscaling'."""
        text = (
            f"{_number(self.cpus)} CPU{_plural(self.cpus)}, {_number(self.gpus)} GPU{_plural(self.gpus)} on "
            f"{len(self.nodes)} node{_plural(len(self.nodes))}"
        )
        if len(self.nodes) > 1:
            text += " (" + "+".join(_number(node.cpus) for node in self.nodes) + " CPUs)"
        return text + (", autoscaling" if self.autoscaling else "")


@dataclass(frozen=True)
class ResourcePlan:
    """What a stage asked for, what the cluster has and what was chosen; `line()` is printed, `to_dict()` saved."""

    stage: str
    requested: dict[str, Any]
    cluster: str
    chosen: dict[str, Any]
    placement: tuple[int, ...] = ()
    notes: tuple[str, ...] = field(default_factory=tuple)

    def line(self) -> str:
        chosen = ", ".join(
            f"{key} {_number(value) if isinstance(value, float) else value}" for key, value in self.chosen.items()
        )
        nodes = len(set(self.placement))
        spread = f" across {nodes} nodes" if nodes > 1 else ""
        notes = "".join(f"; {note}" for note in self.notes)
        return f"resources: {self.stage}: {chosen}{spread} (cluster: {self.cluster}){notes}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def pack(
    bundles: list[tuple[float, float]], cluster: ClusterResources, reserve_cpus: float = 0.0
) -> tuple[int, ...] | None:
    """Place (cpus, gpus) bundles on nodes, first fit, largest bundle first; `reserve_cpus` comes off the largest
    node. Returns the node index of each bundle (in the given order), or None when they do not all fit."""
    free = [[node.cpus, node.gpus] for node in cluster.nodes]
    if free and reserve_cpus:
        largest = max(range(len(free)), key=lambda index: free[index][0])
        free[largest][0] -= reserve_cpus
    placement = [-1] * len(bundles)
    for index in sorted(range(len(bundles)), key=lambda index: (-bundles[index][1], -bundles[index][0])):
        cpus, gpus = bundles[index]
        for node, (node_cpus, node_gpus) in enumerate(free):
            if cpus <= node_cpus + 1e-9 and gpus <= node_gpus + 1e-9:
                free[node][0] -= cpus
                free[node][1] -= gpus
                placement[index] = node
                break
        else:
            return None
    return tuple(placement)


def _largest_share(
    count: int, gpus: float, cluster: ClusterResources, ceiling: float
) -> tuple[float, tuple[int, ...]] | None:
    """The largest CPU share (<= ceiling, >= MIN_SHARE, a multiple of SHARE_STEP) for which `count` bundles fit."""
    share = math.floor(min(ceiling, max((node.cpus for node in cluster.nodes), default=0)) / SHARE_STEP) * SHARE_STEP
    while share >= MIN_SHARE - 1e-9:
        placement = pack([(round(share, 2), gpus)] * count, cluster)
        if placement is not None:
            return round(share, 2), placement
        share -= SHARE_STEP
    return None


def plan_training(
    cluster: ClusterResources, workers: int, cpus_per_worker: float | None = None, gpus_per_worker: float = 0.0
) -> ResourcePlan:
    """`faceray train`: CPUs per Ray Train worker (`cpus_per_worker` None = the cluster's CPUs shared between them)."""
    requested = {
        "workers": workers,
        "cpus_per_worker": "auto" if cpus_per_worker is None else cpus_per_worker,
        "gpus_per_worker": gpus_per_worker,
    }
    _check_gpus(cluster, "--gpus-per-worker", gpus_per_worker, workers, "worker")
    if cpus_per_worker is not None:
        placement = pack([(cpus_per_worker, gpus_per_worker)] * workers, cluster)
        if placement is None:
            return _refuse_or_wait(
                "train",
                requested,
                cluster,
                f"--workers {workers} with --cpus-per-worker {_number(cpus_per_worker)} needs "
                f"{_number(workers * cpus_per_worker)} CPUs, each worker on one node; this cluster has "
                f"{cluster.describe()}",
                workers * cpus_per_worker,
                {"workers": workers, "cpus_per_worker": cpus_per_worker, "gpus_per_worker": gpus_per_worker},
            )
        share = cpus_per_worker
    else:
        fitted = _largest_share(workers, gpus_per_worker, cluster, ceiling=max(cluster.cpus / workers, 0))
        if fitted is None:
            return _refuse_or_wait(
                "train",
                requested,
                cluster,
                f"--workers {workers} needs {_number(workers * MIN_SHARE)} CPUs "
                f"({_number(MIN_SHARE)} per worker at the least); this cluster has {cluster.describe()}: use --workers "
                f"{max(1, int(cluster.cpus / MIN_SHARE))} or fewer",
                workers * MIN_SHARE,
                {"workers": workers, "cpus_per_worker": MIN_SHARE, "gpus_per_worker": gpus_per_worker},
            )
        share, placement = fitted
    chosen = {"workers": workers, "cpus_per_worker": share, "gpus_per_worker": gpus_per_worker}
    return ResourcePlan("train", requested, cluster.describe(), chosen, placement, _busy(cluster, workers * share))


def plan_sweep(
    cluster: ClusterResources,
    trials: int,
    max_concurrent: int | None = None,
    workers: int = 1,
    trial_cpus: float | None = None,
    gpus_per_worker: float = 0.0,
) -> ResourcePlan:
    """`faceray sweep`: trials at once and CPUs per trial worker.

    `max_concurrent` None = as many trials as fit at one CPU per worker (at least one, at most `trials`); `trial_cpus`
    0 = the cluster split evenly between the concurrent trials. A trial with one worker trains inside the Tune
    trial (no Ray Data tasks); with more it runs Ray Train, which keeps CPUs for Ray Data.
    """
    requested = {
        "trials": trials,
        "max_concurrent": "auto" if max_concurrent is None else max_concurrent,
        "workers_per_trial": workers,
        "trial_cpus": "auto" if trial_cpus is None else trial_cpus,
        "gpus_per_worker": gpus_per_worker,
    }
    _check_gpus(cluster, "--gpus-per-worker", gpus_per_worker, workers, "trial worker")
    usable = cluster.cpus
    if max_concurrent is None:
        concurrent = max(1, min(trials, int(usable // workers)))
        if gpus_per_worker > 0 and cluster.gpus > 0:
            concurrent = max(1, min(concurrent, int(cluster.gpus // (workers * gpus_per_worker))))
    else:
        concurrent = min(max_concurrent, trials)
    count = concurrent * workers
    if trial_cpus is not None:
        placement = pack([(trial_cpus, gpus_per_worker)] * count, cluster)
        fitted = (trial_cpus, placement) if placement is not None else None
        need = f"{concurrent} trials x {workers} worker{_plural(workers)} x {_number(trial_cpus)} CPU (--trial-cpus)"
    else:
        fitted = _largest_share(count, gpus_per_worker, cluster, ceiling=max(usable / count, 0))
        need = f"{concurrent} trials x {workers} worker{_plural(workers)} x {_number(MIN_SHARE)} CPU at the least"
    if fitted is None:
        per_bundle = trial_cpus or MIN_SHARE
        fits = max(1, int(usable // (per_bundle * workers)))
        flag = f"--max-concurrent {max_concurrent}" if max_concurrent else f"{trials} trials"
        return _refuse_or_wait(
            "sweep",
            requested,
            cluster,
            f"{flag} needs {need} = {_number(count * per_bundle)} CPUs; this cluster has {cluster.describe()}: use "
            f"--max-concurrent {fits} or fewer",
            count * per_bundle,
            {"concurrent_trials": concurrent, "cpus_per_trial_worker": per_bundle, "workers_per_trial": workers},
        )
    share, placement = fitted
    chosen = {
        "concurrent_trials": concurrent,
        "workers_per_trial": workers,
        "cpus_per_trial_worker": share,
        "gpus_per_worker": gpus_per_worker,
        "trial_runs": "in the Tune trial" if workers == 1 else "Ray Train",
    }
    return ResourcePlan("sweep", requested, cluster.describe(), chosen, placement, _busy(cluster, count * share))


def plan_serve(cluster: ClusterResources, replicas: int, replica_cpus: float) -> ResourcePlan:
    """`faceray serve`: every replica's CPUs must fit on some node (Serve would otherwise wait for them forever)."""
    requested = {"replicas": replicas, "replica_cpus": replica_cpus}
    placement = pack([(replica_cpus, 0.0)] * replicas, cluster)
    if placement is None:
        fits = max(0, int(cluster.cpus // replica_cpus))
        return _refuse_or_wait(
            "serve",
            requested,
            cluster,
            f"--replicas {replicas} with --replica-cpus {_number(replica_cpus)} needs "
            f"{_number(replicas * replica_cpus)} CPUs; this cluster has {cluster.describe()}: use --replicas {fits} or fewer, "
            "or a smaller --replica-cpus",
            replicas * replica_cpus,
            dict(requested),
        )
    return ResourcePlan(
        "serve", requested, cluster.describe(), dict(requested), placement, _busy(cluster, replicas * replica_cpus)
    )


def plan_ingest(cluster: ClusterResources, parallelism: int = 0) -> ResourcePlan:
    """`faceray ingest`: one CPU per decode task, as many at once as `parallelism` (0 = one per CPU)."""
    slots = int(cluster.cpus)
    if slots < 1:
        raise ResourceError(f"ingest needs 1 CPU per decode task; this cluster has {cluster.describe()}")
    concurrent = min(parallelism, slots) if parallelism > 0 else slots
    notes = (
        (f"--parallelism {parallelism} is more than the {slots} CPUs: {slots} tasks run at once",)
        if parallelism > slots
        else ()
    )
    return ResourcePlan(
        "ingest",
        {"parallelism": parallelism or "auto"},
        cluster.describe(),
        {"decode_tasks_at_once": concurrent, "cpus_per_task": 1},
        notes=notes,
    )


ANALYZE_ACTOR_CPUS = 1.0  # an analyzer actor: one ONNX Runtime and one LiteRT thread; it decodes its own frames


def plan_analyze(cluster: ClusterResources, actors: int = 0) -> ResourcePlan:
    """`faceray analyze`: an actor pool of FaceAnalyzers, ANALYZE_ACTOR_CPUS each (0 = one per CPU). The actors read
    and decode their inputs themselves: there are no read tasks to leave CPUs for."""
    count = actors if actors > 0 else max(1, int(cluster.cpus))
    placement = pack([(ANALYZE_ACTOR_CPUS, 0.0)] * count, cluster)
    requested = {"actors": actors or "auto"}
    if placement is None:
        fits = max(0, int(cluster.cpus // ANALYZE_ACTOR_CPUS))
        return _refuse_or_wait(
            "analyze",
            requested,
            cluster,
            f"--actors {count} needs {_number(count * ANALYZE_ACTOR_CPUS)} CPUs ({_number(ANALYZE_ACTOR_CPUS)} per "
            f"actor); this cluster has {cluster.describe()}: use --actors {fits} or fewer",
            count * ANALYZE_ACTOR_CPUS,
            {"actors": count, "cpus_per_actor": ANALYZE_ACTOR_CPUS},
        )
    return ResourcePlan(
        "analyze",
        requested,
        cluster.describe(),
        {"actors": count, "cpus_per_actor": ANALYZE_ACTOR_CPUS},
        placement,
        _busy(cluster, count * ANALYZE_ACTOR_CPUS),
    )


def _busy(cluster: ClusterResources, cpus_needed: float) -> tuple[str, ...]:
    """A note when other work holds CPUs this plan needs: it fits the cluster, so it waits for them."""
    if cluster.available_cpus is None or cpus_needed <= cluster.available_cpus + 1e-9:
        return ()
    return (
        f"only {_number(cluster.available_cpus)} of {_number(cluster.cpus)} CPUs are free now (other work holds the "
        f"rest): this waits for {_number(cpus_needed)}",
    )


def _check_gpus(cluster: ClusterResources, flag: str, gpus_per_bundle: float, bundles: int, what: str) -> None:
    if gpus_per_bundle <= 0 or cluster.autoscaling:
        return
    needed = gpus_per_bundle * bundles
    if cluster.gpus <= 0:
        raise ResourceError(
            f"{flag} {_number(gpus_per_bundle)} needs a GPU per {what}; this cluster has no GPU "
            f"({cluster.describe()}): drop {flag} to train on CPUs"
        )
    if needed > cluster.gpus:
        raise ResourceError(
            f"{flag} {_number(gpus_per_bundle)} x {bundles} {what}s needs {_number(needed)} GPUs; this "
            f"cluster has {cluster.describe()}"
        )


def _refuse_or_wait(
    stage: str,
    requested: dict[str, Any],
    cluster: ClusterResources,
    message: str,
    cpus_needed: float,
    chosen: dict[str, Any],
) -> ResourcePlan:
    if not cluster.autoscaling:
        raise ResourceError(message)
    note = f"waits for the autoscaler: needs {_number(cpus_needed)} CPUs, has {_number(cluster.cpus)}"
    return ResourcePlan(stage, requested, cluster.describe(), chosen, notes=(note,))


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.2f}".rstrip("0")


def _plural(value: float) -> str:
    return "" if value == 1 else "s"
