"""The CUDA tests: marked `gpu`, skipped where no CUDA device is visible (CI has none; `benchmarks/gpu_check.py`
runs them first on a GPU machine). This is the one skip CI allows."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

NO_GPU = "gpu: no CUDA device is visible (these run on a GPU machine: benchmarks/gpu_check.py runs them first)"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every test here is a `gpu` test; without CUDA each one is skipped, saying why."""
    here = Path(__file__).parent
    mine = [item for item in items if here in Path(str(item.path)).parents]
    for item in mine:
        item.add_marker(pytest.mark.gpu)
    if not mine:
        return
    import torch

    if not torch.cuda.is_available():
        for item in mine:
            item.add_marker(pytest.mark.skip(reason=NO_GPU))


@pytest.fixture(scope="session")
def cuda_loaded(tiny_model_dir: Path) -> Any:
    """The tiny checkpoint loaded on the GPU in float32, through the server's own `load_model`."""
    from barkserve.config import ServerConfig
    from barkserve.models import load_model

    config = ServerConfig(model=str(tiny_model_dir), device="cuda", dtype="float32", offline=True)
    return load_model(str(tiny_model_dir), config)
