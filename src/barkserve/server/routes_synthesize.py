"""POST /synthesize (the seed's contract) and GET /audio/<filename>."""

from __future__ import annotations

import time
from typing import Any

from flask import Blueprint, jsonify, send_file

from barkserve.audio.encode import get_format
from barkserve.audio.files import mimetype_of, resolve_output, save_audio
from barkserve.errors import InvalidRequest, NotFound
from barkserve.options import SynthesisOptions
from barkserve.server.access import claim_outputs
from barkserve.server.captioning import beside, caption_aligner, mimetype
from barkserve.server.planning import dry_run_arg, plan_answer
from barkserve.server.requests import (
    CAPTION_FIELDS,
    OPTION_FIELDS,
    REQUEST_FIELDS,
    caption_request,
    check_fields,
    json_object,
    options_of,
)
from barkserve.server.state import state
from barkserve.text import check_text

bp = Blueprint("synthesize", __name__)


@bp.post("/synthesize")
def synthesize() -> Any:
    """Speak `text` (split into chunks when long) and save it in the output folder; `?dry_run=1`: only its plan."""
    started = time.perf_counter()
    body = json_object()
    check_fields(body, REQUEST_FIELDS + OPTION_FIELDS + CAPTION_FIELDS)
    if "text" not in body:
        raise InvalidRequest("field 'text' is required: the text to speak")
    ctx = state()
    text = check_text(body["text"], ctx.config.max_text_chars, "max_text_chars")
    options = SynthesisOptions.from_dict(options_of(body))
    fmt = get_format(body.get("format", "wav"))
    captions = caption_request(body)
    if dry_run_arg():  # the plan alone: the same checks and planning, nothing generated or written
        plan = ctx.synthesizer.plan(text, voice=body.get("voice_preset"), model=body.get("model"), options=options)
        return jsonify(plan_answer(plan))
    ctx.outputs.check_room()  # a full output folder is refused before any generation
    aligner = caption_aligner(captions)
    result = ctx.synthesizer.synthesize(text, voice=body.get("voice_preset"), model=body.get("model"), options=options)
    path = save_audio(result.audio, result.sample_rate, ctx.config.output_dir, fmt)
    elapsed = time.perf_counter() - started
    answer = {
        "message": f"Speech synthesized and saved to {path.name}",
        "filename": path.name,
        "text": result.text,
        "processing_time_sec": round(elapsed, 2),
        "processing_time_min": round(elapsed / 60, 2),
        "url": f"/audio/{path.name}",
        "duration_sec": round(result.duration_sec, 3),
        "sample_rate": result.sample_rate,
        "voice_preset": result.voice,
        "model": result.model,
        "seed": result.seed,
        "format": fmt.name,
        "chunks": result.chunk_count,
    }
    if result.qc:  # only when the request asked for quality control: the seed contract stays as it was
        answer["qc"] = [report.to_dict() for report in result.qc]
    caption_file = None
    if captions is not None:  # likewise only when asked for
        written = beside(result, path, captions, aligner)
        answer["captions"], caption_file = written, written["filename"]
    claim_outputs(path.name, caption_file)
    return jsonify(answer)


@bp.get("/audio/<path:filename>")
def audio(filename: str) -> Any:
    """Serve a file this server wrote (audio or captions); nothing outside the output folder."""
    path = resolve_output(state().config.output_dir, filename)
    if path is None:
        raise NotFound(f"no audio file named {filename!r}; use the 'filename' a synthesis returned")
    return send_file(path, mimetype=mimetype(path) or mimetype_of(path), max_age=0)
