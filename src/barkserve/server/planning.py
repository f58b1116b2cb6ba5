"""Dry runs: what a synthesis would be (its chunks, voices, pauses and respellings), made by the same
planning as the real request, answered as JSON without generating anything."""

from __future__ import annotations

from typing import Any

from flask import request

from barkserve.errors import InvalidRequest
from barkserve.synthesizer import SynthesisPlan
from barkserve.text import estimate_seconds

DRY_RUN_VALUES = {"1": True, "true": True, "0": False, "false": False}


def dry_run_arg() -> bool:
    """The `dry_run` query argument: 1/true plans without generating; absent, 0 or false generates."""
    raw = request.args.get("dry_run")
    if raw is None:
        return False
    if raw.lower() not in DRY_RUN_VALUES:
        raise InvalidRequest(f"dry_run must be 1, 0, true or false; got {raw[:20]!r}")
    return DRY_RUN_VALUES[raw.lower()]


def plan_answer(plan: SynthesisPlan) -> dict[str, Any]:
    """A plan as JSON: each chunk as written and as Bark is given it, its voice, speed and the pause after
    it; the substitutions of the lexicon, normalization and SSML; and an estimate of the speech's length."""
    info, rate = plan.info, plan.info.sample_rate
    chunks: list[dict[str, Any]] = []
    pauses: list[dict[str, Any]] = []
    seconds = 0.0
    for i, chunk in enumerate(info.chunks):
        speed, after = chunk.speed or info.options.speed, plan.pause_samples(i) / rate
        seconds += estimate_seconds(chunk.said) / speed + after + chunk.lead
        if chunk.lead:
            pauses.append({"after_chunk": None, "seconds": round(chunk.lead, 3)})
        if chunk.pause is not None:
            pauses.append({"after_chunk": i, "seconds": round(after, 3)})
        chunks.append(
            {
                "index": i,
                "text": chunk.spoken,
                "said": chunk.said,
                "voice": chunk.voice or info.voice,
                "speed": speed,
                "tokens": len(plan.token_ids[i]),
                "pause_before_sec": round(chunk.lead, 3),
                "pause_after_sec": round(after, 3),
                "marked_pause": chunk.pause is not None or chunk.lead > 0,
            }
        )
    return {
        "model": info.model,
        "voice": info.voice,
        "seed": info.seed,
        "ssml": info.ssml,
        "normalize": info.options.normalize,
        "text": info.caption_text,
        "spoken_text": " ".join(c.said for c in info.chunks),
        "chunks": chunks,
        "pauses": pauses,
        "substitutions": [{"chunk": i, **s.to_dict()} for i, s in info.substitutions],
        "estimated_seconds": round(seconds, 2),
    }
