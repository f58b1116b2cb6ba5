"""Long texts: chunks through the engine, voice across chunks, joining, /synthesize and the CLI."""

import io
import itertools
import threading
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

from barkserve.cli import main
from barkserve.config import ServerConfig
from barkserve.engine import GeneratedAudio, GenerationRequest, ReferenceEngine
from barkserve.models import LoadedModel
from barkserve.server import create_app
from barkserve.synthesizer import Synthesizer
from barkserve.text import normalize_text
from support import FakeEngine

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "[laughs] That was not what I expected!",
    "WOMAN: Are you sure... really sure?",
    "Long texts are split at sentence ends — never inside a cue like ♪ la la la ♪.",
]
LONG_TEXT = " ".join(SENTENCES[i % 4] for i in range(120))[:5000]
FAST = {"max_duration_sec": 0.1, "sentence_pause_sec": 0.2}


class RecordingEngine(ReferenceEngine):
    """The reference engine, remembering each request and what it produced."""

    def __init__(self, loaded: LoadedModel) -> None:
        super().__init__(loaded)
        self.calls: list[tuple[GenerationRequest, GeneratedAudio]] = []
        self._record = threading.Lock()

    def generate(self, request: GenerationRequest) -> GeneratedAudio:
        out = super().generate(request)
        with self._record:
            self.calls.append((request, out))
        return out


@pytest.fixture()
def synth(tiny_model_dir: Path, tmp_path: Path) -> Synthesizer:
    config = ServerConfig(model=str(tiny_model_dir), voices_dir=tmp_path, offline=True)
    return Synthesizer(config, engine_factory=RecordingEngine)


@pytest.fixture()
def fake_synth(tiny_model_dir: Path, tmp_path: Path) -> Synthesizer:
    """The real chunking and joining over a deterministic fake engine (these tests check lengths only)."""
    config = ServerConfig(model=str(tiny_model_dir), voices_dir=tmp_path, offline=True)
    return Synthesizer(config, engine_factory=FakeEngine)


def recorded(synth: Synthesizer) -> list[tuple[GenerationRequest, GeneratedAudio]]:
    engine = synth.engine(synth.config.default_model)
    assert isinstance(engine, RecordingEngine | FakeEngine)
    return sorted(engine.calls, key=lambda call: call[0].options.seed or 0)


def test_long_text_is_the_sum_of_its_chunks_and_pauses(fake_synth: Synthesizer) -> None:
    synth = fake_synth
    assert len(LONG_TEXT) == 5000
    result = synth.synthesize(LONG_TEXT, voice=2, options={"seed": 100, **FAST})
    calls = recorded(synth)
    assert result.chunk_count == len(calls) > 10
    pause = round(0.2 * 24_000)
    assert len(result.audio) == sum(len(out.audio) for _, out in calls) + pause * (len(calls) - 1)
    # every chunk used the request's voice and its own seed (seed + index)
    assert [req.options.seed for req, _ in calls] == list(range(100, 100 + len(calls)))
    assert len({id(req.voice) for req, _ in calls}) == 1
    assert all(req.voice is not None and req.voice.name == "v2/en_speaker_2" for req, _ in calls)


def test_carry_history_feeds_each_chunk_the_previous_tokens(synth: Synthesizer) -> None:
    text = " ".join(SENTENCES * 3)
    result = synth.synthesize(text, voice="v2/fr_speaker_2", options={"seed": 5, "carry_history": True, **FAST})
    calls = recorded(synth)
    assert result.chunk_count == len(calls) >= 2
    first_voice = calls[0][0].voice
    assert first_voice is not None and first_voice.name == "v2/fr_speaker_2"
    for (_, previous), (request, _) in itertools.pairwise(calls):
        assert request.voice is not None and previous.semantic is not None and previous.fine is not None
        assert np.array_equal(request.voice.semantic, previous.semantic)
        assert np.array_equal(request.voice.fine, previous.fine)
        assert np.array_equal(request.voice.coarse, previous.fine[:2])


def test_long_text_through_synthesize(tiny_model_dir: Path, tmp_path: Path) -> None:
    config = ServerConfig(
        model=str(tiny_model_dir), output_dir=tmp_path / "out", voices_dir=tmp_path, jobs_dir=tmp_path, offline=True
    )
    synth = Synthesizer(config, engine_factory=FakeEngine)
    app = create_app(config, synthesizer=synth, start_jobs=False)
    body = {"text": LONG_TEXT, "format": "flac", "seed": 1, **FAST}
    response = app.test_client().post("/synthesize", json=body)
    assert response.status_code == 200, response.data
    data = response.get_json()
    assert data["text"] == LONG_TEXT and data["format"] == "flac" and data["chunks"] > 10
    info = sf.info(str(tmp_path / "out" / data["filename"]))
    assert info.format == "FLAC" and info.frames / info.samplerate == pytest.approx(data["duration_sec"], abs=1e-3)
    calls = recorded(synth)
    assert len(calls) == data["chunks"]
    assert info.frames == sum(len(out.audio) for _, out in calls) + round(0.2 * 24_000) * (len(calls) - 1)
    served = app.test_client().get(data["url"])
    assert served.mimetype == "audio/flac" and sf.info(io.BytesIO(served.data)).frames == info.frames


def test_long_text_through_the_cli(tiny_model_dir: Path, tmp_path: Path) -> None:
    book = tmp_path / "book.txt"
    book.write_text(LONG_TEXT, encoding="utf-8")
    out = tmp_path / "book.mp3"
    args = ["say", "--file", str(book), "-o", str(out), "--model", str(tiny_model_dir), "--offline"]
    result = CliRunner().invoke(main, [*args, "--seed", "3", "--max-duration", "0.1", "--pause", "0.2"])
    assert result.exit_code == 0, result.output
    assert "chunk(s)" in result.output
    import av

    container = av.open(str(out))
    assert container.format.name == "mp3" and container.streams.audio[0].rate == 24_000
    chunks = int(result.output.split(" in ")[1].split(" chunk")[0])
    assert chunks > 10


class OrderEngine(FakeEngine):
    """Records when each request starts and ends."""

    def __init__(self, loaded: LoadedModel) -> None:
        super().__init__(loaded)
        self.events: list[tuple[str, int, bool]] = []
        self._events = threading.Lock()

    def generate(self, request: GenerationRequest) -> GeneratedAudio:
        with self._events:
            self.events.append(("start", request.options.seed or 0, request.first_audio))
        out = super().generate(request)
        with self._events:
            self.events.append(("end", request.options.seed or 0, request.first_audio))
        return out


def test_a_stream_speaks_its_first_sentence_first_and_alone(tiny_model_dir: Path, tmp_path: Path) -> None:
    config = ServerConfig(model=str(tiny_model_dir), voices_dir=tmp_path, offline=True)
    synth = Synthesizer(config, engine_factory=OrderEngine)
    text = "Hello there. " + LONG_TEXT[:1500]
    info, pieces = synth.stream(text, options={"seed": 50, **FAST}, lookahead=2)
    assert info.chunks[0].spoken == "Hello there."  # the first sentence alone, not a 13 s chunk
    assert "".join(c.text for c in info.chunks) == normalize_text(text)  # nothing lost to the split
    first = next(pieces)
    engine = synth.engine(config.default_model)
    assert isinstance(engine, OrderEngine)
    # When the first piece is out, only the first chunk has run: it ran alone, marked first-audio.
    assert engine.events[:2] == [("start", 50, True), ("end", 50, True)]
    rest = list(pieces)
    assert len(rest) == len(info.chunks) - 1 and len(first) > 0
    assert all(not flag for _, seed, flag in engine.events if seed != 50)
    plain, _ = synth.stream(text, options={"seed": 50, **FAST}, first_audio=False)
    assert len(plain.chunks) < len(info.chunks)  # without it the first sentence shares a chunk
