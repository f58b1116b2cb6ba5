"""Where a job's chunks are made: the `ChunkSource` protocol and `LocalChunks`.

A chunk is made by this process's engine (`LocalChunks`), or ahead of the runner by another source such
as a pool of Ray actors (`scale.book.RayChunks`, `book --ray`).

The runner walks a job's chunks in order either way; a source only decides where each chunk's audio
comes from. The job store stays the one record of progress, and the job's files the one checkpoint.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from barkserve.jobs.files import JobFiles
from barkserve.jobs.store import Job, JobChunk
from barkserve.synthesizer import ChunkAudio, SynthesisPlan
from barkserve.voices import VoicePrompt

# A chunk of a job: the synthesis (one voiced segment) it belongs to and its index there.
Unit = tuple[SynthesisPlan, int]


class ChunkSource(Protocol):
    """Makes a job's chunks for the runner."""

    def start(self, job: Job, units: Sequence[Unit], rows: Sequence[JobChunk], files: JobFiles) -> None:
        """Called once per run of a job, before its first chunk is taken: `units[i]` is row `i`'s chunk;
        rows already done are checkpointed in `files`."""

    def take(self, plan: SynthesisPlan, index: int, voice: VoicePrompt) -> ChunkAudio:
        """Chunk `index` of `plan`, spoken from `voice`."""
        ...


class LocalChunks:
    """Chunks made one at a time by this process's engine, when the runner asks for them."""

    def start(self, job: Job, units: Sequence[Unit], rows: Sequence[JobChunk], files: JobFiles) -> None:
        """Nothing to make ahead."""

    def take(self, plan: SynthesisPlan, index: int, voice: VoicePrompt) -> ChunkAudio:
        return plan.run_chunk(index, voice)


def resumed_voice(plan: SynthesisPlan, files: JobFiles, row: int, voice: VoicePrompt) -> VoicePrompt:
    """The voice after job chunk `row`, finished in an earlier run: its saved history when `plan` carries
    history, else `voice` unchanged."""
    if not plan.info.options.carry_history:
        return voice
    return files.history(row, voice, plan.info.sample_rate)
