"""Configurations compared by `barkserve eval`: `NAME:key=value,...` flags or a JSON/TOML list.

Every value goes through one path whatever its source: server and engine keys through
`ServerConfig.from_sources`, synthesis keys through `SynthesisOptions`, qc keys through `QualityCheck`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from barkserve.errors import BarkServeError, ConfigError
from barkserve.options import SHORT_NAMES, SynthesisOptions
from barkserve.qc import QualityCheck
from barkserve.voices import is_safe_name

# Keys of a configuration -> where they go.
SERVER_KEYS = (
    "model",
    "engine",
    "quantize",
    "kernels",
    "max_batch_size",
    "max_wait_ms",
    "compile",
    "dtype",
    "attention",
    "cpu_offload",
)
OPTION_KEYS = SHORT_NAMES
QC_KEYS = {"qc_max_error": "max_error", "qc_min_similarity": "min_similarity", "qc_tries": "tries"}
KEYS = (*SERVER_KEYS, *OPTION_KEYS, "voice", "qc", *QC_KEYS)
ON, OFF = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


@dataclass(frozen=True)
class EvalConfig:
    """One configuration: its name, server settings, synthesis options and voice override."""

    name: str
    settings: dict[str, str] = field(default_factory=dict)  # as given, for the report
    server: dict[str, str] = field(default_factory=dict)  # flat ServerConfig settings
    options: SynthesisOptions = field(default_factory=SynthesisOptions)
    voice: str | None = None  # replaces every line's voice when set

    def server_key(self) -> tuple[tuple[str, str], ...]:
        """Configurations with the same server settings share one loaded model."""
        return tuple(sorted(self.server.items()))


def parse_flag(text: str) -> EvalConfig:
    """`NAME:key=value,key=value` (or just `NAME`) into an `EvalConfig`."""
    name, _, rest = text.partition(":")
    values: dict[str, str] = {}
    for item in filter(None, (p.strip() for p in rest.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--config {text!r}: items look like key=value; got {item!r}")
        values[key.strip()] = value.strip()
    return build(name.strip(), values, f"--config {text!r}")


def load_file(path: str | Path) -> list[EvalConfig]:
    """A JSON list of objects (or {"configs": [...]}) or a TOML file of `[[config]]` tables, each with a name."""
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"configs file {file} does not exist")
    text = file.read_text(encoding="utf-8-sig")
    try:
        if file.suffix.lower() == ".toml":
            import tomllib

            data: Any = tomllib.loads(text).get("config")
        else:
            data = json.loads(text)
    except ValueError as exc:  # json.JSONDecodeError and tomllib.TOMLDecodeError are ValueErrors
        raise ConfigError(f"configs file {file}: cannot parse it ({exc})") from exc
    if isinstance(data, Mapping):
        data = data.get("configs")
    if not isinstance(data, list) or not data:
        raise ConfigError(f'configs file {file}: expected a list of objects with a "name" (TOML: [[config]] tables)')
    out = []
    for i, item in enumerate(data, start=1):
        if not isinstance(item, Mapping) or not isinstance(item.get("name"), str):
            raise ConfigError(f'configs file {file}, configuration {i}: expected an object with a string "name"')
        values = {k: _text(v) for k, v in item.items() if k != "name"}
        out.append(build(item["name"], values, f"configs file {file}, configuration {i}"))
    return out


def check_unique(configs: Sequence[EvalConfig]) -> None:
    """Names must differ: they key the report."""
    names = [c.name for c in configs]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise ConfigError(f"configuration names must be unique; repeated: {duplicated}")


def build(name: str, values: Mapping[str, str], where: str) -> EvalConfig:
    """Check the name and keys, then parse each value where it belongs."""
    if not is_safe_name(name):
        raise ConfigError(f"{where}: the name must be 1-64 letters, digits, '_' or '-'; got {name!r}")
    unknown = sorted(set(values) - set(KEYS))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; keys are {list(KEYS)}")
    server = {k: v for k, v in values.items() if k in SERVER_KEYS}
    if server.get("quantize", "").lower() in ("none", "off"):
        server["quantize"] = ""
    try:
        options = SynthesisOptions(
            **{OPTION_KEYS[k]: _value(k, v) for k, v in values.items() if k in OPTION_KEYS}, qc=_qc(values)
        )
        _check_server(server)
    except BarkServeError as exc:
        raise ConfigError(f"{where}: {exc.message}") from exc
    voice = values.get("voice") or None
    return EvalConfig(name=name, settings=dict(values), server=server, options=options, voice=voice)


def _check_server(server: Mapping[str, str]) -> None:
    from barkserve.config import ServerConfig

    ServerConfig.from_sources(server, env={})  # raises ConfigError naming the setting


def _qc(values: Mapping[str, str]) -> QualityCheck | None:
    fields = {QC_KEYS[k]: _value(k, v) for k, v in values.items() if k in QC_KEYS}
    switch = values.get("qc", "on" if fields else "off").strip().lower()
    if switch not in ON + OFF:
        raise ConfigError(f"qc must be on or off; got {values['qc']!r}")
    if switch in OFF:
        if fields:
            raise ConfigError(f"qc is off but {sorted(k for k in values if k in QC_KEYS)} are set")
        return None
    return QualityCheck(**fields)


def _value(key: str, raw: str) -> Any:
    """A flag's text as the option's type; a bad value names the key."""
    text = raw.strip()
    if key == "carry_history":
        if text.lower() not in ON + OFF:
            raise ConfigError(f"{key} must be true or false; got {raw!r}")
        return text.lower() in ON
    if key in ("min_eos_p", "max_duration", "qc_max_error", "qc_min_similarity") and text.lower() in ("", "none"):
        return None
    try:
        return int(text) if key == "qc_tries" else float(text)
    except ValueError as exc:
        raise ConfigError(f"{key} must be a number; got {raw!r}") from exc


def _text(value: object) -> str:
    """A JSON/TOML value as a flag would spell it, so files and flags share one parser."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)
