"""`barkserve eval`'s numbers: bootstrap confidence intervals, aggregates, paired comparisons, thresholds.

Intervals are percentile bootstraps of the mean (numpy, a fixed RNG seed, so the same samples give
the same report). Comparisons are paired by sample: each configuration ran the same lines with the
same seeds, so the interval is of the mean per-sample difference, not of two independent means.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from barkserve.errors import InvalidRequest

RESAMPLES = 1000
CONFIDENCE = 0.95
BOOTSTRAP_SEED = 0
# Metric -> (label, which way is better: -1 lower, +1 higher, 0 neither).
METRICS: dict[str, tuple[str, int]] = {
    "error": ("speech error (WER; CER for zh/ja/ko)", -1),
    "wer": ("WER (not zh/ja/ko)", -1),
    "cer": ("CER", -1),
    "similarity": ("voice similarity", 1),
    # Naturalness from the MOS predictor named in the report's settings (mos_model); the DNSMOS parts
    # (P.835 signal and background, P.808) are null with Distill-MOS.
    "mos": ("naturalness (MOS, 1-5)", 1),
    "mos_sig": ("DNSMOS signal (SIG)", 1),
    "mos_bak": ("DNSMOS background (BAK)", 1),
    "mos_p808": ("DNSMOS P.808", 1),
    "rtf": ("real-time factor", -1),
    "ttfa_sec": ("time to first audio (s)", -1),
    "duration_sec": ("audio duration (s)", 0),
    "duration_ratio": ("duration / expected", 0),
    "longest_silence_sec": ("longest internal silence (s)", -1),
    "clipping_fraction": ("clipped samples", -1),
    "rms_dbfs": ("loudness (dBFS)", 0),
    "qc_pass_rate": ("qc: chunks passed", 1),
    "qc_tries": ("qc: generations per chunk", -1),
    "failed": ("failed samples", -1),
}
THRESHOLD = re.compile(r"^\s*([a-z_]+)\s*(<=|>=|<|>)\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*$")


@dataclass(frozen=True)
class Interval:
    """A mean and its bootstrap confidence interval over `n` values (all None when n is 0)."""

    mean: float | None
    low: float | None
    high: float | None
    n: int

    def to_dict(self) -> dict[str, Any]:
        return {"mean": _r(self.mean), "low": _r(self.low), "high": _r(self.high), "n": self.n}


def bootstrap_ci(
    values: Iterable[float], resamples: int = RESAMPLES, confidence: float = CONFIDENCE, seed: int = BOOTSTRAP_SEED
) -> Interval:
    """Mean of `values` with a percentile-bootstrap interval (`resamples` draws with replacement)."""
    x = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=np.float64)
    if len(x) == 0:
        return Interval(None, None, None, 0)
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(x), size=(resamples, len(x)))  # [resamples, n]
    means = x[picks].mean(axis=1)  # [resamples]
    tail = (1.0 - confidence) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    mean = float(x.mean())
    # Rounding in the percentile can put a bound a hair outside the mean for constant data.
    return Interval(mean, min(float(low), mean), max(float(high), mean), len(x))


def aggregate(
    samples: Sequence[Mapping[str, Any]], resamples: int = RESAMPLES, confidence: float = CONFIDENCE
) -> dict[str, Any]:
    """Per configuration: every metric overall, by language and by voice."""
    out: dict[str, Any] = {}
    for config in dict.fromkeys(s["config"] for s in samples):
        mine = [s for s in samples if s["config"] == config]
        out[config] = {
            "overall": _metrics(mine, resamples, confidence),
            "by_language": {k: _metrics(v, resamples, confidence) for k, v in _group(mine, "language").items()},
            "by_voice": {k: _metrics(v, resamples, confidence) for k, v in _group(mine, "voice").items()},
        }
    return out


def compare(
    samples: Sequence[Mapping[str, Any]],
    configs: Sequence[str],
    resamples: int = RESAMPLES,
    confidence: float = CONFIDENCE,
) -> list[dict[str, Any]]:
    """Each configuration after the first against the first, per metric, paired by sample id."""
    by_config = {c: {s["id"]: s["metrics"] for s in samples if s["config"] == c} for c in configs}
    base = configs[0] if configs else ""
    rows = []
    for other in configs[1:]:
        for metric in METRICS:
            pairs = [
                (m[metric], by_config[other][i][metric])
                for i, m in by_config[base].items()
                if i in by_config[other] and m.get(metric) is not None and by_config[other][i].get(metric) is not None
            ]
            rows.append(_comparison(base, other, metric, pairs, resamples, confidence))
    return rows


def parse_threshold(text: str) -> tuple[str, str, float]:
    """`wer<=0.3` -> ("wer", "<=", 0.3); the metric must be one `aggregate` reports (or quantizer_accuracy)."""
    match = THRESHOLD.match(text)
    if not match:
        raise InvalidRequest(f"threshold must look like 'wer<=0.3' or 'similarity>=0.6'; got {text!r}")
    metric, op, value = match.group(1), match.group(2), float(match.group(3))
    if metric not in METRICS and metric != "quantizer_accuracy":
        raise InvalidRequest(f"unknown threshold metric {metric!r}; known: {[*METRICS, 'quantizer_accuracy']}")
    return metric, op, value


def check_thresholds(
    thresholds: Sequence[str], aggregates: Mapping[str, Any], quantizer: Mapping[str, Any] | None
) -> list[dict[str, Any]]:
    """Each threshold against each configuration's overall mean; a metric with no values fails."""
    rows = []
    for text in thresholds:
        metric, op, value = parse_threshold(text)
        if metric == "quantizer_accuracy":
            targets = [("quantizer", None if quantizer is None else quantizer.get("accuracy"))]
        else:
            targets = [(c, a["overall"][metric]["mean"]) for c, a in aggregates.items()]
        for config, actual in targets:
            passed = actual is not None and _holds(actual, op, value)
            rows.append(
                {
                    "config": config,
                    "threshold": text.strip(),
                    "metric": metric,
                    "op": op,
                    "value": value,
                    "actual": _r(actual),
                    "passed": passed,
                }
            )
    return rows


def _comparison(
    base: str, other: str, metric: str, pairs: list[tuple[float, float]], resamples: int, confidence: float
) -> dict[str, Any]:
    label, direction = METRICS[metric]
    diff = bootstrap_ci([b - a for a, b in pairs], resamples, confidence)
    a_mean = float(np.mean([a for a, _ in pairs])) if pairs else None
    b_mean = float(np.mean([b for _, b in pairs])) if pairs else None
    real = diff.n >= 2 and diff.low is not None and diff.high is not None and (diff.low > 0 or diff.high < 0)
    return {
        "baseline": base,
        "config": other,
        "metric": metric,
        "n": diff.n,
        "baseline_mean": _r(a_mean),
        "config_mean": _r(b_mean),
        "difference": diff.to_dict(),
        "distinguishable": real,
        "better": _better(diff.mean, direction) if real else None,
        "verdict": _verdict(base, other, label, diff, real, confidence),
    }


def _better(difference: float | None, direction: int) -> str | None:
    if difference is None or direction == 0 or difference == 0:
        return None
    return "config" if difference * direction > 0 else "baseline"


def _verdict(base: str, other: str, label: str, diff: Interval, real: bool, confidence: float) -> str:
    if diff.n < 2 or diff.mean is None:
        return f"{other} vs {base}, {label}: too few paired samples to compare ({diff.n})"
    way = "higher" if diff.mean > 0 else "lower" if diff.mean < 0 else "the same"
    size = "" if diff.mean == 0 else f" by {abs(diff.mean):.4g}"
    ci = f"({confidence:.0%} CI {diff.low:.4g}..{diff.high:.4g}, n={diff.n})"
    outcome = "the difference is real" if real else "not distinguishable from no difference"
    return f"{other}'s {label} is {way}{size} than {base}'s {ci}: {outcome}"


def _metrics(samples: Sequence[Mapping[str, Any]], resamples: int, confidence: float) -> dict[str, Any]:
    return {m: bootstrap_ci((s["metrics"].get(m) for s in samples), resamples, confidence).to_dict() for m in METRICS}


def _group(samples: Sequence[Mapping[str, Any]], key: str) -> dict[str, list[Mapping[str, Any]]]:
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for s in samples:
        groups.setdefault(str(s[key]), []).append(s)
    return dict(sorted(groups.items()))


def _holds(actual: float, op: str, value: float) -> bool:
    return {"<=": actual <= value, ">=": actual >= value, "<": actual < value, ">": actual > value}[op]


def _r(value: float | None) -> float | None:
    return None if value is None else round(float(value), 6)
