"""The public facade: text + voice + options in, audio out, through the engine."""

from __future__ import annotations

import contextlib
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from barkserve.audio.dsp import change_tempo, fade_edges, silence
from barkserve.captions import Speech
from barkserve.captions.cues import chunk_spans
from barkserve.config import ScorerSettings, ServerConfig
from barkserve.engine import Engine, GeneratedAudio, GenerationRequest, QueuingEngine
from barkserve.engine.adapters import AdapterLibrary
from barkserve.engine.base import MAX_TEXT_TOKENS, Pending
from barkserve.engine.factory import make_engine
from barkserve.errors import ConfigError, InvalidRequest, NoSpeech, TextTooLong
from barkserve.markup import Lexicon, Pronouncer, Substitution, load_lexicon_file, plan_chunks, read_script
from barkserve.models import LoadedModel, ModelRegistry
from barkserve.options import SynthesisOptions
from barkserve.qc import ChunkReport, ChunkScore, Judge, best_of
from barkserve.text import Chunk, check_text, guess_language
from barkserve.voices import VoicePrompt, language_of

# A stream's first chunk aims at about this much speech: short to make, long enough to sound natural.
FIRST_AUDIO_SEC = 3.0


@dataclass(frozen=True)
class SynthesisInfo:
    """What a synthesis will be, known before any audio is made."""

    text: str  # the caller's text, unchanged
    chunks: tuple[Chunk, ...]  # slices of the normalized text, in order
    voice: str
    model: str
    seed: int
    sample_rate: int
    options: SynthesisOptions
    shown: str = ""  # the text captions show (`text` but for SSML, whose words it is); "": `text`
    # What is said differently from how it is written (lexicon, normalization, SSML), by chunk index.
    substitutions: tuple[tuple[int, Substitution], ...] = ()
    ssml: bool = False  # the text was read as SSML

    @property
    def caption_text(self) -> str:
        """The text the chunks cut (before `normalize_text`), as captions show it."""
        return self.shown or self.text


@dataclass(frozen=True, eq=False)
class SynthesisPlan:
    """A validated synthesis, ready to run chunk by chunk (used by streams and durable jobs)."""

    info: SynthesisInfo
    engine: Engine
    token_ids: tuple[np.ndarray, ...]  # per chunk, (T,) text tokens
    voice: VoicePrompt
    judge: Judge | None = None  # scores chunks when the options ask for quality control
    # The prompts of the voices the markup names (SSML <voice>), by name; other chunks speak `voice`.
    chunk_voices: dict[str, VoicePrompt] = field(default_factory=dict)
    adapter: str | None = None  # the LoRA adapter of the engine's model the chunks run with
    # A stream: its first chunk is short and runs alone, ahead of other work, for early first audio.
    first_audio: bool = False
    # Quality control's records by chunk, and the voice embedding of the first accepted chunk.
    reports: dict[int, ChunkReport] = field(default_factory=dict)
    generated_samples: list[int] = field(default_factory=list)  # per finished chunk, before pauses
    # Chunks sent to the engine, in order; and those dropped unmade because the consumer stopped early
    # (cancelled in the engine while queued or running, or never sent).
    sent: list[int] = field(default_factory=list)
    cancelled: list[int] = field(default_factory=list)
    _reference: list[np.ndarray] = field(default_factory=list)
    _prefetched: set[int] = field(default_factory=set)

    def request(self, index: int, voice: VoicePrompt | None = None, seed: int | None = None) -> GenerationRequest:
        """The engine request of chunk `index`, with its own seed (and a carried voice if given)."""
        opts = self.info.options
        seed = opts.chunk_seed(index) if seed is None else seed
        first = self.first_audio and index == 0
        return GenerationRequest(
            self.token_ids[index], self.voice_of(index, voice), replace(opts, seed=seed), first, adapter=self.adapter
        )

    def voice_of(self, index: int, carried: VoicePrompt | None = None) -> VoicePrompt:
        """The voice prompt of chunk `index`: the history carried to it, unless it starts a run in
        another voice (SSML `<voice>`), which starts from that voice's own prompt."""
        chunks = self.info.chunks
        own = self.chunk_voices.get(chunks[index].voice or "", self.voice)
        if carried is None or not self.info.options.carry_history:
            return own
        switched = index > 0 and chunks[index - 1].voice != chunks[index].voice
        return own if switched else carried

    def piece(self, index: int, audio: np.ndarray) -> np.ndarray:
        """A generated chunk as delivered: lead-in silence (markup before the first words), tempo, edge
        fades, then the pause (the usual one, or the markup's; none after the last unless marked)."""
        rate, chunk = self.info.sample_rate, self.info.chunks[index]
        out = fade_edges(change_tempo(audio, rate, chunk.speed or self.info.options.speed), rate)
        pause, lead = self.pause_samples(index), len(silence(chunk.lead, rate)) if chunk.lead else 0
        if not pause and not lead:
            return out
        return np.concatenate([np.zeros(lead, np.float32), out, np.zeros(pause, dtype=np.float32)])

    def speech(self, pieces: Sequence[np.ndarray]) -> Speech:
        """The plan's pieces as made (each chunk's audio, then its pause) as the speech captions read:
        the one place chunks become caption spans (/synthesize, streams, jobs)."""
        rate = self.info.sample_rate
        spans = chunk_spans([len(p) for p in pieces], [self.pause_samples(i) for i in range(len(pieces))], rate)
        audio = np.concatenate(pieces) if len(pieces) else np.zeros(0, np.float32)
        return Speech(audio, rate, self.info.caption_text, self.info.voice, self.info.chunks, tuple(spans))

    def pause_samples(self, index: int) -> int:
        """The length of the pause that ends chunk `index`'s piece: the markup's (`[pause]`, `<break>`), else
        the usual pause, none after the last chunk."""
        marked = self.info.chunks[index].pause
        if marked is not None:  # a stated pause lasts what it says, whatever the speed
            return len(silence(marked, self.info.sample_rate))
        if index == len(self.token_ids) - 1:
            return 0
        # The pause keeps its place in the rhythm: at speed 2 it is half as long, like the speech.
        opts = self.info.options
        return len(silence(opts.sentence_pause_sec / opts.speed, self.info.sample_rate))

    def finish_chunk(self, index: int, out: GeneratedAudio, voice: VoicePrompt) -> ChunkAudio:
        """Chunk `index` as delivered, and the voice of the next chunk (its history when carried).

        With quality control, `out` is judged first and the chunk regenerated while it fails.
        """
        report = None
        voice = self.voice_of(index, voice)
        if self.info.options.qc is not None:
            out, report = self._checked(index, out, voice)
        following = out.as_history(voice) if self.info.options.carry_history else voice
        self.generated_samples.append(len(out.audio))
        return ChunkAudio(index, self.piece(index, out.audio), out, following, report)

    def prefetch_scores(self, futures: Mapping[int, SentChunk], waiting: int) -> None:
        """With quality control, hand the judge every made chunk from `waiting` on at once, so that they
        share its scorers' forward passes (chunks of a batch are made together).

        Chunk `waiting` is waited for first (it is needed next anyway); the engine marks every chunk of a
        batch made before it wakes anyone, so the chunks made with it are handed over with it.
        """
        prefetch = getattr(self.judge, "prefetch", None)
        if self.info.options.qc is None or prefetch is None:
            return
        if waiting in futures:
            with contextlib.suppress(Exception):  # raised again when the chunk is finished
                futures[waiting].result()
        language = language_of(self.info.voice)
        made = []
        for j in sorted(futures):
            if j >= waiting and j not in self._prefetched and futures[j].done():
                self._prefetched.add(j)
                try:
                    out = futures[j].result()
                except Exception:  # a failed generation surfaces when its chunk is finished
                    continue
                made.append((out.audio, self.info.sample_rate, self.info.chunks[j].spoken, language))
        if made:
            prefetch(made)

    def _checked(self, index: int, out: GeneratedAudio, voice: VoicePrompt) -> tuple[GeneratedAudio, ChunkReport]:
        """Best of up to `qc.tries` generations of chunk `index` (seeds chunk_seed, +1, +2, ...)."""
        check, judge = self.info.options.qc, self.judge
        if check is None or judge is None:
            raise ConfigError("quality control was asked for but this synthesizer has no judge")
        chunk = self.info.chunks[index]
        text, language = chunk.said, language_of(chunk.voice or self.info.voice)
        reference = self._reference[0] if self._reference else None

        def score(audio: np.ndarray) -> ChunkScore:
            return judge.score(audio, self.info.sample_rate, text, language, reference)

        def generate(seed: int) -> GeneratedAudio:
            return self.engine.generate(self.request(index, voice, seed))

        seed = self.info.options.chunk_seed(index)
        kept, report = best_of(generate, lambda o: o.audio, seed, score, check, index, first=out)
        if report.passed and not self._reference and report.score.embedding is not None:
            self._reference.append(report.score.embedding)
        self.reports[index] = report
        return kept, report

    def run_chunk(self, index: int, voice: VoicePrompt) -> ChunkAudio:
        """Generate chunk `index` with `voice` (the plan's voice, or the history carried to it)."""
        return self.finish_chunk(index, self.engine.generate(self.request(index, voice)), voice)


@dataclass(frozen=True, eq=False)
class ChunkAudio:
    """One chunk of a synthesis: its delivered audio and what the engine made."""

    index: int
    audio: np.ndarray  # (samples,) float32: tempo, fades and the following pause applied
    generated: GeneratedAudio
    next_voice: VoicePrompt  # the voice prompt of chunk index + 1
    report: ChunkReport | None = None  # quality control's record, when it ran


@dataclass(frozen=True, eq=False)
class SentChunk:
    """A chunk in the engine: a cancellable engine task when the engine has `submit`, else a pool future."""

    future: Future[GeneratedAudio] | None = None
    task: Pending | None = None  # the queuing engine's task
    timeout: float | None = None

    def result(self) -> GeneratedAudio:
        """Wait for the chunk's audio."""
        if self.task is not None:
            return self.task.wait(self.timeout)
        assert self.future is not None  # one of the two is always set
        return self.future.result()

    def done(self) -> bool:
        """True when the chunk's audio is made (or its generation failed)."""
        if self.task is not None:
            return bool(self.task.finished)
        assert self.future is not None
        return self.future.done()

    def cancel(self) -> bool:
        """Drop the chunk unless its audio is made; True when it was dropped."""
        if self.task is not None:
            if self.task.finished:
                return False
            self.task.cancel()  # the engine drops it at its next step, queued or running
            return True
        assert self.future is not None
        return self.future.cancel()


class PriorityGate:
    """Interactive requests go first: background work waits while any is in flight."""

    def __init__(self) -> None:
        self._active = 0
        self._idle = threading.Condition()

    @contextlib.contextmanager
    def interactive(self) -> Iterator[None]:
        with self._idle:
            self._active += 1
        try:
            yield
        finally:
            with self._idle:
                self._active -= 1
                self._idle.notify_all()

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until no interactive request is running (True), or `timeout` passes (False)."""
        with self._idle:
            return self._idle.wait_for(lambda: self._active == 0, timeout)


@dataclass(frozen=True, eq=False)
class SynthesisResult:
    """Audio for one text, and how it was made."""

    audio: np.ndarray  # (samples,) float32 mono
    sample_rate: int
    text: str
    voice: str
    model: str
    seed: int
    processing_time_sec: float
    chunk_count: int = 1
    qc: tuple[ChunkReport, ...] = ()  # quality control's record per chunk, when it ran
    chunks: tuple[Chunk, ...] = ()  # slices of the normalized text, in order
    # Each chunk's (start, end) in seconds in `audio`: its speech, without the pause after it.
    chunk_spans: tuple[tuple[float, float], ...] = ()

    @property
    def duration_sec(self) -> float:
        return len(self.audio) / self.sample_rate


class Synthesizer:
    """Owns the model registry and one engine per loaded model.

    Example:
        synth = Synthesizer(ServerConfig(model="./tiny-bark"))
        result = synth.synthesize("Hello [laughs]", voice=3, options={"seed": 7})
        info, pieces = synth.stream(long_text)  # audio chunk by chunk, as it is made
    """

    def __init__(
        self,
        config: ServerConfig | None = None,
        registry: ModelRegistry | None = None,
        engine_factory: Callable[[LoadedModel], Engine] | None = None,
        judge: Judge | None = None,
    ) -> None:
        self.config = config or ServerConfig()
        self.judge = judge  # quality control's scorer; made on first use when None
        self._own_judge = judge is None  # the judge is made from the configuration's scorer models
        # LoRA adapters (`adapters` setting): read and checked now, served by their model's engine.
        self.adapters = AdapterLibrary(self.config.adapters_dir)
        self.registry = registry or ModelRegistry(self.config, adapters=self.adapters)
        self._engine_factory = engine_factory or self._make_engine
        self._engines: dict[str, Engine] = {}
        self._lock = threading.Lock()
        self.gate = PriorityGate()
        self._lexicon: tuple[tuple[str, int], Lexicon] | None = None  # the server's, by file and change time
        # Chunks of one request are sent to the engine together so a batching engine can batch them.
        self._pool = ThreadPoolExecutor(max_workers=max(4, self.config.threads * 2), thread_name_prefix="chunk")

    def _make_engine(self, loaded: LoadedModel) -> Engine:
        """The configured engine of a loaded model, with the adapters served on it."""
        adapters = [self.adapters.get(name) for name in self.registry.adapters_of(loaded.name)]
        return make_engine(loaded, self.config.engine, adapters)

    def engine(self, model: str) -> Engine:
        """The engine of an allowed model (an adapter's: its model's), loading the model on first use."""
        model = self.registry.split(model)[0]
        loaded = self.registry.get(model)
        with self._lock:
            if model not in self._engines:
                self._engines[model] = self._engine_factory(loaded)
            return self._engines[model]

    def close(self) -> None:
        """Stop the engines' threads (finishing what is in flight) and the chunk pool."""
        with self._lock:
            engines, self._engines = list(self._engines.values()), {}
        for engine in engines:
            engine.close()
        self._pool.shutdown(wait=False, cancel_futures=True)

    def engines(self) -> dict[str, Engine]:
        """The engines of the models loaded so far, by model (a copy: the table grows on first use)."""
        with self._lock:
            return dict(self._engines)

    def queued(self) -> int:
        """Chunks waiting for a slot in the engines' queues (engines without a queue count 0)."""
        return sum(engine.load().queued for engine in self.engines().values())

    def __enter__(self) -> Synthesizer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def synthesize(
        self,
        text: object,
        voice: object = None,
        model: object = None,
        options: SynthesisOptions | Mapping[str, Any] | None = None,
        on_chunk: Callable[[int, int, float], None] | None = None,
    ) -> SynthesisResult:
        """Speak `text` (of any length) with `voice` on `model`.

        Args:
            text: What to say; long text is split at sentence ends into chunks Bark can speak.
            voice: Integer 0-9, preset name, or custom voice name; None means the default voice.
            model: An allowlisted model name or alias; None means the default model.
            options: `SynthesisOptions` or a dict of its fields.
            on_chunk: Called as `on_chunk(done, total, audio_seconds_so_far)` after each chunk.

        Returns:
            A `SynthesisResult`: float32 audio, the chunks joined with pauses.

        Raises:
            InvalidRequest: for bad text, voice, model or options.
            ModelUnavailable: when the model cannot be loaded.
            NoSpeech: when every chunk ended before any sound (no audio at all).
        """
        started = time.perf_counter()
        plan = self.plan(text, voice=voice, model=model, options=options)
        info, pieces = plan.info, self.pieces(plan, None)
        parts, seconds = [], 0.0
        for i, piece in enumerate(pieces):
            parts.append(piece)
            seconds += len(piece) / info.sample_rate
            if on_chunk is not None:
                on_chunk(i + 1, len(info.chunks), seconds)
        if not any(plan.generated_samples):  # pauses alone are no speech: many chunks fail like one
            raise NoSpeech()
        speech = plan.speech(parts)
        return SynthesisResult(
            audio=speech.audio,
            sample_rate=info.sample_rate,
            text=info.caption_text,  # the caller's text; for SSML, its words (what the captions show)
            voice=info.voice,
            model=info.model,
            seed=info.seed,
            processing_time_sec=time.perf_counter() - started,
            chunk_count=len(info.chunks),
            qc=tuple(plan.reports[i] for i in sorted(plan.reports)),
            chunks=info.chunks,
            chunk_spans=speech.chunk_spans,
        )

    def plan(
        self,
        text: object,
        voice: object = None,
        model: object = None,
        options: SynthesisOptions | Mapping[str, Any] | None = None,
        first_audio: bool = False,
    ) -> SynthesisPlan:
        """Validate the request, load what it needs, and cut the text into chunks.

        The text may be of any length (the server's limits are its edges'); a piece of it without
        any break longer than Bark can speak in one generation is refused.
        """
        opts = options if isinstance(options, SynthesisOptions) else SynthesisOptions.from_dict(options or {})
        if opts.max_duration_sec is None and self.config.max_duration_sec is not None:
            opts = replace(opts, max_duration_sec=self.config.max_duration_sec)
        model_name = self.registry.resolve(model)
        adapter = self.registry.split(model_name)[1]
        voices = self.registry.voices(model_name)
        voice_name = voices.resolve_name(voice)
        text = check_text(text)  # the text last: what it is spoken with decides how it is cut

        guessed = guess_language(text)  # for custom voices, whose language is not in their name

        def language(name: str | None) -> str:
            return language_of(name or voice_name) or guessed

        script = read_script(text, opts.ssml, voices.resolve_name, language)
        prompt = voices.load(voice_name)
        named = {c.voice for c in script.runs if c.voice is not None and c.voice != voice_name}
        engine = self.engine(model_name)
        planned = plan_chunks(
            script,
            Pronouncer(self.server_lexicon().merged(opts.lexicon), opts.normalize),
            language,
            lambda s: len(engine.tokenize(s)),
            first_seconds=FIRST_AUDIO_SEC if first_audio else None,
        )
        chunks = tuple(planned.chunks)
        token_ids = tuple(engine.tokenize(c.said) for c in chunks)
        longest = max(len(ids) for ids in token_ids)
        if longest > MAX_TEXT_TOKENS:
            raise TextTooLong(
                f"a piece of the text without any break is {longest} tokens; Bark speaks at most "
                f"{MAX_TEXT_TOKENS} in one generation. Add sentence or clause breaks."
            )
        opts = opts.with_seed(opts.seed if opts.seed is not None else secrets.randbelow(2**31))
        shown = script.shown if script.ssml else ""
        subs = tuple(planned.substitutions)
        info = SynthesisInfo(
            text, chunks, voice_name, model_name, opts.seed or 0, engine.sample_rate, opts, shown, subs, script.ssml
        )
        if opts.qc is not None and opts.qc.min_mos is not None and self._own_judge and not self.config.mos_model:
            raise InvalidRequest("qc.min_mos needs a MOS predictor and this server has none: set mos_model")
        judge = self.quality_judge() if opts.qc is not None else None
        own = {name: voices.load(name) for name in sorted(named)}
        return SynthesisPlan(
            info, engine, token_ids, prompt, judge=judge, first_audio=first_audio, chunk_voices=own, adapter=adapter
        )

    def server_lexicon(self) -> Lexicon:
        """The server's lexicon (setting lexicon_file), read again when the file changes."""
        path = self.config.lexicon_file
        if not path:
            return Lexicon()
        try:
            stamp = Path(path).stat().st_mtime_ns
        except OSError as exc:
            raise ConfigError(f"lexicon_file {path!r} cannot be read: {exc}") from exc
        with self._lock:
            if self._lexicon is None or self._lexicon[0] != (path, stamp):
                self._lexicon = ((path, stamp), load_lexicon_file(path))
            return self._lexicon[1]

    def quality_judge(self) -> Judge:
        """The judge of quality control: the one given, else the scorer models of the configuration."""
        with self._lock:
            if self.judge is None:
                self.judge = make_judge(self.config.scorers)
            return self.judge

    def stream(
        self,
        text: object,
        voice: object = None,
        model: object = None,
        options: SynthesisOptions | Mapping[str, Any] | None = None,
        lookahead: int | None = None,
        first_audio: bool = True,
    ) -> tuple[SynthesisInfo, Iterator[np.ndarray]]:
        """Validate everything now, then return the info and a lazy generator of audio pieces.

        Each piece is one chunk's audio (faded at its edges, tempo applied) followed by the pause
        that separates it from the next chunk; their concatenation is the whole audio.
        `lookahead` bounds how many chunks run ahead of the one being delivered (None: all at once,
        best throughput; 1: the first piece arrives as soon as the first chunk is done).
        With `first_audio` the first chunk is the first sentence (or its first clauses, about
        FIRST_AUDIO_SEC of speech) and runs alone, ahead of other queued work, so the first piece
        comes soon; the other chunks follow as usual.
        """
        plan = self.plan(text, voice=voice, model=model, options=options, first_audio=first_audio)
        return plan.info, self.pieces(plan, lookahead)

    def pieces(self, plan: SynthesisPlan, lookahead: int | None = None) -> Iterator[np.ndarray]:
        """The audio of a plan, chunk by chunk, as `stream` delivers it; the plan collects the records."""
        n, carry = len(plan.token_ids), plan.info.options.carry_history
        # Fixed voice: chunks are independent, so up to `lookahead` + 1 of them are in the engine
        # at once (all of them when None). Carried history: each chunk waits for the one before.
        window = 1 if carry else n if lookahead is None else lookahead + 1
        futures: dict[int, SentChunk] = {}
        voice, delivered = plan.voice, 0
        with self.gate.interactive():
            try:
                for i in range(n):
                    # First audio: the other chunks wait until the first is made, so it runs alone.
                    ahead = 1 if plan.first_audio and i == 0 else window
                    for j in range(i, min(n, i + ahead)):
                        if j not in futures:
                            futures[j] = self._send(plan, j, voice)
                    plan.prefetch_scores(futures, i)
                    chunk = plan.finish_chunk(i, futures.pop(i).result(), voice)
                    voice, delivered = chunk.next_voice, i + 1
                    yield chunk.audio
            finally:
                # The consumer went away: chunks queued or running in the engine are cancelled there.
                for j in range(delivered, n):
                    never_sent = j >= len(plan.sent)  # chunks are sent in order
                    if never_sent or (j in futures and futures[j].cancel()):
                        plan.cancelled.append(j)

    def _send(self, plan: SynthesisPlan, index: int, voice: VoicePrompt) -> SentChunk:
        """Send chunk `index` to the engine: as a task that can be cancelled, when the engine can submit."""
        plan.sent.append(index)
        request = plan.request(index, voice)
        if not isinstance(plan.engine, QueuingEngine):
            return SentChunk(future=self._pool.submit(plan.engine.generate, request))
        return SentChunk(task=plan.engine.submit(request), timeout=self.config.engine.request_timeout_s)


def make_judge(settings: ScorerSettings) -> Judge:
    """Quality control's judge over the configured ASR, speaker and MOS models.

    The MOS predictor (small, shipped in its package) is loaded now, so that one that cannot load fails
    the request before anything is generated; ASR and speaker models load on first use.
    """
    from barkserve.quality.judge import ScorerJudge
    from barkserve.quality.scorer import ScorerConfig, shared_scorer

    if not settings.asr_model and not settings.speaker_model and not settings.mos_model:
        raise InvalidRequest(
            "quality control (qc) is off on this server: no asr_model, speaker_model or mos_model is set"
        )
    scorer_config = ScorerConfig(
        asr=settings.asr_model or None,
        speaker=settings.speaker_model or None,
        mos=settings.mos_model or None,
        device=settings.device,
        offline=settings.offline,
    )
    scorer = shared_scorer(scorer_config)  # one per process: models loaded once, chunks batched across requests
    if scorer_config.mos is not None:
        _ = scorer.mos
    return ScorerJudge(scorer)
