"""LoRA adapters as folders: the format `finetune promote` writes and the engines serve by name.

An adapter is a folder `ADAPTERS/NAME/` with two files:

    adapter.json          {"format": "barkserve-adapter", "version": 1, "name", "base_model", "stages",
                           "lora_rank", "lora_alpha", "run", "checkpoint", "step", "eval"}
    adapter.safetensors   per trained stage, block and projection, the LoRA matrices
                          `<stage>.layers.<i>.<projection>.lora_A` [rank, in] and `.lora_B` [out, rank]

The delta a projection adds is `(lora_alpha / lora_rank) * x A^T B^T` (peft's LoRA without dropout).
The folder name is the adapter's name; a server serves it as `<base served name>+<name>`.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from barkserve.audio.files import storage_errors
from barkserve.errors import ConfigError

log = logging.getLogger(__name__)

FORMAT = "barkserve-adapter"
VERSION = 1
INFO_FILE = "adapter.json"
TENSOR_FILE = "adapter.safetensors"
# A stage's name in the format -> the BarkModel attribute that holds that GPT.
STAGE_MODULES = {"semantic": "semantic", "coarse": "coarse_acoustics", "fine": "fine_acoustics"}
# The projections of each block that carry LoRA: the fused q/k/v and output projections, the MLP.
PROJECTIONS = ("attn.att_proj", "attn.out_proj", "mlp.in_proj", "mlp.out_proj")
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_KEY = re.compile(r"(semantic|coarse|fine)\.layers\.(\d+)\.(attn\.(?:att|out)_proj|mlp\.(?:in|out)_proj)\.lora_([AB])")


def tensor_name(stage: str, layer: int, projection: str, part: str) -> str:
    """The safetensors key of one LoRA matrix, e.g. `semantic.layers.0.attn.att_proj.lora_A`."""
    return f"{stage}.layers.{layer}.{projection}.lora_{part}"


def check_name(name: str) -> str:
    """An adapter name: letters, digits, `_.-`, up to 64 characters, not starting with a symbol."""
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise ConfigError(
            f"an adapter name is 1-64 letters, digits, '_', '.' or '-', starting with a letter or digit; got {name!r}"
        )
    return name


@dataclass(frozen=True)
class AdapterInfo:
    """What adapter.json says."""

    name: str
    base_model: str  # the run's base: a hub id, or the resolved folder it was trained from
    stages: tuple[str, ...]
    lora_rank: int
    lora_alpha: int
    run: str = ""  # the run folder it came from
    checkpoint: str = ""  # best | last
    step: int | None = None
    eval: dict[str, Any] | None = None  # `finetune eval`'s verdict when it was promoted

    @property
    def scale(self) -> float:
        return self.lora_alpha / self.lora_rank

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT, "version": VERSION, "name": self.name, "base_model": self.base_model,
                "stages": list(self.stages), "lora_rank": self.lora_rank, "lora_alpha": self.lora_alpha,
                "run": self.run, "checkpoint": self.checkpoint, "step": self.step, "eval": self.eval}  # fmt: skip


@dataclass(frozen=True, eq=False)
class Adapter:
    """An adapter read from its folder: its info and its LoRA matrices (CPU tensors, by `tensor_name`)."""

    info: AdapterInfo
    tensors: dict[str, Any]

    @property
    def name(self) -> str:
        return self.info.name

    def layers(self, stage: str) -> int:
        """How many blocks of `stage` the adapter covers (0 for a stage it does not train)."""
        return len({int(m.group(2)) for k in self.tensors if (m := _KEY.fullmatch(k)) and m.group(1) == stage})

    def pair(self, stage: str, layer: int, projection: str) -> tuple[Any, Any]:
        """(A [r, in], B [out, r]) of one projection."""
        return (self.tensors[tensor_name(stage, layer, projection, "A")],
                self.tensors[tensor_name(stage, layer, projection, "B")])  # fmt: skip


def read_info(folder: str | Path, name: str | None = None) -> AdapterInfo:
    """adapter.json of `folder`, checked; the adapter must be named `name` (default: the folder's name).

    Raises:
        ConfigError: No adapter.json, another format or version, or a missing or bad field.
    """
    folder = Path(folder)
    path = folder / INFO_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(
            f"{folder} is not an adapter: it has no {INFO_FILE} (make one with `barkserve finetune promote`)"
        ) from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path} cannot be read as JSON ({exc})") from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ConfigError(f"{path} is not a barkserve adapter (format must be {FORMAT!r})")
    if data.get("version") != VERSION:
        raise ConfigError(f"{path} is adapter format version {data.get('version')!r}; this barkserve reads {VERSION}")
    try:
        info = AdapterInfo(
            name=check_name(data["name"]), base_model=str(data["base_model"]), stages=tuple(data["stages"]),
            lora_rank=int(data["lora_rank"]), lora_alpha=int(data["lora_alpha"]), run=str(data.get("run", "")),
            checkpoint=str(data.get("checkpoint", "")), step=data.get("step"), eval=data.get("eval"),
        )  # fmt: skip
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"{path} lacks or has a bad field ({exc}); promote the run again") from exc
    if info.name != (name or folder.name):
        raise ConfigError(f"{path} names the adapter {info.name!r} but its folder is {folder.name!r}; rename one")
    if not info.stages or any(s not in STAGE_MODULES for s in info.stages) or len(set(info.stages)) != len(info.stages):
        raise ConfigError(f"{path}: stages must be some of {', '.join(STAGE_MODULES)}; got {list(info.stages)}")
    if info.lora_rank < 1 or info.lora_alpha < 1:
        raise ConfigError(f"{path}: lora_rank and lora_alpha must be >= 1")
    return info


def read_adapter(folder: str | Path, name: str | None = None) -> Adapter:
    """An adapter folder, checked: its info, and A and B of every projection of every block of its stages.

    Raises:
        ConfigError: A bad adapter.json, an unreadable tensor file, a missing or unexpected tensor, or
            a matrix whose rank is not `lora_rank`.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    folder = Path(folder)
    info = read_info(folder, name)
    try:
        tensors = load_file(folder / TENSOR_FILE)
    except (OSError, SafetensorError) as exc:
        raise ConfigError(f"{folder / TENSOR_FILE} cannot be read ({exc}); promote the run again") from exc
    adapter = Adapter(info, tensors)
    unknown = sorted(k for k in tensors if not (m := _KEY.fullmatch(k)) or m.group(1) not in info.stages)
    if unknown:
        raise ConfigError(f"{folder} holds tensors of no stage it lists ({', '.join(unknown[:3])}, ...)")
    for stage in info.stages:
        layers = adapter.layers(stage)
        if layers == 0:
            raise ConfigError(f"{folder} lists stage {stage!r} but holds no LoRA tensors for it")
        for layer in range(layers):
            for projection in PROJECTIONS:
                for part in "AB":
                    key = tensor_name(stage, layer, projection, part)
                    if key not in tensors:
                        raise ConfigError(f"{folder} lacks the tensor {key}; promote the run again")
                a, b = adapter.pair(stage, layer, projection)
                if a.ndim != 2 or b.ndim != 2 or a.shape[0] != info.lora_rank or b.shape[1] != info.lora_rank:
                    raise ConfigError(
                        f"{folder}: {tensor_name(stage, layer, projection, 'A')} must be [rank, in] and lora_B "
                        f"[out, rank] with rank {info.lora_rank}; got {list(a.shape)} and {list(b.shape)}"
                    )
    return adapter


def write_adapter(folder: str | Path, info: AdapterInfo, tensors: dict[str, Any]) -> Path:
    """Write an adapter folder atomically: a temporary folder beside it, renamed when complete.

    Raises:
        ConfigError: `folder` exists, or its name is not `info.name`, or the tensors are incomplete.
        StorageFull, StorageUnavailable: The disk is full or the folder is not writable (nothing is left).
    """
    from safetensors.torch import save_file

    out = Path(folder)
    if out.name != check_name(info.name):
        raise ConfigError(f"an adapter's folder is named after it: {info.name!r}, not {out.name!r}")
    if out.exists():
        raise ConfigError(f"{out} exists; choose another --name, or remove it first")
    tmp = out.with_name(f".{out.name}.partial")
    with storage_errors(out.parent):
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        try:
            contiguous = {k: v.detach().cpu().contiguous() for k, v in sorted(tensors.items())}
            save_file(contiguous, str(tmp / TENSOR_FILE), metadata={"format": FORMAT})
            (tmp / INFO_FILE).write_text(json.dumps(info.to_json(), indent=1), encoding="utf-8")
            read_adapter(tmp, info.name)  # what a server will read, checked before it appears
            tmp.rename(out)  # the folder appears complete or not at all
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return out


def same_model(a: str, b: str) -> bool:
    """Whether two model sources name the same checkpoint: the same hub id, or the same folder."""
    if a == b:
        return True
    pa, pb = Path(a).expanduser(), Path(b).expanduser()
    return pa.is_dir() and pb.is_dir() and pa.resolve() == pb.resolve()


class AdapterLibrary:
    """The adapters of a folder of adapter folders, all read and checked once, when it is made.

    Folders whose name starts with a dot (a promotion in progress) are skipped.

    Raises:
        ConfigError: The folder does not exist, or an adapter in it is broken (named, with why).
    """

    def __init__(self, root: str | Path | None) -> None:
        self.root = Path(root) if root else None
        self._adapters: dict[str, Adapter] = {}
        if self.root is None:
            return
        if not self.root.is_dir():
            raise ConfigError(f"adapters folder {self.root} does not exist; create it or fix --adapters")
        for folder in sorted(self.root.iterdir()):
            if folder.is_dir() and not folder.name.startswith("."):
                self._adapters[folder.name] = read_adapter(folder)
        log.info("adapters: %s", ", ".join(self._adapters) or "none")

    def names(self) -> list[str]:
        return list(self._adapters)

    def get(self, name: str) -> Adapter:
        return self._adapters[name]

    def names_for(self, source: str) -> list[str]:
        """The adapters trained on the model loaded from `source` (a hub id or folder)."""
        return [n for n, a in self._adapters.items() if same_model(a.info.base_model, source)]
