"""`barkserve finetune eval`: the held-out lines through the base model and the fine-tune, compared.

Both run through `barkserve eval`'s machinery (`evaluation.run_eval`) as two configurations of one
report: "base" (the run's base model) and "finetune" (the run's checkpoint, LoRA merged into a
temporary model folder that is removed afterwards). Every held-out line has the same seed and the
same voice in both, so the comparison is paired. The voice is, unless one is named, a prompt cut
from the longest training clip (the training speaker), and similarity is measured against the
training speaker: the mean speaker embedding of the training clips (their codes decoded by the
base's codec, as the samples are).

RUN/eval/ receives report.json and report.html (the report of `barkserve eval`, plus a "finetune"
section) and verdict.json, which `finetune promote` reads: the fine-tune is "worse" when its WER
(CER for zh/ja/ko) exceeds the base's beyond the bootstrap confidence interval of the paired
difference. A sample that failed (no speech) counts as error 1.0 there: every word was lost.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from barkserve.errors import ConfigError
from barkserve.finetune import run as runs

VOICE_NAME = "training-speaker"
CONFIGS = ("base", "finetune")
SPEAKER_REFERENCE = "the training speaker: the mean embedding of the training clips (their codes decoded by the codec)"


@dataclass(frozen=True)
class FinetuneEvalOptions:
    """What `evaluate_run` measures and with what."""

    checkpoint: str = "best"  # best | last
    asr_model: str | None = None  # Whisper hub id or folder; None: the asr_model setting
    speaker_model: str | None = None  # None: the speaker_model setting; "" skips similarity
    mos_model: str | None = None  # dnsmos | distillmos; None: the mos_model setting ("" none)
    voice: str | None = None  # a preset or custom voice name; None: a prompt from a training clip
    voices_dir: str | None = None  # where a named custom voice lives
    language: str = "en"  # of the held-out lines, for the ASR and the normalizer
    seed: int = 0  # line i uses seed + i, in both configurations
    max_duration: float | None = None  # seconds of audio per line at most; None: Bark's default
    resamples: int = 1000
    save_audio: bool = False
    device: str = "auto"
    offline: bool = False


def evaluate_run(
    run_dir: str | Path, options: FinetuneEvalOptions | None = None, on_sample: Callable[[str], None] | None = None
) -> dict[str, Any]:
    """Evaluate a run's checkpoint against its base model on the held-out lines; returns the verdict.

    Raises:
        ConfigError: Not a run folder, no such checkpoint, no held-out lines, or no ASR model.
        DatasetError: The run's dataset folder is gone or unreadable.
        ModelUnavailable, ScorerUnavailable: A model cannot be loaded.
    """
    from barkserve.config import ServerConfig
    from barkserve.evaluation.eval_config import EvalConfig
    from barkserve.evaluation.report_html import render_html
    from barkserve.evaluation.run import EvalSettings, run_eval
    from barkserve.finetune.merge import merge_run
    from barkserve.finetune.prepare import load_dataset
    from barkserve.options import SynthesisOptions
    from barkserve.quality.scorer import ScorerConfig

    options = options or FinetuneEvalOptions()
    run = Path(run_dir)
    record = runs.read_run(run)
    _, checkpoint = runs.run_checkpoint(run, options.checkpoint)
    step = runs.checkpoint_step(checkpoint)
    meta, train_items, _ = load_dataset(record["dataset"])
    held = [i for i in meta["items"] if i["split"] == "heldout"]
    if not held or not train_items:
        raise ConfigError(f"the dataset {record['dataset']} has no held-out or no training items to evaluate with")
    base_model = record["base_model"]
    flat = {"model": base_model, "device": options.device, "offline": options.offline}
    scorers = {k: getattr(options, k) for k in ("asr_model", "speaker_model", "mos_model")}
    server = ServerConfig.from_sources({**flat, **{k: v for k, v in scorers.items() if v is not None}})
    if not server.asr_model:
        raise ConfigError("finetune eval needs an ASR model for the intelligibility verdict; give --asr-model")
    scorer = ScorerConfig(
        asr=server.asr_model,
        speaker=server.speaker_model or None,
        mos=server.mos_model or None,
        device=server.device,
        offline=server.offline,
    )
    out = run / "eval"
    out.mkdir(parents=True, exist_ok=True)
    (out / "verdict.json").unlink(missing_ok=True)  # a failed evaluation leaves no verdict of an earlier one
    clips = training_clips(base_model, [item.codes for item in train_items], options.device, options.offline)
    voice = options.voice
    voices_dir = options.voices_dir
    if voice is None:
        voices_dir, voice = str(out / "voices"), VOICE_NAME
        write_voice(out / "voices" / f"{VOICE_NAME}.npz", max(train_items, key=lambda i: i.codes.shape[1]))
    testset = heldout_testset(record["dataset"], held, options.language, voice)
    synthesis = SynthesisOptions(max_duration_sec=options.max_duration)
    with tempfile.TemporaryDirectory(prefix=".merged-", dir=out) as tmp:
        merged = merge_run(run, Path(tmp) / "model", options.checkpoint, offline=options.offline, device="cpu")
        tuned = f"{run} ({options.checkpoint}.pt, step {step})"
        settings = EvalSettings(
            testset=testset,
            configs=(
                EvalConfig(CONFIGS[0], settings={"model": base_model}, server={"model": base_model}, options=synthesis),
                EvalConfig(CONFIGS[1], settings={"model": tuned}, server={"model": str(merged)}, options=synthesis),
            ),
            scorer=scorer,
            base={**flat, **({"voices_dir": voices_dir} if voices_dir else {})},
            seed=options.seed,
            audio_dir=out / "audio" if options.save_audio else None,
            resamples=options.resamples,
            reference_clips=tuple(clips),
            reference_label=SPEAKER_REFERENCE,
        )
        report = run_eval(settings, on_sample=on_sample)
    verdict = {**decide(report["samples"], options.resamples), "checkpoint": options.checkpoint, "step": step}
    report["finetune"] = {"run": str(run.resolve()), "base_model": base_model, "dataset": record["dataset"],
                          "options": record["options"], "voice": voice, "verdict": verdict}  # fmt: skip
    runs.write_json(out / "report.json", report)
    page = render_html(report).replace("<body>", f"<body>{verdict_html(verdict)}", 1)
    (out / "report.html").write_text(page, encoding="utf-8")
    runs.write_json(out / "verdict.json", verdict)
    return verdict


def training_clips(base_model: str, codes: list[np.ndarray], device: str, offline: bool) -> list[np.ndarray]:
    """The training clips as audio: their (8, C) codes decoded by the base model's codec."""
    from barkserve.cloning.codec import decode_codes
    from barkserve.config import ServerConfig
    from barkserve.models import load_model

    loaded = load_model(base_model, ServerConfig(model=base_model, device=device, offline=offline))
    try:
        return [decode_codes(loaded.model.codec_model, c) for c in codes]
    finally:
        del loaded


def write_voice(path: Path, item: Any) -> Path:
    """A Bark voice prompt (.npz) made of a training item's tokens."""
    from barkserve.audio.files import atomic_write
    from barkserve.voices import VoicePrompt

    prompt = VoicePrompt.from_history(np.asarray(item.semantic), np.asarray(item.codes), name=VOICE_NAME)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda f: np.savez(f, **prompt.arrays()))  # type: ignore[arg-type]
    return path


def heldout_testset(dataset: str, held: list[dict[str, Any]], language: str, voice: str) -> Any:
    """The held-out items as `barkserve eval` test lines (id = item id, line = position in the split)."""
    from barkserve.evaluation.testset import TestLine, TestSet
    from barkserve.voices import LANGUAGES

    if language not in LANGUAGES:
        raise ConfigError(f"language must be one of Bark's {list(LANGUAGES)}; got {language!r}")
    lines = tuple(
        TestLine(index=i, line=i + 1, id=item["id"], text=item["text"], language=language, voice=voice)
        for i, item in enumerate(held)
    )
    return TestSet(f"{Path(dataset) / 'dataset.json'} (held-out split)", lines)


def decide(samples: list[dict[str, Any]], resamples: int) -> dict[str, Any]:
    """The verdict: paired WER (CER for zh/ja/ko) of the fine-tune against the base, failures as 1.0."""
    from barkserve.evaluation.report import CONFIDENCE, bootstrap_ci

    def errors(config: str) -> dict[str, float | None]:
        return {
            s["id"]: (1.0 if s["status"] != "ok" else s["metrics"].get("error"))
            for s in samples
            if s["config"] == config
        }

    base, tuned = errors(CONFIGS[0]), errors(CONFIGS[1])
    pairs: list[tuple[float, float]] = []
    for line, b in base.items():
        t = tuned.get(line)
        if b is not None and t is not None:
            pairs.append((b, t))
    if not pairs:
        raise ConfigError("no held-out line was scored in both models (is the ASR model working?)")
    diff = bootstrap_ci([t - b for b, t in pairs], resamples, CONFIDENCE)
    assert diff.mean is not None and diff.low is not None and diff.high is not None
    worse = diff.low > 0
    wer_base = float(np.mean([b for b, _ in pairs]))
    wer_tuned = float(np.mean([t for _, t in pairs]))
    ci = f"{CONFIDENCE:.0%} CI of the paired difference {diff.low:+.4f}..{diff.high:+.4f}, {len(pairs)} line(s)"
    if worse:
        reason = f"the fine-tune's WER {wer_tuned:.4f} is worse than the base's {wer_base:.4f} beyond the {ci}"
    elif diff.high < 0:
        reason = f"the fine-tune's WER {wer_tuned:.4f} is better than the base's {wer_base:.4f} beyond the {ci}"
    else:
        reason = f"WER {wer_tuned:.4f} against the base's {wer_base:.4f}: not worse beyond the {ci}"
    return {
        "worse": bool(worse),
        "reason": reason,
        "wer_base": round(wer_base, 6),
        "wer_finetune": round(wer_tuned, 6),
        "wer_diff": {"mean": round(diff.mean, 6), "ci_low": round(diff.low, 6), "ci_high": round(diff.high, 6)},
        "n": len(pairs),
        "failed": {c: sum(1 for s in samples if s["config"] == c and s["status"] != "ok") for c in CONFIGS},
    }


def verdict_html(verdict: dict[str, Any]) -> str:
    import html

    color = "#b00" if verdict["worse"] else "#070"
    title = "worse than the base" if verdict["worse"] else "not worse than the base"
    return (
        f"<h1>Fine-tune ({html.escape(str(verdict['checkpoint']))}.pt, step {verdict['step']}): "
        f'<span style="color:{color}">{title}</span></h1><p>{html.escape(verdict["reason"])}</p>'
    )
