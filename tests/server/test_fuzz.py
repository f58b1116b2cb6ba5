"""Property-based fuzz of every route: whatever a client sends, the answer is a 2xx or 4xx in JSON.

The app runs on `FakeEngine`, so a request that gets through validation costs no generation.
A 2xx of an audio route may be audio; everything else, errors included, is a JSON object, and
an error always has `{"error": {"code", "message", "type", "param"}}`.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_from_bytes

import numpy as np
import pytest
import soundfile as sf
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from barkserve.options import SynthesisOptions
from barkserve.server import create_app
from barkserve.synthesizer import Synthesizer
from support import FakeEngine, server_config

# derandomize: CI and every developer run the same examples; a failure prints the input to replay.
# BARKSERVE_FUZZ_EXAMPLES=2000 BARKSERVE_FUZZ_RANDOM=1 digs deeper, with new examples each run.
FUZZ = settings(
    max_examples=int(os.environ.get("BARKSERVE_FUZZ_EXAMPLES", "100")),
    deadline=None,
    derandomize=not os.environ.get("BARKSERVE_FUZZ_RANDOM"),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)
OPTION_FIELDS = tuple(SynthesisOptions.__dataclass_fields__)
ERROR_KEYS = {"code", "message", "type", "param"}


@pytest.fixture(scope="module")
def app(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Flask:
    root = tmp_path_factory.mktemp("fuzz")
    config = server_config(tiny_model_dir, root, max_text_chars=600, max_body_bytes=4096, max_upload_bytes=256 * 1024)
    return create_app(config, synthesizer=Synthesizer(config, engine_factory=FakeEngine), start_jobs=False)


@pytest.fixture(scope="module")
def client(app: Flask) -> FlaskClient:
    return app.test_client()


# -- strategies ------------------------------------------------------------------------------------

# Characters that broke or could break parsing: invisible, control, bidi, BOM, lone surrogates,
# digits that are not ASCII ('²' passes str.isdigit but not int()).
NASTY = [
    "\u200b", "\u200c", "\u200d", "\u200e", "\u200f", "\u202e", "\u2066", "\u2028", "\ufeff", "\x00", "\x1b",
    "\x7f", "\ud800", "\udfff", "\udc80", "²", "¹", "٣", "𝟗", "\U0001f600", "é", "\n", "\r", "\t", " ", ".",
    "[laughs]", "…", "♪", "-", "%", "/", "\\", "..", "?", "#",
]  # fmt: skip
nasty_text = st.lists(st.sampled_from(NASTY) | st.characters(), max_size=12).map("".join)
texts = st.one_of(
    st.text(max_size=40),
    nasty_text,
    st.sampled_from(["Hello.", "Hi there. How are you today? Fine.", "a" * 601, "[laughs]", "♪ la la ♪"]),
    st.tuples(st.sampled_from(["Hello. ", "One. Two. "]), nasty_text).map("".join),
)
HUGE = [10**400, -(10**30), 2**63, 2**64, -1, 0, 10**18, 4.9e-324, 1.7976931348623157e308, -0.0]
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from(HUGE),
    st.floats(allow_nan=True, allow_infinity=True),
    texts,
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)
VOICES = [0, 3, 9, 10, -1, "3", "²", "v2/en_speaker_1", "v2/de_speaker_2", "announcer", "../../etc/passwd", "alloy", ""]
FORMATS = ["wav", "mp3", "flac", "pcm", "opus", "aac", "wav_float", "ogg", "WAV", ""]
OPTION_VALUES: dict[str, Any] = {
    "text_temp": st.floats(min_value=-1, max_value=6),
    "waveform_temp": st.floats(min_value=-1, max_value=6),
    "seed": st.integers(min_value=-5, max_value=2**64),
    "min_eos_p": st.floats(min_value=-0.5, max_value=1.5),
    "max_duration_sec": st.floats(min_value=-1, max_value=20),
    "sentence_pause_sec": st.floats(min_value=-1, max_value=6),
    "carry_history": st.booleans(),
    "speed": st.floats(min_value=0, max_value=5),
}
SYNTH_VALUES: dict[str, Any] = {
    "text": texts,
    "voice_preset": st.sampled_from(VOICES),
    "model": st.sampled_from(["small", "large", "suno/bark", "evil/repo", "", "tts-1"]),
    "format": st.sampled_from(FORMATS),
    **OPTION_VALUES,
}
SPEECH_VALUES: dict[str, Any] = {
    "model": st.sampled_from(["tts-1", "tts-1-hd", "gpt-4o-mini-tts", "small", ""]),
    "input": texts,
    "voice": st.sampled_from(["alloy", "echo", "nova", "verse", *VOICES]),
    "response_format": st.sampled_from(FORMATS),
    "speed": st.floats(min_value=0, max_value=5) | st.sampled_from([0.25, 1.0, 4.0]),
    "stream_format": st.sampled_from(["audio", "sse", ""]),
}


def bodies(fields: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    """JSON objects near the documented shape: each field valid-ish or any JSON value, plus unknown keys."""
    optional = {name: strategy | json_values for name, strategy in fields.items()}
    documented = st.fixed_dictionaries({}, optional=optional)
    unknown = st.dictionaries(st.text(min_size=1, max_size=8), json_values, max_size=2)
    return st.one_of(documented, st.tuples(documented, unknown).map(lambda pair: {**pair[1], **pair[0]}))


def encode_json(value: Any, ascii_only: bool) -> bytes:
    """JSON text as bytes; without ascii_only, lone surrogates become bytes that are not UTF-8."""
    return json.dumps(value, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")


# Raw JSON texts the encoder above never writes.
RAW_JSON = [
    b"[" * 50_000 + b"]" * 50_000,
    b'{"text": ' + b"[" * 50_000 + b"]" * 50_000 + b"}",
    b'{"text": "hi", "speed": NaN}',
    b'{"text": "hi", "seed": Infinity}',
    b'{"text": "hi", "sentence_pause_sec": -Infinity}',
    b'{"text": "hi", "speed": 1e400}',
    b'{"text": "hi", "seed": ' + b"9" * 5000 + b"}",
    b'{"text": "hi", "voice_preset": ' + b"9" * 400 + b"}",
    b'{"text": "hi", "text": 3}',
    b'{"input": "hi", "model": "tts-1", "voice": "alloy", "speed": 1e999}',
    b'{"input": "hi", "model": "tts-1", "voice": "alloy", "speed": ' + b"9" * 400 + b"}",
    b'\xef\xbb\xbf{"text": "hi"}',
    '{"text": "hi"}'.encode("utf-16"),
    b'{"text": "\\ud800"}',
    b'{"text": "\\u0000"}',
    b'{"text": "hi\xff"}',
    b"",
    b"null",
    b"[]",
    b'"text"',
    b'{"text": ',
    b"\x00" * 8,
]
CONTENT_TYPES = [
    "application/json",
    "application/json; charset=utf-8",
    "application/json; charset=latin-1",
    "application/json; charset=utf-16",
    "application/json; charset=nonsense",
    "application/vnd.api+json",
    "text/plain",
    "application/x-www-form-urlencoded",
    "multipart/form-data",
    "multipart/form-data; boundary=zz",
    "multipart/form-data; boundary=",
    "",
    "nonsense",
]
raw_bodies = st.one_of(
    st.sampled_from(RAW_JSON),
    st.binary(max_size=64),
    st.tuples(bodies(SYNTH_VALUES), st.booleans()).map(lambda pair: encode_json(*pair)),
)


def multipart(parts: list[tuple[str, str | None, bytes]], boundary: str = "fuzzboundary") -> tuple[bytes, str]:
    """A multipart/form-data body of (name, filename or None, content) parts, and its content type.

    Names and file names may hold lone surrogates: they are written with `surrogatepass`, as a
    careless client would, so the server sees bytes that are not UTF-8.
    """
    out = io.BytesIO()
    for name, filename, content in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename is not None else "")
        out.write(f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode("utf-8", "surrogatepass"))
        out.write(content + b"\r\n")
    out.write(f"--{boundary}--\r\n".encode())
    return out.getvalue(), f"multipart/form-data; boundary={boundary}"


def wav_of(samples: list[float], rate: int) -> bytes:
    """A real (if short and odd) WAV file."""
    buf = io.BytesIO()
    sf.write(buf, np.asarray(samples, dtype=np.float32), rate, format="WAV")
    return buf.getvalue()


def utf8(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


audio_files = st.one_of(
    st.binary(max_size=64),
    st.sampled_from([b"RIFF", b"RIFF\x00\x00\x00\x00WAVEfmt ", b"fLaC\x00", b"ID3\x03", b"OggS\x00", b""]),
    st.builds(wav_of, st.lists(st.floats(-1, 1), max_size=200), st.sampled_from([8000, 16000, 24000, 1])),
)
file_names = st.sampled_from(
    ["ref.wav", "a.txt", "book.md", "BOOK.MD", "x.mp3", "noext", "", "../../x.txt", "a\x00.txt", "é.txt", "\ud800.md"]
)
form_values = texts.map(utf8) | st.binary(max_size=16) | st.sampled_from([b"\xff\xfe", b"1e400", b"NaN", b"\xc3"])
form_names = st.sampled_from(["file", "name", "text", "voice_preset", "model", "format", *OPTION_FIELDS, "x", ""])
form_parts = st.lists(
    st.tuples(form_names | st.text(max_size=6), st.none() | file_names, form_values | audio_files), max_size=5
)
path_segments = st.one_of(
    st.text(max_size=20).map(quote),
    st.binary(max_size=12).map(quote_from_bytes),
    st.sampled_from(
        ["..%2f..%2fpyproject.toml", "%2e%2e", ".hidden", "a" * 300, "%00", "%ff%fe", "x/y", "v2/en_speaker_1"]
    ),
)
query_values = st.one_of(
    st.text(max_size=10).map(quote),
    st.binary(max_size=8).map(quote_from_bytes),
    st.sampled_from(["²", "¹", "٣", "-1", "0", "1", "201", "1e3", "9" * 30, "", "%ff", " 5", "5 ", "+5", "0x10"]).map(
        quote
    ),
)


def query_strings(names: list[str]) -> st.SearchStrategy[str]:
    """`a=1&b=²`: the route's parameters (repeated or absent) with any value, percent-encoded."""
    pairs = st.lists(st.tuples(st.sampled_from([*names, "x"]), query_values), max_size=4)
    return pairs.map(lambda items: "&".join(f"{k}={v}" for k, v in items))


headers = st.fixed_dictionaries(
    {},
    optional={
        "Idempotency-Key": st.text(st.characters(max_codepoint=255, exclude_categories=["Cc"]), max_size=300),
        "Accept": st.sampled_from(["*/*", "application/json", "audio/*", "text/html", ""]),
        "Content-Encoding": st.sampled_from(["gzip", "identity", "br"]),
    },
)
# What a browser adds; often refused (400 invalid_host, 403 cross_origin), so only some tests use it.
browser_headers = st.fixed_dictionaries(
    {},
    optional={
        "Origin": st.sampled_from(["http://evil.example", "null", "http://localhost:3000", "x", "", "http://[::1"]),
        "Sec-Fetch-Site": st.sampled_from(["cross-site", "same-origin", "none", "?"]),
        "Host": st.sampled_from(["localhost", "127.0.0.1:8000", "[::1]:1", "evil.example", "[::1", "a b", ":"]),
    },
)


# -- the checks ------------------------------------------------------------------------------------


def check(response: Any, audio: bool = False) -> None:
    """No 5xx; JSON everywhere except a route's audio (`audio`) and bodiless HEAD/OPTIONS answers."""
    data = response.get_data()  # a streamed answer is generated here, to its end
    status = response.status_code
    assert 200 <= status < 500 and not 300 <= status < 400, f"{status}: {data[:600]!r}"
    if 200 <= status < 300 and (audio or not data):
        return
    assert response.mimetype == "application/json", response.mimetype
    if response.request.method == "HEAD":
        return
    body = json.loads(data)
    assert isinstance(body, dict), body
    if status >= 400:
        assert set(body["error"]) == ERROR_KEYS, body
        assert isinstance(body["error"]["code"], str) and isinstance(body["error"]["message"], str)
    if status == 405:
        assert response.headers.get("Allow"), "a 405 names the methods that work"


def send(client: FlaskClient, method: str, url: str, **kwargs: Any) -> Any:
    """One request through the test client; its answer must pass `check`."""
    return client.open(url, method=method, **kwargs)


# -- the properties --------------------------------------------------------------------------------


@FUZZ
@given(body=bodies(SYNTH_VALUES), ascii_only=st.booleans(), extra=headers)
def test_synthesize_json_never_5xx(client: FlaskClient, body: dict, ascii_only: bool, extra: dict) -> None:
    response = send(client, "POST", "/synthesize", data=encode_json(body, ascii_only),
                    content_type="application/json", headers=extra)  # fmt: skip
    check(response)
    if response.status_code == 200:
        check(client.get(response.get_json()["url"]), audio=True)


@FUZZ
@given(
    url=st.sampled_from(["/synthesize", "/v1/audio/speech", "/jobs", "/voices"]),
    data=raw_bodies,
    content_type=st.sampled_from(CONTENT_TYPES),
    extra=headers,
    browser=browser_headers,
)
def test_raw_bodies_never_5xx(
    client: FlaskClient, url: str, data: bytes, content_type: str, extra: dict, browser: dict
) -> None:
    response = send(client, "POST", url, data=data, content_type=content_type, headers={**extra, **browser})
    check(response, audio=url.startswith("/v1"))


@FUZZ
@given(body=bodies(SPEECH_VALUES), ascii_only=st.booleans())
def test_openai_speech_never_5xx(client: FlaskClient, body: dict, ascii_only: bool) -> None:
    response = send(client, "POST", "/v1/audio/speech", data=encode_json(body, ascii_only),
                    content_type="application/json")  # fmt: skip
    check(response, audio=True)
    if response.status_code == 200:
        progress = client.get(f"/v1/audio/speech/{response.headers['X-Request-Id']}")
        check(progress)
        assert progress.get_json()["finished_at"] is not None


@FUZZ
@given(body=bodies(SYNTH_VALUES), ascii_only=st.booleans(), extra=headers)
def test_jobs_json_never_5xx(client: FlaskClient, body: dict, ascii_only: bool, extra: dict) -> None:
    response = send(client, "POST", "/jobs", data=encode_json(body, ascii_only),
                    content_type="application/json", headers=extra)  # fmt: skip
    check(response)
    if response.status_code in (200, 202):
        job = response.get_json()["id"]
        for suffix in ("", "/chunks", "/audio"):
            check(client.get(f"/jobs/{job}{suffix}"))
        check(client.delete(f"/jobs/{job}"))


@FUZZ
@given(parts=form_parts, url=st.sampled_from(["/jobs", "/voices"]), boundary=st.sampled_from(["b", "fuzz-b0undary"]))
def test_multipart_never_5xx(client: FlaskClient, parts: list, url: str, boundary: str) -> None:
    data, content_type = multipart(parts, boundary)
    check(send(client, "POST", url, data=data, content_type=content_type))


@FUZZ
@given(
    route=st.sampled_from(["/jobs", "/voices", "/health", "/models", "/v1/models", "/audio/x.wav"]),
    query=query_strings(["limit", "offset", "state", "model", "format"]),
)
def test_queries_never_5xx(client: FlaskClient, route: str, query: str) -> None:
    check(send(client, "GET", route, query_string=query), audio=route.startswith("/audio"))


@FUZZ
@given(
    method=st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]),
    prefix=st.sampled_from(["/audio/", "/voices/", "/v1/audio/speech/", "/jobs/", "/", "/v1/", "/synthesize/"]),
    segment=path_segments,
    suffix=st.sampled_from(["", "/chunks", "/audio", "/x"]),
    query=query_strings(["format", "limit"]),
    browser=browser_headers,
)
def test_any_method_on_any_path_never_5xx(
    client: FlaskClient, method: str, prefix: str, segment: str, suffix: str, query: str, browser: dict
) -> None:
    url = prefix + segment + suffix
    response = send(client, method, url, query_string=query, headers=browser)
    check(response, audio=url.startswith("/audio/") or "/audio" in suffix)


# -- the classes of input that were 5xx once, pinned ------------------------------------------------

HI_JOB = [("file", "a.txt", b"Hello there.")]
BAD, VOICE = "invalid_request", "invalid_voice"
KNOWN = [
    ("limit ²", "GET", "/jobs?limit=%C2%B2", None, BAD),
    ("offset ¹", "GET", "/jobs?offset=%C2%B9", None, BAD),
    ("limit 5000 digits", "GET", "/jobs?limit=" + "9" * 5000, None, BAD),
    ("form voice ²", "POST", "/jobs", multipart([*HI_JOB, ("voice_preset", None, utf8("²"))]), VOICE),
    ("form voice 5000 digits", "POST", "/jobs", multipart([*HI_JOB, ("voice_preset", None, b"9" * 5000)]), VOICE),
    ("form speed 400 digits", "POST", "/jobs", multipart([*HI_JOB, ("speed", None, b"9" * 400)]), BAD),
    ("form speed 1e400", "POST", "/jobs", multipart([*HI_JOB, ("speed", None, b"1e400")]), BAD),
    ("form speed NaN", "POST", "/jobs", multipart([*HI_JOB, ("speed", None, b"NaN")]), BAD),
    ("form speed nested", "POST", "/jobs", multipart([*HI_JOB, ("speed", None, b"[" * 50_000)]), BAD),
    ("form text surrogate", "POST", "/jobs", multipart([("file", "a.txt", utf8("hi \ud800"))]), BAD),
    ("json speed 400 digits", "POST", "/synthesize", b'{"text": "hi", "speed": ' + b"9" * 400 + b"}", BAD),
    ("json speed -400 digits", "POST", "/jobs", b'{"text": "hi", "speed": -' + b"9" * 400 + b"}", BAD),
    ("json seed 1e400", "POST", "/synthesize", b'{"text": "hi", "seed": 1e400}', BAD),
    ("json pause -Infinity", "POST", "/synthesize", b'{"text": "hi", "sentence_pause_sec": -Infinity}', BAD),
    ("json speed NaN", "POST", "/jobs", b'{"text": "hi", "speed": NaN}', BAD),
    ("openai speed 400 digits", "POST", "/v1/audio/speech",
     b'{"input": "hi", "model": "tts-1", "voice": "alloy", "speed": ' + b"9" * 400 + b"}", BAD),
    ("nested 50,000 deep", "POST", "/jobs", b"[" * 50_000 + b"]" * 50_000, BAD),
    ("zero-width text", "POST", "/synthesize", encode_json({"text": "\u200b\u2060\u00ad"}, True), BAD),
    ("NUL text", "POST", "/jobs", encode_json({"text": "\x00\x00"}, True), BAD),
    ("BOM text", "POST", "/synthesize", encode_json({"text": "\ufeff"}, True), BAD),
    ("bidi text", "POST", "/v1/audio/speech",
     encode_json({"input": "\u202e\u2066\u200f", "model": "tts-1", "voice": "alloy"}, True), BAD),
    ("lone surrogate", "POST", "/synthesize", encode_json({"text": "hi \udc80"}, True), BAD),
]  # fmt: skip


@pytest.mark.parametrize(("case", "method", "url", "data", "code"), KNOWN, ids=[k[0] for k in KNOWN])
def test_known_bad_inputs_are_400(client: FlaskClient, case: str, method: str, url: str, data: Any, code: str) -> None:
    if isinstance(data, tuple):
        data, content_type = data
    else:
        content_type = "application/json"
    response = send(client, method, url, data=data, content_type=content_type)
    check(response)
    assert response.status_code == 400 and response.get_json()["error"]["code"] == code, response.get_json()


@pytest.mark.parametrize("url", ["/synthesize", "/v1/audio/speech", "/jobs", "/voices"])
@pytest.mark.parametrize("data", RAW_JSON, ids=range(len(RAW_JSON)))
def test_raw_json_texts_never_5xx(client: FlaskClient, url: str, data: bytes) -> None:
    check(send(client, "POST", url, data=data, content_type="application/json"), audio=url.startswith("/v1"))
