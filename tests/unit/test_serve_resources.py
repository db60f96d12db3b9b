"""INFERENCE_NUM_GPUS routes a Ray Serve replica: the GPU it reserves and the device it loads the
model on (checked without a GPU: what Ray is asked for, and what the replica will pass to
LocalModel.load)."""

from __future__ import annotations

import pytest

from core.config import Settings
from inference.server.serve import replica_device, replica_resources


@pytest.mark.parametrize(
    ("num_gpus", "device"), [(0, "cpu"), (1, "cuda"), (0.5, "cuda"), (2, "cuda")]
)
def test_a_replica_reserves_its_gpus_and_loads_there(num_gpus: float, device: str) -> None:
    settings = Settings(inference_num_gpus=num_gpus, inference_num_cpus=1)
    assert replica_resources(settings) == {"num_gpus": num_gpus, "num_cpus": 1}
    assert replica_device(settings) == device


def test_the_product_default_is_the_cpu() -> None:
    settings = Settings(_env_file=None)
    assert replica_resources(settings)["num_gpus"] == 0
    assert replica_device(settings) == "cpu"
