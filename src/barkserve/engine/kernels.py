"""Matrix kernels for the engine on a CPU: the checkpoint's Linear layers packed for oneDNN.

`torch.nn.Linear` on a CPU runs MKL's sgemm. oneDNN (bundled with PyTorch) runs the same fp32
products from weights packed once into its own blocked layout, and on our development CPU that is
1.8x faster for one row, 2.2x for eight rows (decode steps) and 1.25x for ~900 rows (prefills);
`benchmarks/` measures the whole engine. The sums are ordered differently, so values differ in the
last bits; the engine's token-equality tests run with these kernels.

The engine runs on a shallow copy of each stage's module tree with packed layers in place of the
Linear ones: embeddings and layer norms are shared, and the loaded model keeps its own layers.
"""

from __future__ import annotations

import copy
from typing import Any

import torch

from barkserve.engine.config import KERNEL_CHOICES
from barkserve.errors import ConfigError

# Rows the packed layout is tuned for; measured equal or faster than a per-size packing for 1..887 rows.
PACK_HINT = 64


def onednn_available() -> bool:
    """True where this PyTorch build has oneDNN's packed Linear ops (x86 CPU builds do)."""
    ops = getattr(torch.ops, "mkldnn", None)
    return bool(
        torch.backends.mkldnn.is_available()
        and ops is not None
        and hasattr(ops, "_reorder_linear_weight")
        and hasattr(ops, "_linear_pointwise")
    )


def use_onednn(choice: str, device: Any, dtype: torch.dtype, quantize: str | None) -> bool:
    """Resolve `kernels`: "auto" packs fp32 CPU weights where oneDNN is there, "torch" never packs."""
    if choice not in KERNEL_CHOICES:
        raise ConfigError(f"kernels must be one of {', '.join(KERNEL_CHOICES)}; got {choice!r}")
    eligible = str(device) == "cpu" and dtype == torch.float32 and quantize is None
    if choice == "onednn":
        if not eligible:
            raise ConfigError("kernels 'onednn' needs --device cpu, float32 weights and no --quantize")
        if not onednn_available():
            raise ConfigError("kernels 'onednn': this PyTorch build has no oneDNN; use kernels 'auto' or 'torch'")
        return True
    return choice == "auto" and eligible and onednn_available()


class PackedLinear(torch.nn.Module):
    """`y = x W[first_row:]^T + b[first_row:]` with W packed for oneDNN. x: [..., in] -> [..., out].

    `first_row` drops leading output rows that are never read (the coarse head's 10,000 semantic
    ids), so their products are never computed.
    """

    def __init__(self, linear: torch.nn.Linear, first_row: int = 0) -> None:
        super().__init__()
        weight = linear.weight.detach()[first_row:].contiguous()
        # Packed weights are opaque oneDNN tensors: a plain attribute, so `.to()` leaves them alone.
        self.packed = torch.ops.mkldnn._reorder_linear_weight(weight, PACK_HINT)
        bias = linear.bias
        self.bias_rows = None if bias is None else bias.detach()[first_row:].contiguous()
        self.first_row = first_row
        self.in_features, self.out_features = weight.shape[1], weight.shape[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.mkldnn._linear_pointwise(x.contiguous(), self.packed, self.bias_rows, "none", [], "")

    def extra_repr(self) -> str:
        return f"in={self.in_features}, out={self.out_features}, first_row={self.first_row}, oneDNN packed"


def with_packed_linears(module: torch.nn.Module) -> torch.nn.Module:
    """A copy of `module` whose `nn.Linear` layers are `PackedLinear`; every module without a Linear
    layer below it (embeddings, layer norms) is the same object, and parameters are shared."""
    if type(module) is torch.nn.Linear:
        return PackedLinear(module)
    if not any(type(m) is torch.nn.Linear for m in module.modules()):
        return module  # nothing to pack below: the very same module
    clone = copy.copy(module)  # shares parameters and buffers; gets its own child table below
    clone._modules = {
        name: None if child is None else with_packed_linears(child) for name, child in module._modules.items()
    }
    return clone


def packed_stage(model: torch.nn.Module, head_first_row: int = 0) -> torch.nn.Module:
    """`with_packed_linears(model)`, its `lm_head` packed from output row `head_first_row` on."""
    clone = with_packed_linears(model)
    if head_first_row:
        clone.lm_head = PackedLinear(model.lm_head, first_row=head_first_row)  # type: ignore[arg-type]
    return clone
