"""Many LoRA adapters in one batch: the base weights shared, each row's delta applied to that row only.

Every targeted projection of a stage (engine/adapters.py PROJECTIONS) runs as a `LoraLinear`: the
base layer as it was (nn.Linear, oneDNN or int8), plus `x A[k]^T B[k]^T` where k is the adapter of
the row. The A and B of all adapters of a stage are stacked once into a bank ([N + 1, r, in] and
[N + 1, out, r], B scaled by alpha / rank, smaller ranks padded with zeros); entry 0 is all zeros,
the base model. Which entry each row uses is a per-row index the stage sets before it calls the
model (`RowAdapters.use`), so the same module tree serves a batch that mixes adapters and the base.
A base row adds exact zeros: its outputs are those of the base model.

The engine runs a copy of each stage's module tree with these layers swapped in (like the oneDNN
copies of engine/kernels.py): embeddings, norms and base weights are the loaded model's, unchanged.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import Any

import torch

from barkserve.engine.adapters import PROJECTIONS, STAGE_MODULES, Adapter, tensor_name
from barkserve.errors import ConfigError, InvalidModel


class RowAdapters:
    """The adapter index of each row of the forward passes now running: [B] long, or None (all base)."""

    def __init__(self) -> None:
        self.index: torch.Tensor | None = None

    @contextlib.contextmanager
    def use(self, index: torch.Tensor | None) -> Iterator[None]:
        """Rows of the calls inside use `index[:B]` (B the call's batch size); None runs the base alone."""
        before, self.index = self.index, index
        try:
            yield
        finally:
            self.index = before


class LoraLinear(torch.nn.Module):
    """`base(x) + x A[k]^T B[k]^T` with k each row's adapter. x: [B, ..., in] -> [B, ..., out]."""

    def __init__(self, base: torch.nn.Module, a: torch.Tensor, b: torch.Tensor, rows: RowAdapters) -> None:
        super().__init__()
        self.base = base
        self.a, self.b, self.rows = a, b, rows  # [N + 1, r, in], [N + 1, out, r] (scaled)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.base(x)
        index = self.rows.index
        if index is None:
            return y
        rows = x.shape[0]
        index = index[:rows]  # decode steps pass the whole slot table; the active rows come first
        flat = x.reshape(rows, -1, x.shape[-1])  # [B, T, in]
        delta = (flat @ self.a[index].transpose(1, 2)) @ self.b[index].transpose(1, 2)  # [B, T, out]
        return y + delta.reshape(y.shape)

    def extra_repr(self) -> str:
        return f"adapters={self.a.shape[0] - 1}, rank={self.a.shape[1]}"


def swapped(module: torch.nn.Module, replacements: dict[str, torch.nn.Module]) -> torch.nn.Module:
    """A copy of `module` with the submodules at the dotted paths of `replacements` swapped in; every
    other submodule is the same object, and parameters are shared."""
    if "" in replacements:
        return replacements[""]
    clone = copy.copy(module)  # shares parameters and buffers; gets its own child table below
    clone._modules = dict(module._modules)
    children: dict[str, dict[str, torch.nn.Module]] = {}
    for path, new in replacements.items():
        head, _, rest = path.partition(".")
        children.setdefault(head, {})[rest] = new
    for name, below in children.items():
        child = module._modules[name]
        if child is None:
            raise KeyError(name)
        clone._modules[name] = swapped(child, below)
    return clone


def _features(layer: torch.nn.Module) -> tuple[int, int]:
    """(in, out) of a Linear-like layer (nn.Linear, OneDnnLinear, a dynamic int8 Linear)."""
    return int(getattr(layer, "in_features")), int(getattr(layer, "out_features"))  # noqa: B009


def lora_stage(
    module: torch.nn.Module, stage: str, adapters: Sequence[Adapter], rows: RowAdapters, device: Any, dtype: Any
) -> torch.nn.Module:
    """`module` (one GPT) with LoRA banks on its projections; adapters[i] is bank entry i + 1.

    Raises:
        ConfigError: An adapter was trained on a model of other shapes (other block count or widths).
    """
    users = [a for a in adapters if stage in a.info.stages]
    if not users:
        return module  # no adapter trains this stage: the rows' index changes nothing here
    n_layers = len(module.layers)  # type: ignore[arg-type]
    for adapter in users:
        if adapter.layers(stage) != n_layers:
            raise ConfigError(
                f"adapter {adapter.name!r} has {adapter.layers(stage)} {stage} blocks; this model has {n_layers}: "
                "it was trained on another base model"
            )
    rank = max(a.info.lora_rank for a in users)
    replacements: dict[str, torch.nn.Module] = {}
    for layer in range(n_layers):
        for projection in PROJECTIONS:
            path = f"layers.{layer}.{projection}"
            base = module.get_submodule(path)
            n_in, n_out = _features(base)
            bank_a = torch.zeros(len(adapters) + 1, rank, n_in)
            bank_b = torch.zeros(len(adapters) + 1, n_out, rank)
            for k, adapter in enumerate(adapters, start=1):
                if stage not in adapter.info.stages:
                    continue
                a, b = adapter.pair(stage, layer, projection)
                if a.shape[1] != n_in or b.shape[0] != n_out:
                    raise ConfigError(
                        f"adapter {adapter.name!r} was trained on another base model: "
                        f"{tensor_name(stage, layer, projection, 'A')} is for a [{b.shape[0]}, {a.shape[1]}] "
                        f"projection, this model's is [{n_out}, {n_in}]"
                    )
                bank_a[k, : a.shape[0]] = a.float()
                bank_b[k, :, : b.shape[1]] = b.float() * adapter.info.scale
            replacements[path] = LoraLinear(base, bank_a.to(device, dtype), bank_b.to(device, dtype), rows)
    return swapped(module, replacements)


class AdapterSet:
    """The adapters one engine serves: their bank entries by name and a row index per stage."""

    def __init__(self, adapters: Sequence[Adapter]) -> None:
        self.adapters = list(adapters)
        self.entries = {a.name: k for k, a in enumerate(self.adapters, start=1)}
        self.rows = {stage: RowAdapters() for stage in STAGE_MODULES}

    def __bool__(self) -> bool:
        return bool(self.adapters)

    def entry(self, name: str | None) -> int:
        """The bank entry of an adapter name (0: none, the base model).

        Raises:
            InvalidModel: This engine serves no adapter of that name.
        """
        if name is None:
            return 0
        if name not in self.entries:
            raise InvalidModel(f"this model serves the adapters {sorted(self.entries)}; got {name!r}")
        return self.entries[name]

    def wrap(self, parts: Any, device: Any, dtype: Any) -> Any:
        """`parts` (StageModels or a BarkModel's stages as a dataclass) with LoRA banks on every stage."""
        if not self.adapters:
            return parts
        return replace(
            parts,
            **{
                attr: lora_stage(getattr(parts, attr), stage, self.adapters, self.rows[stage], device, dtype)
                for stage, attr in STAGE_MODULES.items()
            },
        )

    def wrap_model(self, model: Any, device: Any, dtype: Any) -> Any:
        """A copy of a BarkModel whose three GPTs carry the LoRA banks (for transformers' own generate)."""
        stages = {
            attr: lora_stage(getattr(model, attr), stage, self.adapters, self.rows[stage], device, dtype)
            for stage, attr in STAGE_MODULES.items()
        }
        return swapped(model, stages)

    @contextlib.contextmanager
    def use(self, entry: int, device: Any) -> Iterator[None]:
        """Every stage's calls inside run as a batch of one row of adapter `entry` (the reference path)."""
        index = torch.tensor([entry], device=device) if entry else None
        with contextlib.ExitStack() as stack:
            for rows in self.rows.values():
                stack.enter_context(rows.use(index))
            yield


class SlotAdapters:
    """The adapter entry of each cache slot of a stage, kept in step with the stage's rows.

    Decode steps read the whole slot table (the active rows are slots 0..n-1). With `always` (fixed
    shape and CUDA-graph decoding, where the captured step must include the LoRA path) the table is
    used even when every row is the base model; otherwise such a step runs the base layers alone.
    """

    def __init__(self, rows: RowAdapters | None, max_rows: int, device: Any, always: bool) -> None:
        self.rows, self.always = rows, always
        self.table = torch.zeros(max_rows, dtype=torch.long, device=device)  # [max_rows]
        self.entries: list[int] = []  # host copy of the active slots' entries

    def add(self, entries: list[int]) -> None:
        """Rows appended in order to the slots after the active ones."""
        if self.rows is None:
            return
        start = len(self.entries)
        self.entries.extend(entries)
        self.table[start : start + len(entries)] = torch.tensor(entries, device=self.table.device)

    def remove(self, slot: int) -> None:
        """The last row moves into `slot` (as the stages' caches do)."""
        if self.rows is None:
            return
        last = len(self.entries) - 1
        self.entries[slot] = self.entries[last]
        self.entries.pop()
        self.table[slot] = self.table[last]

    def decode(self) -> contextlib.AbstractContextManager[None]:
        """The context of a decode step over the active rows."""
        if self.rows is None or not (self.always or any(self.entries)):
            return contextlib.nullcontext()
        return self.rows.use(self.table)

    def rows_at(self, slots: list[int]) -> contextlib.AbstractContextManager[None]:
        """The context of a call over the rows in `slots`, in that order (a prefill)."""
        if self.rows is None or not any(self.entries[s] for s in slots):
            return contextlib.nullcontext()
        return self.rows.use(torch.tensor([self.entries[s] for s in slots], device=self.table.device))
