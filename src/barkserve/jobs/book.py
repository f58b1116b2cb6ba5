"""Book jobs: every voiced segment of every chapter planned as one synthesis, the chunks numbered across
the book, and the chapters' audio packaged once they are all made.

Chunk `i` of the book uses seed `seed + i` whichever segment it is in, so a book's seed reproduces it.
Segments of one chapter are joined with the sentence pause; chapters with `CHAPTER_GAP_SEC` of silence.
Sentence captions are made per segment from its chunks' audio, then placed at the segment's offset in
its chapter and the chapter's offset in the book.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from barkserve.audio.dsp import silence
from barkserve.books.package import chapter_audio, chapter_starts, write_m4b, write_zip
from barkserve.captions import Cue, chunk_spans, sentence_cues, shift
from barkserve.errors import NoSpeech
from barkserve.jobs.files import JobFiles
from barkserve.jobs.store import Job, JobBook, JobChunk
from barkserve.options import MAX_SEED
from barkserve.synthesizer import SynthesisPlan, Synthesizer
from barkserve.voices import language_of


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


def plan_book(synth: Synthesizer, job: Job, book: JobBook) -> BookPlan:
    """Plan every segment of a book job with the job's model and options."""
    return plan_chapters(synth, book.chapters, job.model, job.options)


def plan_chapters(synth: Synthesizer, chapters: list[Any], model: str, options: dict[str, Any]) -> BookPlan:
    """Plan every segment of `chapters` (JobBook.chapters' form), seeds numbered across the book."""
    seed = int(options.get("seed") or 0)
    plans, chapter_of, offset = [], [], 0
    for k, chapter in enumerate(chapters):
        for segment in chapter["segments"]:
            plan = synth.plan(
                segment["text"],
                voice=segment["voice"],
                model=model,
                options={**options, "seed": (seed + offset) % (MAX_SEED + 1)},
                max_chars=synth.config.max_job_chars,
            )
            plans.append(plan)
            chapter_of.append(k)
            offset += len(plan.token_ids)
    return BookPlan(tuple(plans), tuple(chapter_of), tuple(c["title"] for c in chapters))


def assemble_book(job: Job, book: JobBook, plan: BookPlan, rows: list[JobChunk], files: JobFiles) -> None:
    """Write the finished book: final.flac (the whole book), its captions, then the m4b, the zip or the
    single file."""
    rate = plan.plans[0].info.sample_rate
    pieces: list[list[np.ndarray]] = [[] for _ in plan.titles]
    cues: list[list[Cue]] = [[] for _ in plan.titles]
    position = 0
    for segment, chapter in zip(plan.plans, plan.chapter_of, strict=True):
        count = len(segment.token_ids)
        audio = [load_chunk(Path(row.path or "")) for row in rows[position : position + count]]
        position += count
        if pieces[chapter]:  # the pause between two segments of a chapter, as between its chunks
            opts = segment.info.options
            pieces[chapter].append(silence(opts.sentence_pause_sec / opts.speed, rate))
        offset = sum(len(p) for p in pieces[chapter]) / rate
        cues[chapter] += shift(plan_cues(segment, audio), offset)
        pieces[chapter].extend(audio)
    audios = [np.concatenate(p) if p else np.zeros(0, np.float32) for p in pieces]
    if not any(len(a) for a in audios):
        raise NoSpeech()
    chapters = chapter_audio(plan.titles, audios, rate)
    whole = np.concatenate([c.audio for c in chapters])
    files.write_final(whole, rate, "flac")
    starts = chapter_starts(chapters)
    files.write_captions([cue for k, own in enumerate(cues) for cue in shift(own, starts[k] / rate)])
    if book.output == "m4b":
        write_m4b(files.book("m4b"), chapters, rate, book.title, book.author, book.cover)
    elif book.output == "zip":
        write_zip(files.book("zip"), chapters, rate, job.format)
    else:
        files.write_final(whole, rate, job.format)


def plan_cues(plan: SynthesisPlan, pieces: list[np.ndarray]) -> list[Cue]:
    """Sentence captions of one synthesis from its chunks' audio (each piece: speech, then its pause)."""
    rate = plan.info.sample_rate
    spans = chunk_spans([len(p) for p in pieces], [plan.pause_samples(i) for i in range(len(pieces))], rate)
    audio = np.concatenate(pieces) if pieces else np.zeros(0, np.float32)
    language = language_of(plan.info.voice)
    return sentence_cues(plan.info.text, plan.info.chunks, spans, language=language, audio=audio, sample_rate=rate)


def load_chunk(path: Path) -> np.ndarray:
    with np.load(path) as data:
        return np.asarray(data["audio"], dtype=np.float32)


def estimated_seconds(plan: BookPlan) -> list[float]:
    """Each chapter's audio length as estimated before generating: speaking rate, capped per chunk, plus pauses."""
    from barkserve.books.package import CHAPTER_GAP_SEC
    from barkserve.text import MAX_CHUNK_SEC, estimate_seconds

    seconds = [0.0] * len(plan.titles)
    for segment, chapter in zip(plan.plans, plan.chapter_of, strict=True):
        opts = segment.info.options
        cap = opts.max_duration_sec or MAX_CHUNK_SEC
        speech = sum(min(estimate_seconds(c.spoken), cap) for c in segment.info.chunks)
        pauses = len(segment.info.chunks) * opts.sentence_pause_sec  # between chunks, and before the next segment
        seconds[chapter] += (speech + pauses) / opts.speed
    return [s + (CHAPTER_GAP_SEC if k < len(seconds) - 1 else 0.0) for k, s in enumerate(seconds)]
