"""`barkserve eval` through click on the tiny Bark and tiny scorers: reports, schema, HTML, thresholds, errors."""

from __future__ import annotations

import json
import re
import shutil
import struct
import zlib
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner, Result

from barkserve.cli import main
from barkserve.evaluation.eval_config import load_file, parse_flag
from barkserve.evaluation.report import bootstrap_ci, compare, parse_threshold
from barkserve.evaluation.testset import load_testset
from barkserve.voices import LANGUAGES
from support import missing

LINES = [
    {"id": "greet", "text": "Hello there. [laughs]", "language": "en", "voice": "v2/en_speaker_1"},
    {"text": "Guten Tag, wie geht es?", "language": "de", "voice": "v2/de_speaker_3", "seed": 77},
    {"id": "cloned", "text": "안녕하세요.", "language": "ko", "voice": "my-voice"},
]
CONFIGS = ["base:engine=reference,max_duration=1", "fast:engine=batched,max_duration=1,qc=on,qc_tries=2"]


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r, ensure_ascii=False) for r in rows) + "\n")
    return path


def run_eval(args: list[str]) -> Result:
    return CliRunner().invoke(main, ["eval", *args])


@pytest.fixture(scope="module")
def setup(
    tiny_model_dir: Path, tiny_scorers: tuple[Path, Path], voices_fixture_dir: Path, tmp_path_factory: Any
) -> Any:
    """Flags shared by every run: the tiny models, a voices folder with one cloned voice, a 3-line test set."""
    root = tmp_path_factory.mktemp("eval")
    voices = root / "voices"
    voices.mkdir()
    shutil.copy(voices_fixture_dir / "v2" / "ko_speaker_0.npz", voices / "my-voice.npz")
    asr, speaker = tiny_scorers
    flags = ["--model", str(tiny_model_dir), "--offline", "--device", "cpu", "--voices-dir", str(voices),
             "--asr-model", str(asr), "--speaker-model", str(speaker), "--mos-model", "dnsmos",
             "--bootstrap", "200"]  # fmt: skip
    return root, flags, write_jsonl(root / "tests.jsonl", LINES)


@pytest.fixture(scope="module")
def two_configs(setup: Any) -> tuple[Result, Path]:
    """One run of two configurations with a threshold that must fail and one that must pass."""
    root, flags, testset = setup
    out = root / "out"
    args = ["--out", str(out), "--testset", str(testset), "--seed", "40", "--save-audio",
            "--threshold", "rtf<=0", "--threshold", "similarity>=-1", *flags]  # fmt: skip
    for config in CONFIGS:
        args += ["--config", config]
    return run_eval(args), out


def test_writes_both_reports_with_every_sample(two_configs: tuple[Result, Path]) -> None:
    result, out = two_configs
    assert result.exit_code == 1, result.output  # rtf<=0 cannot hold
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert [c["name"] for c in report["configurations"]] == ["base", "fast"]
    samples = report["samples"]
    assert [(s["config"], s["id"]) for s in samples] == [
        (c, i) for c in ("base", "fast") for i in ("greet", "line-2", "cloned")
    ]
    # Line i uses seed + i unless it gives one, in every configuration: the comparison is paired.
    assert [s["seed"] for s in samples] == [40, 77, 42] * 2
    ok = [s for s in samples if s["status"] == "ok"]
    assert ok, "the tiny model made no audio at all"
    for s in ok:
        m = s["metrics"]
        assert m["duration_sec"] > 0 and m["rtf"] > 0 and m["ttfa_sec"] >= 0 and m["cer"] is not None
        assert -1 <= m["similarity"] <= 1  # the cloned voice has a reference too
        assert (m["wer"] is None) == (s["language"] == "ko") and m["error"] == (
            m["cer"] if m["wer"] is None else m["wer"]
        )
        assert (out / s["audio_file"]).is_file()
        assert (len(s["qc"]) == s["chunks"]) == (s["config"] == "fast") or s["chunks"] == 0
    fast = [s for s in ok if s["config"] == "fast"]
    assert all(0 <= s["metrics"]["qc_pass_rate"] <= 1 and 1 <= s["metrics"]["qc_tries"] <= 2 for s in fast)
    overall = report["aggregates"]["base"]["overall"]["cer"]
    assert overall["low"] <= overall["mean"] <= overall["high"]
    assert set(report["aggregates"]["fast"]["by_language"]) <= {"en", "de", "ko"}
    assert "cloned" in {s["id"] for s in samples} and "my-voice" in report["aggregates"]["base"]["by_voice"]
    rows = [c for c in report["comparisons"] if c["metric"] == "error"]
    assert len(rows) == 1 and rows[0]["baseline"] == "base" and rows[0]["config"] == "fast"
    assert "fast" in rows[0]["verdict"] and "base" in rows[0]["verdict"]
    assert "sample" in result.stderr  # the progress bar


def independent_rates(text: str, transcript: str, language: str) -> tuple[float, float]:
    """(WER, CER) straight from jiwer on the normalized text, with the documented empty-side rules."""
    import jiwer

    from barkserve.quality.metrics import normalize

    ref, hyp = normalize(text, language), normalize(transcript, language)
    if language in ("zh", "ja", "ko"):
        ref_c, hyp_c = ref.replace(" ", ""), hyp.replace(" ", "")
    else:
        ref_c, hyp_c = ref, hyp

    def rate(r: str, h: str, fn: Any) -> float:
        if not r:
            return 0.0 if not h else 1.0
        return 1.0 if not h else float(fn(r, h))

    return rate(ref, hyp, jiwer.wer), rate(ref_c, hyp_c, jiwer.cer)


def test_report_numbers_are_recomputed_from_its_transcripts(two_configs: tuple[Result, Path]) -> None:
    report = json.loads((two_configs[1] / "report.json").read_text(encoding="utf-8"))
    ok = [s for s in report["samples"] if s["status"] == "ok"]
    assert len(ok) >= 2 and any(s["metrics"]["error"] > 0 for s in ok)  # random models: errors to check
    for s in ok:
        expected_wer, expected_cer = independent_rates(s["text"], s["transcript"], s["language"])
        m = s["metrics"]
        assert m["cer"] == pytest.approx(expected_cer, abs=1e-6), s
        if s["language"] == "ko":
            assert m["wer"] is None and m["error"] == m["cer"]
        else:
            assert m["wer"] == pytest.approx(expected_wer, abs=1e-6) and m["error"] == m["wer"], s
    # Every aggregate: the mean and count of the samples it groups, the interval a 95% bootstrap of them.
    assert report["settings"]["confidence"] == 0.95 and report["settings"]["bootstrap_resamples"] == 200
    checked = 0
    for config, groups in report["aggregates"].items():
        mine = [s for s in report["samples"] if s["config"] == config]
        views = {"overall": {"": mine}, "by_language": {}, "by_voice": {}}
        for s in mine:
            views["by_language"].setdefault(s["language"], []).append(s)
            views["by_voice"].setdefault(s["voice"], []).append(s)
        assert {k: set(v) for k, v in groups.items() if k != "overall"} == {
            k: set(v) for k, v in views.items() if k != "overall"
        }
        for view, members in views.items():
            for key, samples in members.items():
                got = groups[view] if view == "overall" else groups[view][key]
                for metric in ("error", "wer", "cer", "similarity", "rtf", "duration_sec", "failed"):
                    values = [s["metrics"][metric] for s in samples if s["metrics"].get(metric) is not None]
                    row = got[metric]
                    assert row["n"] == len(values), (config, view, key, metric)
                    if not values:
                        assert row["mean"] is None
                        continue
                    assert row["mean"] == pytest.approx(float(np.mean(values)), abs=2e-6), (config, view, key, metric)
                    ci = bootstrap_ci(values, resamples=200, confidence=0.95)
                    assert (row["low"], row["high"]) == pytest.approx((ci.low, ci.high), abs=2e-6)
                    checked += 1
    assert checked > 30


def test_bootstrap_interval_covers_the_true_mean_at_its_stated_confidence() -> None:
    """400 samples of 40 from a known distribution: about 95% of the default intervals hold its mean."""
    rng = np.random.default_rng(2026)
    trials, covered, widths = 400, 0, []
    for _ in range(trials):
        values = rng.exponential(0.3, size=40)  # skewed, like error rates; its mean is 0.3
        ci = bootstrap_ci(values)
        assert ci.low is not None and ci.high is not None
        covered += ci.low <= 0.3 <= ci.high
        widths.append(ci.high - ci.low)
    # The percentile bootstrap under-covers a little at n=40 on skewed data (about 93% here);
    # a 50% or 99.9% interval would land far outside this band.
    assert 0.90 <= covered / trials <= 0.98, covered / trials
    # Its width is about 2 x 1.96 standard errors (0.3 / sqrt(40)).
    assert float(np.mean(widths)) == pytest.approx(2 * 1.96 * 0.3 / np.sqrt(40), rel=0.15)


def test_thresholds_fail_with_exit_code_1_naming_the_metric(two_configs: tuple[Result, Path]) -> None:
    result, out = two_configs
    assert result.exit_code == 1
    assert "FAILED threshold rtf<=0 for base" in result.stderr and "FAILED threshold rtf<=0 for fast" in result.stderr
    assert "similarity>=-1" not in result.stderr
    rows = json.loads((out / "report.json").read_text(encoding="utf-8"))["thresholds"]
    assert {(r["threshold"], r["passed"]) for r in rows} == {("rtf<=0", False), ("similarity>=-1", True)}


def test_naturalness_is_reported_per_sample_and_configuration_naming_the_predictor(
    two_configs: tuple[Result, Path],
) -> None:
    report = json.loads((two_configs[1] / "report.json").read_text())
    assert report["settings"]["mos_model"] == "dnsmos" and "DNSMOS" in report["settings"]["mos_predictor"]
    ok = [s for s in report["samples"] if s["status"] == "ok"]
    scored = [s for s in ok if s["metrics"]["mos"] is not None]
    assert scored and all(1 <= s["metrics"]["mos"] <= 5 and s["metrics"]["mos_bak"] is not None for s in scored)
    assert all("mos" in s.get("not_scored", {}) for s in ok if s["metrics"]["mos"] is None)  # said, not made up
    for config, agg in report["aggregates"].items():
        mine = [s["metrics"]["mos"] for s in scored if s["config"] == config]
        interval = agg["overall"]["mos"]
        assert interval["n"] == len(mine) and interval["mean"] == pytest.approx(sum(mine) / len(mine), abs=1e-5)
        assert interval["low"] <= interval["mean"] <= interval["high"]


def test_report_validates_against_the_published_schema(two_configs: tuple[Result, Path]) -> None:
    import jsonschema

    schema = json.loads(resources.files("barkserve.evaluation").joinpath("data/report.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    report = json.loads((two_configs[1] / "report.json").read_text(encoding="utf-8"))
    jsonschema.validate(report, schema, format_checker=jsonschema.FormatChecker())
    broken = {**report, "samples": [{**report["samples"][0], "status": "maybe"}]}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema)


def test_html_has_the_plots_and_no_external_references(two_configs: tuple[Result, Path]) -> None:
    page = (two_configs[1] / "report.html").read_text(encoding="utf-8")
    for title in ("WER per language", "CER per language", "Voice similarity", "Naturalness (MOS, dnsmos)",
                  "Real-time factor"):  # fmt: skip
        assert f"<title>{title}" in page
    assert page.count("<svg") >= 5 and "<rect" in page and "<circle" in page
    assert re.search(r"https?:|//[a-z]|<script|<link|<img|<iframe|url\(|@import", page, re.I) is None
    assert "not distinguishable" in page or "the difference is real" in page


def test_html_opens_in_headless_chromium(two_configs: tuple[Result, Path], tmp_path: Path) -> None:
    browser, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    if browser is None or driver_path is None:
        missing("chromium and chromium-driver (Debian) are not installed")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(browser)
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=900,700"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(str(driver_path)), options=options)
    try:
        driver.get((two_configs[1] / "report.html").resolve().as_uri())
        assert driver.title == "barkserve eval"
        drawn = driver.execute_script("return [...document.querySelectorAll('svg rect')].map(r => r.getBBox().width)")
        png = driver.get_screenshot_as_png()
    finally:
        driver.quit()
    assert any(w > 0 for w in drawn)
    pixels = decode_png(png)  # [H, W, channels]
    assert pixels.shape[0] >= 400 and pixels.shape[1] >= 600  # the viewport of a 900x700 window
    colors = np.unique(pixels.reshape(-1, pixels.shape[2]), axis=0)
    dark = (pixels[..., :3].astype(int).sum(axis=2) < 600).mean()
    assert len(colors) > 20 and dark > 0.005, (len(colors), dark)


def decode_png(data: bytes) -> np.ndarray:
    """8-bit RGB/RGBA PNG bytes to an array, with PNG's five row filters undone."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, header = 8, b"", b""
    while pos < len(data):
        (length,), kind = struct.unpack(">I", data[pos : pos + 4]), data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        header, idat = (body, idat) if kind == b"IHDR" else (header, idat + body if kind == b"IDAT" else idat)
        pos += 12 + length
    width, height, depth, color = struct.unpack(">IIBB", header[:10])
    assert depth == 8 and color in (2, 6)
    bpp = 3 if color == 2 else 4
    raw = np.frombuffer(zlib.decompress(idat), dtype=np.uint8).reshape(height, width * bpp + 1)
    out = np.zeros((height, width * bpp), dtype=np.int32)
    prev = np.zeros(width * bpp, dtype=np.int32)
    for y in range(height):
        kind, row = raw[y, 0], raw[y, 1:].astype(np.int32)
        if kind in (0, 2):
            cur = row if kind == 0 else (row + prev) % 256
        else:
            cur = row.copy()
            for x in range(len(cur)):
                a = cur[x - bpp] if x >= bpp else 0
                b, c = prev[x], prev[x - bpp] if x >= bpp else 0
                if kind == 1:
                    pred = a
                elif kind == 3:
                    pred = (a + b) // 2
                else:
                    p = a + b - c
                    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                    pred = a if pa <= pb and pa <= pc else b if pb <= pc else c
                cur[x] = (cur[x] + pred) % 256
        out[y], prev = cur, cur
    return out.reshape(height, width, bpp).astype(np.uint8)


def test_passing_thresholds_exit_0_and_quantizer_accuracy_is_the_known_value(setup: Any, tmp_path: Path) -> None:
    root, flags, testset = setup
    quantizer, dataset, expected = quantizer_fixture(root, flags[1])
    assert 0 < expected < 1  # neither bound: a report of 0 or 1 is wrong
    args = ["--out", str(tmp_path), "--testset", str(testset), "--limit", "1", "--no-warmup",
            "--quantizer", str(quantizer), "--quantizer-dataset", str(dataset),
            "--threshold", "failed<=1", "--threshold", f"quantizer_accuracy>={expected - 0.001:.4f}",
            *flags]  # fmt: skip
    result = run_eval(args)
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "report.json").read_text(encoding="utf-8"))
    assert [c["name"] for c in report["configurations"]] == ["default"] and len(report["samples"]) == 1
    assert report["comparisons"] == []
    q = report["quantizer"]
    assert q["utterances"] == 2 and q["method"] == "linear"
    assert q["accuracy"] == round(expected, 4), (q, expected)
    assert "Quantizer" in (tmp_path / "report.html").read_text(encoding="utf-8")


def quantizer_fixture(root: Path, model_dir: str) -> tuple[Path, Path, float]:
    """A tiny HuBERT, a quantizer that always answers token KNOWN, and a 2-item dataset made by the tiny Bark.

    The first item's tokens are all KNOWN and the second's all another token, so the accuracy is
    the first item's share of the feature frames: a value known before the run.
    """
    import torch

    from barkserve.cloning import dataset
    from barkserve.cloning.quantizer import Quantizer, QuantizerInfo
    from barkserve.config import ServerConfig
    from barkserve.models import load_model
    from barkserve.testing.tiny import make_tiny_hubert

    known = 7
    hubert = make_tiny_hubert(root / "hubert")
    info = QuantizerInfo(method="linear", hubert=str(hubert), layer=2, input_size=32)
    q = Quantizer.create(info)
    with torch.no_grad():  # logits = bias: token `known` wins on every frame
        q.module.fc.weight.zero_()
        q.module.fc.bias.zero_()
        q.module.fc.bias[known] = 1.0
    quantizer = q.save(root / "q.pt")
    loaded = load_model(model_dir, ServerConfig(model=model_dir, device="cpu", offline=True))
    options = dataset.DatasetOptions(n=2, batch_size=2, seed=0, max_semantic_tokens=16)
    dataset.make_dataset(loaded, ["Hello there.", "A second one."], root / "ds", options)
    (first_wav, first_tokens), (second_wav, second_tokens) = dataset.read_manifest(root / "ds")
    np.save(first_tokens, np.full(len(np.load(first_tokens)), known))
    np.save(second_tokens, np.full(len(np.load(second_tokens)), known + 1))
    # HuBERT's frames: 20 ms hops of 25 ms windows of the 16 kHz audio the dataset's WAV becomes.
    frames = [hubert_frames(path) for path in (first_wav, second_wav)]
    return quantizer, root / "ds", frames[0] / sum(frames)


def hubert_frames(wav: Path) -> int:
    """Feature frames HuBERT makes of a WAV file: its conv stack turns 400 samples + 320 per hop into a frame."""
    import soundfile as sf
    import soxr

    audio, rate = sf.read(wav, dtype="float32", always_2d=True)
    samples = len(soxr.resample(audio.mean(axis=1), rate, 16_000))
    return (samples - 400) // 320 + 1


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([LINES[0], LINES[1], '{"text": "broken", '], "line 3: not valid JSON"),
        ([LINES[0], {"text": "no voice", "language": "en"}], "line 2: 'voice' must be a non-empty string"),
        ([{**LINES[0], "language": "xx"}], "line 1: language must be one of"),
        ([LINES[0], "", {**LINES[1], "seed": -1}], "line 3: seed must be an integer"),
        ([LINES[0], {**LINES[1], "id": "greet"}], "line 2: id 'greet' is already used on line 1"),
        ([{**LINES[0], "speed": 2}], "line 1: unknown field(s) ['speed']"),
        ([LINES[0], {**LINES[1], "voice": "v2/en_speaker_99"}], "line 2 (configuration default): unknown voice"),
    ],
)
def test_a_bad_line_is_an_error_naming_its_line(setup: Any, tmp_path: Path, rows: list[Any], message: str) -> None:
    _, flags, _ = setup
    bad = write_jsonl(tmp_path / "bad.jsonl", rows)
    result = run_eval(["--out", str(tmp_path / "out"), "--testset", str(bad), *flags])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    assert str(bad) in result.output and message in result.output
    assert "Traceback" not in result.output and not (tmp_path / "out" / "report.json").exists()


def test_csv_test_sets(tmp_path: Path) -> None:
    good = tmp_path / "t.csv"
    good.write_text('text,language,voice,seed\n"Hi, you.",en,v2/en_speaker_1,\nHallo,de,v2/de_speaker_0,9\n')
    lines = load_testset(good).lines
    assert [(line.text, line.seed, line.line) for line in lines] == [("Hi, you.", None, 2), ("Hallo", 9, 3)]
    bad = tmp_path / "bad.csv"
    bad.write_text("text,voice\nHi,v2/en_speaker_1\n")
    with pytest.raises(Exception, match=r"line 1: the header must name the columns .* missing \['language'\]"):
        load_testset(bad)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--testset", "missing.jsonl"], "missing.jsonl does not exist"),
        (["--threshold", "wer=0.3"], "threshold must look like 'wer<=0.3'"),
        (["--threshold", "loudness<=3"], "unknown threshold metric 'loudness'"),
        (["--config", "a:engine=fast"], "engine must be one of"),
        (["--config", "a:temperature=0.5"], "unknown key(s) ['temperature']"),
        (["--config", "a", "--config", "a"], "names must be unique"),
        (["--asr-model", "./no-such-whisper"], "ASR model './no-such-whisper' could not be loaded"),
        (["--speaker-model", "nobody/no-such-model"], "speaker model 'nobody/no-such-model' could not be loaded"),
    ],
)
def test_clear_errors_not_tracebacks(setup: Any, tmp_path: Path, args: list[str], message: str) -> None:
    _, flags, testset = setup
    result = run_eval(["--out", str(tmp_path), "--testset", str(testset), *flags, *args])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    assert message in result.output and "Traceback" not in result.output


def test_bootstrap_ci_on_known_data() -> None:
    flat = bootstrap_ci([0.25] * 12)
    assert flat.mean == flat.low == flat.high == 0.25 and flat.n == 12
    spread = bootstrap_ci(np.arange(100.0))
    assert spread.low < 49.5 < spread.high and spread == bootstrap_ci(np.arange(100.0))  # a fixed RNG seed
    assert bootstrap_ci([]).mean is None and bootstrap_ci([1.0, None, float("nan")]).n == 1  # type: ignore[list-item]
    rng = np.random.default_rng(3)
    base = rng.uniform(0.2, 0.6, size=30)
    samples = [{"config": "a", "id": i, "metrics": {"wer": float(v)}} for i, v in enumerate(base)]
    samples += [
        {"config": "b", "id": i, "metrics": {"wer": float(v) - 0.1 + rng.normal(0, 0.01)}} for i, v in enumerate(base)
    ]
    samples += [{"config": "c", "id": i, "metrics": {"wer": float(v)}} for i, v in enumerate(base)]
    rows = {r["config"]: r for r in compare(samples, ["a", "b", "c"]) if r["metric"] == "wer"}
    shifted, same = rows["b"], rows["c"]
    assert shifted["difference"]["high"] < 0 and shifted["distinguishable"] and shifted["better"] == "config"
    assert "WER (not zh/ja/ko) is lower by 0.1" in shifted["verdict"] and "the difference is real" in shifted["verdict"]
    assert same["difference"]["low"] == same["difference"]["high"] == 0 and not same["distinguishable"]
    assert "not distinguishable" in same["verdict"]


def test_configurations_from_flags_and_files(tmp_path: Path) -> None:
    flag = parse_flag("q8:engine=reference,quantize=int8,text_temp=0.5,voice=v2/de_speaker_1,qc_max_error=0.4")
    assert flag.server == {"engine": "reference", "quantize": "int8"} and flag.voice == "v2/de_speaker_1"
    assert flag.options.text_temp == 0.5 and flag.options.qc is not None and flag.options.qc.max_error == 0.4
    assert parse_flag("plain").options.qc is None
    toml = tmp_path / "c.toml"
    toml.write_text('[[config]]\nname = "a"\nengine = "batched"\nqc = true\n[[config]]\nname = "b"\nmin_eos_p = 0.2\n')
    as_json = tmp_path / "c.json"
    as_json.write_text(json.dumps([{"name": "a", "engine": "batched", "qc": True}, {"name": "b", "min_eos_p": 0.2}]))
    for file in (toml, as_json):
        a, b = load_file(file)
        assert a.server == {"engine": "batched"} and a.options.qc is not None and b.options.min_eos_p == 0.2
    assert parse_threshold(" similarity >= 0.6 ") == ("similarity", ">=", 0.6)


def test_the_default_test_set_covers_all_thirteen_languages_with_cues(voices_fixture_dir: Path) -> None:
    tests = load_testset()
    assert len(LANGUAGES) == 13 and sorted(set(tests.languages)) == sorted(LANGUAGES)  # README: all 13
    texts = " ".join(line.text for line in tests.lines)
    assert "[laughs]" in texts and texts.count("♪") >= 2 and "MAN:" in texts
    for line in tests.lines:
        assert re.fullmatch(rf"v2/{line.language}_speaker_\d", line.voice), line
        assert (voices_fixture_dir / f"{line.voice}.npz").is_file()
    assert len({len(line.text) > 150 for line in tests.lines}) == 2  # short and long lines


# The writing system of each language's lines (Unicode character names start with it).
SCRIPTS = {"hi": "DEVANAGARI", "ja": ("HIRAGANA", "KATAKANA", "CJK"), "ko": "HANGUL", "ru": "CYRILLIC",
           "zh": "CJK"}  # fmt: skip


@pytest.mark.parametrize("language", LANGUAGES)
def test_each_language_of_the_default_test_set_is_scored_in_its_own_language(
    language: str, voices_fixture_dir: Path, tiny_scorers: tuple[Path, Path]
) -> None:
    import unicodedata

    from barkserve.quality.asr import WhisperTranscriber
    from barkserve.quality.metrics import normalize, speech_error, spoken_text, uses_cer
    from barkserve.voices import VoicePrompt

    lines = [line for line in load_testset().lines if line.language == language]
    assert lines, f"no line in {language}"
    for line in lines:
        prompt = VoicePrompt.from_npz(voices_fixture_dir / f"{line.voice}.npz")  # the language's real speaker
        assert prompt.semantic.ndim == 1 and prompt.fine.shape[0] == 8 and len(prompt.semantic) > 0
        letters = [c for c in spoken_text(line.text) if unicodedata.category(c)[0] in "LM"]
        script = SCRIPTS.get(language, "LATIN")
        assert all(unicodedata.name(c).startswith(script) for c in letters), (line.id, script)
        # Scoring keeps every letter and mark of the language (Hindi's vowel signs included) ...
        kept = normalize(line.text, language)
        if language != "en":  # Whisper's English normalizer also spells out numbers and contractions
            assert set("".join(letters).casefold()) <= set(kept), line.id
        # ... and counts one missing unit (a character in zh/ja/ko, else a word) as 1 / units.
        units = list(kept.replace(" ", "")) if uses_cer(language) else kept.split()
        if not units:  # a song line: everything in ♪ ... ♪ is a cue, nothing is scored
            assert line.text.strip().startswith("♪") and speech_error(line.text, "", language) == 0.0
            continue
        shorter = "".join(units[:-1]) if uses_cer(language) else " ".join(units[:-1])
        assert speech_error(line.text, line.text, language) == 0.0
        assert speech_error(line.text, shorter, language) == pytest.approx(1 / len(units)), line.id
    # The ASR model takes the language as the one to transcribe in (an unknown code is refused).
    transcriber = WhisperTranscriber(str(tiny_scorers[0]), "cpu", True, "float32")
    assert [type(t) for t in transcriber.transcribe([np.zeros(16_000, np.float32)], language, 16_000, 4)] == [str]


def test_an_interrupted_run_keeps_what_it_scored_and_the_next_run_goes_on(
    setup: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import jsonschema

    from barkserve.evaluation import run as evaluation

    _, flags, testset = setup
    out = tmp_path / "out"
    configs = ["--config", "a:engine=reference,max_duration=1", "--config", "b:engine=reference,max_duration=0.5"]
    args = ["--out", str(out), "--testset", str(testset), "--seed", "40", "--no-warmup", *flags, *configs]
    real, made, interrupt_at = evaluation.make_sample, [], [5]

    def make_sample(synth: Any, config: Any, line: Any, settings: Any) -> Any:
        made.append((config.name, line.index))
        if len(made) == interrupt_at[0]:  # b's second line: a's three samples are scored, b's first is not yet
            raise KeyboardInterrupt
        return real(synth, config, line, settings)

    monkeypatch.setattr(evaluation, "make_sample", make_sample)
    first = run_eval(args)
    assert first.exit_code == 1 and "wrote a partial report of 3 of 6 samples" in first.output, first.output
    partial = json.loads((out / "report.json").read_text())
    schema = json.loads(resources.files("barkserve.evaluation").joinpath("data/report.schema.json").read_text())
    jsonschema.validate(partial, schema)
    assert partial["partial"]["samples"] == 3 and partial["partial"]["of"] == 6
    assert "KeyboardInterrupt" in partial["partial"]["reason"]
    assert [(s["config"], s["index"]) for s in partial["samples"]] == [("a", 0), ("a", 1), ("a", 2)]
    assert "Partial report" in (out / "report.html").read_text()

    made.clear()
    interrupt_at[0] = 0
    second = run_eval(args)
    assert second.exit_code == 0, second.output
    assert made == [("b", 0), ("b", 1), ("b", 2)]  # only what was not scored is made again
    report = json.loads((out / "report.json").read_text())
    assert "partial" not in report and len(report["samples"]) == 6
    assert report["samples"][:3] == partial["samples"]  # kept as scored
    assert not (out / "progress.jsonl").exists()  # the full report holds every sample now

    made.clear()
    assert run_eval([*args, "--restart"]).exit_code == 0 and len(made) == 6  # a new run makes everything


def test_the_seed_tts_profile_names_what_it_used(setup: Any, tmp_path: Path) -> None:
    import jsonschema

    _, flags, testset = setup
    # The tiny random WavLM x-vector checkpoint goes through the same from_pretrained path a WavLM-large one does.
    args = ["--out", str(tmp_path / "out"), "--testset", str(testset), "--limit", "1", "--no-warmup", *flags]
    result = run_eval([*args, "--profile", "seed-tts"])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    schema = json.loads(resources.files("barkserve.evaluation").joinpath("data/report.schema.json").read_text())
    jsonschema.validate(report, schema)
    profile = report["settings"]["profile"]
    assert profile["name"] == "seed-tts" and profile["asr_model"] == "openai/whisper-large-v3"
    assert profile["speaker_family"] == "wavlm" and profile["speaker_is_large"] is False  # the tiny one is not
    assert "EnglishTextNormalizer" in profile["normalizer"]
    assert report["settings"]["asr_model"] == flags[flags.index("--asr-model") + 1]  # an explicit flag wins


def test_the_seed_tts_profile_takes_the_large_whisper_and_needs_a_wavlm_speaker_model(
    setup: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from barkserve.evaluation import run as evaluation

    _, flags, testset = setup
    flags = list(flags)
    args = ["--out", str(tmp_path / "out"), "--testset", str(testset), "--limit", "1", "--profile", "seed-tts"]
    without_speaker = [f for i, f in enumerate(flags) if "--speaker-model" not in flags[max(0, i - 1) : i + 1]]
    result = run_eval([*args, *without_speaker])
    assert result.exit_code == 2 and "needs --speaker-model" in result.output
    i = flags.index("--speaker-model")
    flags[i + 1] = "resemblyzer"
    result = run_eval([*args, *flags])
    assert result.exit_code == 1 and "needs a wavlm speaker-verification checkpoint" in result.output, result.output
    seen: list[Any] = []
    monkeypatch.setattr(evaluation, "run_eval", lambda settings, on_sample=None: seen.append(settings) or {})
    without_asr = [f for j, f in enumerate(flags) if "--asr-model" not in flags[max(0, j - 1) : j + 1]]
    run_eval([*args, *without_asr])
    assert seen[0].scorer.asr == "openai/whisper-large-v3" and seen[0].profile == "seed-tts"
