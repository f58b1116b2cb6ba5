"""Captions at the HTTP edge: the caption file beside a /synthesize result or a /v1/audio/speech stream,
and the timestamps of /v1/audio/speech (`timestamps: true`) chunk by chunk.

Caption files go to the output folder under the audio's name (or a fresh one for streams) and are
served, kept and removed like the audio (GET /audio/<filename>, output_retention_hours).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from barkserve.audio.files import new_filename
from barkserve.captions import Aligner, Cue, Spoken, aligner_for, captions_for, sidecar_path, write_captions
from barkserve.captions.formats import MIMETYPES
from barkserve.captions.live import LiveCaptions
from barkserve.errors import AlignerUnavailable
from barkserve.server.requests import CaptionRequest
from barkserve.server.state import state
from barkserve.synthesizer import SynthesisPlan
from barkserve.voices import language_of


def caption_aligner(request: CaptionRequest | None) -> Aligner | None:
    """The aligner word captions need, loaded now: a missing model is an error before any generation."""
    if request is None or not request.words:
        return None
    return aligner_for(state().config.scorers)


def save_captions(spoken: Spoken, path: Path, request: CaptionRequest, aligner: Aligner | None) -> dict[str, Any]:
    """Write the captions of `spoken` (a SynthesisResult or Speech) to `path`; what the answer says of them."""
    cues, warnings = captions_for(spoken, aligner)
    written = write_captions(cues, path, request.fmt)
    return {
        "format": request.fmt,
        "filename": written.name,
        "url": f"/audio/{written.name}",
        "words": request.words,
        "cues": len(cues),
        "warnings": warnings,
    }


def beside(spoken: Spoken, audio_path: Path, request: CaptionRequest, aligner: Aligner | None) -> dict[str, Any]:
    """The captions of a saved synthesis, in the same folder under the audio file's name."""
    return save_captions(spoken, sidecar_path(audio_path, request.fmt), request, aligner)


class StreamCaptions:
    """A stream's captions: its pieces kept as they pass, the file written after the last one.

    The file's name is known before the first byte (for the `X-Captions-Url` header); the file
    appears, complete, when the stream ends.
    """

    def __init__(self, plan: SynthesisPlan, request: CaptionRequest, aligner: Aligner | None, folder: Path) -> None:
        self.plan, self.request, self.aligner = plan, request, aligner
        self.path = folder / new_filename(request.fmt)
        self.url = f"/audio/{self.path.name}"
        self.pieces: list[np.ndarray] = []
        self.answer: dict[str, Any] | None = None

    def keep(self, piece: np.ndarray) -> None:
        self.pieces.append(piece)

    def finish(self) -> dict[str, Any]:
        """Write the captions of every piece kept; what the done event says of them."""
        self.answer = save_captions(self.plan.speech(self.pieces), self.path, self.request, self.aligner)
        return self.answer


def timestamp_aligner() -> tuple[Aligner | None, list[str]]:
    """The aligner of `timestamps: true`, loaded now, or None and why: word times come from the aligner
    when the server has one (setting `align_model`), and sentence times always."""
    settings = state().config.scorers
    if not settings.align_model:
        return None, ["word times are off on this server (no align_model is set); sentences are timed"]
    try:
        return aligner_for(settings), []
    except AlignerUnavailable as exc:
        return None, [f"{exc.message}; sentences are timed, words are not"]


def live_captions(plan: SynthesisPlan, aligner: Aligner | None) -> LiveCaptions:
    """Timestamps of the plan's speech, released chunk by chunk as its pieces are made."""
    info = plan.info
    pauses = [plan.pause_samples(i) for i in range(len(info.chunks))]
    return LiveCaptions(info.text, info.chunks, language_of(info.voice), info.sample_rate, pauses, aligner)


def timestamps_json(cues: list[Cue]) -> dict[str, list[dict[str, Any]]]:
    """`words` and `sentences` of cues, each {text, start, end} in seconds on the audio's clock (ms)."""
    sentences = [{"text": c.text, "start": round(c.start, 3), "end": round(c.end, 3)} for c in cues]
    words = [{"text": w.text, "start": round(w.start, 3), "end": round(w.end, 3)} for c in cues for w in c.words]
    return {"words": words, "sentences": sentences}


def mimetype(path: Path) -> str | None:
    """The media type of a caption file by its extension, or None."""
    return MIMETYPES.get(path.suffix.lstrip("."))
