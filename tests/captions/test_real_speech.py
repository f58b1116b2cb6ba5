"""Captions on real speech (espeak-ng): sentence boundaries at the real pauses, and a CTC checkpoint
loaded with `from_pretrained` wired through word alignment (a tiny random one: no real aligner
weights can be downloaded here, so its word times prove the wiring, not the accuracy; the
alignment itself is proven on synthetic emissions in test_align.py)."""

from __future__ import annotations

import io
import shutil
import subprocess
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest

from barkserve.captions import CtcAligner, align_words, load_aligner, sentence_cues
from barkserve.errors import AlignerUnavailable
from barkserve.testing.tiny import make_tiny_ctc
from barkserve.text import chunk_text, normalize_text
from support import missing

SENTENCES = [
    "The old lighthouse keeper climbed the stairs.",
    "Outside, the storm was getting worse.",
    "He lit the lamp and waited for the ships to pass safely by the rocks.",
]


def espeak(text: str) -> tuple[np.ndarray, int]:
    """`text` spoken by espeak-ng: mono float32 samples and their rate."""
    import soundfile as sf

    if shutil.which("espeak-ng") is None:
        missing("espeak-ng is not installed (apt-get install espeak-ng; .ci/system-deps.sh)")
    wav = subprocess.run(["espeak-ng", "-v", "en", "--stdout", text], check=True, capture_output=True).stdout
    audio, rate = sf.read(io.BytesIO(wav), dtype="float32")
    return audio, int(rate)


def onset(audio: np.ndarray, rate: int) -> float:
    """Seconds to the first 10 ms frame louder than 1/30 of the loudest one."""
    hop = rate // 100
    rms = np.sqrt([np.mean(audio[i : i + hop] ** 2) for i in range(0, len(audio) - hop, hop)])
    return float(np.flatnonzero(rms > rms.max() / 30)[0]) / 100


@pytest.fixture(scope="module")
def spoken() -> tuple[np.ndarray, int, list[float]]:
    """The three sentences spoken one after another as one chunk, and where each one's speech begins."""
    parts, starts, at = [], [], 0.0
    for sentence in SENTENCES:
        audio, rate = espeak(sentence)
        starts.append(at + onset(audio, rate))
        parts.append(audio)
        at += len(audio) / rate
    return np.concatenate(parts), rate, starts


def test_sentence_captions_start_where_espeak_starts_each_sentence(spoken: tuple[np.ndarray, int, list[float]]) -> None:
    audio, rate, starts = spoken
    text = " ".join(SENTENCES)
    chunks = chunk_text(normalize_text(text))
    assert len(chunks) == 1  # one chunk: the boundaries inside it come from the audio alone
    cues = sentence_cues(text, chunks, [(0.0, len(audio) / rate)], audio=audio, sample_rate=rate)
    assert [c.text for c in cues] == SENTENCES
    for cue, start in zip(cues[1:], starts[1:], strict=True):
        assert cue.start == pytest.approx(start, abs=0.03)
    # Without the audio, the proportional guess misses at least one boundary by more than that.
    guessed = sentence_cues(text, chunks, [(0.0, len(audio) / rate)])
    assert max(abs(c.start - s) for c, s in zip(guessed[1:], starts[1:], strict=True)) > 0.1


@pytest.fixture(scope="module")
def tiny_aligner(tmp_path_factory: pytest.TempPathFactory) -> CtcAligner:
    return load_aligner(str(make_tiny_ctc(tmp_path_factory.mktemp("tiny-ctc"))), offline=True)


def test_a_ctc_checkpoint_from_disk_times_every_word(
    spoken: tuple[np.ndarray, int, list[float]], tiny_aligner: CtcAligner
) -> None:
    audio, rate, _ = spoken
    text = " ".join(SENTENCES)
    chunks = chunk_text(normalize_text(text))
    cues = sentence_cues(text, chunks, [(0.0, len(audio) / rate)], audio=audio, sample_rate=rate)
    aligned, warnings = align_words(audio, rate, cues, tiny_aligner)
    assert warnings == []
    assert [c.text for c in aligned] == SENTENCES
    assert aligned[0].start == 0.0 and aligned[-1].end == pytest.approx(len(audio) / rate)
    for cue in aligned:
        assert [w.text for w in cue.words] == cue.text.split()
        times = [t for w in cue.words for t in (w.start, w.end)]
        assert times == sorted(times) and cue.start <= times[0] and times[-1] <= cue.end
    for a, b in pairwise(aligned):
        assert a.end == b.start


def test_the_aligner_reads_words_in_its_vocabulary(tiny_aligner: CtcAligner) -> None:
    vocab = tiny_aligner.vocab
    assert tiny_aligner.tokens("Don't") == [vocab[c] for c in "DON'T"]
    assert tiny_aligner.tokens("Café,") == [vocab[c] for c in "CAFE"]  # accents off, punctuation out
    assert tiny_aligner.tokens("1990") == [] and tiny_aligner.tokens("мир") == []
    assert tiny_aligner.blank == vocab["<pad>"] and tiny_aligner.separator == vocab["|"]
    assert tiny_aligner.sample_rate == 16_000


def test_the_aligner_is_loaded_once(tiny_aligner: CtcAligner) -> None:
    source = tiny_aligner.model.name_or_path
    assert load_aligner(source, offline=True) is tiny_aligner


@pytest.mark.parametrize("source", ["not a model id", "./no/such/folder", "owner/surely-not-cached-ctc-model"])
def test_an_aligner_that_cannot_load_says_how_to_get_one(source: str) -> None:
    with pytest.raises(AlignerUnavailable, match="align_model"):
        CtcAligner.from_pretrained(source, offline=True)


def test_a_folder_without_a_ctc_processor_is_refused(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(AlignerUnavailable):
        CtcAligner.from_pretrained(str(tmp_path), offline=True)
