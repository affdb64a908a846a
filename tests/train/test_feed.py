"""The training feed (train.feed) on real shards: an order fixed by (seed, epoch), equal steps on every worker, each
example once per epoch, a resumed epoch that continues with the same batches, bounded prefetching."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from faceray.shards import load_split_numpy
from faceray.train.feed import FeedPlan, prefetched, worker_batches


def rows_of(batches) -> list[bytes]:
    """Each example of `batches` by its pixels (the sample's faces are distinct)."""
    return [image.tobytes() for images, _ in batches for image in images]


@pytest.fixture(scope="module")
def plan(fer_data) -> FeedPlan:
    return FeedPlan.read(fer_data, ["train"])


def test_an_epoch_is_fixed_by_its_seed_and_differs_between_epochs(plan):
    first = rows_of(worker_batches(plan, 16, seed=3, epoch=0, buffer_rows=64))
    assert first == rows_of(worker_batches(plan, 16, seed=3, epoch=0, buffer_rows=64))
    assert first != rows_of(worker_batches(plan, 16, seed=3, epoch=1, buffer_rows=64))
    assert len(first) == plan.steps(16, 3, 0, 1) * 16
    assert len(set(first)) == len(first)  # no example twice in an epoch
    assert plan.rows - len(first) < 16  # only the last partial batch is left out


def test_workers_take_disjoint_parts_with_the_same_number_of_steps(plan, fer_data):
    steps = plan.steps(8, 0, 0, world=2)
    parts = [list(worker_batches(plan, 8, 0, 0, rank=rank, world=2)) for rank in range(2)]
    assert [len(part) for part in parts] == [steps, steps]
    seen = [set(rows_of(part)) for part in parts]
    assert not seen[0] & seen[1]
    images, _ = load_split_numpy(fer_data, "train")
    assert seen[0] | seen[1] <= {image.tobytes() for image in images}


def test_a_resumed_epoch_continues_with_the_same_batches(plan):
    whole = list(worker_batches(plan, 16, 5, 2, buffer_rows=100))
    for stop in (1, 7, len(whole) - 1):
        resumed = list(worker_batches(plan, 16, 5, 2, start_step=stop, buffer_rows=100))
        assert len(resumed) == len(whole) - stop
        assert all(np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]) for a, b in zip(resumed, whole[stop:]))
        assert rows_of(whole[:stop]) + rows_of(resumed) == rows_of(whole)  # each example once, across the stop


def test_downsampling_keeps_the_steps_it_promises(plan):
    counts = np.bincount(np.concatenate(plan.labels), minlength=7)
    keep = [float(counts[counts > 0].min() / count) if count else 0.0 for count in counts]
    batches = list(worker_batches(plan, 8, 1, 0, keep=keep))
    assert len(batches) == plan.steps(8, 1, 0, 1, keep) > 0
    labels = np.concatenate([labels for _, labels in batches])
    assert np.bincount(labels, minlength=7).max() < 3 * max(1, counts[counts > 0].min())


def test_prefetching_stays_bounded_and_passes_errors_on():
    made = []

    def slow_source():
        for index in range(100):
            made.append(index)
            yield np.zeros((1, 1), np.uint8), np.array([index])

    batches = prefetched(slow_source(), depth=3)
    assert int(next(batches)[1][0]) == 0
    time.sleep(0.3)
    assert len(made) <= 6  # the depth, one in hand and one being made: not the whole source
    batches.close()
    time.sleep(0.5)
    assert not [thread for thread in threading.enumerate() if thread.name == "faceray-feed" and thread.is_alive()]

    def failing():
        yield np.zeros((1, 1), np.uint8), np.array([0])
        raise OSError("disk gone")

    with pytest.raises(OSError, match="disk gone"):
        list(prefetched(failing()))
