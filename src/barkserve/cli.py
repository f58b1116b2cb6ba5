"""The `barkserve` command: serve, say, make-tiny. Flags and BARKSERVE_* env go through one path."""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from barkserve.config import ServerConfig
from barkserve.errors import BarkServeError

MODEL_OPTIONS = [
    click.option("--model", help="Default model: hub id, alias (small, large) or local folder. [suno/bark-small]"),
    click.option("--models", help="Comma-separated models a request's `model` field may name."),
    click.option("--device", type=click.Choice(["auto", "cpu", "cuda", "mps"]), help="Device. [auto]"),
    click.option("--dtype", type=click.Choice(["auto", "float32", "float16", "bfloat16"]), help="Dtype. [auto]"),
    click.option("--attention", type=click.Choice(["eager", "flash_attention_2"]), help="Attention. [eager]"),
    click.option("--cpu-offload/--no-cpu-offload", default=None, help="Keep stages on the CPU until used."),
    click.option("--offline/--online", default=None, help="Use only local folders and the HF cache."),
    click.option("--voices-dir", type=click.Path(path_type=Path), help="Folder of custom .npz voices. [voices]"),
    click.option("--default-voice", help="Voice when a request names none. [v2/en_speaker_6]"),
]


def model_options(func: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed(MODEL_OPTIONS):
        func = option(func)
    return func


def friendly_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Turn library errors into a one-line message and exit code 2 instead of a traceback."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except BarkServeError as exc:
            raise click.ClickException(exc.message) from exc

    return wrapper


@click.group()
@click.version_option(package_name="barkserve")
def main() -> None:
    """barkserve: a text-to-speech server and library for Suno's Bark."""


@main.command()
@model_options
@click.option("--host", help="Address to listen on. [127.0.0.1]")
@click.option("--port", type=int, help="Port. [8000]")
@click.option("--threads", type=int, help="WSGI worker threads. [8]")
@click.option("--output-dir", type=click.Path(path_type=Path), help="Where audio files are written. [output]")
@click.option("--max-text-chars", type=int, help="Longest accepted text. [1000]")
@click.option("--preload/--no-preload", default=None, help="Load the models at start-up, not on first use.")
@friendly_errors
def serve(**flags: Any) -> None:
    """Run the HTTP server (waitress, a production WSGI server)."""
    import waitress

    from barkserve.models import pick_device, pick_dtype
    from barkserve.server import create_app

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = ServerConfig.from_sources(flags)
    app = create_app(config)
    if config.preload:
        app.extensions["barkserve"].synthesizer.registry.preload()
    device = pick_device(config.device)
    dtype = str(pick_dtype(config.dtype, device)).replace("torch.", "")
    logging.getLogger("barkserve").info(
        "barkserve listening on http://%s:%d model=%s device=%s dtype=%s threads=%d",
        config.host, config.port, config.default_model, device, dtype, config.threads,
    )  # fmt: skip
    waitress.serve(app, host=config.host, port=config.port, threads=config.threads, ident="barkserve")


@main.command()
@click.argument("text")
@click.option("-o", "--output", type=click.Path(path_type=Path, dir_okay=False), required=True, help="WAV file.")
@click.option("--voice", help="0-9, a preset name (v2/de_speaker_3) or a custom voice name.")
@click.option("--seed", type=int, help="Random seed; the same seed and input give the same audio.")
@click.option("--text-temp", type=float, help="Semantic-stage temperature (0 = greedy). [0.7]")
@click.option("--waveform-temp", type=float, help="Coarse/fine-stage temperature (0 = greedy). [0.7]")
@click.option("--min-eos-p", type=float, help="Stop once end-of-speech is this likely (e.g. 0.2).")
@click.option("--max-duration", type=float, help="Cap on the audio length in seconds.")
@model_options
@friendly_errors
def say(text: str, output: Path, voice: str | None, **flags: Any) -> None:
    """Speak TEXT into a WAV file."""
    import soundfile as sf

    from barkserve.synthesizer import Synthesizer

    names = {"seed": "seed", "text_temp": "text_temp", "waveform_temp": "waveform_temp"}
    names |= {"min_eos_p": "min_eos_p", "max_duration": "max_duration_sec"}
    options = {names[k]: flags.pop(k) for k in list(names) if flags.get(k) is not None}
    for k in names:
        flags.pop(k, None)
    config = ServerConfig.from_sources(flags)
    voice_arg: int | str | None = int(voice) if voice is not None and voice.isdigit() else voice
    result = Synthesizer(config).synthesize(text, voice=voice_arg, options=options)
    output.parent.mkdir(parents=True, exist_ok=True)
    sf.write(output, result.audio, result.sample_rate, subtype="PCM_16")
    click.echo(
        f"wrote {output} ({result.duration_sec:.2f} s, voice {result.voice}, seed {result.seed}, "
        f"{result.processing_time_sec:.1f} s)"
    )


@main.command("make-tiny")
@click.argument("directory", type=click.Path(path_type=Path, file_okay=False))
@click.option("--presets-from", type=click.Path(path_type=Path, exists=True, file_okay=False),
              help="Folder of real Bark .npz prompts to ship as presets (random prompts otherwise).")  # fmt: skip
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the random weights.")
def make_tiny(directory: Path, presets_from: Path | None, seed: int) -> None:
    """Build a tiny random Bark checkpoint in DIRECTORY (offline testing; its audio is noise)."""
    from barkserve.tiny import make_tiny_checkpoint

    make_tiny_checkpoint(directory, presets_from=presets_from, seed=seed)
    click.echo(f"tiny random Bark checkpoint written to {directory}; run: barkserve serve --model {directory}")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
