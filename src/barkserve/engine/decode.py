"""The per-token decode step of a causal stage (semantic, coarse), in one of five modes.

- "eager": the active rows over their longest length (shapes change every step).
- "static": every slot over the whole cache (fixed shapes), what "compile" compiles.
- "compile": "static" under `torch.compile` (`gpt.compiled_step`).
- "graphs": CUDA graphs captured per shape bucket and replayed. Rows round up to a power of two
  (up to the cache's rows) and the attention span up to a multiple of `SPAN_STEP` positions, so a
  stage needs at most ~5 x 8 graphs, each captured the first time its bucket is used. A replay is
  one launch for the embeddings and all blocks instead of ~15 kernels per block launched from Python
  (measured on an H100: 0.70 ms per batch-1 step instead of 4.5 ms eager). Padding rows are idle cache slots: they write
  position 0, which a prefill overwrites before the slot is used (as in "compile"); positions past a
  row's length are masked. On a CPU there is nothing to capture: the same bucketed shapes run
  eagerly (what the CPU tests check).
- "fused": "graphs" with the step compiled by inductor first (`fused_step`), so that a replay runs
  fused kernels instead of the ~15 eager ones per block: in the code inductor writes for a CPU, a block
  is its 4 matrix products (bias included), attention, and 4 fused kernels (the residual add with the
  next layer norm, the cache writes with the mask, GELU); `gpu_check` counts the kernels of a GPU
  step. The cache is written in place (kv.py `write_step`). Inductor's own CUDA graphs stay off: the
  engine's per-bucket graphs capture the compiled step. The step is compiled with dynamic shapes, so
  every bucket runs the same compiled code: one compilation per block shape and dtype, shared by the
  semantic and coarse stages where their blocks have the same shapes (bark-small's and bark's do),
  then one capture per bucket as in "graphs". Buckets start at two rows (a lone row runs with an idle
  padding slot): torch compiles a size of 1 apart, and a second compilation costs more than the row.
  On a CPU the compiled step (inductor's C++ kernels) runs with the bucketed shapes.

Capturing at first use is safe in the middle of generation: the step is idempotent (it writes the
same keys and values at the same positions from the same inputs), so the warm-up run before capture
and the first replay just compute the current step again.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from barkserve.engine import gpt
from barkserve.engine.kernels import OneDnnLinear
from barkserve.engine.kv import KVCache
from barkserve.errors import ConfigError

DECODE_MODES = ("eager", "static", "compile", "graphs", "fused")
SPAN_STEP = 128
# Room in dynamo's per-function cache for the fused step's compilations: every engine in a process
# shares `fused_blocks`'s cache, and each block shape and dtype adds an entry (two where an engine
# has a single slot: a size of 1 is compiled apart). Past its default (8) dynamo would quietly run
# the step eagerly.
FUSED_RECOMPILE_LIMIT = 64

DecodeTokens = Callable[[Any, torch.Tensor, torch.Tensor, KVCache, int], torch.Tensor]


def decode_tokens(model: Any, tokens: torch.Tensor, positions: torch.Tensor, cache: KVCache, span: int) -> torch.Tensor:
    """Embed each row's last token at its position and run one causal step. tokens, positions: [r] -> [r, 1, D]."""
    x = gpt.embed(model, tokens[:, None], positions[:, None])
    return gpt.causal_step(model.layers, x, positions, cache, span)


def fused_blocks(layers: Any, x: torch.Tensor, positions: torch.Tensor, cache: KVCache, span: int) -> torch.Tensor:
    """`gpt.causal_step` under a name of its own: what "fused" compiles (dynamo keeps compiled code
    per function, and "compile" compiles `gpt.causal_step` itself, for fixed shapes)."""
    return gpt.causal_step(layers, x, positions, cache, span)


def fused_step() -> DecodeTokens:
    """`decode_tokens` with its blocks (`gpt.causal_step`) compiled by inductor, with dynamic shapes
    and without inductor's CUDA graphs (the engine captures its own, per bucket). The KV cache is
    written in place (no copy of it). The embeddings stay eager (two lookups and an add), so that
    stages whose blocks have the same shapes (bark's semantic and coarse models) share one compilation."""
    dynamo = torch._dynamo.config
    dynamo.recompile_limit = max(dynamo.recompile_limit, FUSED_RECOMPILE_LIMIT)
    compiled = torch.compile(fused_blocks, dynamic=True, fullgraph=True, options={"triton.cudagraphs": False})

    def step(model: Any, tokens: torch.Tensor, positions: torch.Tensor, cache: KVCache, span: int) -> torch.Tensor:
        x = gpt.embed(model, tokens[:, None], positions[:, None])  # [r, 1, D]
        # A copy, not a view of the stage's buffer: a view that spans its whole buffer (every slot
        # in use) would make torch compile that case apart. Inside a capture the copy is captured.
        # No "duck" sizes: rows equal to the cache's slot count must not become a case of their own.
        with torch.fx.experimental._config.patch(use_duck_shape=False):  # type: ignore[attr-defined]
            return compiled(model.layers, x, positions.clone(), cache, span)

    return step


class Decoder:
    """`decoder(last, n)`: the hidden state [n, 1, D] of the next token of the cache's n active rows,
    from each row's last token `last[:n]` (a tensor of the stage's, one entry per slot)."""

    def __init__(self, model: Any, cache: KVCache, mode: str = "eager") -> None:
        if mode not in DECODE_MODES:
            raise ValueError(f"decode mode must be one of {DECODE_MODES}; got {mode!r}")
        if mode == "fused" and any(isinstance(m, OneDnnLinear) for m in model.modules()):
            raise ConfigError("decode mode 'fused' compiles the Linear layers itself: use kernels 'torch'")
        self.model, self.cache, self.mode = model, cache, mode
        device = cache.k.device
        self.cuda = device.type == "cuda"
        self.compiled = gpt.compiled_step(cache) if mode == "compile" else None
        # "graphs" and "fused": the step each bucket runs (and captures, on CUDA).
        self.step: DecodeTokens = fused_step() if mode == "fused" else decode_tokens
        # "graphs": the positions input of every graph (a fixed address), and the graphs by bucket.
        self.positions = torch.zeros(cache.max_rows, dtype=torch.long, device=device)
        self.graphs: dict[tuple[int, int], tuple[torch.cuda.CUDAGraph, torch.Tensor]] = {}
        self.pool: Any = None

    def __call__(self, last: torch.Tensor, n: int) -> torch.Tensor:
        if self.mode in ("graphs", "fused"):
            return self._bucketed(last, n)
        static = self.mode in ("static", "compile")
        lengths, span = self.cache.step_args(static)
        positions = torch.tensor(lengths, device=last.device)  # [n], or [max_rows] when static
        x = gpt.embed(self.model, last[: len(lengths), None], positions[:, None])  # [n, 1, D]
        step = self.compiled if self.compiled is not None else gpt.causal_step
        return step(self.model.layers, x, positions, self.cache, span)[:n]

    def bucket(self, n: int) -> tuple[int, int]:
        """(rows, span) of the graph that runs n active rows: powers of two up to the cache's rows
        (from 2 in "fused": its padding row is an idle slot), and the longest row's length + 1 rounded
        up to SPAN_STEP (at most the cache length)."""
        rows = 2 if self.mode == "fused" else 1  # "fused": one compilation for all (a 1 is compiled apart)
        while rows < n:
            rows *= 2
        rows = min(rows, self.cache.max_rows)
        need = max(self.cache.lengths[:n]) + 1
        span = min(-(-need // SPAN_STEP) * SPAN_STEP, self.cache.max_len)
        return rows, span

    def _bucketed(self, last: torch.Tensor, n: int) -> torch.Tensor:
        rows, span = self.bucket(n)
        lengths = self.cache.lengths[:n] + [0] * (rows - n)  # padding rows: idle slots at position 0
        self.positions[:rows].copy_(torch.tensor(lengths))
        if not self.cuda:
            return self.step(self.model, last[:rows], self.positions[:rows], self.cache, span)[:n]
        graph = self.graphs.get((rows, span))
        if graph is None:
            graph = self.graphs[rows, span] = self._capture(last, rows, span)
        graph[0].replay()
        return graph[1][:n]

    def _capture(self, last: torch.Tensor, rows: int, span: int) -> tuple[torch.cuda.CUDAGraph, torch.Tensor]:
        """Capture the step of one bucket over the fixed inputs `last[:rows]` and `self.positions[:rows]`."""
        args = (self.model, last[:rows], self.positions[:rows], self.cache, span)
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            # Warm-up outside the capture: library handles, workspaces; "fused": compilation and
            # Triton's choice of launch configurations (it runs candidates, which a capture must not see).
            self.step(*args)
        torch.cuda.current_stream().wait_stream(side)
        if self.pool is None:
            self.pool = torch.cuda.graph_pool_handle()
        graph = torch.cuda.CUDAGraph()
        # One memory pool per stage: graphs run one at a time and each output is read before the next replay.
        with torch.cuda.graph(graph, pool=self.pool, capture_error_mode="thread_local"):
            out = self.step(*args)
        return graph, out
