"""Matrix kernels for the engine on a CPU: the checkpoint's Linear layers run by oneDNN.

`torch.nn.Linear` on a CPU runs MKL's sgemm. oneDNN (bundled with PyTorch) runs the same fp32
products faster on our development CPU (AMD Zen 4, 2 cores), measured over 12 bark-small blocks:

| rows | MKL | oneDNN, checkpoint weights | oneDNN, packed copy |
| --- | --- | --- | --- |
| 1 (decode, batch 1) | 29-34 ms | 18-21 ms | 17-20 ms |
| 8 (decode, batch 8) | 54-57 ms | 25-31 ms | 16-20 ms |
| 887 (coarse prefill) | 1.15-1.21 s | 0.80-0.82 s | 0.76-0.83 s |

"auto" reads the checkpoint's own weight tensors (no copy). "packed" keeps a copy reordered into
oneDNN's blocked layout, which is faster for batched decode steps and costs a second copy of the
GPT weights (about 1 GB for bark-small). The sums are ordered differently from MKL's, so values
differ in the last bits; the engine's token-equality tests run with these kernels.

The engine runs on a copy of each stage's module tree with these layers in place of the Linear
ones; embeddings, layer norms and parameters are shared, and the loaded model keeps its own layers.
"""

from __future__ import annotations

import copy
from typing import Any

import torch

from barkserve.errors import ConfigError

# Rows the packed layout is tuned for; measured equal or faster than a per-size packing for 1..887 rows.
PACK_HINT = 64


def onednn_available() -> bool:
    """True where this PyTorch build has oneDNN's Linear ops (x86 CPU builds do)."""
    ops = getattr(torch.ops, "mkldnn", None)
    return bool(
        torch.backends.mkldnn.is_available()
        and ops is not None
        and hasattr(ops, "_reorder_linear_weight")
        and hasattr(ops, "_linear_pointwise")
    )


def onednn_mode(
    choice: str, device: Any, dtype: torch.dtype, quantize: str | None, compile: bool = False
) -> str | None:
    """Resolve `kernels` to "weights" (oneDNN on the checkpoint's tensors), "packed" or None (torch).

    "auto" uses oneDNN for fp32 weights on a CPU where the build has it, unless the step is
    compiled (`torch.compile` picks its own kernels and cannot lower these ops); "packed" insists on
    a packed copy and is an error where it cannot run; "torch" keeps `nn.Linear`.
    """
    eligible = str(device) == "cpu" and dtype == torch.float32 and quantize is None and not compile
    if choice == "packed":
        if not eligible:
            raise ConfigError("kernels 'packed' needs --device cpu, float32 weights, no --quantize, no --compile")
        if not onednn_available():
            raise ConfigError("kernels 'packed': this PyTorch build has no oneDNN; use kernels 'auto' or 'torch'")
        return "packed"
    return "weights" if choice == "auto" and eligible and onednn_available() else None


class OneDnnLinear(torch.nn.Module):
    """`y = x W[first_row:]^T + b[first_row:]` through oneDNN. x: [..., in] -> [..., out].

    `packed=False` reads the Linear layer's own weight (a view, no copy); `packed=True` keeps a copy
    in oneDNN's blocked layout. `first_row` drops leading output rows that are never read (the
    coarse head's 10,000 semantic ids), so their products are never computed.
    """

    def __init__(self, linear: torch.nn.Linear, packed: bool, first_row: int = 0) -> None:
        super().__init__()
        weight = linear.weight.detach()[first_row:]  # a view of the checkpoint's rows
        # A packed weight is an opaque oneDNN tensor: a plain attribute, so `.to()` leaves it alone.
        self.weight_rows = torch.ops.mkldnn._reorder_linear_weight(weight, PACK_HINT) if packed else weight
        bias = linear.bias
        self.bias_rows = None if bias is None else bias.detach()[first_row:]
        self.packed, self.first_row = packed, first_row
        self.in_features, self.out_features = weight.shape[1], weight.shape[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.mkldnn._linear_pointwise(x.contiguous(), self.weight_rows, self.bias_rows, "none", [], "")

    def extra_repr(self) -> str:
        return f"in={self.in_features}, out={self.out_features}, first_row={self.first_row}, packed={self.packed}"


def with_onednn_linears(module: torch.nn.Module, packed: bool) -> torch.nn.Module:
    """A copy of `module` whose `nn.Linear` layers are `OneDnnLinear`; every module without a Linear
    layer below it (embeddings, layer norms) is the same object, and parameters are shared."""
    if type(module) is torch.nn.Linear:
        return OneDnnLinear(module, packed)
    if not any(type(m) is torch.nn.Linear for m in module.modules()):
        return module  # nothing to replace below: the very same module
    clone = copy.copy(module)  # shares parameters and buffers; gets its own child table below
    clone._modules = {
        name: None if child is None else with_onednn_linears(child, packed) for name, child in module._modules.items()
    }
    return clone


def onednn_stage(model: torch.nn.Module, packed: bool, head_first_row: int = 0) -> torch.nn.Module:
    """`with_onednn_linears(model)`, its `lm_head` computed from output row `head_first_row` on."""
    clone = with_onednn_linears(model, packed)
    if head_first_row:
        clone.lm_head = OneDnnLinear(model.lm_head, packed, first_row=head_first_row)  # type: ignore[arg-type]
    return clone
