"""OpenAI-compatible speech: POST /v1/audio/speech (streamed audio or events), GET /v1/audio/voices, /v1/models."""

from __future__ import annotations

import base64
import contextlib
import logging
from collections.abc import Generator, Iterator
from typing import Any

import numpy as np
from flask import Blueprint, Response, jsonify, request, stream_with_context

from barkserve.audio.encode import AudioFormat, StreamEncoder, get_format
from barkserve.captions import Cue
from barkserve.captions.align import Aligner
from barkserve.captions.live import LiveCaptions
from barkserve.errors import BarkServeError, InvalidModel, InvalidRequest, InvalidVoice, NoSpeech, NotFound, TextTooLong
from barkserve.options import SynthesisOptions
from barkserve.server.access import claim_stream
from barkserve.server.captioning import (
    StreamCaptions,
    caption_aligner,
    live_captions,
    timestamp_aligner,
    timestamps_json,
)
from barkserve.server.planning import plan_answer
from barkserve.server.requests import (
    CAPTION_FIELDS,
    OPENAI_FIELDS,
    OPENAI_FORMATS,
    OPTION_FIELDS,
    TIMESTAMP_FIELDS,
    caption_request,
    check_fields,
    json_object,
    options_of,
)
from barkserve.server.speech_batch import BatchItem, batch_items, for_item, run_batch
from barkserve.server.state import state
from barkserve.server.streams import StreamLog, speech_usage, sse_event
from barkserve.synthesizer import SynthesisPlan
from barkserve.voices import VoiceRecord, language_of

log = logging.getLogger(__name__)
bp = Blueprint("openai", __name__)
# Bark's synthesis options and the captions extension ride along as extra body fields (`extra_body=`).
ACCEPTED = OPENAI_FIELDS + tuple(f for f in OPTION_FIELDS if f not in OPENAI_FIELDS) + CAPTION_FIELDS + TIMESTAMP_FIELDS
# A batch item is a /v1/audio/speech body that is not streamed and writes no caption file.
BATCH_ITEM_FIELDS = tuple(f for f in ACCEPTED if f not in ("stream_format", *CAPTION_FIELDS))
STREAM_LOOKAHEAD = 2
STREAM_FORMATS = ("audio", "sse")
# Shorter than /synthesize's pause: speech listened to as it arrives flows better with less silence.
PAUSE_SEC = 0.2


def openai_model(requested: object) -> str | None:
    """`tts-1` is the server's default model and `tts-1-hd` is suno/bark; other names go to the allowlist."""
    ctx = state()
    if requested == "tts-1":
        return None
    if requested == "tts-1-hd":
        served = ctx.config.served_name_of("suno/bark")
        if served is None:
            raise InvalidModel("tts-1-hd means suno/bark, not allowed on this server; start it with --models large")
        return served
    return ctx.synthesizer.registry.resolve(requested)


def speech_plan(body: dict[str, Any]) -> SynthesisPlan:
    """The checked request as a synthesis plan: OpenAI's fields, then Bark's options (same checks as /synthesize)."""
    ctx = state()
    for field in ("model", "input", "voice"):
        if field not in body:
            raise InvalidRequest(f"field '{field}' is required")
    text = body["input"]
    if isinstance(text, str) and len(text) > ctx.config.openai_max_input_chars:
        raise TextTooLong(
            f"input is {len(text)} characters; the maximum is {ctx.config.openai_max_input_chars} "
            "(setting openai_max_input_chars): split it, or use POST /jobs for long text"
        )
    options = SynthesisOptions.from_dict({"sentence_pause_sec": PAUSE_SEC, **options_of(body)})
    voice = body["voice"]
    if isinstance(voice, str):
        voice = ctx.config.openai_voice_table.get(voice, voice)
    model = openai_model(body["model"])
    return ctx.synthesizer.plan(text, voice=voice, model=model, options=options, first_audio=True)


@bp.post("/v1/audio/speech")
def speech() -> Any:
    """Speak `input`, streaming the encoded audio (or OpenAI's events) as each chunk is generated."""
    ctx = state()
    body = json_object()
    check_fields(body, ACCEPTED)
    fmt_name = body.get("response_format", "mp3")
    if fmt_name not in OPENAI_FORMATS:
        raise InvalidRequest(f"response_format must be one of {list(OPENAI_FORMATS)}; got {fmt_name!r}")
    stream_format = body.get("stream_format", "audio")
    if stream_format not in STREAM_FORMATS:
        raise InvalidRequest(f"stream_format must be one of {list(STREAM_FORMATS)}; got {stream_format!r}")
    fmt = get_format(fmt_name)
    wants_times = timestamps_field(body)
    asked = caption_request(body)
    if asked is not None:
        ctx.outputs.check_room()  # the caption file goes to the output folder
    aligner = caption_aligner(asked)
    time_aligner, time_warnings = timestamp_aligner() if wants_times else (None, [])
    plan = speech_plan(body)
    captions = StreamCaptions(plan, asked, aligner, ctx.config.output_dir) if asked is not None else None
    times = live_captions(plan, time_aligner) if wants_times else None
    # A small lookahead: the first audio leaves after the first chunk, not after a whole batch.
    pieces = primed(ctx.synthesizer.pieces(plan, STREAM_LOOKAHEAD))
    sid = ctx.streams.start(len(plan.info.chunks), live=lambda: {"chunks_started": len(plan.sent)})
    audio = encoded(plan, pieces, fmt, ctx.streams, sid, captions, times)
    headers = {"X-Request-Id": sid, "X-Chunks": str(len(plan.info.chunks)), "X-Seed": str(plan.info.seed)}
    if captions is not None:  # the file appears, complete, when the stream ends
        headers["X-Captions-Url"] = captions.url
    claim_stream(sid, captions.path.name if captions is not None else None)
    if stream_format == "sse":
        headers["Cache-Control"] = "no-cache"
        stream = events(audio, plan, captions, times, time_warnings)
        return Response(stream_with_context(stream), mimetype="text/event-stream", headers=headers)
    if times is not None:  # not streamed: one JSON answer with the audio and its timestamps
        answer = envelope(audio, plan, fmt, captions, times, time_warnings)
        return jsonify(answer), 200, headers
    return Response(stream_with_context(audio_bytes(audio)), mimetype=fmt.mimetype, headers=headers)


def timestamps_field(body: dict[str, Any]) -> bool:
    """The checked `timestamps` field: words and sentences with their times, streamed or in a JSON answer."""
    value = body.get("timestamps", False)
    if not isinstance(value, bool):
        raise InvalidRequest(f"timestamps must be true or false; got {value!r}")
    return value


@bp.post("/v1/audio/speech/plan")
def speech_dry_run() -> Any:
    """Plan `input` as POST /v1/audio/speech would speak it (chunks, voices, pauses, respellings); generate nothing."""
    body = json_object()
    check_fields(body, ACCEPTED)
    return jsonify(plan_answer(speech_plan(body)))


def primed(pieces: Iterator[np.ndarray]) -> Generator[np.ndarray, None, None]:
    """`pieces` with the first one made now: its errors (a scorer or model that cannot load) are still
    an HTTP status, and nothing is lost, since the server sends the headers with the first bytes anyway."""
    first = next(pieces, None)

    def chained() -> Generator[np.ndarray, None, None]:
        try:
            if first is not None:
                yield first
            yield from pieces
        finally:
            close = getattr(pieces, "close", None)
            if close is not None:
                close()  # cancels the chunks queued or running in the engine now, not at garbage collection

    return chained()


# Per piece: its encoded bytes (maybe none yet), and the timestamps it completes.
Encoded = Generator[tuple[bytes, list[Cue]], None, None]


def encoded(
    plan: SynthesisPlan,
    pieces: Generator[np.ndarray, None, None],
    fmt: AudioFormat,
    streams: StreamLog,
    sid: str,
    captions: StreamCaptions | None = None,
    times: LiveCaptions | None = None,
) -> Encoded:
    """The plan's audio encoded as it comes, kept in its progress record; a client leaving cancels the rest.

    With `captions`, their file is written before the last audio bytes leave. With `times`, each
    piece comes with the cues it completes, timed before its bytes are handed on.
    """
    encoder, rate = StreamEncoder(fmt, plan.info.sample_rate), plan.info.sample_rate
    done = 0
    try:
        for piece in pieces:
            done += 1
            streams.sent(sid, len(piece) / rate)  # its send time against real-time playback: the underrun
            if captions is not None:
                captions.keep(piece)
            cues = times.add(piece) if times is not None else []
            yield encoder.write(piece), cues
        last = encoder.close()
        if captions is not None:
            captions.finish()
        streams.finish(sid)
        yield last, []
    except GeneratorExit:  # the client went away: stop generating, and say why the record ended
        pieces.close()
        streams.finish(sid, error="client disconnected", chunks_cancelled=len(plan.cancelled))
        log.info(
            "stream %s: client disconnected after %d of %d chunks; %d chunks cancelled",
            sid, done, len(plan.info.chunks), len(plan.cancelled),
        )  # fmt: skip
        raise
    except Exception as exc:  # headers are gone: the stream can only stop early
        log.exception("stream %s failed", sid)
        # The record is served (GET /v1/audio/speech/<sid>): an unexpected error's text stays in the log.
        streams.finish(
            sid, error=exc.message if isinstance(exc, BarkServeError) else "internal error; see the server log"
        )
        raise


def audio_bytes(audio: Encoded) -> Generator[bytes, None, None]:
    """The encoded bytes alone; closing it closes `audio` (which cancels the work left).

    The last, maybe empty, piece is sent too: the caption file is complete when it leaves."""
    with contextlib.closing(audio):
        for data, _ in audio:
            yield data


def events(
    audio: Encoded,
    plan: SynthesisPlan,
    captions: StreamCaptions | None = None,
    times: LiveCaptions | None = None,
    time_warnings: list[str] | None = None,
) -> Iterator[bytes]:
    """OpenAI's speech events: `speech.audio.delta` per encoded piece, then `speech.audio.done` with usage
    (and, when asked for, what the captions file holds: its url, cues and warnings).

    With `times`, each chunk's `speech.audio.timestamps` event (its words and sentences) comes just
    before the delta that carries its audio.
    """
    chunk = 0
    with contextlib.closing(audio):  # closing the events closes the audio, which cancels the work left
        try:
            for data, cues in audio:
                if times is not None and chunk < len(plan.info.chunks):
                    yield sse_event({"type": "speech.audio.timestamps", "chunk": chunk, **timestamps_json(cues)})
                    chunk += 1
                if data:
                    yield sse_event({"type": "speech.audio.delta", "audio": base64.b64encode(data).decode("ascii")})
        except Exception as exc:  # the status is sent: an error event is the only way left to say it
            code, message = (exc.code, exc.message) if isinstance(exc, BarkServeError) else ("internal_error", "")
            yield sse_event({"type": "error", "error": {"code": code, "message": message or "see the server log"}})
            return
    done: dict[str, Any] = {"type": "speech.audio.done", "usage": speech_usage(plan)}
    if times is not None:
        done["timestamps"] = {"warnings": [*(time_warnings or []), *times.warnings]}
    if captions is not None and captions.answer is not None:
        done["captions"] = captions.answer
    yield sse_event(done)


def envelope(
    audio: Encoded,
    plan: SynthesisPlan,
    fmt: AudioFormat,
    captions: StreamCaptions | None,
    times: LiveCaptions,
    time_warnings: list[str],
) -> dict[str, Any]:
    """The JSON answer of `timestamps: true` without streaming: the whole audio (base64) and its timestamps."""
    with contextlib.closing(audio):
        data = b"".join(part for part, _ in audio)
    if not any(plan.generated_samples):  # pauses alone are no speech, as on /synthesize
        raise NoSpeech()
    seconds = sum(len(p) for p in times.parts) / plan.info.sample_rate
    answer: dict[str, Any] = {
        "audio": base64.b64encode(data).decode("ascii"),
        "response_format": fmt.name,
        "duration_sec": round(seconds, 3),
        "seed": plan.info.seed,
        "chunks": len(plan.info.chunks),
        **timestamps_json(times.cues),
        "warnings": [*time_warnings, *times.warnings],
        "usage": speech_usage(plan),
    }
    if captions is not None and captions.answer is not None:
        answer["captions"] = captions.answer
    return answer


@bp.post("/v1/audio/speech/batch")
def speech_batch() -> Any:
    """Speak 1-32 items (each a /v1/audio/speech body), all checked first, generated together; JSON answers."""
    ctx = state()
    body = json_object()
    check_fields(body, ("items",))
    checked = []
    aligner: tuple[Aligner | None, list[str]] | None = None
    for index, item in batch_items(body, ctx.config.speech_batch_max_chars):
        try:
            check_fields(item, BATCH_ITEM_FIELDS)
            fmt_name = item.get("response_format", "mp3")
            if fmt_name not in OPENAI_FORMATS:
                raise InvalidRequest(f"response_format must be one of {list(OPENAI_FORMATS)}; got {fmt_name!r}")
            wants_times, times_aligner = timestamps_field(item), None
            warnings: tuple[str, ...] = ()
            if wants_times:
                aligner = aligner or timestamp_aligner()  # loaded once for the batch
                times_aligner, warnings = aligner[0], tuple(aligner[1])
            plan = speech_plan(item)
            checked.append(BatchItem(index, plan, get_format(fmt_name), wants_times, times_aligner, warnings))
        except BarkServeError as exc:
            raise for_item(index, exc) from None
    return jsonify(run_batch(ctx.synthesizer, checked))


@bp.get("/v1/audio/speech/<sid>")
def speech_progress(sid: str) -> Any:
    """Progress of a streamed request: chunks started, done and cancelled, audio seconds, times."""
    item = state().streams.get(sid)
    if item is None:
        raise NotFound(f"no recent speech request with id {sid!r}")
    return jsonify(item)


@bp.get("/v1/audio/voices")
def voices() -> Any:
    """List what `voice` takes, with the language each speaks: OpenAI's names with their presets, the
    model's presets, custom voices (with what their upload said of them)."""
    ctx = state()
    model = ctx.synthesizer.registry.resolve(openai_model(request.args.get("model", "tts-1")))
    library = ctx.synthesizer.registry.voices(model)
    entries = []
    for name, voice in ctx.config.openai_voice_table.items():
        try:
            preset = library.resolve_name(voice)
        except InvalidVoice:  # mapped to a voice this model lacks: not usable, so not listed
            continue
        entries.append(voice_entry(name, preset, "openai", library.language(preset)))
    entries += [voice_entry(name, name, "preset", language_of(name)) for name in library.presets.names()]
    for name in library.list_custom():
        record = library.record(name) or VoiceRecord()
        entry = voice_entry(name, None, "custom", record.language)
        entry.update(description=record.description, consent=record.consent, created_at=record.created_at)
        entries.append(entry)
    return jsonify({"model": model, "voices": entries})


def voice_entry(name: str, preset: str | None, kind: str, language: str | None) -> dict[str, Any]:
    """One voice as GET /v1/audio/voices lists it; `language` is None where it is not known."""
    return {"id": name, "name": name, "preset": preset, "kind": kind, "language": language}


@bp.get("/v1/models")
def models() -> Any:
    """List models in OpenAI's shape: the two OpenAI names, the allowlisted models and their adapters."""
    ctx = state()
    names = ["tts-1"] + (["tts-1-hd"] if ctx.config.served_name_of("suno/bark") else [])
    names += ctx.synthesizer.registry.served_names()
    data = [{"id": n, "object": "model", "created": 0, "owned_by": "barkserve"} for n in names]
    return jsonify({"object": "list", "data": data})
