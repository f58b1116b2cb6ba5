"""`barkserve say` (text to a file) and `barkserve jobs` (the job store's jobs); `barkserve book` is in book.py."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import click

from barkserve.captions.formats import CAPTION_FORMATS
from barkserve.cli.options import (
    ADAPTER_OPTION,
    adapter_model,
    format_of,
    friendly_errors,
    job_options,
    markup_options,
    model_options,
    scorer_options,
    take_options,
    voice_arg,
)
from barkserve.config import ServerConfig

QC_OPTION = click.option(
    "--qc/--no-qc",
    default=None,
    help="Quality control: hear each chunk (asr_model), regenerate it with the next seed if it goes off script.",
)
# How many chunks said differently from how they are written `say` shows.
SHOWN_CHANGES = 5


@click.command()
@click.argument("text", required=False)
@click.option("-f", "--file", "text_file", type=click.File(encoding="utf-8"), help="Read the text from a file.")
@click.option("-o", "--output", type=click.Path(path_type=Path, dir_okay=False),
              help="Output file; its extension picks the format (wav, flac, mp3, opus, aac, pcm).")  # fmt: skip
@click.option("--plan", "plan_only", is_flag=True,
              help="Print what the text becomes (chunks as Bark is given them, pauses, respellings) as JSON, "
                   "as POST /v1/audio/speech/plan answers; generate nothing.")  # fmt: skip
@click.option("--voice", help="0-9, a preset name (v2/de_speaker_3) or a custom voice name.")
@click.option("--seed", type=int, help="Random seed; the same seed and input give the same audio.")
@click.option("--text-temp", type=float, help="Semantic-stage temperature (0 = greedy). [0.7]")
@click.option("--waveform-temp", type=float, help="Coarse/fine-stage temperature (0 = greedy). [0.7]")
@click.option("--min-eos-p", type=float, help="Stop once end-of-speech is this likely (e.g. 0.2).")
@click.option("--max-duration", type=float, help="Cap on each chunk's audio length in seconds.")
@click.option("--pause", "sentence_pause", type=float, help="Silence between chunks, seconds. [0.25]")
@click.option("--carry-history/--fixed-voice", default=None, help="Feed each chunk's tokens to the next.")
@click.option("--speed", type=float, help="Tempo factor 0.25-4.0, pitch unchanged. [1.0]")
@markup_options
@QC_OPTION
@click.option("--captions", "captions", type=click.Choice(CAPTION_FORMATS),
              help="Also write captions beside the output (speech.srt for speech.mp3).")  # fmt: skip
@click.option("--caption-words", is_flag=True, help="Time each word in the captions (CTC alignment, align_model).")
@click.option("--align-model", help="CTC checkpoint for word times: hub id or folder. [facebook/wav2vec2-base-960h]")
@model_options
@ADAPTER_OPTION
@scorer_options
@friendly_errors
def say(
    text: str | None,
    text_file: Any,
    output: Path | None,
    plan_only: bool,
    voice: str | None,
    captions: str | None,
    caption_words: bool,
    adapter: str | None,
    **flags: Any,
) -> None:
    """Speak TEXT (or the text of --file) into an audio file, chunk by chunk, with a progress bar."""
    from barkserve.captions import aligner_for, captions_for, sidecar_path, write_captions
    from barkserve.synthesizer import Synthesizer

    if (text is None) == (text_file is None):
        raise click.UsageError("give either TEXT or --file, not both")
    if caption_words and captions is None:
        raise click.UsageError("--caption-words needs --captions srt|vtt|json")
    text = text if text is not None else text_file.read()
    options = take_options(flags)
    config = ServerConfig.from_sources(flags)
    if plan_only:
        print_plan(config, text, voice, adapter, options)
        return
    if output is None:
        raise click.UsageError("give -o/--output FILE (or --plan to see the plan without generating)")
    fmt = format_of(output)
    aligner = aligner_for(config.scorers) if caption_words else None  # a missing aligner fails before generation
    started = time.monotonic()
    with Synthesizer(config) as synth, Progress() as progress:
        model = adapter_model(config, adapter)
        result = synth.synthesize(text, voice_arg(voice), model, options=options, on_chunk=progress.update)
    from barkserve.audio.files import write_file

    write_file(output, result.audio, result.sample_rate, fmt)
    click.echo(
        f"wrote {output} ({result.duration_sec:.2f} s in {result.chunk_count} chunk(s), voice {result.voice}, "
        f"seed {result.seed}, {time.monotonic() - started:.1f} s)"
    )
    changed = [c for c in result.chunks if c.said != c.spoken]  # by the lexicon, normalization or SSML
    for chunk in changed[:SHOWN_CHANGES]:
        click.echo(f"said as: {chunk.said!r} (written {chunk.spoken!r})")
    if len(changed) > SHOWN_CHANGES:
        click.echo(f"said differently from the text in {len(changed) - SHOWN_CHANGES} more chunk(s)")
    if captions is not None:
        cues, warnings = captions_for(result, aligner)
        for warning in warnings:
            click.echo(f"warning: {warning}", err=True)
        path = write_captions(cues, sidecar_path(output, captions), captions)
        click.echo(f"wrote {path} ({len(cues)} cues{', word times' if aligner and not warnings else ''})")


def print_plan(config: ServerConfig, text: str, voice: str | None, adapter: str | None, options: Any) -> None:
    """Plan the text as a synthesis would (the server's dry run: `server.planning`) and print it as JSON."""
    import json

    from barkserve.server.planning import plan_answer
    from barkserve.synthesizer import Synthesizer

    with Synthesizer(config) as synth:
        plan = synth.plan(text, voice_arg(voice), adapter_model(config, adapter), options=options)
        click.echo(json.dumps(plan_answer(plan), ensure_ascii=False, indent=2))


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


@click.command()
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
