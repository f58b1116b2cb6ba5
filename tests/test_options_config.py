"""SynthesisOptions and ServerConfig: validation and the one path from env and flags."""

from pathlib import Path

import pytest

from barkserve.config import EngineConfig, ServerConfig, canonical_model
from barkserve.errors import ConfigError, InvalidRequest
from barkserve.options import MAX_SEMANTIC_TOKENS, SynthesisOptions


def test_option_defaults_follow_suno() -> None:
    opts = SynthesisOptions()
    assert (opts.text_temp, opts.waveform_temp, opts.seed) == (0.7, 0.7, None)
    assert opts.max_semantic_tokens == MAX_SEMANTIC_TOKENS


def test_max_duration_caps_semantic_tokens() -> None:
    assert SynthesisOptions(max_duration_sec=1.0).max_semantic_tokens == 49
    assert SynthesisOptions(max_duration_sec=0.01).max_semantic_tokens == 1


@pytest.mark.parametrize(
    "bad",
    [
        {"text_temp": -0.1},
        {"text_temp": "hot"},
        {"waveform_temp": float("nan")},
        {"seed": -1},
        {"seed": True},
        {"seed": 1.5},
        {"min_eos_p": 0},
        {"min_eos_p": 1.5},
        {"max_duration_sec": 0},
        {"max_duration_sec": 60},
        {"colour": "blue"},
        {"speed": 10**400},  # float() of it would overflow
        {"sentence_pause_sec": -(10**400)},
    ],
)
def test_bad_options_raise_with_the_field_name(bad: dict) -> None:
    with pytest.raises(InvalidRequest) as info:
        SynthesisOptions.from_dict(bad)
    assert next(iter(bad)) in info.value.message


def test_config_env_then_flags() -> None:
    env = {"BARKSERVE_PORT": "9000", "BARKSERVE_MODELS": "small, large", "BARKSERVE_PRELOAD": "yes"}
    config = ServerConfig.from_sources({"port": None, "threads": 3}, env=env)
    assert (config.port, config.threads, config.preload) == (9000, 3, True)
    assert config.allowed_models == ("suno/bark-small", "suno/bark")
    flagged = ServerConfig.from_sources({"port": 7000, "output_dir": "out"}, env=env)
    assert flagged.port == 7000 and flagged.output_dir == Path("out")


def test_engine_settings_nest_under_flat_names() -> None:
    # One path for every setting: the engine's own go by flat flag/env names into config.engine.
    env = {"BARKSERVE_ENGINE": "reference", "BARKSERVE_MAX_BATCH_SIZE": "4", "BARKSERVE_QUANTIZE": ""}
    config = ServerConfig.from_sources({"kernels": "torch", "max_wait_ms": None}, env=env)
    assert config.engine == EngineConfig(kind="reference", max_batch_size=4, kernels="torch", quantize=None)
    assert ServerConfig.from_sources({"quantize": "int8"}, env={}).engine.quantize == "int8"
    assert ServerConfig().engine == EngineConfig() and ServerConfig().engine.kind == "batched"
    with pytest.raises(ConfigError, match="unknown setting"):
        ServerConfig.from_sources({"kind": "reference"}, env={})  # the nested name is not a setting


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"BARKSERVE_ENGINE": "fast"}, "engine"),
        ({"BARKSERVE_KERNELS": "mkl"}, "kernels"),
        ({"BARKSERVE_MAX_BATCH_SIZE": "²"}, "BARKSERVE_MAX_BATCH_SIZE"),
        ({"BARKSERVE_PORT": "eighty"}, "BARKSERVE_PORT"),
        ({"BARKSERVE_PORT": "70000"}, "port"),
        ({"BARKSERVE_DEVICE": "tpu"}, "device"),
        ({"BARKSERVE_PRELOAD": "maybe"}, "BARKSERVE_PRELOAD"),
    ],
)
def test_bad_config_names_the_setting(env: dict, needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        ServerConfig.from_sources({}, env=env)
    assert needle in info.value.message


def test_aliases() -> None:
    assert canonical_model("small") == "suno/bark-small"
    assert canonical_model("large") == "suno/bark"
    assert canonical_model("./my-bark") == "./my-bark"
