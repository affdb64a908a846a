"""Ray Train's TensorFlow set-up without importing TensorFlow where no model runs (thin Ray wrapper).

`ray.train.tensorflow` imports TensorFlow in every process that touches it: the driver and Ray Train's controller
each held ~350 MB of it for nothing. `TensorflowEnvironment` does what its `TensorflowConfig` does, and only that:
every worker gets TF_CONFIG (the workers' addresses and its index) before the training function starts, for
MultiWorkerMirroredStrategy. Used with Ray Train's (V2) `DataParallelTrainer`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

import ray
from ray._common.network_utils import build_address
from ray.train._internal.utils import get_address_and_port
from ray.train.backend import Backend, BackendConfig
from ray.train.v2._internal.util import TrainingFramework


@dataclass
class TensorflowEnvironment(BackendConfig):
    """The TF_CONFIG set-up of `ray.train.tensorflow.TensorflowConfig`, as a backend config."""

    @property
    def backend_cls(self) -> type[Backend]:
        return _TensorflowEnvironmentBackend

    @property
    def framework(self) -> TrainingFramework:
        return TrainingFramework.TENSORFLOW

    def to_dict(self) -> dict[str, Any]:
        return {}


def _set_tf_config(worker_addresses: list[str], index: int) -> None:
    os.environ["TF_CONFIG"] = json.dumps(
        {"cluster": {"worker": worker_addresses}, "task": {"type": "worker", "index": index}}
    )


class _TensorflowEnvironmentBackend(Backend):
    def on_start(self, worker_group: Any, backend_config: TensorflowEnvironment) -> None:
        def address() -> str:
            host, port = get_address_and_port()
            return build_address(host, port)

        addresses = worker_group.execute(address)
        ray.get(
            [
                worker_group.execute_single_async(index, _set_tf_config, worker_addresses=addresses, index=index)
                for index in range(len(worker_group))
            ]
        )
