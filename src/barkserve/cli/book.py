"""`barkserve book`: an ebook (or a text) into an audiobook as a durable job; Ctrl-C stops, the same command resumes."""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import click

from barkserve.cli.batch import RAY_OPTION, ray_flags
from barkserve.cli.options import (
    ADAPTER_OPTION,
    adapter_model,
    format_of,
    friendly_errors,
    job_options,
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


@click.command()
@click.argument("input_file", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@click.option("-o", "--output", type=click.Path(path_type=Path, dir_okay=False),
              help="book.m4b (chapters, title, author, cover), book.zip (a file per chapter), book.epub "
                   "(a read-along EPUB 3) or one audio file (.mp3, .wav, ...: the whole book). "
                   "Required unless --plan.")  # fmt: skip
@click.option("--format", "book_format", type=click.Choice(["m4b", "zip", "epub3"]),
              help="What -o is, whatever its extension: epub3 is a read-along book (the text highlighted as it is "
                   "read: EPUB 3 Media Overlays).")  # fmt: skip
@click.option("--voice", help="The book's voice: 0-9, a preset name or a custom voice name.")
@click.option("--chapter-voice", "chapter_voices", multiple=True, metavar="N=VOICE",
              help="Chapter N's voice (numbered from 1, as --plan lists them); repeatable.")  # fmt: skip
@click.option("--chapters", "chapter_spec", metavar="RANGES", help="Only these chapters: 3-5, or 1,4,7-9.")
@click.option("--chapter-format", default="mp3", show_default=True, help="With -o book.zip: each chapter's format.")
@click.option("--captions", "captions", type=click.Choice(["srt", "vtt", "json"]),
              help="Also write the book's captions beside the output (book.srt); with -o book.zip, each "
                   "chapter's in the zip beside its audio (.srt and .vtt always, .json on request).")  # fmt: skip
@click.option("--caption-words", is_flag=True, help="Time each word in the captions (CTC alignment, align_model).")
@click.option("--align-model", help="CTC checkpoint for word times: hub id or folder. [facebook/wav2vec2-base-960h]")
@click.option("--plan", "dry_run", is_flag=True,
              help="Print chapters (first words, words, chunks, language, voices); generate nothing.")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="With --plan: print the plan as JSON.")
@click.option("--notify", "webhook", metavar="URL",
              help="POST a signed JSON message to URL when the book is done or fails (Standard Webhooks; the "
                   "secret: `barkserve keys webhook-secret`).")  # fmt: skip
@click.option("--audiobookshelf", is_flag=True,
              help="Upload the finished .m4b to Audiobookshelf (BARKSERVE_AUDIOBOOKSHELF_URL, _TOKEN, _LIBRARY, "
                   "_FOLDER).")  # fmt: skip
@click.option("--cast", "cast", metavar="auto|CAST.json",
              help="Full cast: each character's quotes in a voice of their own. 'auto' finds them; --plan "
                   "writes the cast sheet (--cast-sheet) to edit and give back here.")  # fmt: skip
@click.option("--cast-sheet", type=click.Path(path_type=Path, dir_okay=False), default=Path("cast.json"),
              show_default=True, help="With --plan and --cast: where the cast sheet is written.")  # fmt: skip
@click.option("--cast-llm", metavar="URL", help="With --cast: an OpenAI-compatible API (e.g. http://localhost:8080/v1) "
              "that labels the speakers; rules where it fails.")  # fmt: skip
@click.option("--cast-llm-model", default="gpt-4o-mini", show_default=True, help="With --cast-llm: the model.")
@click.option("--cast-llm-key-env", default="BARKSERVE_CAST_LLM_KEY", show_default=True,
              help="With --cast-llm: the environment variable that holds its API key.")  # fmt: skip
@click.option("--seed", type=int, help="Seed of the whole book (chunk i uses seed + i).")
@click.option("--max-duration", type=float, help="Cap on each chunk's audio length in seconds.")
@click.option("--pause", "sentence_pause", type=float, help="Silence between chunks, seconds. [0.25]")
@click.option("--carry-history/--fixed-voice", default=None, help="Feed each chunk's tokens to the next.")
@QC_OPTION
@RAY_OPTION
@click.option("--ray-replicas", type=click.IntRange(min=1), default=1, show_default=True,
              help="With --ray: engine actors making chunks (each loads the model once).")  # fmt: skip
@ray_flags
@model_options
@ADAPTER_OPTION
@scorer_options
@job_options
@friendly_errors
def book(
    input_file: Path,
    output: Path | None,
    voice: str | None,
    chapter_voices: tuple[str, ...],
    chapter_spec: str | None,
    chapter_format: str,
    book_format: str | None,
    captions: str | None,
    caption_words: bool,
    dry_run: bool,
    as_json: bool,
    webhook: str | None,
    audiobookshelf: bool,
    cast: str | None,
    cast_sheet: Path,
    cast_llm: str | None,
    cast_llm_model: str,
    cast_llm_key_env: str,
    ray_address: str | None,
    ray_replicas: int,
    ray_gpus_per_replica: float,
    ray_cpus_per_replica: float,
    adapter: str | None,
    **flags: Any,
) -> None:
    """Read INPUT_FILE (.epub, .pdf, .html, .md, .txt) aloud, chapter by chapter, as a durable job."""
    from barkserve.books import check_size, parse_chapters, read_book
    from barkserve.jobs.submit import prepare_book_job, with_notifications
    from barkserve.synthesizer import Synthesizer

    if output is None and not dry_run:
        raise click.UsageError("give -o/--output (book.m4b, book.zip, book.epub or an audio file), or --plan")
    if caption_words and captions is None:
        raise click.UsageError("--caption-words needs --captions srt|vtt|json")
    kind, fmt = output_kind(output, chapter_format, book_format) if output is not None else ("m4b", "mp3")
    options = take_options(flags)
    config = ServerConfig.from_sources(flags)
    check_size(input_file.stat().st_size, input_file.name, config.max_book_bytes)  # before reading it
    ebook = read_book(input_file.read_bytes(), input_file.name, max_bytes=config.max_book_bytes)
    if ray_address is not None and not dry_run:  # an unreachable cluster fails before the model loads
        from barkserve.scale import connect

        connect(ray_address)
    labeler = None
    if cast_llm is not None and cast is None:
        raise click.UsageError("--cast-llm labels the speakers of a full cast: give --cast auto (or a cast sheet)")
    if cast_llm is not None:
        from barkserve.books.cast_llm import CastLLM

        labeler = CastLLM(cast_llm, cast_llm_model, cast_llm_key_env)
    synth = Synthesizer(config)
    try:
        request = prepare_book_job(
            synth,
            ebook,
            voice=voice_arg(voice),
            model=adapter_model(config, adapter),
            fmt=fmt,
            options=options,
            output=kind,
            chapters=parse_chapters(chapter_spec),
            chapter_voices=list(chapter_voices),
            caption_words=caption_words,  # a missing aligner fails now, before generation
            cast=cast_value(cast),
            cast_llm=labeler,
        )
        # The operator's own command: any address may be notified (the server refuses private ones).
        request = with_notifications(request, config.notify, webhook, audiobookshelf, allow_any_webhook=True)
        if dry_run:
            from barkserve.jobs.preview import plan_view

            view = plan_view(synth, request, ebook, parse_chapters(chapter_spec))
            if as_json:
                click.echo(json.dumps(view, ensure_ascii=False, indent=1))
            else:
                print_plan(view)
            if view["cast"] is not None:
                cast_sheet.write_text(json.dumps(view["cast"], ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
                click.echo(f"wrote the cast sheet {cast_sheet}: edit it, then give it back with --cast {cast_sheet}",
                           err=True)  # fmt: skip
            return
        assert output is not None  # checked above
        if ray_address is None:
            run_book(synth, config, request, output, captions)
        else:
            from barkserve.scale.book import RayChunks

            with RayChunks(config, ray_replicas, ray_gpus_per_replica, ray_cpus_per_replica) as chunks:
                run_book(synth, config, request, output, captions, chunks)
    finally:
        synth.close()  # let the engine thread finish its step before the interpreter goes


def cast_value(cast: str | None) -> object:
    """--cast as prepare_book_job takes it: None, "auto", or the cast sheet's text read from its file."""
    if cast is None or cast == "auto":
        return cast
    path = Path(cast)
    if not path.is_file():
        raise click.BadParameter(f"{cast!r} is neither 'auto' nor a cast sheet file", param_hint="--cast")
    return path.read_text(encoding="utf-8")


def output_kind(output: Path, chapter_format: str, book_format: str | None = None) -> tuple[str, str]:
    """("m4b" | "zip" | "epub3" | "single", the audio format of the job's files) for an output path
    (or `book_format`, the --format given)."""
    from barkserve.audio.encode import get_format

    suffix = f".{book_format}" if book_format is not None else output.suffix.lower()
    if suffix in (".epub", ".epub3"):
        return "epub3", "mp3"
    if suffix == ".m4b":
        return "m4b", "mp3"
    if suffix == ".zip":
        return "zip", get_format(chapter_format).name
    return "single", format_of(output).name


def print_plan(view: dict[str, Any]) -> None:
    """The dry run: each chapter's words, chunks, estimated length, language, voices and title, then
    its first words and flags; then what of the book is not read."""
    click.echo(view["title"] + (f" by {view['author']}" if view["author"] else "") + f" [{view['language'] or '?'}]")
    click.echo(f"{'#':>4}  {'words':>6}  {'chunks':>6}  {'est. audio':>10}  {'lang':<4}  {'voices':<20}  title")
    for row in view["chapters"]:
        voices = ", ".join(row["voices"])
        click.echo(
            f"{row['number']:>4}  {row['words']:>6}  {row['chunks']:>6}  {clock(row['estimated_seconds']):>10}  "
            f"{row['language'] or '?':<4}  {voices[:20]:<20}  {row['title']}"
        )
        flags = f"  [{'; '.join(row['flags'])}]" if row["flags"] else ""
        click.echo(f"{'':>6}{row['first_words'][:90]}…{flags}")
    total = f"{len(view['chapters'])} chapter(s), {view['chunks']} chunk(s)"
    click.echo(f"{total}, about {clock(view['estimated_seconds'])} of audio (estimated)")
    if view.get("cast"):
        speakers = view["cast"]["speakers"]
        click.echo(f"cast: narrator {view['cast']['narrator']}, {len(speakers)} speaker(s)")
        for s in speakers:
            click.echo(f"{s['lines']:>6}  {s['voice'] or 'narrator':<18}  {s.get('gender') or '':<6}  {s['name']}")
    for warning in view["warnings"]:
        click.echo(f"warning: {warning}")


def run_book(
    synth: Any, config: ServerConfig, request: Any, output: Path, captions: str | None = None, chunks: Any = None
) -> None:
    """Submit (or find) the book's job, run it to the end with a progress bar per chapter, copy the result.

    `chunks` makes the chunks elsewhere (`scale.book.RayChunks`); the job store records them as always.
    """
    from barkserve.audio.files import atomic_write
    from barkserve.jobs import JobRunner, JobStore
    from barkserve.jobs.files import JobFiles
    from barkserve.jobs.store import fingerprint
    from barkserve.jobs.submit import submit_job

    # The same command (same book, voices, options and output) finds the same job and resumes it.
    key = "cli:" + fingerprint({"request": request.fingerprint, "output": str(output.resolve())})
    config.jobs_dir.mkdir(parents=True, exist_ok=True)
    store = JobStore(config.database)
    job, created = submit_job(store, request, idempotency_key=key, seed=int(key[-7:], 16))
    click.echo(f"{'started' if created else 'resuming'} job {job.id} ({job.chunks_done} chunks done)", err=True)
    bar = BookProgress(store)
    runner = JobRunner(
        store, synth, config.jobs_dir, lease_sec=config.job_lease_sec, on_chunk=bar.update, chunk_source=chunks
    )
    try:
        while store.get(job.id).state in ("queued", "running"):
            if not runner.run_once(job.id):
                time.sleep(1.0)  # another process holds it; wait for its lease to lapse
    except KeyboardInterrupt:
        bar.close()
        synth.close()
        done = store.get(job.id)
        click.echo(
            f"\nstopped at {done.chunks_done}/{done.chunks_total} chunks; run the same command to resume", err=True
        )
        sys.exit(130)
    bar.close()
    final = store.get(job.id)
    notify_now(store, config, job.id)
    if final.state != "succeeded":
        raise click.ClickException(f"job {job.id} {final.state}: {final.error or ''}")
    files = JobFiles(config.jobs_dir, job.id)
    kind = request.book["output"]
    source = files.book(kind) if kind in ("m4b", "zip", "epub3") else files.final(request.format)
    if kind == "zip" and captions == "json":  # the chapters' .srt and .vtt are in the job's zip already
        atomic_write(output, lambda f: zip_with_json_captions(source, f, files, request))
    else:
        with source.open("rb") as src:  # the output appears whole or not at all
            atomic_write(output, lambda f: shutil.copyfileobj(src, f))
    chapters = len(request.book["chapters"])
    what = f"{final.audio_sec:.1f} s of speech, {chapters} chapter(s), {final.chunks_total} chunks"
    click.echo(f"wrote {output} ({what}, job {job.id})")
    for warning in final.warnings or []:
        click.echo(f"warning: {warning}", err=True)
    if captions is None:
        return
    words = ", word times" if request.caption_words and not final.warnings else ""
    if kind == "zip":
        click.echo(f"each chapter's captions ({captions}{words}) are in {output.name} beside its audio")
    else:
        write_book_captions(files, output, captions, words)


def notify_now(store: Any, config: ServerConfig, job_id: str, tries: int = 3, wait_sec: float = 2.0) -> None:
    """Send the job's notifications (webhook, Audiobookshelf upload) now, a few tries each; what still fails
    stays queued in the job database, where a `barkserve serve` sharing it keeps trying."""
    from dataclasses import replace

    from barkserve.jobs.notify import ANY_ADDRESS, Notifier

    pending = [d for d in store.deliveries(job_id) if d.state == "pending"]
    if not pending:
        return
    notifier = Notifier(store, replace(config.notify, allow_networks=ANY_ADDRESS), config.jobs_dir)
    for delivery in pending:
        for attempt in range(tries):
            if notifier.attempt(delivery):
                click.echo(f"notified: {delivery.kind} ({delivery.event})", err=True)
                break
            delivery = next(d for d in store.deliveries(job_id) if d.id == delivery.id)
            if attempt + 1 < tries:
                time.sleep(wait_sec)
        else:
            error = (delivery.log or [{}])[-1].get("error")
            click.echo(f"warning: {delivery.kind} not delivered after {tries} tries: {error}", err=True)


def zip_with_json_captions(source: Path, out: Any, files: Any, request: Any) -> None:
    """The job's zip of chapters, with each chapter's JSON captions beside its audio (`01 - Title.json`)."""
    import zipfile

    from barkserve.books.package import chapter_file_names

    titles = [c["title"] for c in request.book["chapters"]]
    with zipfile.ZipFile(source) as archive, zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as copy:
        for info in archive.infolist():  # one chapter file in memory at a time
            copy.writestr(info, archive.read(info))
        for number, name in enumerate(chapter_file_names(titles, request.format), start=1):
            path = files.captions(chapter=number)  # the stored JSON, with its warnings
            if not path.is_file():
                raise click.ClickException("this job finished before barkserve made captions per chapter")
            copy.writestr(f"{name.rsplit('.', 1)[0]}.json", path.read_bytes())


def write_book_captions(files: Any, output: Path, fmt: str, words: str) -> None:
    """The job's captions beside the output (book.srt), timed to the whole book."""
    from barkserve.captions import sidecar_path, write_captions

    cues = files.read_captions()
    if cues is None:
        raise click.ClickException("this job finished before barkserve made captions; remove --captions")
    path = write_captions(cues, sidecar_path(output, fmt), fmt)
    click.echo(f"wrote {path} ({len(cues)} captions{words})")


def clock(seconds: float) -> str:
    minutes, sec = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{sec:02d}"


class BookProgress:
    """A tqdm bar per chapter (its chunks, its ETA), with the whole book's ETA beside it, on stderr."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self._bar: Any = None
        self._chapter: int | None = None

    def update(self, job: Any) -> None:
        from tqdm import tqdm

        chapters = self.store.chapter_progress(job.id) or [
            {"chapter": 1, "title": "text", "chunks_done": job.chunks_done, "chunks_total": job.chunks_total}
        ]
        # Chunks are made in order: the chapter being read is the last one with a finished chunk.
        current = next((c for c in reversed(chapters) if c["chunks_done"]), chapters[0])
        if current["chapter"] != self._chapter:
            self.close()
            self._chapter = current["chapter"]
            desc = f"{current['chapter']}/{len(chapters)} {current['title'][:30]}"
            self._bar = tqdm(total=current["chunks_total"], unit="chunk", desc=desc, file=sys.stderr)
        left = (job.chunks_total or 0) - job.chunks_done
        book_eta = job.generation_sec / max(1, job.chunks_done) * left
        self._bar.set_postfix_str(f"{job.audio_sec:.1f} s audio, book ETA {clock(book_eta)}")
        self._bar.update(current["chunks_done"] - self._bar.n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
