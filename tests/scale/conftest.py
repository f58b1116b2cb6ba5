"""The Ray tests' cluster: 2 CPUs, started once per module, and a one-thread plain path to compare with."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
import ray_gate
import torch


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[Any]:
    import ray
    import ray.cloudpickle

    ray.cloudpickle.register_pickle_by_value(ray_gate)  # the test engine travels to the workers by value
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING)
    yield ray
    from ray import serve

    serve.shutdown()
    ray.shutdown()


@pytest.fixture()
def one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
