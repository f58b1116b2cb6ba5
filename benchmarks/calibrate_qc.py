"""Calibration of quality control's gates on real speech: detection and false alarms across thresholds.

A labelled set is built from espeak-ng speech in several languages and voices: the clean clips,
and damaged copies of each (white noise at 20/10/5/0 dB SNR, hard clipping, dropouts, mains hum,
crackle, noise alone, near silence). Each MOS predictor (`mos_model`: DNSMOS, Distill-MOS) scores
every clip in batches, and for each threshold the script reports the false-alarm rate (clean clips
below it) and the detection rate (damaged clips below it, per kind of damage). The chosen threshold
is the highest whose false-alarm rate on clean speech is at most `--max-false-alarms` (5%): it
catches the most damage while rarely regenerating a good chunk. 20 dB SNR is mild: reported, not
counted as damage.

Speaker similarity is calibrated the same way with Resemblyzer's shipped encoder
(`speaker_model = "resemblyzer"`): each voice's first sentence against its other sentences (same
voice: must pass) and against the other voices' sentences in the same language (wrong voice: should
fail). espeak-ng's variants of one language (+m1, +f3, ...) share a base voice: a hard case.

The speech is espeak-ng's, which predictors hear as robotic (DNSMOS overall ~2.5-3 when clean); Bark's
clean speech scores higher, so thresholds chosen on espeak-ng speech are, if anything, lenient.

Run: `python benchmarks/calibrate_qc.py [--smoke] [--out FILE]` (espeak-ng must be installed).
"""

from __future__ import annotations

import argparse
import io
import json
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

RATE = 16_000
SENTENCES = {
    "en": ["The quick brown fox jumps over the lazy dog near the river bank.",
           "Please call Stella and ask her to bring these things with her from the store.",
           "We will meet again tomorrow morning at the old station before the train leaves."],
    "de": ["Der schnelle braune Fuchs springt über den faulen Hund am Flussufer.",
           "Bitte ruf Stella an und sag ihr, sie soll diese Dinge aus dem Laden mitbringen.",
           "Wir treffen uns morgen früh am alten Bahnhof, bevor der Zug abfährt."],
    "fr": ["Le renard brun et rapide saute par-dessus le chien paresseux près de la rivière.",
           "Appelle Stella et demande-lui d'apporter ces choses du magasin.",
           "Nous nous retrouverons demain matin à la vieille gare avant le départ du train."],
    "es": ["El rápido zorro marrón salta sobre el perro perezoso junto al río.",
           "Por favor llama a Stella y pídele que traiga estas cosas de la tienda.",
           "Nos veremos mañana por la mañana en la vieja estación antes de que salga el tren."],
    "it": ["La volpe marrone salta velocemente sopra il cane pigro vicino al fiume.",
           "Per favore chiama Stella e chiedile di portare queste cose dal negozio.",
           "Ci vediamo domani mattina alla vecchia stazione prima che parta il treno."],
    "hi": ["तेज़ भूरी लोमड़ी नदी के किनारे आलसी कुत्ते के ऊपर कूदती है।",
           "कृपया स्टेला को फ़ोन करो और उससे दुकान से ये चीज़ें लाने को कहो।",
           "हम कल सुबह पुराने स्टेशन पर ट्रेन छूटने से पहले फिर मिलेंगे।"],
}  # fmt: skip
VARIANTS = ("m1", "f3", "m3")
DAMAGES = ("snr20", "snr10", "snr5", "snr0", "clipped", "dropouts", "hum", "crackle", "noise", "silence")
MILD = ("snr20",)  # reported, but neither clean nor damage when choosing a threshold


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="calibrate_qc.py", description=__doc__.splitlines()[0])
    p.add_argument("--smoke", action="store_true", help="one language, 2 voices, 2 sentences, 2 damages (a test run)")
    p.add_argument("--predictors", default="dnsmos,distillmos", help="MOS predictors, comma-separated")
    p.add_argument("--max-false-alarms", type=float, default=0.05, help="false-alarm budget on clean speech")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, help="also write the JSON result to this file")
    return p.parse_args(argv)


def espeak(text: str, voice: str) -> np.ndarray:
    """`text` spoken by espeak-ng `voice`, mono float32 at 16 kHz."""
    import soundfile as sf

    from barkserve.audio.dsp import resample

    wav = subprocess.run(["espeak-ng", "-v", voice, "--stdout", text], check=True, capture_output=True).stdout
    audio, rate = sf.read(io.BytesIO(wav), dtype="float32")
    return resample(audio, int(rate), RATE).astype(np.float32)


def damage(clean: np.ndarray, kind: str, rng: np.random.Generator) -> np.ndarray:
    """A damaged copy of `clean` (16 kHz), kept within [-1, 1]."""
    power = float(np.mean(clean**2))
    white = rng.standard_normal(len(clean)).astype(np.float32)
    if kind.startswith("snr"):
        out = clean + white * np.sqrt(power / 10 ** (int(kind[3:]) / 10))
    elif kind == "clipped":
        out = clean * (8 / np.abs(clean).max())  # hard clipping at full scale, 18 dB over
    elif kind == "dropouts":
        blocks = clean[: len(clean) // 800 * 800].reshape(-1, 800).copy()  # 50 ms blocks
        blocks[rng.random(len(blocks)) < 0.3] = 0.0
        out = np.concatenate([blocks.reshape(-1), clean[len(blocks) * 800 :]])
    elif kind == "hum":
        t = np.arange(len(clean)) / RATE
        hum = sum(np.sin(2 * np.pi * f * t) / k for k, f in enumerate((50, 100, 150, 200), 1))
        out = clean + hum * np.sqrt(power / np.mean(hum**2) / 10 ** (5 / 10))  # 5 dB below the speech
    elif kind == "crackle":
        clicks = (rng.random(len(clean)) < 0.01) * rng.uniform(-0.6, 0.6, len(clean))
        out = clean + clicks
    elif kind == "noise":
        out = white * np.sqrt(power)
    elif kind == "silence":
        out = white * 10 ** (-70 / 20)
    else:
        raise ValueError(f"unknown damage {kind!r}")
    return np.clip(out, -1.0, 1.0).astype(np.float32)


def build_set(
    languages: Sequence[str], variants: Sequence[str], sentences: int, damages: Sequence[str], seed: int
) -> list[dict[str, Any]]:
    """Clean clips and their damaged copies: dicts of language, voice, sentence, kind, audio."""
    rng = np.random.default_rng(seed)
    clips = []
    for lang in languages:
        for variant in variants:
            for i, text in enumerate(SENTENCES[lang][:sentences]):
                clean = espeak(text, f"{lang}+{variant}")
                base = {"language": lang, "voice": f"{lang}+{variant}", "sentence": i}
                clips.append({**base, "kind": "clean", "audio": clean})
                clips += [{**base, "kind": k, "audio": damage(clean, k, rng)} for k in damages]
    return clips


def sweep(
    good: Sequence[float], bad: dict[str, list[float]], grid: np.ndarray, budget: float, fails: Callable[..., Any]
) -> dict[str, Any]:
    """False alarms on `good` and detection of each kind in `bad` at each threshold; the chosen one."""
    counted = [v for k, vs in bad.items() if k not in MILD for v in vs]
    rows = []
    for t in grid:
        rows.append({
            "threshold": round(float(t), 3),
            "false_alarm_rate": float(np.mean(fails(np.asarray(good), t))),
            "detection_rate": float(np.mean(fails(np.asarray(counted), t))) if counted else None,
            "detection_by_kind": {k: float(np.mean(fails(np.asarray(v), t))) for k, v in bad.items()},
        })  # fmt: skip
    allowed = [r for r in rows if r["false_alarm_rate"] <= budget]
    chosen = max(allowed, key=lambda r: r["threshold"]) if allowed else None
    return {"chosen": chosen, "sweep": rows}


def calibrate_mos(clips: list[dict[str, Any]], name: str, budget: float) -> dict[str, Any]:
    """Score every clip with predictor `name` (batches of 8) and sweep thresholds 1.0-4.5."""
    from barkserve.quality.mos import load_mos

    predictor = load_mos(name, "cpu")
    started = time.perf_counter()
    scores: list[float | None] = []
    for start in range(0, len(clips), 8):
        scores += [n.mos for n in predictor.predict([c["audio"] for c in clips[start : start + 8]], RATE)]
    elapsed = time.perf_counter() - started
    by_kind: dict[str, list[float]] = {}
    for clip, s in zip(clips, scores, strict=True):
        if s is not None:
            by_kind.setdefault(clip["kind"], []).append(s)
    good = by_kind.pop("clean")
    result = sweep(good, by_kind, np.arange(1.0, 4.51, 0.05), budget, lambda v, t: v < t)
    result["scores"] = {k: _summary(v) for k, v in {"clean": good, **by_kind}.items()}
    result["seconds_per_clip"] = elapsed / len(clips)
    return result


def calibrate_speaker(clips: list[dict[str, Any]], budget: float) -> dict[str, Any]:
    """Resemblyzer: each voice's first sentence against its other sentences and the other voices'."""
    from barkserve.quality.resemblyzer import ResemblyzerEncoder
    from barkserve.quality.speaker import similarity

    clean = [c for c in clips if c["kind"] == "clean"]
    vectors = ResemblyzerEncoder("cpu").embed([c["audio"] for c in clean], RATE)
    same, other = [], []
    for i, anchor in enumerate(clean):
        if anchor["sentence"] != 0:
            continue
        for j, c in enumerate(clean):
            if c["language"] != anchor["language"] or j == i:
                continue
            (same if c["voice"] == anchor["voice"] else other).append(similarity(vectors[i], vectors[j]))
    result = sweep(same, {"other_voice": other}, np.arange(0.3, 1.0, 0.01), budget, lambda v, t: v < t)
    result["scores"] = {"same_voice": _summary(same), "other_voice": _summary(other)}
    return result


def signal_gates(clips: list[dict[str, Any]], damages: Sequence[str]) -> dict[str, Any]:
    """What the model-free checks catch: silent clips, clipping over 1% of samples (quality.signal)."""
    from barkserve.quality.signal import measure_signal

    out: dict[str, dict[str, float]] = {}
    for kind in ("clean", *damages):
        measures = [measure_signal(c["audio"], RATE) for c in clips if c["kind"] == kind]
        out[kind] = {
            "silent_or_below_-50_dbfs": float(np.mean([m.silent or m.rms_dbfs < -50 for m in measures])),
            "clipping_over_1_percent": float(np.mean([m.clipping_fraction > 0.01 for m in measures])),
        }
    return out


def _summary(values: Sequence[float]) -> dict[str, float | int]:
    v = np.asarray(values, dtype=np.float64)
    return {"n": len(v), "mean": float(v.mean()), "min": float(v.min()), "p05": float(np.percentile(v, 5)),
            "median": float(np.median(v)), "max": float(v.max())}  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    """Build the set, calibrate each gate, print a table and the JSON line; returns 0."""
    args = parse_args(argv)
    languages = ["en"] if args.smoke else list(SENTENCES)
    variants = VARIANTS[:2] if args.smoke else VARIANTS
    sentences = 2 if args.smoke else 3
    damages = ("snr0", "noise") if args.smoke else DAMAGES
    clips = build_set(languages, variants, sentences, damages, args.seed)
    print(f"[calibrate] {len(clips)} clips: {len(languages)} languages x {len(variants)} voices x {sentences} "
          f"sentences x (clean + {len(damages)} damages)", file=sys.stderr, flush=True)  # fmt: skip
    result: dict[str, Any] = {
        "espeak_ng": subprocess.run(["espeak-ng", "--version"], capture_output=True, text=True).stdout.strip(),
        "machine": f"{platform.machine()} {platform.system()}", "languages": languages,
        "voices": [f"{lang}+{v}" for lang in languages for v in variants], "sentences_per_voice": sentences,
        "damages": list(damages), "mild": list(MILD), "max_false_alarms": args.max_false_alarms,
        "rule": "the highest threshold whose false-alarm rate on clean speech is at most max_false_alarms",
        "mos": {}, "smoke": args.smoke,
    }  # fmt: skip
    for name in [p for p in args.predictors.split(",") if p]:
        result["mos"][name] = calibrate_mos(clips, name, args.max_false_alarms)
        print(f"[calibrate] {name} done", file=sys.stderr, flush=True)
    result["speaker"] = {"resemblyzer": calibrate_speaker(clips, args.max_false_alarms)}
    result["signal"] = signal_gates(clips, damages)
    print_table(result)
    line = json.dumps(result)
    print(line)
    if args.out:
        args.out.write_text(line + "\n")
    return 0


def print_table(result: dict[str, Any]) -> None:
    """Scores by kind, and each gate's chosen threshold with its rates."""
    for name, r in result["mos"].items():
        print(f"\n{name}: mean (min-max) by kind; {r['seconds_per_clip']:.3f} s per clip in batches of 8")
        for kind, s in r["scores"].items():
            print(f"  {kind:9s} {s['mean']:.2f} ({s['min']:.2f}-{s['max']:.2f})")
        _print_choice(name, r["chosen"])
    r = result["speaker"]["resemblyzer"]
    print(f"\nresemblyzer similarity: same voice {r['scores']['same_voice']['mean']:.3f} "
          f"(min {r['scores']['same_voice']['min']:.3f}), other voice {r['scores']['other_voice']['mean']:.3f} "
          f"(max {r['scores']['other_voice']['max']:.3f})")  # fmt: skip
    _print_choice("min_similarity", r["chosen"])


def _print_choice(name: str, chosen: dict[str, Any] | None) -> None:
    if chosen is None:
        print(f"  {name}: no threshold keeps false alarms within the budget")
        return
    kinds = ", ".join(f"{k} {v:.0%}" for k, v in chosen["detection_by_kind"].items())
    print(f"  chosen {chosen['threshold']}: false alarms {chosen['false_alarm_rate']:.1%}, "
          f"detection {chosen['detection_rate']:.1%} ({kinds})")  # fmt: skip


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
