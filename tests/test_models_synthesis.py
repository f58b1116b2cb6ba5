"""Model loading through from_pretrained, the allowlist, and synthesis on the tiny checkpoint."""

from pathlib import Path

import numpy as np
import pytest

from barkserve.config import ServerConfig
from barkserve.errors import InvalidModel, ModelUnavailable
from barkserve.models import ModelRegistry, load_model
from barkserve.synthesizer import Synthesizer
from barkserve.testing.tiny import COARSE_VOCAB, FINE_VOCAB, SEMANTIC_INPUT_VOCAB, SEMANTIC_OUTPUT_VOCAB

SHORT = {"max_duration_sec": 0.5}


@pytest.fixture(scope="module")
def synth(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Synthesizer:
    config = ServerConfig(model=str(tiny_model_dir), voices_dir=tmp_path_factory.mktemp("voices"), offline=True)
    return Synthesizer(config)


def test_tiny_checkpoint_has_barks_geometry(tiny_model_dir: Path) -> None:
    loaded = load_model(str(tiny_model_dir), ServerConfig(model=str(tiny_model_dir), offline=True))
    config = loaded.model.config
    assert config.semantic_config.input_vocab_size == SEMANTIC_INPUT_VOCAB == 129_600
    assert config.semantic_config.output_vocab_size == SEMANTIC_OUTPUT_VOCAB == 10_048
    assert config.coarse_acoustics_config.input_vocab_size == COARSE_VOCAB == 12_096
    assert config.fine_acoustics_config.input_vocab_size == FINE_VOCAB == 1_056
    assert config.codec_config.codebook_size == 1024
    assert loaded.sample_rate == 24_000
    # generation_config.json holds the stage configs as plain dicts (what BarkModel.generate needs)
    assert isinstance(loaded.model.generation_config.semantic_config, dict)
    ids = loaded.tokenizer("Hello, my dog", add_special_tokens=False)["input_ids"]
    assert 100 not in ids and all(0 <= i < 119_547 for i in ids)


UNCACHED = "barkserve-tests/no-such-bark"  # a hub id no cache holds


def test_unreachable_hub_model_names_the_ways_out() -> None:
    with pytest.raises(ModelUnavailable) as info:
        load_model(UNCACHED, ServerConfig(offline=True))
    message = info.value.message
    assert UNCACHED in message and "make-tiny" in message and "--model" in message


def test_registry_loads_each_model_once(tiny_model_dir: Path) -> None:
    calls: list[str] = []

    def loader(name: str, config: ServerConfig) -> object:
        calls.append(name)
        return object()

    registry = ModelRegistry(ServerConfig(model=str(tiny_model_dir)), loader=loader)
    first = registry.get(tiny_model_dir.name)  # a folder is served under its name
    assert registry.get(tiny_model_dir.name) is first and calls == [tiny_model_dir.name]


def test_allowlist(tiny_model_dir: Path) -> None:
    registry = ModelRegistry(ServerConfig(model=str(tiny_model_dir), models=("small",)))
    assert registry.resolve(None) == tiny_model_dir.name
    assert registry.resolve(str(tiny_model_dir)) == tiny_model_dir.name  # its source means it too
    assert registry.resolve("small") == "suno/bark-small"
    assert registry.resolve("suno/bark-small") == "suno/bark-small"
    for bad in ("large", "suno/bark", "gpt2", "../etc", 3, ["small"]):
        with pytest.raises(InvalidModel) as info:
            registry.resolve(bad)
        assert "suno/bark-small" in info.value.message


def test_same_seed_same_audio_and_trimmed(synth: Synthesizer) -> None:
    a = synth.synthesize("Hello, my dog is cute [laughs]", voice=3, options={"seed": 11, **SHORT})
    b = synth.synthesize("Hello, my dog is cute [laughs]", voice=3, options={"seed": 11, **SHORT})
    c = synth.synthesize("Hello, my dog is cute [laughs]", voice=3, options={"seed": 12, **SHORT})
    assert a.audio.dtype == np.float32 and a.audio.ndim == 1 and a.sample_rate == 24_000
    assert np.array_equal(a.audio, b.audio)
    assert a.audio.shape != c.audio.shape or not np.array_equal(a.audio, c.audio)
    # trimmed to whole codec frames (320 samples each), never longer than the cap
    assert len(a.audio) % 320 == 0 and 0 < a.duration_sec <= SHORT["max_duration_sec"]
    assert (a.seed, a.voice) == (11, "v2/en_speaker_3")


def test_the_voice_reaches_generation(synth: Synthesizer) -> None:
    text = "The same words, two voices."
    en = synth.synthesize(text, voice="v2/en_speaker_1", options={"seed": 5, **SHORT})
    de = synth.synthesize(text, voice="v2/de_speaker_1", options={"seed": 5, **SHORT})
    assert en.audio.shape != de.audio.shape or not np.array_equal(en.audio, de.audio)


def test_greedy_ignores_the_seed(synth: Synthesizer) -> None:
    greedy = {"text_temp": 0, "waveform_temp": 0, **SHORT}
    a = synth.synthesize("Greedy decoding.", options={"seed": 1, **greedy})
    b = synth.synthesize("Greedy decoding.", options={"seed": 2, **greedy})
    assert np.array_equal(a.audio, b.audio)


def test_seed_is_drawn_and_reported(synth: Synthesizer) -> None:
    first = synth.synthesize("A seed is drawn.", options=SHORT)
    again = synth.synthesize("A seed is drawn.", options={"seed": first.seed, **SHORT})
    assert np.array_equal(first.audio, again.audio)


def test_the_library_plans_text_of_any_length(synth: Synthesizer) -> None:
    # The limits are the server's edges' (`max_text_chars` on /synthesize, tests/server/test_http.py);
    # the library, like `barkserve say`, plans any text (before, `say` lifted the limit and the library
    # kept it: the copies disagreed).
    text = "The dog runs home. " * 1100
    assert len(text) > synth.config.max_text_chars
    plan = synth.plan(text, options=SHORT)
    assert "".join(c.spoken for c in plan.info.chunks).replace(" ", "") == text.replace(" ", "")
