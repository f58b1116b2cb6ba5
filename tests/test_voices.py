"""Voice prompts: validation of real and malformed prompts, and name resolution."""

from pathlib import Path

import numpy as np
import pytest

from barkserve.errors import InvalidVoice
from barkserve.voices import PresetIndex, VoiceLibrary, VoicePrompt


def real_prompt(fixtures: Path, name: str = "v2/en_speaker_6") -> dict[str, np.ndarray]:
    with np.load(fixtures / f"{name}.npz") as data:
        return {k: data[k] for k in data.files}


def test_all_real_presets_validate(voices_fixture_dir: Path) -> None:
    paths = sorted(voices_fixture_dir.rglob("*.npz"))
    assert len(paths) == 131
    for path in paths:
        prompt = VoicePrompt.from_npz(path)
        assert prompt.coarse.shape[1] == prompt.fine.shape[1]
        # C ~ S * 75 / 49.9 for every real prompt
        assert abs(prompt.fine.shape[1] - prompt.semantic.shape[0] * 75 / 49.9) < 3


def _mutations() -> list[tuple[str, object]]:
    def drop(d: dict) -> None:
        del d["fine_prompt"]

    def floats(d: dict) -> None:
        d["semantic_prompt"] = d["semantic_prompt"].astype(np.float32)

    def semantic_range(d: dict) -> None:
        d["semantic_prompt"][0] = 10_000

    def negative(d: dict) -> None:
        d["coarse_prompt"][0, 0] = -1
        d["fine_prompt"][0, 0] = -1

    def fine_range(d: dict) -> None:
        d["fine_prompt"][5, 3] = 1024

    def coarse_rows(d: dict) -> None:
        d["coarse_prompt"] = d["fine_prompt"][:3]

    def fine_rows(d: dict) -> None:
        d["fine_prompt"] = d["fine_prompt"][:7]

    def semantic_2d(d: dict) -> None:
        d["semantic_prompt"] = d["semantic_prompt"][None]

    def mismatch(d: dict) -> None:
        d["fine_prompt"][1, 10] = (d["fine_prompt"][1, 10] + 1) % 1024

    def empty(d: dict) -> None:
        d["semantic_prompt"] = d["semantic_prompt"][:0]

    return [
        ("missing", drop),
        ("integer", floats),
        ("0..9999", semantic_range),
        ("0..1023", negative),
        ("0..1023", fine_range),
        ("shape", coarse_rows),
        ("shape", fine_rows),
        ("shape", semantic_2d),
        ("equal coarse", mismatch),
        ("shape", empty),
    ]


@pytest.mark.parametrize(("needle", "mutate"), _mutations())
def test_malformed_prompts_are_clear_errors(voices_fixture_dir: Path, needle: str, mutate) -> None:
    arrays = real_prompt(voices_fixture_dir)
    mutate(arrays)
    with pytest.raises(InvalidVoice) as info:
        VoicePrompt.from_arrays(arrays, name="broken")
    assert needle in info.value.message and "broken" in info.value.message


def test_corrupt_npz_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.npz"
    path.write_bytes(b"not a zip file at all")
    with pytest.raises(InvalidVoice, match="not a readable"):
        VoicePrompt.from_npz(path)


@pytest.fixture()
def library(tiny_model_dir: Path, tmp_path: Path, voices_fixture_dir: Path) -> VoiceLibrary:
    voices = tmp_path / "voices"
    voices.mkdir()
    np.savez(voices / "narrator.npz", **real_prompt(voices_fixture_dir, "v2/fr_speaker_1"))
    return VoiceLibrary(PresetIndex(str(tiny_model_dir)), voices, default_voice="v2/en_speaker_6")


@pytest.mark.parametrize(
    ("given", "resolved"),
    [
        (None, "v2/en_speaker_6"),
        (0, "v2/en_speaker_0"),
        (9, "v2/en_speaker_9"),
        ("v2/de_speaker_3", "v2/de_speaker_3"),
        ("de_speaker_3", "v2/de_speaker_3"),
        ("announcer", "announcer"),
        ("narrator", "narrator"),
    ],
)
def test_resolve_names(library: VoiceLibrary, given: object, resolved: str) -> None:
    assert library.resolve_name(given) == resolved


@pytest.mark.parametrize("bad", [True, False, 1.0, -1, 10, "nobody", "../voices/narrator", "", [], {"a": 1}])
def test_bad_voices_list_what_is_valid(library: VoiceLibrary, bad: object) -> None:
    with pytest.raises(InvalidVoice) as info:
        library.resolve_name(bad)
    assert "0-9" in info.value.message and "v2/en_speaker_6" in info.value.message


def test_loaded_preset_equals_the_real_file(library: VoiceLibrary, voices_fixture_dir: Path) -> None:
    prompt = library.load("v2/ja_speaker_2")
    expected = real_prompt(voices_fixture_dir, "v2/ja_speaker_2")
    assert np.array_equal(prompt.semantic, expected["semantic_prompt"])
    assert np.array_equal(prompt.fine, expected["fine_prompt"])
    custom = library.load("narrator")
    assert np.array_equal(custom.coarse, real_prompt(voices_fixture_dir, "v2/fr_speaker_1")["coarse_prompt"])


def test_preset_index_lists_every_shipped_preset(library: VoiceLibrary) -> None:
    names = library.presets.names()
    assert len(names) == 131 and "v2/zh_speaker_9" in names and "announcer" in names
    assert library.list_custom() == ["narrator"]
