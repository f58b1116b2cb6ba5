"""`barkserve eval`: every line of a test set through each configuration with fixed seeds, every sample scored.

Samples are made the way `Synthesizer.stream` makes them (the first chunk short, for early first
audio), so one generation gives the time to first audio, the real-time factor and the audio that
is scored. Similarity compares each sample to its voice's own prompt: the prompt's fine tokens
decoded by the configuration model's codec and embedded by the speaker model, so presets and
cloned voices are measured the same way.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from barkserve.config import ServerConfig
from barkserve.errors import BarkServeError, InvalidRequest, NoSpeech
from barkserve.evaluation.eval_config import EvalConfig, check_unique
from barkserve.evaluation.report import CONFIDENCE, RESAMPLES, aggregate, check_thresholds, compare
from barkserve.evaluation.testset import TestLine, TestSet
from barkserve.quality.metrics import uses_cer
from barkserve.quality.mos import describe_mos
from barkserve.quality.scorer import Scorer, ScorerConfig, Scores

SIMILARITY_REFERENCE = "the voice prompt's fine tokens decoded by the configuration model's codec"
WARMUP_TEXT = "Hello."


@dataclass(frozen=True)
class EvalSettings:
    """What one `barkserve eval` run does."""

    testset: TestSet
    configs: tuple[EvalConfig, ...]
    scorer: ScorerConfig
    # Flat ServerConfig settings every configuration starts from (model, device, offline, voices_dir).
    base: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    audio_dir: Path | None = None  # where samples are saved; None saves none
    warmup: bool = True  # one unscored generation per configuration before timing
    resamples: int = RESAMPLES
    thresholds: tuple[str, ...] = ()
    quantizer: dict[str, Any] | None = None  # {"checkpoint", "dataset", "accuracy", ...} when measured
    # Similarity against these clips (24 kHz, the mean of their speaker embeddings) instead of each
    # voice's prompt, described by `reference_label` (`finetune eval`: the training speaker's clips).
    reference_clips: tuple[np.ndarray, ...] = ()
    reference_label: str = ""
    # JSON lines of the samples scored so far: each is written as soon as it is scored, and a run that
    # finds the file takes the samples it holds (same configuration, line, voice, seed and scorers)
    # instead of making them again. None keeps nothing.
    progress: Path | None = None
    # An eval profile (evaluation.profiles): its name, recorded with the models that ran under it.
    profile: str | None = None


Progress = Callable[[str], None]


def run_eval(settings: EvalSettings, on_sample: Progress | None = None) -> dict[str, Any]:
    """Run every configuration over the test set and return the report (see data/report.schema.json).

    Raises:
        ConfigError: Bad or repeated configurations.
        InvalidRequest: A line's voice does not exist for a configuration's model.
        ScorerUnavailable, ModelUnavailable: A scorer or Bark model cannot be loaded.
    """
    from barkserve.quality.judge import ScorerJudge
    from barkserve.synthesizer import Synthesizer

    check_unique(settings.configs)
    scorer = Scorer(settings.scorer)
    scorer.preload()  # a missing scorer model fails now, not after the first configuration ran
    profile = None
    if settings.profile is not None:
        from barkserve.evaluation.profiles import describe, get_profile

        profile = describe(get_profile(settings.profile), scorer.speaker if settings.scorer.speaker else None)
    kept = load_progress(settings.progress)
    synths: dict[Any, Synthesizer] = {}
    try:
        for config in settings.configs:
            if config.server_key() not in synths:
                server = ServerConfig.from_sources({**settings.base, **config.server})
                synths[config.server_key()] = Synthesizer(server, judge=ScorerJudge(scorer))
            check_voices(synths[config.server_key()], config, settings.testset)
        samples: list[dict[str, Any]] = []
        for i, config in enumerate(settings.configs):
            key = config.server_key()
            samples += run_config(synths[key], config, settings, scorer, on_sample, kept)
            if all(later.server_key() != key for later in settings.configs[i + 1 :]):
                synths.pop(key).close()  # its model's memory is free for the next configuration
    finally:
        for synth in synths.values():
            synth.close()
    report = build_report(settings, samples)
    if profile is not None:
        report["settings"]["profile"] = profile
    return report


def check_voices(synth: Any, config: EvalConfig, testset: TestSet) -> None:
    """Every line's voice exists for the configuration's model (checked before anything is generated)."""
    voices = synth.registry.voices(synth.registry.resolve(None))
    for line in testset.lines:
        try:
            voices.resolve_name(config.voice or line.voice)
        except BarkServeError as exc:
            raise InvalidRequest(
                f"{testset.source}, line {line.line} (configuration {config.name}): {exc.message}"
            ) from exc


def sample_key(config: EvalConfig, line: TestLine, settings: EvalSettings) -> str:
    """What makes a sample the same sample in another run: configuration, line, voice, seed, scorers."""
    voice = config.voice or line.voice
    seed = line.seed if line.seed is not None else settings.seed + line.index
    what = [config.name, config.settings, config.options.to_dict(), line.index, line.text, line.language, voice,
            seed, asdict(settings.scorer)]  # fmt: skip
    return hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()[:32]


def load_progress(path: Path | None) -> dict[str, dict[str, Any]]:
    """The samples a progress file holds, by key (an unfinished last line, cut by a kill, is skipped)."""
    if path is None or not path.is_file():
        return {}
    out = {}
    for text in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(text)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict) and isinstance(row.get("key"), str) and isinstance(row.get("sample"), dict):
            out[row["key"]] = row["sample"]
    return out


def save_progress(path: Path | None, records: Sequence[dict[str, Any]]) -> None:
    """Append finished samples to the progress file, flushed (a kill loses at most the line being written)."""
    if path is None or not records:
        return
    with path.open("a", encoding="utf-8") as f:
        for record in records:
            key = record.pop("_key")
            f.write(json.dumps({"key": key, "sample": record}, ensure_ascii=False) + "\n")
            record["_key"] = key
        f.flush()


def run_config(
    synth: Any,
    config: EvalConfig,
    settings: EvalSettings,
    scorer: Scorer,
    on_sample: Progress | None,
    kept: dict[str, dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """Synthesize and score every line with one configuration; scoring runs in the scorer's batches.
    Lines whose sample is in `kept` (an earlier run's progress) are taken from there, not made again."""
    kept = kept or {}
    keys = [sample_key(config, line, settings) for line in settings.testset.lines]
    if all(k in kept for k in keys):  # nothing to make: no model to load
        for _ in keys:
            if on_sample is not None:
                on_sample(config.name)
        return [kept[k] for k in keys]
    model = synth.registry.resolve(None)
    synth.engine(model)  # loaded before the clock starts
    if settings.warmup:
        synth.synthesize(
            WARMUP_TEXT,
            voice=config.voice or settings.testset.lines[0].voice,
            options=replace(config.options, seed=0, qc=None),
        )
    references: dict[str, np.ndarray | None] = {}
    if settings.reference_clips and scorer.config.speaker is not None:
        shared = mean_embedding(scorer, settings.reference_clips)
        references = {config.voice or line.voice: shared for line in settings.testset.lines}
    done: list[dict[str, Any]] = []
    pending: list[tuple[dict[str, Any], np.ndarray]] = []
    for line, key in zip(settings.testset.lines, keys, strict=True):
        if key in kept:
            done.append(kept[key])
        else:
            record, audio = make_sample(synth, config, line, settings)
            record["_key"] = key
            if audio is not None:
                pending.append((record, audio))
                if settings.audio_dir is not None:
                    record["audio_file"] = save_audio(settings.audio_dir, config.name, line, audio, synth)
            else:
                save_progress(settings.progress, [record])  # a failed sample is final
            done.append(record)
        if len(pending) >= scorer.config.batch_size:
            score(scorer, synth, model, pending, references)
            save_progress(settings.progress, [r for r, _ in pending])
            pending = []
        if on_sample is not None:
            on_sample(config.name)
    score(scorer, synth, model, pending, references)
    save_progress(settings.progress, [r for r, _ in pending])
    for record in done:
        record.pop("_key", None)
    return done


def make_sample(
    synth: Any, config: EvalConfig, line: TestLine, settings: EvalSettings
) -> tuple[dict[str, Any], np.ndarray | None]:
    """One line through the stream path: its record (timings, qc) and its audio (None when it failed)."""
    voice = config.voice or line.voice
    seed = line.seed if line.seed is not None else settings.seed + line.index
    record: dict[str, Any] = {
        "config": config.name,
        "id": line.id,
        "index": line.index,
        "line": line.line,
        "text": line.text,
        "language": line.language,
        "voice": voice,
        "seed": seed,
        "status": "ok",
        "failure": None,
        "audio_file": None,
        "chunks": 0,
        "transcript": None,
        "signal": None,
        "qc": [],
        "metrics": {"failed": 0.0},
    }
    started = time.perf_counter()
    try:
        plan = synth.plan(line.text, voice=voice, options=replace(config.options, seed=seed), first_audio=True)
        # Streamed as /v1/audio/speech streams it; the plan keeps quality control's reports.
        pieces, first = [], None
        for piece in synth.pieces(plan, None):
            first = time.perf_counter() if first is None else first
            pieces.append(piece)
        if not any(plan.generated_samples):
            raise NoSpeech()
    except BarkServeError as exc:
        record.update(status="failed", failure={"code": exc.code, "message": exc.message})
        record["metrics"]["failed"] = 1.0
        return record, None
    elapsed = time.perf_counter() - started
    audio = np.concatenate(pieces)
    reports = [plan.reports[i] for i in sorted(plan.reports)]
    record.update(chunks=len(plan.token_ids), qc=[r.to_dict() for r in reports])
    seconds = len(audio) / plan.info.sample_rate
    record["metrics"].update(
        rtf=elapsed / seconds if seconds > 0 else None,
        ttfa_sec=(first or started) - started,
        qc_pass_rate=float(np.mean([r.passed for r in reports])) if reports else None,
        qc_tries=float(np.mean([len(r.attempts) for r in reports])) if reports else None,
    )
    return record, audio


def score(
    scorer: Scorer,
    synth: Any,
    model: str,
    pending: Sequence[tuple[dict[str, Any], np.ndarray]],
    references: dict[str, np.ndarray | None],
) -> None:
    """Score a batch of samples and fill in their records."""
    if not pending:
        return
    records = [r for r, _ in pending]
    rate = synth.registry.get(model).sample_rate
    scores = scorer.score_batch(
        [a for _, a in pending], [r["text"] for r in records], [r["language"] for r in records], rate=rate
    )
    for record, s in zip(records, scores, strict=True):
        ref = None
        if s.embedding is not None:
            if record["voice"] not in references:
                references[record["voice"]] = voice_embedding(scorer, synth, model, record["voice"])
            ref = references[record["voice"]]
        fill(record, s, ref)


def voice_embedding(scorer: Scorer, synth: Any, model: str, voice: str) -> np.ndarray | None:
    """The speaker embedding of a voice's own prompt, decoded to audio by the model's codec."""
    from barkserve.cloning.codec import decode_codes

    voices = synth.registry.voices(model)
    prompt = voices.load(voices.resolve_name(voice))
    loaded = synth.registry.get(model)
    audio = decode_codes(loaded.model.codec_model, prompt.fine)
    return scorer.speaker.embed([audio], loaded.sample_rate)[0]


def mean_embedding(scorer: Scorer, clips: Sequence[np.ndarray]) -> np.ndarray:
    """The L2-normalized mean of the clips' speaker embeddings (clips at Bark's 24 kHz)."""
    from barkserve.bark import SAMPLE_RATE

    mean = scorer.speaker.embed(list(clips), SAMPLE_RATE).mean(axis=0)
    return np.asarray(mean / max(float(np.linalg.norm(mean)), 1e-12), dtype=np.float32)


def fill(record: dict[str, Any], s: Scores, reference: np.ndarray | None) -> None:
    """Copy what was measured into a sample's record."""
    from barkserve.quality.speaker import similarity

    sig = s.signal
    parts = s.naturalness.parts if s.naturalness is not None else {}
    record["transcript"] = s.transcript
    if s.naturalness is not None and s.naturalness.not_scored:
        record["not_scored"] = {"mos": s.naturalness.not_scored}
    record["signal"] = {k: _round(v) for k, v in vars(sig).items()}
    record["metrics"].update(
        error=s.error,
        wer=None if uses_cer(record["language"]) else s.wer,  # one "word" per sentence in zh/ja
        cer=s.cer,
        similarity=similarity(s.embedding, reference) if s.embedding is not None and reference is not None else None,
        mos=s.mos,
        mos_sig=parts.get("sig"),
        mos_bak=parts.get("bak"),
        mos_p808=parts.get("p808"),
        duration_sec=sig.duration_sec,
        duration_ratio=sig.duration_ratio,
        longest_silence_sec=sig.longest_internal_silence_sec,
        clipping_fraction=sig.clipping_fraction,
        rms_dbfs=sig.rms_dbfs,
    )
    record["metrics"] = {k: _round(v) for k, v in record["metrics"].items()}


def save_audio(folder: Path, config: str, line: TestLine, audio: np.ndarray, synth: Any) -> str:
    """Write a sample as 16-bit WAV under folder/<config>/; returns its path relative to the report."""
    import soundfile as sf

    path = folder / config / f"{line.index + 1:04d}.wav"
    path.parent.mkdir(parents=True, exist_ok=True)
    rate = synth.registry.get(synth.registry.resolve(None)).sample_rate
    sf.write(path, np.clip(audio, -1.0, 1.0), rate, subtype="PCM_16")
    return path.relative_to(folder.parent).as_posix()


def partial_report(settings: EvalSettings, reason: str) -> dict[str, Any] | None:
    """The report of the samples an interrupted run scored (from its progress file), marked partial;
    None when none was scored."""
    kept = load_progress(settings.progress)
    samples = []
    for config in settings.configs:
        for line in settings.testset.lines:
            key = sample_key(config, line, settings)
            if key in kept:
                samples.append(kept[key])
    if not samples:
        return None
    total = len(settings.configs) * len(settings.testset.lines)
    # Aggregates and comparisons cover the configurations that have samples.
    started = tuple(c for c in settings.configs if any(s["config"] == c.name for s in samples))
    report = build_report(replace(settings, configs=started), samples)
    report["partial"] = {
        "samples": len(samples),
        "of": total,
        "reason": reason,
        "resume": "run the same command again: the scored samples are kept and only the others are made",
    }
    return report


def build_report(settings: EvalSettings, samples: list[dict[str, Any]]) -> dict[str, Any]:
    """The whole report: settings, samples, aggregates, comparisons, thresholds, quantizer."""
    from barkserve import __version__

    names = [c.name for c in settings.configs]
    aggregates = aggregate(samples, settings.resamples, CONFIDENCE)
    scorer = settings.scorer
    return {
        "schema_version": 1,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "barkserve_version": __version__,
        "settings": {
            "seed": settings.seed,
            "bootstrap_resamples": settings.resamples,
            "confidence": CONFIDENCE,
            "asr_model": scorer.asr,
            "speaker_model": scorer.speaker,
            "mos_model": scorer.mos,
            "mos_predictor": describe_mos(scorer.mos),
            "device": scorer.device,
            "similarity_reference": settings.reference_label or SIMILARITY_REFERENCE,
            "profile": {"name": settings.profile} if settings.profile else None,
        },
        "testset": {
            "source": settings.testset.source,
            "lines": len(settings.testset.lines),
            "languages": settings.testset.languages,
        },
        "configurations": [
            {"name": c.name, "settings": c.settings, "options": c.options.to_dict()} for c in settings.configs
        ],
        "samples": samples,
        "aggregates": aggregates,
        "comparisons": compare(samples, names, settings.resamples, CONFIDENCE),
        "thresholds": check_thresholds(settings.thresholds, aggregates, settings.quantizer),
        "quantizer": settings.quantizer,
    }


def quantizer_accuracy(checkpoint: Path, dataset: Path, device: str, offline: bool) -> dict[str, Any]:
    """Token accuracy of a quantizer on a dataset folder, as `barkserve quantizer eval` reports it."""
    from barkserve.cloning.dataset import load_pairs
    from barkserve.cloning.hubert import HubertFeaturizer
    from barkserve.cloning.quantizer import load_quantizer
    from barkserve.cloning.train import accuracy
    from barkserve.models import pick_device

    q = load_quantizer(checkpoint)
    q.check_features(q.info.hubert, q.info.layer, q.info.input_size)
    featurizer = HubertFeaturizer(q.info.hubert, q.info.layer, pick_device(device), local_files_only=offline)
    q.check_features(q.info.hubert, q.info.layer, featurizer.hidden_size)
    pairs = load_pairs(dataset, featurizer)
    return {
        "checkpoint": str(checkpoint),
        "dataset": str(dataset),
        "method": q.info.method,
        "utterances": len(pairs),
        "accuracy": round(accuracy(q, pairs), 4),
    }


def _round(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, float | int | np.floating):
        return value
    return round(float(value), 6)
