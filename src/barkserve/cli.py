"""The `barkserve` command: serve, say, make-tiny. Flags and BARKSERVE_* env go through one path."""

from __future__ import annotations

import logging
import shutil
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from barkserve.cli_support import friendly_errors
from barkserve.config import ServerConfig

MODEL_OPTIONS = [
    click.option("--model", help="Default model: hub id, alias (small, large) or local folder. [suno/bark-small]"),
    click.option("--models", help="Comma-separated models a request's `model` field may name."),
    click.option("--device", type=click.Choice(["auto", "cpu", "cuda", "mps"]), help="Device. [auto]"),
    click.option("--dtype", type=click.Choice(["auto", "float32", "float16", "bfloat16"]), help="Dtype. [auto]"),
    click.option("--attention", type=click.Choice(["eager", "flash_attention_2"]), help="Attention. [eager]"),
    click.option("--cpu-offload/--no-cpu-offload", default=None, help="Keep stages on the CPU until used."),
    click.option("--offline/--online", default=None, help="Use only local folders and the HF cache."),
    click.option("--engine", type=click.Choice(["batched", "reference"]), help="Generation engine. [batched]"),
    click.option("--max-batch-size", type=int, help="Batched engine: most rows per step. [8]"),
    click.option("--max-wait-ms", type=float, help="Batched engine: wait to fill a batch. [10]"),
    click.option("--compile/--no-compile", default=None, help="GPU: compiled fixed-shape decode (CUDA graphs)."),
    click.option("--quantize", type=click.Choice(["int8"]), help="CPU int8 Linear layers (changes outputs)."),
    click.option("--kernels", type=click.Choice(["auto", "packed", "torch"]), help="CPU Linear kernels. [auto]"),
    click.option("--voices-dir", type=click.Path(path_type=Path), help="Folder of custom .npz voices. [voices]"),
    click.option("--default-voice", help="Voice when a request names none. [v2/en_speaker_6]"),
]


JOB_OPTIONS = [
    click.option("--jobs-dir", type=click.Path(path_type=Path), help="Where job audio is kept. [jobs]"),
    click.option("--database-url", help="Job database (SQLAlchemy URL). [sqlite in the jobs dir]"),
]


def model_options(func: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed(MODEL_OPTIONS):
        func = option(func)
    return func


def job_options(func: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed(JOB_OPTIONS):
        func = option(func)
    return func


# Synthesis-option flags and the SynthesisOptions field each one sets.
OPTION_FLAGS = {
    "seed": "seed",
    "text_temp": "text_temp",
    "waveform_temp": "waveform_temp",
    "min_eos_p": "min_eos_p",
    "max_duration": "max_duration_sec",
    "sentence_pause": "sentence_pause_sec",
    "carry_history": "carry_history",
    "speed": "speed",
}


def take_options(flags: dict[str, Any]) -> dict[str, Any]:
    """Move the synthesis-option flags out of `flags` (the rest are server settings)."""
    taken = {flag: flags.pop(flag) for flag in OPTION_FLAGS if flag in flags}
    return {OPTION_FLAGS[flag]: value for flag, value in taken.items() if value is not None}


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
@job_options
@click.option("--hubert", help="HuBERT for cloning (hub id or folder). [facebook/hubert-base-ls960]")
@click.option("--quantizer", help="Audio-to-semantic quantizer checkpoint for cloning. [none]")
@click.option("--job-lease-sec", type=float, help="Take over a crashed process's jobs after this long. [60]")
@click.option("--job-retention-hours", type=float, help="Keep finished job audio this long. [168]")
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
    state = app.extensions["barkserve"]
    # SIGTERM (service managers) stops like Ctrl-C: the job runner and the engines end cleanly;
    # unfinished jobs resume at the next start.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        waitress.serve(app, host=config.host, port=config.port, threads=config.threads, ident="barkserve")
    except KeyboardInterrupt:
        pass
    finally:
        state.runner.stop(timeout=10)
        state.synthesizer.close()
        logging.getLogger("barkserve").info("barkserve stopped")


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
    from barkserve.synthesizer import Synthesizer

    if (text is None) == (text_file is None):
        raise click.UsageError("give either TEXT or --file, not both")
    text = text if text is not None else text_file.read()
    fmt = _format_of(output)
    options = take_options(flags)
    config = ServerConfig.from_sources({"max_text_chars": 10_000_000, **flags})
    started = time.monotonic()
    with Synthesizer(config) as synth, Progress() as progress:
        result = synth.synthesize(text, voice=voice_arg(voice), options=options, on_chunk=progress.update)
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


@main.command()
@click.argument("input_file", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@click.option("-o", "--output", type=click.Path(path_type=Path, dir_okay=False), required=True,
              help="Output file; its extension picks the format.")  # fmt: skip
@click.option("--voice", help="0-9, a preset name or a custom voice name.")
@click.option("--seed", type=int, help="Seed of the whole book (chunk i uses seed + i).")
@click.option("--max-duration", type=float, help="Cap on each chunk's audio length in seconds.")
@click.option("--pause", "sentence_pause", type=float, help="Silence between chunks, seconds. [0.25]")
@click.option("--carry-history/--fixed-voice", default=None, help="Feed each chunk's tokens to the next.")
@model_options
@job_options
@friendly_errors
def book(input_file: Path, output: Path, voice: str | None, **flags: Any) -> None:
    """Turn a .txt or .md file into one audio file as a durable job; Ctrl-C stops, the same command resumes."""
    from barkserve.jobs import JobRunner, JobStore
    from barkserve.jobs.store import fingerprint
    from barkserve.jobs.submit import prepare_job, submit_job
    from barkserve.synthesizer import Synthesizer
    from barkserve.text import markdown_to_text

    fmt = _format_of(output)
    options = take_options(flags)
    config = ServerConfig.from_sources(flags)
    raw = input_file.read_text(encoding="utf-8-sig")
    text = markdown_to_text(raw) if input_file.suffix.lower() == ".md" else raw
    synth = Synthesizer(config)
    request = prepare_job(synth, text, voice=voice_arg(voice), fmt=fmt.name, options=options)
    # The same command (same text, voice, options and output) finds the same job and resumes it.
    key = "cli:" + fingerprint({**request.fields, "output": str(output.resolve())})
    config.jobs_dir.mkdir(parents=True, exist_ok=True)
    store = JobStore(config.database)
    job, created = submit_job(store, request, idempotency_key=key, seed=int(key[-7:], 16))
    click.echo(f"{'started' if created else 'resuming'} job {job.id} ({job.chunks_done} chunks done)", err=True)
    bar = JobProgress()
    runner = JobRunner(store, synth, config.jobs_dir, lease_sec=config.job_lease_sec, on_chunk=bar.update)
    try:
        while store.get(job.id).state in ("queued", "running"):
            if not runner.run_once(job.id):
                time.sleep(1.0)  # another process holds it; wait for its lease to lapse
    except KeyboardInterrupt:
        bar.close()
        synth.close()  # let the engine thread finish its step before the interpreter goes
        done = store.get(job.id)
        progress = f"{done.chunks_done}/{done.chunks_total}"
        click.echo(f"\nstopped at {progress} chunks; run the same command to resume", err=True)
        sys.exit(130)
    bar.close()
    synth.close()
    final = store.get(job.id)
    if final.state != "succeeded":
        raise click.ClickException(f"job {job.id} {final.state}: {final.error or ''}")
    output.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(config.jobs_dir / job.id / f"final.{fmt.name}", output)
    click.echo(f"wrote {output} ({final.audio_sec:.1f} s, {final.chunks_total} chunks, job {job.id})")


class JobProgress:
    """tqdm bar fed by the job runner after each chunk."""

    def __init__(self) -> None:
        self._bar: Any = None

    def update(self, job: Any) -> None:
        from tqdm import tqdm

        if self._bar is None:
            self._bar = tqdm(total=job.chunks_total, unit="chunk", desc="book", file=sys.stderr)
        self._bar.set_postfix_str(f"{job.audio_sec:.1f} s audio")
        self._bar.update(job.chunks_done - self._bar.n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


@main.command()
@click.option("--state", type=click.Choice(["queued", "running", "succeeded", "failed", "cancelled"]))
@click.option("--limit", type=int, default=50, show_default=True)
@job_options
@friendly_errors
def jobs(state: str | None, limit: int, **flags: Any) -> None:
    """List the jobs in the job store."""
    from barkserve.jobs import JobStore

    config = ServerConfig.from_sources(flags)
    if config.database_url == "" and not (config.jobs_dir / "barkserve.db").exists():
        click.echo("no jobs yet")
        return
    rows, total = JobStore(config.database).page(limit, 0, state)
    click.echo(f"{'id':32}  {'state':9}  {'chunks':>9}  {'audio s':>8}  created")
    for job in rows:
        chunks = f"{job.chunks_done}/{job.chunks_total if job.chunks_total is not None else '?'}"
        click.echo(f"{job.id:32}  {job.state:9}  {chunks:>9}  {job.audio_sec:8.1f}  {job.created_at:%Y-%m-%d %H:%M}")
    click.echo(f"{len(rows)} of {total} job(s)")


def voice_arg(voice: str | None) -> int | str | None:
    """A --voice flag as the library takes it: ASCII digits are a preset number, anything else a name."""
    return int(voice) if voice is not None and voice.isascii() and voice.isdigit() else voice


def _format_of(output: Path) -> Any:
    from barkserve.formats import FORMATS, get_format

    extension = output.suffix.lstrip(".").lower()
    names = [n for n, f in FORMATS.items() if f.extension == extension and n != "wav_float"]
    if not names:
        raise click.UsageError(f"cannot tell the format from {output.name!r}; use .wav .flac .mp3 .opus .aac .pcm")
    return get_format(names[0])


@main.command("make-tiny")
@click.argument("directory", type=click.Path(path_type=Path, file_okay=False))
@click.option("--presets-from", type=click.Path(path_type=Path, exists=True, file_okay=False),
              help="Folder of real Bark .npz prompts to ship as presets (random prompts otherwise).")  # fmt: skip
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the random weights.")
def make_tiny(directory: Path, presets_from: Path | None, seed: int) -> None:
    """Build a tiny random Bark checkpoint in DIRECTORY (offline testing; its audio is noise)."""
    from barkserve.testing.tiny import make_tiny_checkpoint

    make_tiny_checkpoint(directory, presets_from=presets_from, seed=seed)
    click.echo(f"tiny random Bark checkpoint written to {directory}; run: barkserve serve --model {directory}")


def _attach_cloning() -> None:
    from barkserve.cloning.cli import clone, quantizer

    main.add_command(clone)
    main.add_command(quantizer)


_attach_cloning()

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
