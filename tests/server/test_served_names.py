"""Models are shown and requested by a served name, never by the server's folders (--served-model-name)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from barkserve.config import ServerConfig
from barkserve.errors import ConfigError
from support import FakeEngine

FAST = {"max_duration_sec": 0.1, "seed": 3}


def no_paths(text: str, folder: Path) -> None:
    """Neither the folder nor any folder above it (its parents are this machine's) appears in `text`."""
    assert str(folder.parent) not in text and str(folder.resolve().parent) not in text, text[:800]


def test_a_folder_model_is_shown_by_its_folder_name(make_app: Any, tiny_model_dir: Path) -> None:
    client = make_app(engine_factory=FakeEngine).test_client()
    name = tiny_model_dir.name
    health = client.get("/health")
    assert health.get_json()["default_model"] == name and list(health.get_json()["models"]) == [name]
    wrong = client.post("/synthesize", json={"text": "Hi.", "model": "no-such-model"})
    assert wrong.status_code == 400 and wrong.get_json()["error"]["code"] == "invalid_model"
    assert f"['{name}']" in wrong.get_json()["error"]["message"]
    speech = {"model": "no-such-model", "input": "Hi.", "voice": "alloy"}
    answers = [health, wrong, client.get("/models"), client.get("/v1/models"), client.get("/openapi.json"),
               client.post("/v1/audio/speech", json=speech), client.get("/voices?model=nope")]  # fmt: skip
    for answer in answers:
        no_paths(answer.get_data(as_text=True), tiny_model_dir)
    made = client.post("/synthesize", json={"text": "Hi.", "model": name, **FAST})
    assert made.status_code == 200 and made.get_json()["model"] == name


def test_served_model_name_replaces_the_folder_everywhere(make_app: Any, tiny_model_dir: Path) -> None:
    client = make_app(engine_factory=FakeEngine, served_model_name="house-bark").test_client()
    assert client.get("/health").get_json()["default_model"] == "house-bark"
    assert [m["id"] for m in client.get("/models").get_json()["models"]] == ["house-bark"]
    assert "house-bark" in [m["id"] for m in client.get("/v1/models").get_json()["data"]]
    for model in ("house-bark", str(tiny_model_dir)):  # the folder itself still means it (old jobs name it)
        made = client.post("/synthesize", json={"text": "Hi.", "model": model, **FAST})
        assert made.status_code == 200 and made.get_json()["model"] == "house-bark"
    job = client.post("/jobs", json={"text": "Hi.", **FAST}).get_json()
    no_paths(str(client.get(f"/jobs/{job['id']}").get_json()), tiny_model_dir)
    wrong = client.post("/synthesize", json={"text": "Hi.", "model": tiny_model_dir.name})
    assert wrong.status_code == 400 and "['house-bark']" in wrong.get_json()["error"]["message"]


def test_an_unavailable_folder_model_is_reported_without_its_path(make_app: Any, tmp_path: Path) -> None:
    broken = tmp_path / "models" / "broken-bark"
    broken.mkdir(parents=True)
    (broken / "config.json").write_text("{ not json")
    client = make_app(model=str(broken)).test_client()
    made = client.post("/synthesize", json={"text": "Hi.", **FAST})
    assert made.status_code == 503 and "'broken-bark'" in made.get_json()["error"]["message"]
    health = client.get("/health")
    assert health.status_code == 503 and health.get_json()["models"]["broken-bark"]["state"] == "unavailable"
    for answer in (made, health):
        no_paths(answer.get_data(as_text=True), broken)


def test_served_names_come_from_flags_env_and_models_items(tmp_path: Path) -> None:
    env = {"BARKSERVE_MODEL": str(tmp_path / "a" / "bark"), "BARKSERVE_SERVED_MODEL_NAME": "mine"}
    config = ServerConfig.from_sources({"models": "small,other=large"}, env=env)
    assert config.model_sources == {"mine": str(tmp_path / "a" / "bark"), "suno/bark-small": "suno/bark-small",
                                    "other": "suno/bark"}  # fmt: skip
    assert config.served_name_of("large") == "other" and config.served_name_of("mine") == "mine"
    assert ServerConfig.from_sources({"served_model_name": "flag"}, env=env).default_model == "flag"
    assert ServerConfig(model="suno/bark").default_model == "suno/bark"  # a hub id is its own name
    with pytest.raises(ConfigError, match="both be served as 'bark'"):
        ServerConfig(model=str(tmp_path / "a" / "bark"), models=(str(tmp_path / "b" / "bark"),))
    with pytest.raises(ConfigError, match="name=model"):
        ServerConfig(models=("=large",))
