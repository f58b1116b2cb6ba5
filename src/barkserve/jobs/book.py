"""Every job as a book: one planner and one assembler for text and book jobs.

A job's voiced segments are planned as syntheses, the chunks numbered across the job, and its chapters'
audio packaged once they are all made. A text job is a book of one untitled chapter with one segment in
the job's voice, kept as one file in the job's format (`as_book`).

Chunk `i` of the book uses seed `seed + i` whichever segment it is in, so a book's seed reproduces it.
Segments of one chapter are joined with the sentence pause; chapters with `CHAPTER_GAP_SEC` of silence.
Sentence captions are made per segment from its chunks' audio, then placed at the segment's offset in
its chapter and the chapter's offset in the book. With word captions, each chapter's words are aligned
on its audio. A real book's chapters are evened in loudness, and each chapter's captions are kept on
their own too, timed from the chapter's start.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from barkserve.audio.dsp import silence
from barkserve.books.package import (
    CHAPTER_GAP_SEC,
    ChapterSink,
    FlacSink,
    M4bSink,
    ZipSink,
    normalize_loudness,
)
from barkserve.books.readalong import ReadAlongBook
from barkserve.books.readalong.sink import ReadAlongSink
from barkserve.captions import Aligner, Cue, captions_for, shift, timed_words
from barkserve.errors import JobPlanChanged, NoSpeech
from barkserve.jobs.files import JobFiles
from barkserve.jobs.store import Job, JobBook, JobChunk
from barkserve.options import MAX_SEED
from barkserve.synthesizer import SynthesisPlan, Synthesizer

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BookSpec:
    """What a job reads and how its audio is packaged."""

    chapters: list[Any]  # JobBook.chapters' form: [{"title", "segments": [{"voice", "text"}]}]
    output: str = "single"  # "m4b", "zip" (chapter files), "epub3" (read-along) or "single" (one file)
    title: str = ""
    author: str | None = None
    cover: bytes | None = None
    # A book's chapters: evened in loudness, captions kept per chapter, warnings named by chapter.
    # False for a text job, whose audio and captions stay as /synthesize would make them.
    chaptered: bool = True
    source: bytes | None = None  # output "epub3": the EPUB the book was read from (None: one is made)
    language: str | None = None


def as_book(job: Job, book: JobBook | None) -> BookSpec:
    """The book a job reads: its stored book, or a text job's one chapter of one segment."""
    if book is None:
        segment = {"voice": job.voice, "text": job.text}
        return BookSpec([{"title": "", "segments": [segment]}], chaptered=False)
    spec = BookSpec(book.chapters, book.output, book.title, book.author, book.cover)
    return replace(spec, source=book.source, language=book.language) if book.output == "epub3" else spec


@dataclass(frozen=True, eq=False)
class BookPlan:
    """The syntheses of a book job, one per voiced segment, in reading order."""

    plans: tuple[SynthesisPlan, ...]
    chapter_of: tuple[int, ...]  # per plan, its chapter's index
    titles: tuple[str, ...]

    @property
    def chapter_chunks(self) -> list[int]:
        counts = [0] * len(self.titles)
        for plan, chapter in zip(self.plans, self.chapter_of, strict=True):
            counts[chapter] += len(plan.token_ids)
        return counts

    @property
    def units(self) -> list[tuple[SynthesisPlan, int]]:
        """Each chunk of the job, in order: the synthesis it belongs to and its index there."""
        return [(plan, i) for plan in self.plans for i in range(len(plan.token_ids))]


def plan_book(synth: Synthesizer, job: Job, book: BookSpec) -> BookPlan:
    """Plan every segment of a job with the job's model and options."""
    return plan_chapters(synth, book.chapters, job.model, job.options)


def plan_chapters(synth: Synthesizer, chapters: list[Any], model: str, options: dict[str, Any]) -> BookPlan:
    """Plan every segment of `chapters` (JobBook.chapters' form), seeds numbered across the book.

    The segments of one voice share quality control's reference: in a full cast each chunk's voice is
    checked against the first accepted chunk of its own speaker's voice, not the narrator's.
    """
    seed = int(options.get("seed") or 0)
    plans, chapter_of, offset = [], [], 0
    references: dict[str, list[Any]] = {}
    for k, chapter in enumerate(chapters):
        for segment in chapter["segments"]:
            plan = synth.plan(
                segment["text"],
                voice=segment["voice"],
                model=model,
                options={**options, "seed": (seed + offset) % (MAX_SEED + 1)},
            )
            plan = replace(plan, _reference=references.setdefault(plan.info.voice, []))
            plans.append(plan)
            chapter_of.append(k)
            offset += len(plan.token_ids)
    return BookPlan(tuple(plans), tuple(chapter_of), tuple(c["title"] for c in chapters))


def assemble_book(
    job: Job,
    book: BookSpec,
    plan: BookPlan,
    rows: list[JobChunk],
    files: JobFiles,
    aligner: Aligner | None = None,
    skipped: Sequence[str] = (),
) -> list[str]:
    """Write the finished job chapter by chapter (a long book is never all in memory): final.flac
    (the whole job) and the m4b or the zip, then the captions, the whole job's and each chapter's
    (with word times when an `aligner` is given); the single file is made from final.flac.

    Every file appears only complete; a failure leaves none of them in place.

    Returns:
        The warnings of word timing (empty at sentence level), after `skipped` (why there is no aligner).
    """
    rate = plan.plans[0].info.sample_rate
    chapters = _chapter_parts(plan, rows)
    # Each chapter's length as recorded: its chunks, and the pauses between its segments.
    speech = [
        sum(row.samples or 0 for _, part in parts for row in part) + sum(len(_pause(seg)) for seg, _ in parts[1:])
        for parts in chapters
    ]
    if not any(speech):  # every chunk ended before any sound: no playable file to make
        raise NoSpeech()
    gap = round(CHAPTER_GAP_SEC * rate)
    lengths = [n + (gap if k < len(speech) - 1 else 0) for k, n in enumerate(speech)]
    cues: list[Cue] = []
    chapter_cues: list[tuple[list[Cue], list[str]]] = []
    with contextlib.ExitStack() as stack:
        sinks: list[ChapterSink] = [stack.enter_context(FlacSink(files.final("flac"), rate))]
        zipped: ZipSink | None = None
        readalong = _readalong(job, book, plan, files, rate) if book.output == "epub3" else None
        if readalong is not None:
            sinks.append(stack.enter_context(readalong))
        if book.output == "m4b":
            m4b = M4bSink(files.book("m4b"), rate, plan.titles, lengths, book.title, book.author, book.cover)
            sinks.append(stack.enter_context(m4b))
        elif book.output == "zip":
            zipped = ZipSink(files.book("zip"), rate, plan.titles, job.format)
            sinks.append(stack.enter_context(zipped))
        for k, parts in enumerate(chapters):
            audio, own = _chapter(parts, files, rate)
            if book.chaptered:
                audio = normalize_loudness(audio, rate)
            where = f"chapter {k + 1}: " if book.chaptered else ""
            own, warnings = timed_words(audio, rate, own, aligner, where)
            if k < len(chapters) - 1:
                audio = np.concatenate([audio, np.zeros(gap, np.float32)])
            if len(audio) != lengths[k]:
                raise JobPlanChanged(
                    f"job {job.id}: the chunk files of chapter {k + 1} do not match their records; submit it again"
                )
            for sink in sinks:
                sink.add(audio)
            # A chapter's own captions cover its audio to the end (the last one stays up through the gap).
            alone = _through(own, len(audio) / rate)
            for captioned in (zipped, readalong):
                if captioned is not None:
                    captioned.add_captions(alone)
            chapter_cues.append((alone, warnings))
            cues += shift(own, sum(lengths[:k]) / rate)
    every = [*skipped, *(w for _, found in chapter_cues for w in found)]
    files.write_captions(cues, every)
    if book.chaptered:
        for k, (alone, warnings) in enumerate(chapter_cues):
            files.write_captions(alone, [*skipped, *warnings], chapter=k + 1)
    if book.output == "single":
        files.ensure(job.format)
    return [*every, *(readalong.warnings if readalong is not None else [])]


def _readalong(job: Job, book: BookSpec, plan: BookPlan, files: JobFiles, rate: int) -> ReadAlongSink:
    """The read-along EPUB's sink: the book's own EPUB (or one made from its text), a par per caption
    (per word when the job times words)."""
    texts = ["".join(s["text"] for s in chapter["segments"]) for chapter in book.chapters]
    about = ReadAlongBook(book.title, book.author, book.language, book.source)
    return ReadAlongSink(files.book("epub3"), rate, plan.titles, texts, about, bool(job.caption_words))


def _through(cues: list[Cue], end: float) -> list[Cue]:
    """The cues with the last one lasting until `end` (when it ends before)."""
    if not cues or cues[-1].end >= end:
        return cues
    return [*cues[:-1], replace(cues[-1], end=end)]


def _chapter_parts(plan: BookPlan, rows: list[JobChunk]) -> list[list[tuple[SynthesisPlan, list[JobChunk]]]]:
    """Per chapter, its segments' syntheses with their chunk rows."""
    chapters: list[list[tuple[SynthesisPlan, list[JobChunk]]]] = [[] for _ in plan.titles]
    position = 0
    for segment, chapter in zip(plan.plans, plan.chapter_of, strict=True):
        count = len(segment.token_ids)
        chapters[chapter].append((segment, rows[position : position + count]))
        position += count
    return chapters


def _pause(segment: SynthesisPlan) -> np.ndarray:
    """The silence between two segments of a chapter: the sentence pause, as between chunks."""
    opts = segment.info.options
    return silence(opts.sentence_pause_sec / opts.speed, segment.info.sample_rate)


def _chapter(
    parts: list[tuple[SynthesisPlan, list[JobChunk]]], files: JobFiles, rate: int
) -> tuple[np.ndarray, list[Cue]]:
    """A chapter's audio (its segments joined with pauses) and its captions, from its chunk files."""
    pieces: list[np.ndarray] = []
    cues: list[Cue] = []
    for segment, part in parts:
        audio = [files.audio(row.index) for row in part]
        if pieces:
            pieces.append(_pause(segment))
        spoken, _ = captions_for(segment.speech(audio))
        cues += shift(spoken, sum(len(p) for p in pieces) / rate)
        pieces.extend(audio)
    return (np.concatenate(pieces) if pieces else np.zeros(0, np.float32)), cues


def estimated_seconds(plan: BookPlan) -> list[float]:
    """Each chapter's audio length as estimated before generating: speaking rate, capped per chunk, plus pauses."""
    from barkserve.text import MAX_CHUNK_SEC, estimate_seconds

    seconds = [0.0] * len(plan.titles)
    for segment, chapter in zip(plan.plans, plan.chapter_of, strict=True):
        opts = segment.info.options
        cap = opts.max_duration_sec or MAX_CHUNK_SEC
        speech = sum(min(estimate_seconds(c.spoken), cap) for c in segment.info.chunks)
        pauses = len(segment.info.chunks) * opts.sentence_pause_sec  # between chunks, and before the next segment
        seconds[chapter] += (speech + pauses) / opts.speed
    return [s + (CHAPTER_GAP_SEC if k < len(seconds) - 1 else 0.0) for k, s in enumerate(seconds)]
