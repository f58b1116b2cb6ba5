"""OpenAI-compatible speech: POST /v1/audio/speech (streamed) and GET /v1/models."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

from flask import Blueprint, Response, jsonify, stream_with_context

from barkserve.audio.encode import StreamEncoder, get_format
from barkserve.errors import InvalidModel, InvalidRequest, NotFound
from barkserve.options import SynthesisOptions
from barkserve.server.requests import check_fields, json_object
from barkserve.server.state import state

log = logging.getLogger(__name__)
bp = Blueprint("openai", __name__)
FIELDS = ("model", "input", "voice", "response_format", "speed", "stream_format")
STREAM_LOOKAHEAD = 2
OPENAI_FORMATS = ("mp3", "opus", "aac", "flac", "wav", "pcm")


def openai_model(requested: object) -> str | None:
    """`tts-1` is the server's default model and `tts-1-hd` is suno/bark; other names go to the allowlist."""
    ctx = state()
    if requested == "tts-1":
        return None
    if requested == "tts-1-hd":
        if "suno/bark" not in ctx.config.allowed_models:
            raise InvalidModel("tts-1-hd means suno/bark, not allowed on this server; start it with --models large")
        return "suno/bark"
    return ctx.synthesizer.registry.resolve(requested)


@bp.post("/v1/audio/speech")
def speech() -> Any:
    """Speak `input`, streaming the encoded audio as each chunk is generated."""
    ctx = state()
    body = json_object()
    check_fields(body, FIELDS)
    for field in ("model", "input", "voice"):
        if field not in body:
            raise InvalidRequest(f"field '{field}' is required")
    text = body["input"]
    if isinstance(text, str) and len(text) > ctx.config.openai_max_input_chars:
        raise InvalidRequest(f"input is {len(text)} characters; the maximum is {ctx.config.openai_max_input_chars}")
    fmt_name = body.get("response_format", "mp3")
    if fmt_name not in OPENAI_FORMATS:
        raise InvalidRequest(f"response_format must be one of {list(OPENAI_FORMATS)}; got {fmt_name!r}")
    if body.get("stream_format", "audio") != "audio":
        raise InvalidRequest("stream_format must be 'audio'; server-sent events are not supported")
    fmt = get_format(fmt_name)
    voice = body["voice"]
    if isinstance(voice, str):
        voice = ctx.config.openai_voice_table.get(voice, voice)
    options = SynthesisOptions(speed=body.get("speed", 1.0), sentence_pause_sec=0.2)
    # A small lookahead: the first audio leaves after the first chunk, not after a whole batch.
    model = openai_model(body["model"])
    info, pieces = ctx.synthesizer.stream(text, voice=voice, model=model, options=options, lookahead=STREAM_LOOKAHEAD)
    streams = ctx.streams
    sid = streams.start(len(info.chunks))

    def generate() -> Iterator[bytes]:
        encoder = StreamEncoder(fmt, info.sample_rate)
        done, seconds = 0, 0.0
        try:
            for piece in pieces:
                done, seconds = done + 1, seconds + len(piece) / info.sample_rate
                streams.update(sid, chunks_done=done, audio_sec=round(seconds, 3))
                data = encoder.write(piece)
                if data:
                    yield data
            streams.update(sid, finished_at=time.time())
            yield encoder.close()
        except GeneratorExit:  # the client went away: stop generating, and say why the record ended
            streams.update(sid, error="client disconnected", finished_at=time.time())
            close = getattr(pieces, "close", None)
            if close is not None:
                close()  # cancels the chunks not yet started now, not when the generator is collected
            raise
        except Exception as exc:  # headers are gone: the stream can only stop early
            log.exception("stream %s failed", sid)
            streams.update(sid, error=str(exc), finished_at=time.time())
            raise

    headers = {"X-Request-Id": sid, "X-Chunks": str(len(info.chunks)), "X-Seed": str(info.seed)}
    return Response(stream_with_context(generate()), mimetype=fmt.mimetype, headers=headers)


@bp.get("/v1/audio/speech/<sid>")
def speech_progress(sid: str) -> Any:
    """Progress of a streamed request: chunks done and total, audio seconds, times."""
    item = state().streams.get(sid)
    if item is None:
        raise NotFound(f"no recent speech request with id {sid!r}")
    return jsonify(item)


@bp.get("/v1/models")
def models() -> Any:
    """List models in OpenAI's shape: the two OpenAI names and the allowlisted models."""
    ctx = state()
    names = ["tts-1"] + (["tts-1-hd"] if "suno/bark" in ctx.config.allowed_models else [])
    names += list(ctx.config.allowed_models)
    data = [{"id": n, "object": "model", "created": 0, "owned_by": "barkserve"} for n in names]
    return jsonify({"object": "list", "data": data})
