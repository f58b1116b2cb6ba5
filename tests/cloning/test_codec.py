"""Coarse and fine prompts from EnCodec: round trips with Suno's real presets, and their structure."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from barkserve.cloning import audio_in, codec
from barkserve.cloning.clone import build_prompt
from barkserve.voices import VoicePrompt

PRESETS = ["v2/en_speaker_6", "v2/de_speaker_3", "v2/zh_speaker_0", "announcer"]


@pytest.mark.parametrize("name", PRESETS)
def test_decode_then_encode_a_real_preset(tiny_loaded: Any, voices_fixture_dir: Path, name: str) -> None:
    preset = VoicePrompt.from_npz(voices_fixture_dir / f"{name}.npz")
    model = tiny_loaded.model.codec_model
    audio = codec.decode_codes(model, preset.fine)
    # EnCodec 24 kHz: 320 samples per frame.
    assert audio.shape == (preset.fine.shape[1] * 320,)
    codes = codec.encode_codes(model, audio)
    assert codes.shape == preset.fine.shape == (8, preset.fine.shape[1])
    assert codes.dtype == np.int64
    assert codes.min() >= 0 and codes.max() <= 1023
    coarse, fine = codec.acoustic_prompts(codes)
    assert np.array_equal(coarse, fine[:2])
    # With the preset's own semantic tokens the re-encoded prompt is a valid Bark voice.
    VoicePrompt(semantic=preset.semantic, coarse=coarse, fine=fine)


def test_encoding_is_deterministic_and_uses_all_eight_codebooks(tiny_loaded: Any, voices_fixture_dir: Path) -> None:
    preset = VoicePrompt.from_npz(voices_fixture_dir / "v2/en_speaker_1.npz")
    model = tiny_loaded.model.codec_model
    audio = codec.decode_codes(model, preset.fine)
    first, second = codec.encode_codes(model, audio), codec.encode_codes(model, audio)
    assert np.array_equal(first, second)
    # Residual codebooks differ from one another: the 8 rows are not copies of the first.
    assert all(not np.array_equal(first[0], first[k]) for k in range(1, 8))
    # 6 kbps means 8 codebooks; more bandwidth would give more rows.
    assert model.quantizer.get_num_quantizers_for_bandwidth(codec.BANDWIDTH_KBPS) == 8


def test_semantic_length_matches_the_real_presets(voices_fixture_dir: Path) -> None:
    paths = sorted(voices_fixture_dir.rglob("*.npz"))
    assert len(paths) == 131
    for path in paths:
        preset = VoicePrompt.from_npz(path)
        # Suno's prompts: S ~ C x 49.9 / 75, which is how we size a cloned semantic prompt.
        assert abs(codec.semantic_length(preset.fine.shape[1]) - len(preset.semantic)) <= 2, path


def test_cloned_prompt_has_the_structure_of_the_real_ones(
    tiny_loaded: Any, voices_fixture_dir: Path, tiny_hubert_dir: Path, tiny_quantizer: Path, tmp_path: Path
) -> None:
    from cloning_helpers import TINY_LAYER, write_audio

    from barkserve.cloning.hubert import HubertFeaturizer
    from barkserve.cloning.quantizer import load_quantizer

    real = np.load(voices_fixture_dir / "v2/en_speaker_6.npz")
    reference = audio_in.prepare_reference(write_audio(tmp_path / "ref.wav", 4.0))
    featurizer = HubertFeaturizer(str(tiny_hubert_dir), TINY_LAYER)
    ours = build_prompt(reference, tiny_loaded.model.codec_model, featurizer, load_quantizer(tiny_quantizer))
    assert set(ours) == set(real.files)
    for key in real.files:
        assert ours[key].ndim == real[key].ndim
        assert ours[key].shape[:-1] == real[key].shape[:-1]
        assert np.issubdtype(ours[key].dtype, np.integer) and np.issubdtype(real[key].dtype, np.integer)
    n_frames = ours["fine_prompt"].shape[1]
    assert n_frames == int(np.ceil(len(reference.wav24) / 320))
    assert len(ours["semantic_prompt"]) == codec.semantic_length(n_frames)
    assert ours["semantic_prompt"].max() < 10_000
    VoicePrompt.from_arrays(ours, name="cloned")
