"""Audio encoders (PyAV / libsndfile), streaming encoders, tempo change and chunk joining."""

import io

import av
import numpy as np
import pytest
import soundfile as sf

from barkserve.audio.dsp import change_tempo, fade_edges, silence
from barkserve.audio.encode import FORMATS, StreamEncoder, encode, get_format
from barkserve.errors import InvalidRequest

RATE = 24_000
TONE = (0.4 * np.sin(2 * np.pi * 220 * np.arange(RATE) / RATE)).astype(np.float32)  # 1 s


def decode(data: bytes, name: str) -> tuple[np.ndarray, int]:
    if name == "pcm":
        return np.frombuffer(data, "<i2").astype(np.float32) / 32767, RATE
    container = av.open(io.BytesIO(data))
    rate = container.streams.audio[0].rate
    samples = np.concatenate([f.to_ndarray().reshape(-1) for f in container.decode(audio=0)])
    if np.issubdtype(samples.dtype, np.integer):
        samples = samples / float(np.iinfo(samples.dtype).max)
    return samples.astype(np.float32), rate


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_every_format_decodes_to_the_same_duration(name: str) -> None:
    samples, rate = decode(encode(TONE, RATE, FORMATS[name]), name)
    # Opus always decodes at 48 kHz; mp3 and aac add an encoder delay of a few ms
    assert rate == (48_000 if name == "opus" else RATE)
    assert len(samples) / rate == pytest.approx(1.0, abs=0.07)


@pytest.mark.parametrize("name", ["wav", "wav_float", "pcm", "flac"])
def test_lossless_formats_round_trip(name: str) -> None:
    samples, _ = decode(encode(TONE, RATE, FORMATS[name]), name)
    tolerance = 1e-6 if name == "wav_float" else 1 / 16000
    assert np.max(np.abs(samples[: len(TONE)] - TONE)) < tolerance


def test_wav_is_16_bit_unless_float_is_asked() -> None:
    assert sf.info(io.BytesIO(encode(TONE, RATE, FORMATS["wav"]))).subtype == "PCM_16"
    assert sf.info(io.BytesIO(encode(TONE, RATE, FORMATS["wav_float"]))).subtype == "FLOAT"


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_streamed_pieces_make_one_playable_file(name: str) -> None:
    encoder = StreamEncoder(FORMATS[name], RATE)
    pieces = [encoder.write(part) for part in np.array_split(TONE, 5)]
    data = b"".join(pieces) + encoder.close()
    samples, rate = decode(data, name)
    assert len(samples) / rate == pytest.approx(1.0, abs=0.07)
    if encoder.progressive:
        assert pieces[0], "the first piece carries bytes (a header or audio) so clients start at once"
    else:  # FLAC: the whole file at the end, with its length in the header
        assert not any(pieces) and sf.info(io.BytesIO(data)).frames == len(TONE)


# Samples a decoder adds to a stream of n samples: (least, most). mp3 streamed has no LAME gapless
# header (it needs the final length), so decoders play LAME's 576 + the decoder's 529 delay samples
# and pad to a whole 576-sample frame; ADTS aac has 1024 priming samples and pads to 1024.
ADDED = {"mp3": (1105, 1105 + 575), "aac": (1024, 1024 + 1023)}
FRAME = {"mp3": 576, "opus": 960, "aac": 1024, "flac": 0, "wav": 0, "wav_float": 0, "pcm": 0}


def streamed(name: str, audio: np.ndarray, parts: int = 7) -> bytes:
    encoder = StreamEncoder(FORMATS[name], RATE)
    return b"".join(encoder.write(part) for part in np.array_split(audio, parts)) + encoder.close()


@pytest.mark.parametrize("name", ["wav", "wav_float", "flac", "mp3", "opus"])
def test_soundfile_reads_every_stream_it_knows(name: str) -> None:
    n = int(RATE * 2.345)
    data = streamed(name, TONE[np.arange(n) % RATE])
    audio, rate = sf.read(io.BytesIO(data))  # a streamed FLAC said "length 0", and this failed
    assert rate == RATE  # libsndfile decodes Opus at the rate it was made from
    least, most = ADDED.get(name, (0, 0))
    assert least <= len(audio) - n <= most


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_pyav_decodes_every_stream_to_its_length(name: str) -> None:
    n = int(RATE * 2.345)
    samples, rate = decode(streamed(name, TONE[np.arange(n) % RATE]), name)
    added = len(samples) * RATE / rate - n
    least, most = ADDED.get(name, (0, FRAME[name]))
    assert least <= added <= most


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_the_same_audio_gives_the_same_bytes(name: str) -> None:
    # Ogg streams had a random serial number: the same seed gave different opus bytes.
    assert streamed(name, TONE) == streamed(name, TONE)


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_an_empty_piece_in_a_stream_adds_nothing(name: str) -> None:
    # A chunk whose speech ended at once is empty; the stream goes on with the next one.
    encoder = StreamEncoder(FORMATS[name], RATE)
    half = len(TONE) // 2
    data = encoder.write(TONE[:half]) + encoder.write(TONE[:0]) + encoder.write(TONE[half:]) + encoder.close()
    samples, rate = decode(data, name)
    assert len(samples) / rate == pytest.approx(1.0, abs=0.07)


@pytest.mark.parametrize("bad", ["ogg", "MP3", "", None, 3])
def test_unknown_formats_are_400(bad: object) -> None:
    with pytest.raises(InvalidRequest, match="format must be one of"):
        get_format(bad)


@pytest.mark.parametrize("speed", [0.25, 0.5, 1.5, 4.0])
def test_tempo_changes_length_not_pitch(speed: float) -> None:
    out = change_tempo(TONE, RATE, speed)
    assert len(out) / RATE == pytest.approx(1.0 / speed, rel=0.06)
    crossings = np.sum(np.diff(np.signbit(out[RATE // 20 : -RATE // 20])) != 0)
    pitch = crossings / 2 / ((len(out) - RATE // 10) / RATE)
    assert pitch == pytest.approx(220, rel=0.03)


def test_fades_keep_length_and_remove_clicks() -> None:
    loud = np.ones(1000, np.float32)
    faded = fade_edges(loud, RATE)
    assert len(faded) == 1000 and faded[0] == 0.0 and faded[-1] == 0.0 and faded[500] == 1.0
    assert np.max(np.abs(np.diff(faded))) < 0.02
    assert len(silence(0.25, RATE)) == 6000
