"""The resource planners on fake clusters (1, 2, 16 CPUs; 0 and 1 GPU; two nodes; autoscaling)."""

from __future__ import annotations

import pytest

from faceray.resources import (
    ClusterResources,
    NodeResources,
    ResourceError,
    pack,
    plan_analyze,
    plan_ingest,
    plan_serve,
    plan_sweep,
    plan_training,
)

ONE, TWO, SIXTEEN = (ClusterResources.single_node(cpus) for cpus in (1, 2, 16))
TWO_NODES = ClusterResources((NodeResources(1, 0, "head"), NodeResources(1, 0, "worker")))


@pytest.mark.parametrize(
    ("cluster", "workers", "share"),
    [(ONE, 1, 1.0), (TWO, 1, 2.0), (TWO, 2, 1.0), (TWO, 3, 0.65), (SIXTEEN, 4, 4.0), (SIXTEEN, 15, 1.05)],
)
def test_training_shares_the_cluster_between_its_workers(cluster, workers, share):
    plan = plan_training(cluster, workers)  # the workers read their own shards: no CPU is kept for Ray Data
    assert plan.chosen["cpus_per_worker"] == share
    assert workers * share <= cluster.cpus


def test_training_that_cannot_fit_is_refused_with_the_flag_and_numbers():
    with pytest.raises(ResourceError) as caught:
        plan_training(TWO, 5)
    message = str(caught.value)
    assert "--workers 5" in message and "2 CPUs" in message and "--workers 4 or fewer" in message
    with pytest.raises(ResourceError, match="--cpus-per-worker 3"):
        plan_training(TWO, 1, cpus_per_worker=3)
    with pytest.raises(ResourceError, match="--workers 3"):
        plan_training(ONE, 3)


def test_gpus_are_refused_without_gpus_and_counted_with_them():
    with pytest.raises(ResourceError, match="no GPU"):
        plan_training(SIXTEEN, 1, gpus_per_worker=1)
    with pytest.raises(ResourceError, match="needs a GPU per trial worker"):
        plan_sweep(TWO, trials=2, gpus_per_worker=1)
    one_gpu = ClusterResources.single_node(16, gpus=1)
    assert plan_training(one_gpu, 1, gpus_per_worker=1).chosen["gpus_per_worker"] == 1
    with pytest.raises(ResourceError, match="needs 2 GPUs"):
        plan_training(one_gpu, 2, gpus_per_worker=1)
    assert plan_sweep(one_gpu, trials=4, gpus_per_worker=1).chosen["concurrent_trials"] == 1


def test_sweep_runs_trials_side_by_side_and_spreads_out_on_big_clusters():
    side_by_side = plan_sweep(TWO, trials=4, max_concurrent=2)
    assert side_by_side.chosen["concurrent_trials"] == 2 and side_by_side.chosen["cpus_per_trial_worker"] == 1.0
    assert side_by_side.chosen["trial_runs"] == "in the Tune trial"
    assert plan_sweep(TWO, trials=4).chosen["concurrent_trials"] == 2  # auto
    assert plan_sweep(ONE, trials=4).chosen == plan_sweep(ONE, trials=4, max_concurrent=1).chosen
    big = plan_sweep(SIXTEEN, trials=4)
    assert big.chosen["concurrent_trials"] == 4 and big.chosen["cpus_per_trial_worker"] == 4.0
    assert plan_sweep(SIXTEEN, trials=40).chosen["concurrent_trials"] == 16
    ray_train = plan_sweep(SIXTEEN, trials=4, workers=2)
    assert ray_train.chosen["trial_runs"] == "Ray Train" and "data_cpus" not in ray_train.chosen
    assert 4 * 2 * ray_train.chosen["cpus_per_trial_worker"] <= 16


def test_sweep_beyond_the_minimum_share_is_refused():
    with pytest.raises(ResourceError) as caught:
        plan_sweep(TWO, trials=8, max_concurrent=8)
    message = str(caught.value)
    assert "--max-concurrent 8" in message and "2 CPUs" in message and "--max-concurrent 4 or fewer" in message
    with pytest.raises(ResourceError, match="--trial-cpus"):
        plan_sweep(TWO, trials=4, max_concurrent=2, trial_cpus=1.5)


def test_each_bundle_fits_on_one_node_and_plans_use_both_nodes():
    plan = plan_sweep(TWO_NODES, trials=2, max_concurrent=2)
    assert sorted(plan.placement) == [0, 1] and "across 2 nodes" in plan.line()
    assert pack([(1.5, 0.0)], TWO_NODES) is None  # 2 CPUs in all, but no node holds 1.5
    with pytest.raises(ResourceError):
        plan_serve(TWO_NODES, replicas=1, replica_cpus=1.5)


def test_serve_replicas_must_fit():
    assert plan_serve(TWO, replicas=4, replica_cpus=0.5).chosen["replicas"] == 4
    with pytest.raises(ResourceError, match="--replicas 5 with --replica-cpus 0.5 needs 2.5 CPUs"):
        plan_serve(TWO, replicas=5, replica_cpus=0.5)


def test_an_autoscaling_cluster_waits_and_says_for_what():
    growing = ClusterResources(TWO.nodes, autoscaling=True)
    plan = plan_training(growing, 5)
    assert plan.notes and "waits for the autoscaler" in plan.line() and "2.5 CPUs" in plan.line()


def test_ingest_plan_and_the_saved_form():
    plan = plan_ingest(TWO, parallelism=8)
    assert plan.chosen["decode_tasks_at_once"] == 2 and "more than the 2 CPUs" in plan.line()
    saved = plan_training(TWO, 1).to_dict()
    assert saved["requested"]["workers"] == 1 and saved["cluster"] == "2 CPUs, 0 GPUs on 1 node"
    assert saved["chosen"]["cpus_per_worker"] == 2.0


def test_analyze_fills_the_cpus_with_actors_that_read_their_own_inputs():
    plan = plan_analyze(TWO)
    assert plan.chosen == {"actors": 2, "cpus_per_actor": 1.0}
    assert plan_analyze(SIXTEEN).chosen["actors"] == 16
    assert plan_analyze(TWO, actors=1).chosen["actors"] == 1
    spread = plan_analyze(TWO_NODES)
    assert sorted(spread.placement) == [0, 1] and "across 2 nodes" in spread.line()
    with pytest.raises(ResourceError, match="--actors 3 needs 3 CPUs .* use --actors 2 or fewer"):
        plan_analyze(TWO, actors=3)


def test_a_plan_that_fits_but_waits_for_busy_cpus_says_so():
    busy = ClusterResources(TWO.nodes, available_cpus=0.5)
    plan = plan_training(busy, 1)
    assert plan.chosen["cpus_per_worker"] == 2.0 and "only 0.5 of 2 CPUs are free now" in plan.line()
    assert not plan_training(ClusterResources(TWO.nodes, available_cpus=2.0), 1).notes
