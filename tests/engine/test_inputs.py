"""The per-row bookkeeping the stages rely on: reference rounding, fine windows, the packed KV cache."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from barkserve import bark
from barkserve.engine.inputs import BarkGeometry, coarse_histories, coarse_length, coarse_window, fine_row
from barkserve.engine.kv import KVCache
from barkserve.testing.tiny import build_random_bark


@pytest.fixture(scope="module")
def geo() -> BarkGeometry:
    return BarkGeometry.from_model(build_random_bark("tiny"))


def test_the_checkpoint_geometry_agrees_with_barks_fixed_facts(geo):
    assert geo.semantic_rate_hz == bark.SEMANTIC_RATE_HZ
    assert geo.coarse_rate_hz == bark.CODEC_FRAME_RATE_HZ
    assert geo.semantic_vocab == geo.eos == bark.SEMANTIC_VOCAB
    assert geo.codebook == bark.CODEBOOK_SIZE
    assert geo.n_coarse == bark.N_COARSE and geo.n_fine == bark.N_FINE
    assert geo.max_text == bark.MAX_TEXT_TOKENS


@pytest.mark.parametrize("n_semantic", [0, 1, 2, 49, 100, 333, 767, 768])
def test_coarse_length_follows_the_reference_formula(geo, n_semantic):
    # BarkCoarseModel.generate: floor(n * ratio / 2), then round(x * 2), in float32 tensors.
    n = torch.tensor([n_semantic])
    expected = torch.round(torch.floor(n * geo.ratio / 2) * 2).int()[0]
    assert coarse_length(geo, n_semantic) == int(expected)
    assert coarse_length(geo, n_semantic) % 2 == 0


def test_windows_hold_256_semantic_the_infer_token_and_at_most_630_coarse(geo, voices_fixture_dir):
    from barkserve.voices import VoicePrompt

    voice = VoicePrompt.from_npz(voices_fixture_dir / "v2/en_speaker_6.npz")
    sem_hist, coarse_hist = coarse_histories(geo, voice)
    assert len(sem_hist) == geo.max_semantic_history  # 209 of the voice's 309 semantic tokens
    assert len(coarse_hist) == round(len(sem_hist) * geo.ratio) - 2  # the reference drops two
    semantic = np.concatenate([sem_hist, np.arange(300)])
    coarse = np.concatenate([coarse_hist, np.full(120, 10_500)])
    window = coarse_window(geo, semantic, len(sem_hist), coarse, done=120)
    assert len(window) == 256 + 1 + 630
    assert window[256] == geo.coarse_infer and np.all(window[-120:] == 10_500)
    # 120 coarse tokens are 40 semantic tokens on: the window starts 40 tokens into the history.
    np.testing.assert_array_equal(window[:10], semantic[40:50])


# en_speaker_6 has 464 history frames: one 1024-frame window holds 560 new frames, each next one 512.
@pytest.mark.parametrize(("frames", "loops"), [(10, 1), (560, 1), (561, 2), (1072, 2), (1073, 3)])
def test_fine_windows_cover_every_frame_once(geo, frames, loops, voices_fixture_dir):
    from barkserve.voices import VoicePrompt

    voice = VoicePrompt.from_npz(voices_fixture_dir / "v2/en_speaker_6.npz")
    coarse = torch.full((2 * frames,), 10_000 + 5)
    row = fine_row(geo, coarse, voice)
    assert len(row.windows) == loops and row.n_history == 464
    filled = np.zeros(row.codes.shape[0], dtype=int)
    for start, rel in row.windows:
        filled[start + rel : start + geo.max_fine_input] = 1
    assert filled[row.n_history : row.n_history + frames].all()
    assert row.output().shape == (8, frames)


def test_kv_cache_keeps_rows_packed_when_one_leaves():
    cache = KVCache(n_layers=1, max_rows=3, n_heads=1, max_len=4, head_dim=1)
    for i in range(3):
        slot = cache.add_row()
        cache.k[:, slot] = i
        cache.lengths[slot] = i + 1
    cache.remove_row(0)
    assert cache.n == 2 and cache.lengths == [3, 2]
    assert cache.view(0, 1, 4)[0].flatten().tolist() == [2.0] * 4  # the last row moved into slot 0
    with pytest.raises(RuntimeError):
        for _ in range(2):
            cache.add_row()
