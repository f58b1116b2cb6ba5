"""clone_voice end to end on tiny Bark + tiny HuBERT: prompt, file, synthesis by name, names."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from cloning_helpers import TINY_LAYER, write_audio

from barkserve.cloning.clone import NO_SEMANTIC_NOTE, Cloner, validate_cloned
from barkserve.cloning.codec import semantic_length
from barkserve.errors import ConfigError, InvalidVoice, NotFound, QuantizerError, VoiceExists, VoiceProtected
from barkserve.server.errors import http_status
from barkserve.voices import PresetIndex, VoicePrompt


def make_cloner(loaded: Any, voices: Path, **kwargs: Any) -> Cloner:
    presets = PresetIndex(loaded.name, local_files_only=True)
    return Cloner(
        voices_dir=voices,
        codec_model=lambda: loaded.model.codec_model,
        is_preset=lambda n: n in presets or f"v2/{n}" in presets,
        **kwargs,
    )


def files_under(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()}


def test_clone_with_quantizer_then_speak_with_the_voice(
    tiny_loaded: Any, tiny_model_dir: Path, tiny_hubert_dir: Path, tiny_quantizer: Path, tmp_path: Path
) -> None:
    from barkserve.config import ServerConfig
    from barkserve.engine import ReferenceEngine
    from barkserve.synthesizer import Synthesizer

    voices = tmp_path / "voices"
    cloner = make_cloner(
        tiny_loaded, voices, hubert=str(tiny_hubert_dir), layer=TINY_LAYER, quantizer_path=tiny_quantizer
    )
    reference = write_audio(tmp_path / "me.flac", 4.0)
    before = files_under(tmp_path)
    result = cloner.clone(reference, "my-voice")
    assert files_under(tmp_path) - before == {voices / "my-voice.npz"}
    assert result.has_semantic and result.notes == ()
    frames = result.arrays["fine_prompt"].shape[1]
    assert frames == 300  # 4.0 s x 75 frames/s
    assert len(result.arrays["semantic_prompt"]) == semantic_length(frames) == 200
    saved = VoicePrompt.from_npz(result.path, name="my-voice")  # the validation every voice passes
    for key, array in saved.arrays().items():
        assert np.array_equal(array, result.arrays[key])

    seen: list[Any] = []

    class Spy(ReferenceEngine):
        def generate(self, request: Any) -> Any:
            seen.append(request.voice)
            return super().generate(request)

    config = ServerConfig(model=str(tiny_model_dir), device="cpu", offline=True, voices_dir=voices)
    synth = Synthesizer(config, engine_factory=Spy)
    out = synth.synthesize("Hello there.", voice="my-voice", options={"seed": 3, "max_duration_sec": 0.5})
    assert out.voice == "my-voice" and len(out.audio) > 0
    # The cloned arrays reached the engine unchanged.
    assert seen and all(np.array_equal(v.fine, result.arrays["fine_prompt"]) for v in seen)
    assert all(np.array_equal(v.semantic, result.arrays["semantic_prompt"]) for v in seen)


def test_clone_without_quantizer_leaves_semantic_out_and_says_so(tiny_loaded: Any, tmp_path: Path) -> None:
    cloner = make_cloner(tiny_loaded, tmp_path / "voices")
    result = cloner.clone(write_audio(tmp_path / "me.wav", 2.0), "timbre_only")
    assert not result.has_semantic
    assert result.notes == (NO_SEMANTIC_NOTE,)
    assert result.to_dict()["semantic_tokens"] == 0
    with np.load(result.path) as data:
        assert data["semantic_prompt"].shape == (0,)
        assert data["fine_prompt"].shape == (8, 150)
        validate_cloned({k: data[k] for k in data.files}, "timbre_only")


def test_trimmed_recording_is_reported(tiny_loaded: Any, tmp_path: Path) -> None:
    cloner = make_cloner(tiny_loaded, tmp_path / "voices", max_seconds=2.0)
    result = cloner.clone(write_audio(tmp_path / "long.wav", 5.0), "short")
    assert result.trimmed and any("trimmed" in n for n in result.notes)
    assert result.arrays["fine_prompt"].shape[1] == 150


BAD_NAMES = [
    ("", InvalidVoice),
    ("../escape", InvalidVoice),
    ("a/b", InvalidVoice),
    (".hidden", InvalidVoice),
    ("x" * 65, InvalidVoice),
    ("sp ace", InvalidVoice),
    ("evil_nl\n", InvalidVoice),  # `$` would match before the newline
    ("tab\t", InvalidVoice),
    ("é", InvalidVoice),
    (None, InvalidVoice),
    ("announcer", VoiceExists),  # a preset
    ("en_speaker_3", VoiceExists),  # v2/en_speaker_3, by its short name
    ("taken", VoiceExists),
]


@pytest.mark.parametrize(("name", "error"), BAD_NAMES, ids=[str(n)[:12] for n, _ in BAD_NAMES])
def test_bad_names_are_refused_and_nothing_is_written(
    tiny_loaded: Any, tmp_path: Path, reference_wav: Path, name: Any, error: type
) -> None:
    voices = tmp_path / "voices"
    voices.mkdir()
    (voices / "taken.npz").write_bytes(b"existing")
    before = {p: p.read_bytes() for p in files_under(tmp_path)}
    with pytest.raises(error) as info:
        make_cloner(tiny_loaded, voices).clone(reference_wav, name)
    assert 400 <= http_status(info.value) < 500
    assert {p: p.read_bytes() for p in files_under(tmp_path)} == before


def test_delete_custom_voice_but_never_a_preset(tiny_loaded: Any, tmp_path: Path, reference_wav: Path) -> None:
    cloner = make_cloner(tiny_loaded, tmp_path / "voices")
    path = cloner.clone(reference_wav, "gone-soon").path
    assert cloner.delete("gone-soon") == path and not path.exists()
    with pytest.raises(NotFound):
        cloner.delete("gone-soon")
    for preset in ("announcer", "v2/en_speaker_1", "de_speaker_2"):
        with pytest.raises(VoiceProtected):
            cloner.delete(preset)
    with pytest.raises(NotFound):
        cloner.delete("../../etc/passwd")


def test_quantizer_for_another_hubert_layer_is_refused(
    tiny_loaded: Any, tiny_hubert_dir: Path, tiny_quantizer: Path, tmp_path: Path, reference_wav: Path
) -> None:
    cloner = make_cloner(tiny_loaded, tmp_path / "voices", hubert=str(tiny_hubert_dir), layer=3,
                         quantizer_path=tiny_quantizer)  # fmt: skip
    with pytest.raises(QuantizerError, match="layer 2, not 3"):
        cloner.clone(reference_wav, "mismatch")
    assert not (tmp_path / "voices" / "mismatch.npz").exists()


def test_clone_with_a_community_lstm_checkpoint(
    tiny_loaded: Any, tiny_hubert_dir: Path, tmp_path: Path, reference_wav: Path
) -> None:
    import torch

    torch.manual_seed(0)
    module = torch.nn.Module()
    module.lstm = torch.nn.LSTM(32, 16, 2, batch_first=True)  # tiny HuBERT is 32 wide
    module.fc = torch.nn.Linear(16, 10_000)
    torch.save(module.state_dict(), tmp_path / "community.pth")
    kwargs = {"hubert": str(tiny_hubert_dir), "quantizer_path": tmp_path / "community.pth"}
    # Community files mean layer 9, which the 3-layer tiny HuBERT lacks: a clear error, then the fix.
    with pytest.raises(ConfigError, match=r"layers 1\.\.3; got layer 9"):
        make_cloner(tiny_loaded, tmp_path / "voices", **kwargs).clone(reference_wav, "community")
    result = make_cloner(tiny_loaded, tmp_path / "voices", layer=TINY_LAYER, **kwargs).clone(reference_wav, "community")
    assert result.has_semantic and len(result.arrays["semantic_prompt"]) == 150
    VoicePrompt.from_npz(result.path)
