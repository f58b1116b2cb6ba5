"""What the commands share: option decorators built from the config's choices, flag helpers, error display."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from barkserve.config import ATTENTION, DEVICES, DTYPES, ENGINES, KERNELS, MOS_MODELS, is_mos_model
from barkserve.errors import BarkServeError
from barkserve.options import SHORT_NAMES


class MosModel(click.ParamType):
    """A --mos-model value: dnsmos, distillmos, utmos:PATH or '' (none)."""

    name = "dnsmos|distillmos|utmos:PATH"

    def get_metavar(self, param: click.Parameter, ctx: click.Context) -> str:
        return "[dnsmos|distillmos|utmos:PATH]"  # click would upper-case the name

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        if not is_mos_model(value):
            self.fail(f"{value!r} is none of {MOS_MODELS[1:]} or 'utmos:' and a checkpoint path ('' for none)")
        return str(value)


MOS_MODEL = MosModel()

MODEL_OPTIONS = [
    click.option("--model", help="Default model: hub id, alias (small, large) or local folder. [suno/bark-small]"),
    click.option("--models", help="Comma-separated models a request's `model` field may name."),
    click.option(
        "--adapters",
        type=click.Path(path_type=Path, file_okay=False),
        help="Folder of LoRA adapters (finetune promote): MODEL+NAME serves one. [none]",
    ),
    click.option("--device", type=click.Choice(DEVICES), help="Device. [auto]"),
    click.option("--dtype", type=click.Choice(DTYPES), help="Dtype. [auto]"),
    click.option("--attention", type=click.Choice(ATTENTION), help="Attention. [eager]"),
    click.option("--cpu-offload/--no-cpu-offload", default=None, help="Keep stages on the CPU until used."),
    click.option("--offline/--online", default=None, help="Use only local folders and the HF cache."),
    click.option("--engine", type=click.Choice(ENGINES), help="Generation engine. [batched]"),
    click.option("--max-batch-size", type=int, help="Batched engine: most rows per step. [8]"),
    click.option("--max-wait-ms", type=float, help="Batched engine: wait to fill a batch. [10]"),
    click.option("--compile/--no-compile", default=None, help="torch.compile of the fixed-shape decode step."),
    click.option("--fused/--no-fused", default=None, help="Inductor-fused decoder blocks inside the CUDA graphs."),
    click.option("--cuda-graphs/--no-cuda-graphs", default=None, help="GPU: decode from CUDA graphs. [on]"),
    click.option("--quantize", type=click.Choice(["int8"]), help="CPU int8 Linear layers (changes outputs)."),
    click.option("--kernels", type=click.Choice(KERNELS), help="CPU Linear kernels. [auto]"),
    click.option("--voices-dir", type=click.Path(path_type=Path), help="Folder of custom .npz voices. [voices]"),
    click.option("--default-voice", help="Voice when a request names none. [v2/en_speaker_6]"),
]


JOB_OPTIONS = [
    click.option("--jobs-dir", type=click.Path(path_type=Path), help="Where job audio is kept. [jobs]"),
    click.option("--database-url", help="Job database (SQLAlchemy URL). [sqlite in the jobs dir]"),
]

# The models that hear the audio (quality control's `qc`; `eval` has its own copies of these flags).
SCORER_OPTIONS = [
    click.option("--asr-model", help="Whisper checkpoint (hub id or folder) quality control hears with; '' for none."),
    click.option(
        "--speaker-model", help="Speaker model for voice similarity: hub id, folder or 'resemblyzer'; '' for none."
    ),
    click.option(
        "--mos-model", type=MOS_MODEL, help="Naturalness predictor for qc.min_mos: dnsmos, distillmos, utmos:PATH."
    ),
]


def scorer_options(func: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed(SCORER_OPTIONS):
        func = option(func)
    return func


# `say` and `book`: speak with an adapter of the default model.
ADAPTER_OPTION = click.option("--adapter", help="Speak with this LoRA adapter of --model (a folder in --adapters).")


def adapter_model(config: Any, adapter: str | None) -> str | None:
    """The `model` a command's request names: the default model, or its adapter `adapter`."""
    return None if adapter is None else f"{config.default_model}+{adapter}"


def model_options(func: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed(MODEL_OPTIONS):
        func = option(func)
    return func


def job_options(func: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed(JOB_OPTIONS):
        func = option(func)
    return func


def read_lexicon(ctx: click.Context, param: click.Parameter, path: Path | None) -> Any:
    """A --lexicon file as the request's `lexicon` option, checked by the code that checks the API's field."""
    if path is None:
        return None
    from barkserve.errors import InvalidRequest
    from barkserve.markup import Lexicon

    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:  # ValueError: not UTF-8 or not JSON
        raise click.BadParameter(f"{path} is not a JSON lexicon: {exc}", ctx, param) from exc
    try:
        return Lexicon.from_value(data, source="file")
    except InvalidRequest as exc:
        raise click.BadParameter(f"{path}: {exc.message}", ctx, param) from exc


# Markup and pronunciation: the API's `ssml`, `normalize` and `lexicon` fields (docs/speech-api.md).
MARKUP_OPTIONS = [
    click.option(
        "--ssml/--no-ssml",
        default=None,
        help="Read the text as SSML (<break>, <voice>, <say-as>...); --no-ssml: plain text with [pause] tags. "
        "[SSML when it starts with <speak>]",
    ),
    click.option(
        "--lexicon",
        type=click.Path(path_type=Path, exists=True, dir_okay=False),
        callback=read_lexicon,
        help='JSON file of respellings, {"en": {"Nguyen": "win"}}, over the lexicon_file setting\'s.',
    ),
    click.option(
        "--normalize/--no-normalize",
        default=None,
        help="Spell out numbers, dates, amounts and abbreviations in the voice's language. [on]",
    ),
]


def markup_options(func: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed(MARKUP_OPTIONS):
        func = option(func)
    return func


# Synthesis-option flags and the SynthesisOptions field each one sets.
OPTION_FLAGS = {
    "seed": "seed",
    **SHORT_NAMES,
    "qc": "qc",
    "ssml": "ssml",
    "normalize": "normalize",
    "lexicon": "lexicon",
}


def take_options(flags: dict[str, Any]) -> dict[str, Any]:
    """Move the synthesis-option flags out of `flags` (the rest are server settings)."""
    taken = {flag: flags.pop(flag) for flag in OPTION_FLAGS if flag in flags}
    return {OPTION_FLAGS[flag]: value for flag, value in taken.items() if value is not None}


def voice_arg(voice: str | None) -> int | str | None:
    """A --voice flag as the library takes it: ASCII digits are a preset number, anything else a name."""
    return int(voice) if voice is not None and voice.isascii() and voice.isdigit() else voice


def format_of(output: Path) -> Any:
    from barkserve.audio.encode import FORMATS, get_format

    extension = output.suffix.lstrip(".").lower()
    names = [n for n, f in FORMATS.items() if f.extension == extension and n != "wav_float"]
    if not names:
        raise click.UsageError(f"cannot tell the format from {output.name!r}; use .wav .flac .mp3 .opus .aac .pcm")
    return get_format(names[0])


def friendly_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Library errors become a one-line message and exit code 1, not a traceback."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except BarkServeError as exc:
            raise click.ClickException(exc.message) from exc

    return wrapper
