"""DNSMOS's onnxruntime sessions take the process's torch thread budget, not every core again."""

from __future__ import annotations

import pytest
import torch

from barkserve.quality.mos import load_mos


@pytest.mark.parametrize("threads", [1, 3])
def test_dnsmos_sessions_use_as_many_threads_as_torch(threads: int) -> None:
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        predictor = load_mos("dnsmos")
    finally:
        torch.set_num_threads(before)
    for session in (predictor.p835, predictor.p808):  # type: ignore[attr-defined]
        assert session.get_session_options().intra_op_num_threads == threads
