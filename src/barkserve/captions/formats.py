"""Caption files: SubRip (srt), WebVTT (webvtt-py) and a JSON form, written atomically.

With word times, the SRT file has one subtitle per word (SubRip has no timing inside a subtitle),
the WebVTT file keeps sentence cues with a timestamp tag before each word after the first (the
"karaoke" form of the WebVTT spec), and the JSON holds both levels.

The JSON form (`to_json`):

    {"format": "barkserve.captions", "version": 1,
     "cues": [{"start": 0.0, "end": 1.52, "text": "Hello there.",
               "words": [{"start": 0.0, "end": 0.41, "text": "Hello"}, ...]}, ...]}

Times are seconds (rounded to milliseconds); `words` is empty when words were not aligned. A job's
captions add `"warnings": [...]`, what kept sentence timing where words were asked for.
"""

from __future__ import annotations

import datetime
import html
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from barkserve.captions.cues import Cue, Word
from barkserve.errors import InvalidRequest

CAPTION_FORMATS = ("srt", "vtt", "json")
MIMETYPES = {"srt": "application/x-subrip", "vtt": "text/vtt", "json": "application/json"}
JSON_FORMAT = "barkserve.captions"
JSON_VERSION = 1


def check_format(fmt: object) -> str:
    """`fmt` if it is a caption format, else an `InvalidRequest` that lists them."""
    if fmt not in CAPTION_FORMATS:
        raise InvalidRequest(f"captions must be one of {list(CAPTION_FORMATS)}; got {fmt!r}")
    return str(fmt)


def to_srt(cues: Sequence[Cue]) -> str:
    """SubRip text: a subtitle per cue, or per word of the cues that have word times."""
    import srt

    def td(seconds: float) -> datetime.timedelta:
        return datetime.timedelta(milliseconds=round(seconds * 1000))

    # A cue whose words could not be timed (alignment fell back) stays one subtitle.
    items: list[Cue | Word] = [x for c in cues for x in (c.words or (c,))]
    subtitles = [srt.Subtitle(i, td(x.start), td(x.end), x.text) for i, x in enumerate(items, start=1)]
    return srt.compose(subtitles, reindex=False)


def to_vtt(cues: Sequence[Cue]) -> str:
    """WebVTT text: a cue per sentence; words, when aligned, carry timestamp tags."""
    import webvtt

    vtt = webvtt.WebVTT(captions=[webvtt.Caption(_vtt_time(c.start), _vtt_time(c.end), _vtt_text(c)) for c in cues])
    buffer = io.StringIO()
    vtt.write(buffer)
    return buffer.getvalue()


def _vtt_time(seconds: float) -> str:
    ms = round(seconds * 1000)
    return f"{ms // 3_600_000:02d}:{ms // 60_000 % 60:02d}:{ms // 1000 % 60:02d}.{ms % 1000:03d}"


def _vtt_text(cue: Cue) -> str:
    """The cue's text, escaped for WebVTT (`&`, `<`, `>`), with `<hh:mm:ss.ttt>` before each later word."""
    if not cue.words:
        return html.escape(cue.text, quote=False)
    parts = [html.escape(cue.words[0].text, quote=False)]
    parts += [f"<{_vtt_time(w.start)}>{html.escape(w.text, quote=False)}" for w in cue.words[1:]]
    return " ".join(parts)


def to_json(cues: Sequence[Cue], warnings: Sequence[str] | None = None) -> str:
    """The JSON form described in this module's docstring (with `warnings` when given)."""
    document: dict[str, Any] = {"format": JSON_FORMAT, "version": JSON_VERSION, "cues": [_cue_dict(c) for c in cues]}
    if warnings is not None:
        document["warnings"] = list(warnings)
    return json.dumps(document, ensure_ascii=False, indent=1)


def _cue_dict(cue: Cue) -> dict[str, Any]:
    words = [{"start": round(w.start, 3), "end": round(w.end, 3), "text": w.text} for w in cue.words]
    return {"start": round(cue.start, 3), "end": round(cue.end, 3), "text": cue.text, "words": words}


def from_json(text: str) -> list[Cue]:
    """Cues back from `to_json`'s text."""
    data = json.loads(text)
    if not isinstance(data, dict) or data.get("format") != JSON_FORMAT:
        raise InvalidRequest(f"not a {JSON_FORMAT} JSON document")
    return [
        Cue(c["start"], c["end"], c["text"], tuple(Word(w["start"], w["end"], w["text"]) for w in c["words"]))
        for c in data["cues"]
    ]


def render(cues: Sequence[Cue], fmt: str) -> str:
    """The cues as text in `fmt` (srt, vtt or json)."""
    renderers = {"srt": to_srt, "vtt": to_vtt, "json": to_json}
    return renderers[check_format(fmt)](cues)


def write_captions(cues: Sequence[Cue], path: Path, fmt: str) -> Path:
    """Write the cues to `path` in `fmt`, UTF-8, atomically (the file appears only complete)."""
    from barkserve.audio.files import atomic_write

    data = render(cues, fmt).encode("utf-8")
    atomic_write(Path(path), lambda f: f.write(data))
    return Path(path)
