"""`report.html`: one self-contained page (inline CSS and hand-written SVG, no external references)."""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any

from barkserve.evaluation.report import METRICS
from barkserve.quality.metrics import uses_cer

COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf")
TABLE_METRICS = (
    "error", "wer", "cer", "similarity", "mos", "rtf", "ttfa_sec", "duration_ratio", "qc_pass_rate", "failed"
)  # fmt: skip
STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222;max-width:1200px}
table{border-collapse:collapse;margin:8px 0 20px}
td,th{border:1px solid #ccc;padding:3px 7px;text-align:right;max-width:360px;overflow-wrap:anywhere}
th{background:#f3f3f3}td.l,th.l{text-align:left}.fail{color:#b00}.ok{color:#070}
svg{background:#fff;border:1px solid #ddd;margin:6px 12px 12px 0}.small{color:#666;font-size:12px}
"""


def _partial(partial: Mapping[str, Any] | None) -> str:
    if not partial:
        return ""
    return (
        f"<p class='fail'><b>Partial report</b>: the run stopped ({_e(partial['reason'])}) after "
        f"{partial['samples']} of {partial['of']} samples; {_e(partial['resume'])}.</p>"
    )


def render_html(report: Mapping[str, Any]) -> str:
    """The report as an HTML page with plots and tables."""
    configs = [c["name"] for c in report["configurations"]]
    aggs, samples = report["aggregates"], report["samples"]
    langs = report["testset"]["languages"]
    word_langs = [lang for lang in langs if not uses_cer(lang)]
    mos_name = report["settings"].get("mos_model") or "none"
    plots = [
        _by_language(aggs, configs, word_langs, "wer", "WER per language (95% CI)"),
        _by_language(aggs, configs, langs, "cer", "CER per language (95% CI)"),
        _dots(samples, configs, "similarity", "Voice similarity to the voice's prompt, per sample", (0.0, 1.0)),
        _dots(samples, configs, "mos", f"Naturalness (MOS, {mos_name}), per sample", (1.0, 5.0)),
        _per_config(aggs, configs, "rtf", "Real-time factor per configuration (95% CI)"),
        _per_config(aggs, configs, "ttfa_sec", "Time to first audio per configuration, s (95% CI)"),
    ]
    s = report["settings"]
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>barkserve eval</title>",
        f"<style>{STYLE}</style></head><body><h1>barkserve eval</h1>",
        f"<p class='small'>{_e(report['created'])} · barkserve {_e(report['barkserve_version'])} · test set "
        f"{_e(report['testset']['source'])} ({report['testset']['lines']} lines, {len(langs)} languages) · seed "
        f"{s['seed']} · ASR {_e(s['asr_model'])} · speaker {_e(s['speaker_model'])} · naturalness "
        f"{_e(s.get('mos_predictor') or 'not measured')} · similarity to "
        f"{_e(s['similarity_reference'])} · {s['bootstrap_resamples']} bootstrap resamples</p>",
        _partial(report.get("partial")),
        _thresholds(report["thresholds"]),
        "<h2>Plots</h2>",
        "".join(plots),
        "<h2>Aggregates per configuration</h2>",
        _aggregate_table({c: aggs[c]["overall"] for c in configs}, "configuration"),
        _comparisons(report["comparisons"]),
        "<h2>Per language</h2>",
        "".join(f"<h3>{_e(c)}</h3>" + _aggregate_table(aggs[c]["by_language"], "language") for c in configs),
        "<h2>Per voice</h2>",
        "".join(f"<h3>{_e(c)}</h3>" + _aggregate_table(aggs[c]["by_voice"], "voice") for c in configs),
        _quantizer(report.get("quantizer")),
        _samples(samples),
        "</body></html>",
    ]
    return "\n".join(parts)


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:.4g}"


def _aggregate_table(rows: Mapping[str, Mapping[str, Any]], label: str) -> str:
    head = "".join(f"<th>{_e(METRICS[m][0])}</th>" for m in TABLE_METRICS)
    body = []
    for name, metrics in rows.items():
        cells = []
        for m in TABLE_METRICS:
            st = metrics[m]
            ci = "" if st["mean"] is None else f" <span class='small'>[{_fmt(st['low'])}, {_fmt(st['high'])}]</span>"
            cells.append(f"<td>{_fmt(st['mean'])}{ci}</td>")
        body.append(f"<tr><td class='l'>{_e(name)}</td>{''.join(cells)}</tr>")
    return f"<table><tr><th class='l'>{_e(label)}</th>{head}</tr>{''.join(body)}</table>"


def _comparisons(rows: Sequence[Mapping[str, Any]]) -> str:
    if not rows:
        return ""
    body = "".join(
        f"<tr><td class='l'>{_e(r['config'])} vs {_e(r['baseline'])}</td><td class='l'>{_e(METRICS[r['metric']][0])}"
        f"</td><td>{_fmt(r['baseline_mean'])}</td><td>{_fmt(r['config_mean'])}</td>"
        f"<td>{_fmt(r['difference']['mean'])} [{_fmt(r['difference']['low'])}, {_fmt(r['difference']['high'])}]</td>"
        f"<td class='l {'fail' if r['distinguishable'] else ''}'>{_e(r['verdict'])}</td></tr>"
        for r in rows
    )
    return (
        "<h2>Comparisons (paired by sample)</h2><table><tr><th class='l'>pair</th><th class='l'>metric</th>"
        f"<th>baseline</th><th>config</th><th>difference [95% CI]</th><th class='l'>verdict</th></tr>{body}</table>"
    )


def _thresholds(rows: Sequence[Mapping[str, Any]]) -> str:
    if not rows:
        return ""
    body = "".join(
        f"<tr><td class='l'>{_e(r['config'])}</td><td class='l'>{_e(r['threshold'])}</td><td>{_fmt(r['actual'])}</td>"
        f"<td class='l {'ok' if r['passed'] else 'fail'}'>{'passed' if r['passed'] else 'FAILED'}</td></tr>"
        for r in rows
    )
    return (
        "<h2>Thresholds</h2><table><tr><th class='l'>configuration</th><th class='l'>threshold</th>"
        f"<th>mean</th><th class='l'>result</th></tr>{body}</table>"
    )


def _quantizer(q: Mapping[str, Any] | None) -> str:
    if not q:
        return ""
    return (
        f"<h2>Quantizer</h2><p>{_e(q['checkpoint'])} ({_e(q['method'])}) on {_e(q['dataset'])}: token accuracy "
        f"<b>{q['accuracy']:.4f}</b> over {q['utterances']} utterances</p>"
    )


def _samples(samples: Sequence[Mapping[str, Any]]) -> str:
    rows = []
    for s in samples:
        m = s["metrics"]
        status = _e(s["status"]) if s["failure"] is None else f"failed: {_e(s['failure']['message'])}"
        audio = f"<a href='{_e(s['audio_file'])}'>wav</a>" if s["audio_file"] else ""
        rows.append(
            f"<tr><td class='l'>{_e(s['config'])}</td><td class='l'>{_e(s['id'])}</td><td class='l'>{_e(s['voice'])}"
            f"</td><td>{s['seed']}</td><td>{_fmt(m.get('error'))}</td><td>{_fmt(m.get('similarity'))}</td>"
            f"<td>{_fmt(m.get('rtf'))}</td><td>{_fmt(m.get('ttfa_sec'))}</td><td class='l'>{_e(s['text'])}</td>"
            f"<td class='l'>{_e(s['transcript'] or '')}</td><td class='l'>{status} {audio}</td></tr>"
        )
    return (
        "<h2>Samples</h2><table><tr><th class='l'>config</th><th class='l'>id</th><th class='l'>voice</th><th>seed"
        "</th><th>error</th><th>similarity</th><th>RTF</th><th>first audio s</th><th class='l'>text</th>"
        f"<th class='l'>heard</th><th class='l'>status</th></tr>{''.join(rows)}</table>"
    )


# --- plots: hand-written SVG, bars with CI whiskers and a strip plot ---

W, H, LEFT, BOTTOM, TOP = 560, 280, 56, 46, 30


def _frame(title: str, top: float, bottom: float = 0.0) -> tuple[list[str], Any]:
    """SVG opening, title, y axis with 5 ticks; returns the parts and a value -> y mapping."""
    span = (top - bottom) or 1.0

    def y(v: float) -> float:
        return TOP + (H - TOP - BOTTOM) * (1 - (v - bottom) / span)

    parts = [
        f"<svg role='img' width='{W}' height='{H}' viewBox='0 0 {W} {H}'><title>{_e(title)}</title>",
        f"<text x='{W / 2}' y='18' text-anchor='middle' font-size='14'>{_e(title)}</text>",
    ]
    for k in range(6):
        v = bottom + span * k / 5
        parts.append(
            f"<line x1='{LEFT}' x2='{W - 10}' y1='{y(v):.1f}' y2='{y(v):.1f}' stroke='#eee'/>"
            f"<text x='{LEFT - 6}' y='{y(v) + 4:.1f}' text-anchor='end' font-size='11'>{v:.3g}</text>"
        )
    return parts, y


def _legend(configs: Sequence[str]) -> str:
    return "".join(
        f"<rect x='{LEFT + 110 * i}' y='{H - 16}' width='10' height='10' fill='{COLORS[i % len(COLORS)]}'/>"
        f"<text x='{LEFT + 14 + 110 * i}' y='{H - 7}' font-size='11'>{_e(c[:14])}</text>"
        for i, c in enumerate(configs)
    )


def _bars(title: str, groups: Sequence[str], configs: Sequence[str], stat: Any) -> str:
    """Grouped bars (one group per label, one bar per configuration) with CI whiskers."""
    values = [stat(c, g) for g in groups for c in configs]
    highs = [v["high"] for v in values if v and v["high"] is not None]
    if not highs:
        return f"<svg width='{W}' height='60'><text x='10' y='35'>{_e(title)}: no data</text></svg>"
    parts, y = _frame(title, max(max(highs) * 1.1, 1e-6))
    slot = (W - LEFT - 10) / len(groups)
    bar = slot * 0.8 / len(configs)
    for gi, group in enumerate(groups):
        x0 = LEFT + gi * slot + slot * 0.1
        parts.append(
            f"<text x='{x0 + slot * 0.4:.1f}' y='{H - BOTTOM + 14}' text-anchor='middle' "
            f"font-size='11'>{_e(group[:16])}</text>"
        )
        for ci, config in enumerate(configs):
            st = stat(config, group)
            if not st or st["mean"] is None:
                continue
            x, color = x0 + ci * bar, COLORS[ci % len(COLORS)]
            top, mid = y(st["mean"]), x + bar / 2
            parts.append(
                f"<rect x='{x:.1f}' y='{top:.1f}' width='{bar * 0.9:.1f}' height='{y(0) - top:.1f}' "
                f"fill='{color}' opacity='0.8'><title>{_e(config)} {_e(group)}: {st['mean']:.4g}</title></rect>"
                f"<line x1='{mid:.1f}' x2='{mid:.1f}' y1='{y(st['low']):.1f}' y2='{y(st['high']):.1f}' "
                "stroke='#000'/>"
            )
    parts.append(_legend(configs) + "</svg>")
    return "".join(parts)


def _by_language(aggs: Mapping[str, Any], configs: Sequence[str], langs: Sequence[str], metric: str, title: str) -> str:
    return _bars(title, list(langs), configs, lambda c, g: aggs[c]["by_language"].get(g, {}).get(metric))


def _per_config(aggs: Mapping[str, Any], configs: Sequence[str], metric: str, title: str) -> str:
    return _bars(title, ["all samples"], configs, lambda c, g: aggs[c]["overall"][metric])


def _dots(
    samples: Sequence[Mapping[str, Any]], configs: Sequence[str], metric: str, title: str, span: tuple[float, float]
) -> str:
    """Each sample's `metric` as a dot, one column per configuration, the mean as a bar."""
    per = {
        c: [s["metrics"][metric] for s in samples if s["config"] == c and s["metrics"].get(metric) is not None]
        for c in configs
    }
    every = [v for vs in per.values() for v in vs]
    if not every:
        return f"<svg width='{W}' height='60'><text x='10' y='35'>{_e(title)}: no data</text></svg>"
    parts, y = _frame(title, max(span[1], max(every)), min(span[0], min(every)))
    slot = (W - LEFT - 10) / len(configs)
    for ci, config in enumerate(configs):
        mid, color = LEFT + slot * (ci + 0.5), COLORS[ci % len(COLORS)]
        for k, v in enumerate(per[config]):
            jitter = ((k * 37) % 21 - 10) / 10 * slot * 0.25  # fixed spread: the same report each run
            parts.append(f"<circle cx='{mid + jitter:.1f}' cy='{y(v):.1f}' r='3' fill='{color}' opacity='0.6'/>")
        if per[config]:
            mean = sum(per[config]) / len(per[config])
            parts.append(
                f"<line x1='{mid - slot * 0.3:.1f}' x2='{mid + slot * 0.3:.1f}' y1='{y(mean):.1f}' "
                f"y2='{y(mean):.1f}' stroke='#000' stroke-width='2'/>"
            )
        parts.append(
            f"<text x='{mid:.1f}' y='{H - BOTTOM + 14}' text-anchor='middle' font-size='11'>"
            f"{_e(config[:16])} (n={len(per[config])})</text>"
        )
    parts.append("</svg>")
    return "".join(parts)
