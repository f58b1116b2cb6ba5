"""`barkserve eval`: a test set through one or more configurations, scored, reported in JSON and HTML."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from barkserve.cli.options import MOS_MODEL, friendly_errors
from barkserve.config import DEVICES, DTYPES

CONFIG_HELP = (
    "A configuration NAME:key=value,... (repeatable); keys: model, engine, quantize, kernels, max_batch_size, "
    "compile, dtype, text_temp, waveform_temp, min_eos_p, max_duration, sentence_pause, carry_history, speed, "
    "voice (replaces every line's voice), qc (on/off), qc_max_error, qc_min_similarity, qc_tries. "
    "The first is the baseline of the comparisons. [one configuration, 'default']"
)


@click.command("eval")
@click.option(
    "--out",
    type=click.Path(path_type=Path, file_okay=False),
    required=True,
    help="Folder for report.json, report.html (and audio/ with --save-audio).",
)
@click.option(
    "--testset",
    type=click.Path(path_type=Path, dir_okay=False),
    help="JSONL or CSV test set: text, language, voice (id, seed optional). [the shipped default]",
)
@click.option("--config", "config_flags", multiple=True, metavar="NAME:KEY=VALUE,...", help=CONFIG_HELP)
@click.option(
    "--configs",
    "configs_file",
    type=click.Path(path_type=Path, dir_okay=False),
    help='JSON list of {"name": ..., key: value} objects, or TOML [[config]] tables; after --config ones.',
)
@click.option(
    "--seed",
    type=click.IntRange(0, 2**62),
    default=0,
    show_default=True,
    help="Base seed: line i uses seed + i unless it gives its own; the same in every configuration.",
)
@click.option(
    "--threshold",
    "thresholds",
    multiple=True,
    metavar="METRIC<=VALUE",
    help="Fail (exit 1) when a configuration's mean breaks it, e.g. wer<=0.3, similarity>=0.6, rtf<=5; "
    "metrics: error, wer, cer, similarity, rtf, ttfa_sec, duration_ratio, qc_pass_rate, failed, "
    "quantizer_accuracy, ... (repeatable).",
)
@click.option("--save-audio", is_flag=True, help="Save every sample as 16-bit WAV under OUT/audio/<config>/.")
@click.option("--limit", type=click.IntRange(1), help="Use only the first N lines of the test set.")
@click.option(
    "--bootstrap",
    "resamples",
    type=click.IntRange(100, 100_000),
    default=1000,
    show_default=True,
    help="Bootstrap resamples of each confidence interval.",
)
@click.option(
    "--warmup/--no-warmup",
    default=True,
    show_default=True,
    help="One unscored generation per configuration before the clock starts.",
)
@click.option("--model", help="Bark model of configurations that name none: hub id, alias or folder. [suno/bark-small]")
@click.option(
    "--voices-dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Folder of custom .npz voices the test set may name (cloned voices). [voices]",
)
@click.option(
    "--asr-model",
    help="Whisper checkpoint (hub id or folder) for WER/CER; '' skips it. "
    "[asr_model setting: openai/whisper-large-v3-turbo]",
)
@click.option(
    "--speaker-model",
    help="Speaker-verification checkpoint for similarity; '' skips it. "
    "[speaker_model setting: microsoft/wavlm-base-plus-sv]",
)
@click.option(
    "--mos-model",
    type=MOS_MODEL,
    help="Naturalness predictor: dnsmos or distillmos (weights in their packages), or utmos:PATH (UTMOS22 weights "
    "in a file); '' skips it. [mos_model setting: '']",
)
@click.option("--device", type=click.Choice(DEVICES), help="Device of Bark and the scorers. [auto]")
@click.option("--dtype", type=click.Choice(DTYPES), help="Bark's dtype. [auto]")
@click.option("--offline/--online", default=None, help="Use only local folders and the Hugging Face cache.")
@click.option(
    "--quantizer",
    "quantizer_ckpt",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="Quantizer checkpoint whose token accuracy joins the report (with --quantizer-dataset).",
)
@click.option(
    "--quantizer-dataset",
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    help="Dataset folder from `barkserve quantizer make-dataset` (with --quantizer).",
)
@click.option(
    "--profile",
    type=click.Choice(["seed-tts"]),
    help="Score as a published protocol does: seed-tts (Whisper-large-v3 WER, WavLM-large speaker similarity; "
    "needs --speaker-model naming a WavLM-large x-vector checkpoint). See docs/evaluation.md.",
)
@click.option(
    "--restart",
    is_flag=True,
    help="Drop the samples an interrupted run kept (OUT/progress.jsonl) instead of going on from them.",
)
@friendly_errors
def evaluate(
    out: Path,
    testset: Path | None,
    config_flags: tuple[str, ...],
    configs_file: Path | None,
    seed: int,
    thresholds: tuple[str, ...],
    save_audio: bool,
    limit: int | None,
    resamples: int,
    warmup: bool,
    quantizer_ckpt: Path | None,
    quantizer_dataset: Path | None,
    restart: bool,
    profile: str | None,
    **flags: Any,
) -> None:
    """Synthesize a test set with fixed seeds in each configuration, score every sample (WER/CER, voice
    similarity, RTF, time to first audio, signal checks, qc), and write OUT/report.json and OUT/report.html
    with bootstrap 95% confidence intervals and paired comparisons of the configurations."""
    from dataclasses import replace

    from barkserve.config import ServerConfig
    from barkserve.evaluation import run as evaluation
    from barkserve.evaluation.eval_config import EvalConfig, load_file, parse_flag
    from barkserve.evaluation.report import parse_threshold
    from barkserve.evaluation.testset import load_testset
    from barkserve.quality.scorer import ScorerConfig

    for text in thresholds:
        parse_threshold(text)  # a typo fails now, not after the run
    if (quantizer_ckpt is None) != (quantizer_dataset is None):
        raise click.UsageError("--quantizer and --quantizer-dataset go together")
    configs = [parse_flag(c) for c in config_flags] + (load_file(configs_file) if configs_file else [])
    tests = load_testset(testset)
    if limit is not None:
        tests = replace(tests, lines=tests.lines[:limit])
    if profile is not None:
        from barkserve.evaluation.profiles import get_profile

        if flags.get("speaker_model") is None:
            raise click.UsageError(
                f"--profile {profile} needs --speaker-model: a WavLM-large speaker-verification checkpoint "
                "(WavLMForXVector; hub id or folder)"
            )
        if flags.get("asr_model") is None:
            flags["asr_model"] = get_profile(profile).asr_model
    base = {k: v for k, v in flags.items() if v is not None and k not in ("asr_model", "speaker_model", "mos_model")}
    server = ServerConfig.from_sources({k: v for k, v in flags.items() if v is not None})
    scorer = ScorerConfig(
        asr=server.asr_model or None,
        speaker=server.speaker_model or None,
        mos=server.mos_model or None,
        device=server.device,
        offline=server.offline,
    )
    quantizer = None
    if quantizer_ckpt is not None and quantizer_dataset is not None:
        quantizer = evaluation.quantizer_accuracy(quantizer_ckpt, quantizer_dataset, server.device, server.offline)
    settings = evaluation.EvalSettings(
        testset=tests,
        configs=tuple(configs or [EvalConfig("default")]),
        scorer=scorer,
        base=base,
        seed=seed,
        audio_dir=out / "audio" if save_audio else None,
        warmup=warmup,
        resamples=resamples,
        thresholds=thresholds,
        quantizer=quantizer,
        progress=out / PROGRESS,
        profile=profile,
    )
    out.mkdir(parents=True, exist_ok=True)
    if restart:
        (out / PROGRESS).unlink(missing_ok=True)
    elif (out / PROGRESS).is_file():
        click.echo(f"going on from {out / PROGRESS} (an interrupted run's scored samples; --restart drops them)")
    try:
        with Bar(len(settings.configs) * len(tests.lines)) as bar:
            report = evaluation.run_eval(settings, on_sample=bar.update)
    except BaseException as exc:  # interrupted (Ctrl-C, a kill's SIGTERM as KeyboardInterrupt, a failure)
        partial = evaluation.partial_report(settings, f"{type(exc).__name__}: {exc}".rstrip(": "))
        if partial is not None:
            write_report(partial, out)
            click.echo(
                f"interrupted: wrote a partial report of {partial['partial']['samples']} of "
                f"{partial['partial']['of']} samples to {out / 'report.json'}; run the same command to go on",
                err=True,
            )
        raise
    write_report(report, out)
    (out / PROGRESS).unlink(missing_ok=True)  # the report holds every sample now
    summarize(report, out)


PROGRESS = "progress.jsonl"


def write_report(report: dict[str, Any], out: Path) -> None:
    (out / "report.json").write_text(json.dumps(report, indent=1, ensure_ascii=False), encoding="utf-8")
    (out / "report.html").write_text(render_html(report), encoding="utf-8")


def render_html(report: dict[str, Any]) -> str:
    from barkserve.evaluation.report_html import render_html as render

    return render(report)


def summarize(report: dict[str, Any], out: Path) -> None:
    """Print the headline figures, the verdicts that found a difference, and threshold failures (exit 1)."""
    for name, agg in report["aggregates"].items():
        o = agg["overall"]
        figures = ", ".join(
            f"{m} {o[m]['mean']:.4g}" for m in ("error", "similarity", "rtf", "ttfa_sec") if o[m]["mean"] is not None
        )
        failed = sum(1 for s in report["samples"] if s["config"] == name and s["status"] != "ok")
        click.echo(f"{name}: {figures or 'no measures'}" + (f"; {failed} sample(s) failed" if failed else ""))
    for row in report["comparisons"]:
        if row["metric"] in ("error", "similarity", "rtf", "ttfa_sec"):
            click.echo(row["verdict"])
    click.echo(f"wrote {out / 'report.json'} and {out / 'report.html'}")
    failures = [t for t in report["thresholds"] if not t["passed"]]
    for t in failures:
        click.echo(f"FAILED threshold {t['threshold']} for {t['config']}: mean {t['actual']}", err=True)
    if failures:
        sys.exit(1)


class Bar:
    """A tqdm bar of samples on stderr, like `barkserve say`'s Progress."""

    def __init__(self, total: int) -> None:
        self.total = total
        self._bar: Any = None

    def __enter__(self) -> Bar:
        from tqdm import tqdm

        self._bar = tqdm(total=self.total, unit="sample", desc="eval", file=sys.stderr)
        return self

    def update(self, config: str) -> None:
        self._bar.set_postfix_str(config)
        self._bar.update(1)

    def __exit__(self, *exc: object) -> None:
        self._bar.close()
