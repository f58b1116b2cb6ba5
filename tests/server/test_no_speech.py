"""/synthesize when the engine makes no sound: a 422 whether the text is one chunk or many."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import soundfile as sf

from support import FakeEngine

LONG = " ".join(f"This is sentence number {i} of a text long enough to need several chunks." for i in range(8))


class QuietEngine(FakeEngine):
    """The fake engine, except that chunks whose seed is in `silent` end before any sound (empty audio)."""

    silent: tuple[int, ...] = ()

    def __init__(self, loaded: Any) -> None:
        super().__init__(loaded)
        self.lengths: list[int] = []  # samples of each chunk's audio as delivered (list.append is thread-safe)

    def generate(self, request: Any) -> Any:
        out = super().generate(request)
        if request.options.seed % 2 in self.silent:
            out = type(out)(audio=np.zeros(0, dtype=np.float32), sample_rate=out.sample_rate)
        self.lengths.append(len(out.audio))
        return out


class SilentEngine(QuietEngine):
    silent = (0, 1)  # every chunk


class EvenSilentEngine(QuietEngine):
    silent = (0,)  # chunks 0, 2, 4... of a request with an even seed


@pytest.mark.parametrize("text", ["Stop.", LONG], ids=["one chunk", "many chunks"])
def test_no_speech_in_every_chunk_is_422_and_nothing_is_written(make_app: Any, text: str) -> None:
    app = make_app(engine_factory=SilentEngine)
    response = app.test_client().post("/synthesize", json={"text": text, "sentence_pause_sec": 0.25})
    assert response.status_code == 422, response.get_json()
    assert response.get_json()["error"]["code"] == "no_speech"
    state = app.extensions["barkserve"]
    engine = state.synthesizer.engine(state.config.default_model)
    assert len(engine.lengths) == (1 if text == "Stop." else len(engine.requests)) and not any(engine.lengths)
    assert text == "Stop." or len(engine.lengths) > 1
    assert not state.config.output_dir.exists() or not any(state.config.output_dir.iterdir())


def test_speech_in_some_chunks_is_kept_with_the_pauses(make_app: Any) -> None:
    app = make_app(engine_factory=EvenSilentEngine)
    client = app.test_client()
    body = client.post("/synthesize", json={"text": LONG, "seed": 0, "sentence_pause_sec": 0.25}).get_json()
    state = app.extensions["barkserve"]
    engine = state.synthesizer.engine(state.config.default_model)
    spoken = sum(engine.lengths)
    assert body["chunks"] == len(engine.lengths) > 2 and spoken > 0 and 0 in engine.lengths
    frames = sf.info(str(state.config.output_dir / body["filename"])).frames
    assert frames == spoken + (body["chunks"] - 1) * round(0.25 * body["sample_rate"])
