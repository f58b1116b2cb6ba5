"""Captions at the HTTP edge: the caption file beside a /synthesize result or a /v1/audio/speech stream.

Caption files go to the output folder under the audio's name (or a fresh one for streams) and are
served, kept and removed like the audio (GET /audio/<filename>, output_retention_hours).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from barkserve.audio.files import new_filename
from barkserve.captions import Aligner, Spoken, aligner_for, captions_for, sidecar_path, write_captions
from barkserve.captions.formats import MIMETYPES
from barkserve.server.requests import CaptionRequest
from barkserve.server.state import state
from barkserve.synthesizer import SynthesisPlan


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


def mimetype(path: Path) -> str | None:
    """The media type of a caption file by its extension, or None."""
    return MIMETYPES.get(path.suffix.lstrip("."))
