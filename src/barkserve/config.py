"""Server configuration: one frozen dataclass, filled from defaults, `BARKSERVE_*` env, then flags."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from functools import cached_property
from pathlib import Path
from typing import Any

from barkserve.errors import ConfigError
from barkserve.options import MAX_DURATION_SEC, strict_from_mapping

ENV_PREFIX = "BARKSERVE_"
MODEL_ALIASES = {
    "small": "suno/bark-small",
    "bark-small": "suno/bark-small",
    "large": "suno/bark",
    "bark": "suno/bark",
}
# OpenAI's voices mapped to Bark's English presets (documented in docs/http-api.md; configurable).
OPENAI_VOICES = {
    "alloy": "v2/en_speaker_6",
    "ash": "v2/en_speaker_3",
    "ballad": "v2/en_speaker_7",
    "coral": "v2/en_speaker_9",
    "echo": "v2/en_speaker_0",
    "fable": "v2/en_speaker_4",
    "onyx": "v2/en_speaker_1",
    "nova": "v2/en_speaker_5",
    "sage": "v2/en_speaker_2",
    "shimmer": "v2/en_speaker_9",
    "verse": "v2/en_speaker_8",
}
DEVICES = ("auto", "cpu", "cuda", "mps")
DTYPES = ("auto", "float32", "float16", "bfloat16")
ENGINES = ("batched", "reference")
KERNELS = ("auto", "packed", "torch")
QUANTIZE = (None, "int8")
ATTENTION = ("eager", "flash_attention_2")
LOG_FORMATS = ("plain", "json")
AUTH_MODES = ("auto", "on", "off")
# Naturalness predictors whose weights ship in their packages (quality/mos.py); "" is none. Also taken:
# UTMOS_PREFIX + the path of a UTMOS22 checkpoint file (quality/utmos.py), e.g. "utmos:/models/utmos.pt".
MOS_MODELS = ("", "dnsmos", "distillmos")
UTMOS_PREFIX = "utmos:"


def is_mos_model(name: str) -> bool:
    """Whether `name` is a mos_model value: one of MOS_MODELS, or "utmos:" and a path."""
    return name in MOS_MODELS or (name.startswith(UTMOS_PREFIX) and bool(name[len(UTMOS_PREFIX) :].strip()))


# Flat setting names (flags, BARKSERVE_* variables) of the nested engine settings.
ENGINE_SETTINGS = {
    "engine": "kind",
    "max_batch_size": "max_batch_size",
    "max_wait_ms": "max_wait_ms",
    "compile": "compile",
    "fused": "fused",
    "cuda_graphs": "cuda_graphs",
    "quantize": "quantize",
    "kernels": "kernels",
    "request_timeout_s": "request_timeout_s",
    "overlap_fine": "overlap_fine",
    "auto_batch": "auto_batch",
}


@dataclass(frozen=True)
class EngineConfig:
    """Which engine runs the model, and how the batched engine schedules and runs work."""

    # "batched" (continuous batching, KV-cached) or "reference" (transformers' own stages, one
    # request at a time). Flag and env name: --engine, BARKSERVE_ENGINE.
    kind: str = "batched"
    # Most rows one stage (semantic or coarse) runs at once; the fine stage and codec use it too.
    # With `auto_batch`, the ceiling of the rows sized from the device's free memory.
    max_batch_size: int = 8
    # Size each stage's rows from the device's free memory when the engine starts: on a CUDA device
    # as many rows as fit in 90% of `torch.cuda.mem_get_info`'s free bytes at two times a row's KV
    # caches (semantic + coarse; the other half for prefills, the fine stage and the codec), up to
    # `max_batch_size` (so set that to 64 or 128 as well); an error when not even one row fits. No
    # effect on a CPU, where compute, not memory, bounds a batch: `max_batch_size` rows as set.
    auto_batch: bool = False
    # How long an idle engine waits for more requests before it starts a batch (milliseconds).
    max_wait_ms: float = 10.0
    # Run the per-token decode step over fixed shapes under `torch.compile` (CUDA graphs on a GPU).
    compile: bool = False
    # The decoder blocks compiled by inductor (its kernels fused; without inductor's own CUDA graphs),
    # captured inside the engine's per-bucket CUDA graphs on a GPU (engine/decode.py, mode "fused").
    # Tokens equal to the reference in fp32 (tested on the CPU); not yet measured on a GPU. On a CPU in
    # fp32 it needs kernels "torch". Overrides `compile`.
    fused: bool = False
    # On a CUDA device, replay the per-token decode step from CUDA graphs captured per shape bucket
    # (engine/decode.py); no effect on a CPU. Ignored when `compile` is on. Measured on an H100
    # (benchmarks/results/h100-gpu-check-2-graphs.json): tokens equal to the reference in fp32, the
    # decode step 0.70 ms instead of 4.5 ms eager at batch 1.
    cuda_graphs: bool = True
    # "int8": dynamic int8 quantization of the Linear layers on the CPU. It changes the outputs (no
    # longer token-identical to the fp32 reference); None keeps the checkpoint's weights as they are.
    quantize: str | None = None
    # Matrix kernels (engine/kernels.py): "auto" runs fp32 CPU Linear layers through oneDNN on the
    # checkpoint's weights, "packed" on a packed copy (faster batched decode, ~1 GB more for
    # bark-small), "torch" runs the checkpoint's nn.Linear layers as they are.
    kernels: str = "auto"
    # Seconds `generate` waits for its result before it cancels the request; None waits for ever.
    request_timeout_s: float | None = None
    # Run the fine stage and the codec on a worker thread (its own CUDA stream on a GPU) beside the
    # semantic and coarse decode steps, instead of inside the decode loop where they stall every
    # row's steps (engine/finisher.py). Off: the old, serial loop (for comparisons; same tokens).
    overlap_fine: bool = True

    def __post_init__(self) -> None:
        if self.kind not in ENGINES:
            raise ConfigError(f"engine must be one of {ENGINES}; got {self.kind!r}")
        if (
            not isinstance(self.max_batch_size, int)
            or isinstance(self.max_batch_size, bool)
            or not (1 <= self.max_batch_size <= 256)
        ):
            raise ConfigError(f"max_batch_size must be an integer from 1 to 256; got {self.max_batch_size!r}")
        if not isinstance(self.max_wait_ms, int | float) or not 0 <= self.max_wait_ms <= 10_000:
            raise ConfigError(f"max_wait_ms must be a number from 0 to 10000; got {self.max_wait_ms!r}")
        if self.quantize not in QUANTIZE:
            raise ConfigError(f"quantize must be 'int8' or empty (none); got {self.quantize!r}")
        if self.kernels not in KERNELS:
            raise ConfigError(f"kernels must be one of {', '.join(KERNELS)}; got {self.kernels!r}")
        for name in ("compile", "fused", "cuda_graphs", "overlap_fine", "auto_batch"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name} must be true or false; got {getattr(self, name)!r}")
        if self.request_timeout_s is not None and (
            not isinstance(self.request_timeout_s, int | float) or self.request_timeout_s <= 0
        ):
            raise ConfigError(f"request_timeout_s must be a positive number or None; got {self.request_timeout_s!r}")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EngineConfig:
        """Build a config from a mapping; unknown keys are an error."""
        config: EngineConfig = strict_from_mapping(cls, data, ConfigError, "engine setting")
        return config


@dataclass(frozen=True)
class ScorerSettings:
    """The models that hear audio (quality control, `barkserve eval`, word captions) and where they run;
    a view of `ServerConfig`, which holds the defaults."""

    asr_model: str
    speaker_model: str
    align_model: str
    device: str
    offline: bool
    mos_model: str = ""


@dataclass(frozen=True)
class JobSettings:
    """Durable jobs: where they are kept, for how long, and how a crashed worker's jobs are taken over;
    a view of `ServerConfig`, which holds the defaults."""

    database: str  # SQLAlchemy URL
    jobs_dir: Path
    lease_sec: float
    retention_hours: float
    notify: NotifySettings | None = None  # None: no notifications are sent from this process


@dataclass(frozen=True)
class NotifySettings:
    """Job notifications: the webhook signing secret (empty: kept in the database), the private networks
    webhooks may reach, attempts and timeout, and the Audiobookshelf server (empty url: none); a view of
    `ServerConfig`, which holds the defaults."""

    webhook_secret: str = field(default="", repr=False)
    allow_networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    max_attempts: int = 8
    timeout_sec: float = 10.0
    audiobookshelf_url: str = ""
    audiobookshelf_token: str = field(default="", repr=False)
    audiobookshelf_library: str = ""
    audiobookshelf_folder: str = ""


@dataclass(frozen=True)
class CloneSettings:
    """Voice cloning: the model whose codec encodes the voice, HuBERT and the quantizer, where voices are
    saved, the largest recording; a view of `ServerConfig`, which holds the defaults."""

    model: str  # the default model's canonical name
    voices_dir: Path
    hubert: str
    hubert_layer: int
    quantizer: str
    device: str
    offline: bool
    max_upload_bytes: int


def canonical_model(name: str) -> str:
    """Expand an alias (`small`, `large`) to its hub id; other names are returned unchanged."""
    return MODEL_ALIASES.get(name.strip(), name.strip())


def served_name(source: str) -> str:
    """The default served name of a model: a hub id (`org/name`) itself, a local folder its folder's name."""
    path = Path(source).expanduser()
    local = path.is_dir() or source.startswith(("/", ".", "~")) or "\\" in source or source.count("/") != 1
    return (path.resolve().name or source) if local else source


@dataclass(frozen=True)
class ServerConfig:
    """Everything `barkserve serve` and `barkserve say` can be told."""

    # Address and worker threads of the WSGI server.
    host: str = "127.0.0.1"
    port: int = 8000
    threads: int = 8
    # Open connections the server holds at once (idle ones included); past it new ones wait.
    max_connections: int = 1000
    # A connection that sends nothing for this long is closed (slow or half-open clients).
    idle_timeout_sec: float = 30.0
    # Host names the server answers to (the Host header, any port), comma-separated; empty means
    # localhost, 127.0.0.1, [::1] and `host`. A POST or DELETE from a web page (its Origin) must come
    # from one of them. "*" turns both checks off, for a reverse proxy that filters Host itself.
    allowed_hosts: tuple[str, ...] = ()
    # Default model: hub id, alias (`small`, `large`) or local folder.
    model: str = "suno/bark-small"
    # The name the default model is served under: answers, /health, /models and errors show it, and a
    # request's `model` field names it (like vLLM's --served-model-name). Empty: a hub id is served
    # under its id, a local folder under the folder's name (a server's paths are never shown).
    served_model_name: str = ""
    # Models a request's `model` field may name; the default model is always allowed. An item
    # `name=source` serves `source` under `name`.
    models: tuple[str, ...] = ()
    # A folder of LoRA adapter folders (`barkserve finetune promote`). An adapter trained on an allowed
    # model is served as "<that model's served name>+<adapter>"; empty: no adapters.
    adapters: str = ""
    device: str = "auto"
    dtype: str = "auto"
    attention: str = "eager"
    cpu_offload: bool = False
    # Generation engine and its settings (flat names: engine, max_batch_size, max_wait_ms, compile,
    # quantize, kernels, request_timeout_s).
    engine: EngineConfig = field(default_factory=EngineConfig)
    # Load every allowed model at start-up instead of on first use.
    preload: bool = False
    # Never contact the Hugging Face Hub; use the local cache or folders only.
    offline: bool = False
    output_dir: Path = Path("output")
    # /synthesize files are removed this long after they are written, and new requests are refused
    # (507) while the folder holds max_output_mb.
    output_retention_hours: float = 168.0
    max_output_mb: int = 10_240
    voices_dir: Path = Path("voices")
    default_voice: str = "v2/en_speaker_6"
    # Default cap on each chunk's audio, in seconds, for requests that set none (empty: Bark's ~15 s).
    max_duration_sec: float | None = None
    # Longest accepted `text` of /synthesize, in characters.
    max_text_chars: int = 20_000
    # Pronunciation lexicon of the whole server: a JSON file of respellings ({"en": {"Nguyen": "win"}});
    # API keys' lexicons (PUT /lexicon) and a request's `lexicon` go over it. Empty: none.
    lexicon_file: str = ""
    # Voice cloning: HuBERT (hub id or folder), its layer (0: the quantizer's own), and the
    # audio-to-semantic quantizer checkpoint (empty: clone coarse and fine prompts only).
    hubert: str = "facebook/hubert-base-ls960"
    # Quality control (the `qc` request option) and `barkserve eval`: the Whisper checkpoint that
    # hears the words and the speaker-verification model that compares voices (hub id or folder;
    # empty: that measure is not taken).
    asr_model: str = "openai/whisper-large-v3-turbo"
    speaker_model: str = "microsoft/wavlm-base-plus-sv"
    # Naturalness for quality control's min_mos and `barkserve eval`: a MOS predictor whose weights ship
    # in its package, so it works offline: "dnsmos" (Microsoft DNSMOS; `pip install 'barkserve[mos]'`),
    # "distillmos" (Distill-MOS); or "utmos:PATH", UTMOS22 weights in a file you downloaded (never
    # fetched; docs/evaluation.md#utmos); or empty for none. speaker_model also takes "resemblyzer" (shipped weights).
    mos_model: str = ""
    # Word-level captions (caption_words): a character CTC checkpoint (Wav2Vec2ForCTC and its processor;
    # hub id or folder) that aligns the audio to its text. The default reads English letters only;
    # empty turns word captions off.
    align_model: str = "facebook/wav2vec2-base-960h"
    hubert_layer: int = 0
    quantizer: str = ""
    # Durable jobs: database (empty: SQLite in jobs_dir), their files, how long results are kept.
    database_url: str = ""
    jobs_dir: Path = Path("jobs")
    job_retention_hours: float = 168.0
    # A job whose process stopped renewing its lease this long ago is taken over (crash recovery).
    job_lease_sec: float = 60.0
    # Longest text of one job, in characters (a long book is ~1-2 million).
    max_job_chars: int = 5_000_000
    # Largest accepted upload (POST /jobs text file, POST /voices recording), in bytes.
    max_upload_bytes: int = 16_777_216
    # Largest accepted book file (`barkserve book`, a POST /jobs book upload), in bytes. An upload is
    # also bounded by max_upload_bytes: raise both for larger books.
    max_book_bytes: int = 16_777_216
    # Longest accepted `input` of /v1/audio/speech (OpenAI's own limit is 4,096).
    openai_max_input_chars: int = 4096
    # Most characters of all `input`s of one POST /v1/audio/speech/batch together (each item is also
    # bounded by openai_max_input_chars).
    speech_batch_max_chars: int = 32_768
    # Most custom voices one API key (or, with keys off, everyone together) may store through
    # POST /voices; 0: no cap.
    max_voices_per_key: int = 0
    # OpenAI voice names -> Bark voices, as "alloy=v2/en_speaker_6,echo=v2/en_speaker_0,..." (merged
    # over the built-in table).
    openai_voices: str = ""
    # Largest accepted request body, in bytes.
    max_body_bytes: int = 1_048_576
    # The one-line-per-request access log: "plain" (key=value) or "json" (a JSON object per line).
    log_format: str = "plain"
    # API keys (`barkserve keys create`): "auto" enforces them when the server listens on a
    # non-loopback address (it refuses to start there without a key) or once any key was ever
    # created; "on" always; "off" never (a gateway in front authenticates; everything is one tenant).
    auth: str = "auto"
    # GET /metrics without a key; false: it needs an admin key.
    public_metrics: bool = True
    # Where the per-key request and audio counters live, as a `limits` storage URI: memory:// (this
    # process), or e.g. redis://host:6379 so that several processes share them.
    limits_storage: str = "memory://"
    # New synthesis (/synthesize, /v1/audio/speech, POST /jobs) gets a 503 with Retry-After while more
    # than this many chunks wait in the engine's queue, each synthesis request in progress counting as
    # one more; 0: no bound.
    max_queue_depth: int = 256
    # Job notifications (POST /jobs `webhook`, `barkserve book --notify`): a JSON POST when a job ends,
    # signed with HMAC-SHA256 in the Standard Webhooks layout, retried with backoff. Each API key signs
    # with its own secret (GET /webhooks/secret), derived from this one; empty: a random one made at
    # first use and kept in the database, so every process sharing it signs alike.
    webhook_secret: str = field(default="", repr=False)
    # A webhook must point at a public address: private, loopback, link-local and reserved ones are
    # refused (at submission and again at each delivery) unless inside one of these networks, as CIDRs,
    # comma-separated (e.g. 10.0.0.0/8,127.0.0.1/32).
    webhook_allow_networks: tuple[str, ...] = ()
    # Attempts per notification before it is marked failed (backoff 5 s, 30 s, 2 min, 10 min, 30 min,
    # then hourly), and how long one attempt may take.
    webhook_max_attempts: int = 8
    webhook_timeout_sec: float = 10.0
    # Audiobookshelf: a finished book job that asks for it (`audiobookshelf: true`, `barkserve book
    # --audiobookshelf`) uploads its .m4b to this server's /api/upload, into a library and folder (ids),
    # with this API token (set it in BARKSERVE_AUDIOBOOKSHELF_TOKEN, not on a command line).
    audiobookshelf_url: str = ""
    audiobookshelf_token: str = field(default="", repr=False)
    audiobookshelf_library: str = ""
    audiobookshelf_folder: str = ""

    def __post_init__(self) -> None:
        checks = [
            (1 <= self.port <= 65535, f"port must be 1-65535; got {self.port}"),
            (1 <= self.threads <= 256, f"threads must be 1-256; got {self.threads}"),
            (16 <= self.max_connections <= 100_000, f"max_connections must be 16-100000; got {self.max_connections}"),
            (1 <= self.idle_timeout_sec <= 3600, f"idle_timeout_sec must be 1-3600; got {self.idle_timeout_sec}"),
            (self.device in DEVICES, f"device must be one of {DEVICES}; got {self.device!r}"),
            (self.dtype in DTYPES, f"dtype must be one of {DTYPES}; got {self.dtype!r}"),
            (self.attention in ATTENTION, f"attention must be one of {ATTENTION}; got {self.attention!r}"),
            (self.max_text_chars >= 1, f"max_text_chars must be >= 1; got {self.max_text_chars}"),
            (self.max_body_bytes >= 1024, f"max_body_bytes must be >= 1024; got {self.max_body_bytes}"),
            (self.max_book_bytes >= 1, f"max_book_bytes must be >= 1; got {self.max_book_bytes}"),
            (bool(self.model.strip()), "model must not be empty"),
            (self.openai_max_input_chars >= 1, "openai_max_input_chars must be >= 1"),
            (self.speech_batch_max_chars >= 1, "speech_batch_max_chars must be >= 1"),
            (self.max_voices_per_key >= 0, "max_voices_per_key must be >= 0 (0: no cap)"),
            (self.job_retention_hours > 0, f"job_retention_hours must be > 0; got {self.job_retention_hours}"),
            (self.output_retention_hours > 0, f"output_retention_hours must be > 0; got {self.output_retention_hours}"),
            (self.max_output_mb >= 1, f"max_output_mb must be >= 1; got {self.max_output_mb}"),
            (self.job_lease_sec >= 1, f"job_lease_sec must be >= 1; got {self.job_lease_sec}"),
            (self.log_format in LOG_FORMATS, f"log_format must be one of {LOG_FORMATS}; got {self.log_format!r}"),
            (self.auth in AUTH_MODES, f"auth must be one of {AUTH_MODES}; got {self.auth!r}"),
            (
                is_mos_model(self.mos_model),
                f"mos_model must be one of {MOS_MODELS} or 'utmos:' and a checkpoint path; got {self.mos_model!r}",
            ),
            (
                1 <= self.webhook_max_attempts <= 50,
                f"webhook_max_attempts must be 1-50, not {self.webhook_max_attempts}",
            ),
            (
                0 < self.webhook_timeout_sec <= 300,
                f"webhook_timeout_sec must be in (0, 300], not {self.webhook_timeout_sec}",
            ),
            (0 <= self.max_queue_depth <= 1_000_000, f"max_queue_depth must be 0-1000000; got {self.max_queue_depth}"),
            ("://" in self.limits_storage, f"limits_storage must be a URI like memory://; got {self.limits_storage!r}"),
            (
                self.max_duration_sec is None or 0 < self.max_duration_sec <= MAX_DURATION_SEC,
                f"max_duration_sec must be in (0, {MAX_DURATION_SEC:.1f}]; got {self.max_duration_sec}",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)
        _ = self.notify  # checks the webhook networks and the Audiobookshelf settings now
        if self.served_model_name != self.served_model_name.strip():
            raise ConfigError(f"served_model_name must not start or end with spaces; got {self.served_model_name!r}")
        _ = self.model_sources  # checks the served names now

    @cached_property
    def model_sources(self) -> dict[str, str]:
        """Served name -> source (hub id or folder) of every model a request may use, the default first."""
        pairs = [(self.served_model_name.strip(), canonical_model(self.model))]
        for item in filter(None, (m.strip() for m in self.models)):
            name, sep, source = item.rpartition("=") if "=" in item else ("", "", item)
            if sep and not (name.strip() and source.strip()):
                raise ConfigError(f"models items are a model or 'name=model'; got {item!r}")
            pairs.append((name.strip(), canonical_model(source)))
        served: dict[str, str] = {}
        for name, source in pairs:
            name = name or served_name(source)
            if served.get(name, source) != source:
                raise ConfigError(
                    f"two models would both be served as {name!r} ({served[name]} and {source}); give one "
                    f"another name with --served-model-name or a 'name=model' item of --models"
                )
            if source not in served.values():
                served.setdefault(name, source)
        return served

    @property
    def default_model(self) -> str:
        """The served name of the default model."""
        return next(iter(self.model_sources))

    @property
    def allowed_models(self) -> tuple[str, ...]:
        """Served names of every model a request may use, the default first."""
        return tuple(self.model_sources)

    def model_source(self, name: str) -> str:
        """The hub id or folder a served name is loaded from (any other name: itself, aliases expanded)."""
        return self.model_sources.get(name) or canonical_model(name)

    def served_name_of(self, requested: str) -> str | None:
        """The served name a request's `model` means (a served name, an alias, or a model's source); None if none."""
        if requested in self.model_sources:
            return requested
        wanted = canonical_model(requested)
        return next((name for name, source in self.model_sources.items() if source == wanted), None)

    @property
    def adapters_dir(self) -> Path | None:
        """The folder of adapter folders, or None when adapters are off."""
        return Path(self.adapters).expanduser() if self.adapters.strip() else None

    @property
    def max_request_bytes(self) -> int:
        """The largest body any route accepts (an upload plus its multipart framing)."""
        return max(self.max_body_bytes, self.max_upload_bytes) + 64 * 1024

    @property
    def scorers(self) -> ScorerSettings:
        """The settings of the models that hear audio: all that the scorers and the aligner receive."""
        return ScorerSettings(
            self.asr_model, self.speaker_model, self.align_model, self.device, self.offline, self.mos_model
        )

    @property
    def cloning(self) -> CloneSettings:
        """The settings of voice cloning: all that the cloner receives."""
        return CloneSettings(
            self.default_model, self.voices_dir, self.hubert, self.hubert_layer, self.quantizer, self.device,
            self.offline, self.max_upload_bytes,
        )  # fmt: skip

    @property
    def jobs(self) -> JobSettings:
        """The settings of durable jobs: all that the job runner receives."""
        return JobSettings(self.database, self.jobs_dir, self.job_lease_sec, self.job_retention_hours, self.notify)

    @property
    def notify(self) -> NotifySettings:
        """The settings of job notifications (webhooks, Audiobookshelf): all that the notifier receives."""
        networks = []
        for item in self.webhook_allow_networks:
            try:
                networks.append(ipaddress.ip_network(item, strict=False))
            except ValueError as exc:
                raise ConfigError(f"webhook_allow_networks items are CIDRs like 10.0.0.0/8; got {item!r}") from exc
        abs_fields = (self.audiobookshelf_url, self.audiobookshelf_token, self.audiobookshelf_library,
                      self.audiobookshelf_folder)  # fmt: skip
        if any(abs_fields) and not all(abs_fields):
            raise ConfigError(
                "Audiobookshelf needs all of audiobookshelf_url, audiobookshelf_token, audiobookshelf_library "
                "and audiobookshelf_folder (the library's and folder's ids); some are empty"
            )
        if self.audiobookshelf_url and not self.audiobookshelf_url.startswith(("http://", "https://")):
            raise ConfigError(f"audiobookshelf_url must start with http(s)://; got {self.audiobookshelf_url!r}")
        return NotifySettings(
            self.webhook_secret, tuple(networks), self.webhook_max_attempts, self.webhook_timeout_sec,
            self.audiobookshelf_url.rstrip("/"), self.audiobookshelf_token, self.audiobookshelf_library,
            self.audiobookshelf_folder,
        )  # fmt: skip

    @property
    def database(self) -> str:
        """The SQLAlchemy URL of the job store."""
        return self.database_url or f"sqlite:///{(self.jobs_dir / 'barkserve.db').as_posix()}"

    @property
    def openai_voice_table(self) -> dict[str, str]:
        """OpenAI voice name -> Bark voice, the built-in table updated by `openai_voices`."""
        table = dict(OPENAI_VOICES)
        for item in filter(None, (p.strip() for p in self.openai_voices.split(","))):
            name, sep, voice = item.partition("=")
            if not sep or not name.strip() or not voice.strip():
                raise ConfigError(f"openai_voices items look like 'alloy=v2/en_speaker_6'; got {item!r}")
            table[name.strip()] = voice.strip()
        return table

    @classmethod
    def from_sources(
        cls, overrides: Mapping[str, Any] | None = None, env: Mapping[str, str] | None = None
    ) -> ServerConfig:
        """Defaults, then `BARKSERVE_<NAME>` variables, then `overrides` (flags; None means unset).

        Names are flat: the engine's settings go by their own names (`max_batch_size`, and
        `engine` for its kind), whether they come from a flag or the environment.
        """
        env = os.environ if env is None else env
        overrides = overrides or {}
        server_fields = {f.name: f for f in fields(cls) if f.name != "engine"}
        engine_fields = {f.name: f for f in fields(EngineConfig)}
        unknown = sorted(set(overrides) - set(server_fields) - set(ENGINE_SETTINGS))
        if unknown:
            raise ConfigError(f"unknown setting(s): {unknown}")
        values: dict[str, Any] = {}
        engine: dict[str, Any] = {}
        for name, kind, target in [
            *((n, f.type, values) for n, f in server_fields.items()),
            *((n, engine_fields[attr].type, engine) for n, attr in ENGINE_SETTINGS.items()),
        ]:
            raw = overrides.get(name)
            if raw is None and ENV_PREFIX + name.upper() in env:
                raw = env[ENV_PREFIX + name.upper()]
            if raw is not None:
                target[ENGINE_SETTINGS.get(name, name) if target is engine else name] = _parse(name, kind, raw)
        return cls(**values, engine=EngineConfig(**engine))


def _parse(name: str, kind: object, raw: Any) -> Any:
    """Turn a flag or env string into the field's type; a bad value names the setting."""
    kind = str(kind)
    try:
        if kind == "bool":
            if isinstance(raw, bool):
                return raw
            text = str(raw).strip().lower()
            if text not in ("1", "true", "yes", "on", "0", "false", "no", "off"):
                raise ValueError(text)
            return text in ("1", "true", "yes", "on")
        if kind == "int":
            return int(raw)
        if kind.startswith("float"):
            return None if str(raw).strip() == "" else float(raw)
        if kind == "Path":
            return Path(raw)
        if kind == "str | None":
            return None if str(raw).strip() == "" else str(raw)
        if kind.startswith("tuple"):
            items = raw.split(",") if isinstance(raw, str) else list(raw)
            return tuple(s.strip() for s in items if s.strip())
        return str(raw)
    except ValueError as exc:
        raise ConfigError(f"setting {name} ({ENV_PREFIX}{name.upper()}): cannot read {raw!r} as {kind}") from exc
