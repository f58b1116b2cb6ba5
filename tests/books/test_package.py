"""Packaging: chapters at one loudness, an .m4b with chapter marks, metadata and cover, a zip of chapters.

The sinks are tested here as the job's assembler (`jobs/book.assemble_book`) drives them, one chapter at
a time; how it joins chapters (loudness, the gap between them) is tested through jobs in tests/jobs."""

import io
import zipfile
from pathlib import Path

import av
import numpy as np
import pyloudnorm
import pytest
import soundfile as sf

from barkserve.books.package import (
    PEAK_CEILING_DB,
    TARGET_LUFS,
    FlacSink,
    M4bSink,
    ZipSink,
    normalize_loudness,
)
from bookfiles import cover_jpeg

RATE = 24_000


def noise(seconds: float, level: float, seed: int) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(round(seconds * RATE)) * level).astype(np.float32)


def lufs(audio: np.ndarray) -> float:
    return float(pyloudnorm.Meter(RATE).integrated_loudness(audio.astype(np.float64)))


@pytest.mark.parametrize("level", [0.003, 0.05, 0.2])
def test_chapters_reach_the_target_loudness(level: float) -> None:
    out = normalize_loudness(noise(2.0, level, 1), RATE)
    assert lufs(out) == pytest.approx(TARGET_LUFS, abs=0.1)


def test_a_loud_peak_is_held_under_the_ceiling() -> None:
    audio = noise(2.0, 0.01, 2)
    audio[100] = 1.0  # one click far above the rest
    out = normalize_loudness(audio, RATE)
    assert np.max(np.abs(out)) == pytest.approx(10 ** (PEAK_CEILING_DB / 20), rel=1e-4)
    assert lufs(out) < TARGET_LUFS


def test_silence_and_very_short_audio_keep_their_level() -> None:
    assert np.array_equal(normalize_loudness(np.zeros(RATE, np.float32), RATE), np.zeros(RATE, np.float32))
    short = noise(0.1, 0.3, 3)
    assert np.array_equal(normalize_loudness(short, RATE), short)


def write_m4b(path: Path, titles: list[str], audios: list[np.ndarray], cover: bytes | None, **meta: str) -> Path:
    lengths = [len(a) for a in audios]
    with M4bSink(path, RATE, titles, lengths, meta.get("title", "T"), meta.get("author"), cover) as sink:
        for audio in audios:
            sink.add(audio)
    return path


def test_m4b_has_chapters_metadata_and_cover(tmp_path: Path) -> None:
    audios = [noise(s, 0.1, s) for s in (1, 2, 3)]
    path = write_m4b(
        tmp_path / "b.m4b", ["One", "Two", "Three"], audios, cover_jpeg(), title="The Title", author="An Author"
    )
    with av.open(str(path)) as container:
        marks = container.chapters()
        assert [m["metadata"]["title"] for m in marks] == ["One", "Two", "Three"]
        starts = [float(m["start"] * m["time_base"]) for m in marks]
        assert starts == pytest.approx([0.0, 1.0, 3.0], abs=1e-3)
        assert container.metadata["title"] == "The Title" and container.metadata["artist"] == "An Author"
        assert container.metadata["major_brand"].strip() == "M4B"
        audio = container.streams.audio[0]
        assert audio.codec_context.name == "aac" and audio.sample_rate == RATE
        pictures = [s for s in container.streams.video if s.disposition & av.stream.Disposition.attached_pic]
        assert len(pictures) == 1
        packet = next(container.demux(pictures[0]))
        assert bytes(packet) == cover_jpeg()


def test_m4b_without_a_usable_cover_is_still_made(tmp_path: Path) -> None:
    for cover in (None, b"GIF89a not supported", b"\xff\xd8\xff broken jpeg"):
        path = write_m4b(tmp_path / "b.m4b", ["Only"], [noise(1, 0.1, 4)], cover)
        with av.open(str(path)) as container:
            assert len(container.streams.video) == 0 and container.chapters()[0]["metadata"]["title"] == "Only"


def test_zip_holds_one_file_per_chapter(tmp_path: Path) -> None:
    audios = [noise(1, 0.1, 5), noise(2, 0.1, 6)]
    with ZipSink(tmp_path / "c.zip", RATE, ["The Harbour", "Rain/Wind?"], "flac") as sink:
        for audio in audios:
            sink.add(audio)
    with zipfile.ZipFile(tmp_path / "c.zip") as archive:
        assert archive.namelist() == ["01 - The Harbour.flac", "02 - Rain_Wind.flac"]
        lengths = [len(sf.read(io.BytesIO(archive.read(n)))[0]) for n in archive.namelist()]
    assert lengths == [len(a) for a in audios]


def test_a_failure_while_writing_leaves_no_file_behind(tmp_path: Path) -> None:
    with (
        pytest.raises(RuntimeError),
        FlacSink(tmp_path / "final.flac", RATE) as flac,
        M4bSink(tmp_path / "book.m4b", RATE, ["One", "Two"], [RATE, RATE], "T") as m4b,
    ):
        for sink in (flac, m4b):
            sink.add(noise(1, 0.1, 7))
        raise RuntimeError("the second chapter's chunk file is missing")
    assert list(tmp_path.iterdir()) == []  # neither file, nor their temporary parts


def test_chapters_written_one_at_a_time_equal_the_whole(tmp_path: Path) -> None:
    parts = [noise(s, 0.1, s) for s in (1, 2)]
    with FlacSink(tmp_path / "final.flac", RATE) as flac:
        for part in parts:
            flac.add(part)
    audio, rate = sf.read(tmp_path / "final.flac", dtype="float32")
    assert rate == RATE and np.max(np.abs(audio - np.concatenate(parts))) < 1e-4  # 16-bit
