"""The `barkserve` command: serve, say, make-tiny. Flags and BARKSERVE_* env go through one path."""

from __future__ import annotations

import functools
import logging
import sys
import time
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
@click.option("--max-text-chars", type=int, help="Longest accepted text. [20000]")
@click.option("--max-duration-sec", type=float, help="Default cap on each chunk's audio, seconds. [none]")
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
@click.argument("text", required=False)
@click.option("-f", "--file", "text_file", type=click.File(encoding="utf-8"), help="Read the text from a file.")
@click.option("-o", "--output", type=click.Path(path_type=Path, dir_okay=False), required=True,
              help="Output file; its extension picks the format (wav, flac, mp3, opus, aac, pcm).")  # fmt: skip
@click.option("--voice", help="0-9, a preset name (v2/de_speaker_3) or a custom voice name.")
@click.option("--seed", type=int, help="Random seed; the same seed and input give the same audio.")
@click.option("--text-temp", type=float, help="Semantic-stage temperature (0 = greedy). [0.7]")
@click.option("--waveform-temp", type=float, help="Coarse/fine-stage temperature (0 = greedy). [0.7]")
@click.option("--min-eos-p", type=float, help="Stop once end-of-speech is this likely (e.g. 0.2).")
@click.option("--max-duration", type=float, help="Cap on each chunk's audio length in seconds.")
@click.option("--pause", "sentence_pause", type=float, help="Silence between chunks, seconds. [0.25]")
@click.option("--carry-history/--fixed-voice", default=None, help="Feed each chunk's tokens to the next.")
@click.option("--speed", type=float, help="Tempo factor 0.25-4.0, pitch unchanged. [1.0]")
@model_options
@friendly_errors
def say(text: str | None, text_file: Any, output: Path, voice: str | None, **flags: Any) -> None:
    """Speak TEXT (or the text of --file) into an audio file, chunk by chunk, with a progress bar."""
    from barkserve.formats import FORMATS, get_format
    from barkserve.synthesizer import Synthesizer

    if (text is None) == (text_file is None):
        raise click.UsageError("give either TEXT or --file, not both")
    text = text if text is not None else text_file.read()
    extension = output.suffix.lstrip(".").lower()
    names = [n for n, f in FORMATS.items() if f.extension == extension and n != "wav_float"]
    if not names:
        raise click.UsageError(f"cannot tell the format from {output.name!r}; use .wav .flac .mp3 .opus .aac .pcm")
    fmt = get_format(names[0])
    renames = {"max_duration": "max_duration_sec", "sentence_pause": "sentence_pause_sec"}
    option_flags = ["seed", "text_temp", "waveform_temp", "min_eos_p", "max_duration", "sentence_pause"]
    option_flags += ["carry_history", "speed"]
    options = {renames.get(k, k): flags.pop(k) for k in option_flags if flags.get(k) is not None}
    for k in option_flags:
        flags.pop(k, None)
    config = ServerConfig.from_sources({"max_text_chars": 10_000_000, **flags})
    voice_arg: int | str | None = int(voice) if voice is not None and voice.isdigit() else voice
    synth = Synthesizer(config)
    started = time.monotonic()
    with Progress() as progress:
        result = synth.synthesize(text, voice=voice_arg, options=options, on_chunk=progress.update)
    from barkserve.audio import write_file

    write_file(output, result.audio, result.sample_rate, fmt)
    click.echo(
        f"wrote {output} ({result.duration_sec:.2f} s in {result.chunk_count} chunk(s), voice {result.voice}, "
        f"seed {result.seed}, {time.monotonic() - started:.1f} s)"
    )


class Progress:
    """A progress bar of chunks, audio seconds and ETA on stderr (tqdm)."""

    def __enter__(self) -> Progress:
        self._bar: Any = None
        return self

    def update(self, done: int, total: int, audio_sec: float) -> None:
        from tqdm import tqdm

        if self._bar is None:
            self._bar = tqdm(total=total, unit="chunk", desc="speaking", file=sys.stderr, disable=total < 2)
        self._bar.set_postfix_str(f"{audio_sec:.1f} s audio")
        self._bar.update(done - self._bar.n)

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.close()


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
