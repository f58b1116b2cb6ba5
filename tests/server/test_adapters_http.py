"""LoRA adapters over HTTP: `<model>+<adapter>` in /synthesize, /v1/audio/speech and /jobs, listed by served
name in /models and /v1/models, refused like an unknown model when the folder or the allowlist lacks it."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any, ClassVar

import pytest
import soundfile as sf

from barkserve.testing.tiny import make_tiny_adapter
from support import FakeEngine

FAST = {"max_duration_sec": 0.1, "seed": 3}
LONG = " ".join(f"This is sentence number {i} of a text long enough to need several chunks." for i in range(12))


@pytest.fixture(scope="module")
def adapters_dir(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    """alice and bob of the tiny checkpoint; carol of suno/bark-small, which these servers do not allow."""
    root = tmp_path_factory.mktemp("adapters")
    make_tiny_adapter(root, "alice", tiny_model_dir, seed=1)
    make_tiny_adapter(root, "bob", tiny_model_dir, stages=("coarse",), seed=2)
    carol = make_tiny_adapter(root, "carol", tiny_model_dir, seed=3)
    info = json.loads((carol / "adapter.json").read_text())
    (carol / "adapter.json").write_text(json.dumps({**info, "base_model": "suno/bark-small"}))
    return root


class RecordingEngine(FakeEngine):
    """A FakeEngine that every test of this module can read back (the last one made)."""

    made: ClassVar[list[RecordingEngine]] = []

    def __init__(self, loaded: Any) -> None:
        super().__init__(loaded)
        RecordingEngine.made.append(self)


def adapters_seen() -> list[str | None]:
    return [r.adapter for r in RecordingEngine.made[-1].requests]


def error_of(response: Any) -> dict[str, Any]:
    assert response.status_code == 400, response.get_data(as_text=True)[:300]
    error: dict[str, Any] = response.get_json()["error"]
    return error


def test_an_adapter_is_a_model_name_in_every_synthesis_route(make_app: Any, adapters_dir: Path, tiny_model_dir: Path):
    app = make_app(engine_factory=RecordingEngine, adapters=str(adapters_dir))
    client, name = app.test_client(), tiny_model_dir.name
    made = client.post("/synthesize", json={"text": LONG, "model": f"{name}+alice", **FAST})
    assert made.status_code == 200 and made.get_json()["model"] == f"{name}+alice"
    seen = adapters_seen()
    assert len(seen) > 1 and set(seen) == {"alice"}  # every chunk runs with the adapter
    client.post("/synthesize", json={"text": "Hi.", "model": name, **FAST})
    assert adapters_seen()[-1] is None
    speech = {"model": f"{name}+bob", "input": "Hi.", "voice": "alloy", "response_format": "wav"}
    spoken = client.post("/v1/audio/speech", json=speech)
    assert spoken.status_code == 200 and sf.info(io.BytesIO(spoken.data)).samplerate == 24_000
    assert adapters_seen()[-1] == "bob"
    job = client.post("/jobs", json={"text": "A job.", "model": f"{name}+alice", **FAST}).get_json()
    assert job["model"] == f"{name}+alice"
    app.extensions["barkserve"].runner.run_once(job["id"])
    assert client.get(f"/jobs/{job['id']}").get_json()["state"] == "succeeded"
    assert adapters_seen()[-1] == "alice"


def test_the_model_lists_name_adapters_by_served_name_only(make_app: Any, adapters_dir: Path, tiny_model_dir: Path):
    client = make_app(
        engine_factory=RecordingEngine, adapters=str(adapters_dir), served_model_name="house"
    ).test_client()
    data = client.get("/v1/models").get_json()["data"]
    assert [m["id"] for m in data] == ["tts-1", "house", "house+alice", "house+bob"]
    assert all(m["object"] == "model" for m in data)
    rows = client.get("/models").get_json()["models"]
    assert [(r["id"], r.get("base_model"), r.get("adapter")) for r in rows] == [
        ("house", None, None), ("house+alice", "house", "alice"), ("house+bob", "house", "bob")
    ]  # fmt: skip
    assert all(r["state"] == "not_loaded" for r in rows)
    for answer in (client.get("/v1/models"), client.get("/models"), client.get("/openapi.json")):
        text = answer.get_data(as_text=True)
        assert str(adapters_dir) not in text and str(tiny_model_dir) not in text
    made = client.post("/synthesize", json={"text": "Hi.", "model": "house+alice", **FAST})
    assert made.status_code == 200 and made.get_json()["model"] == "house+alice"


def test_an_unknown_or_disallowed_adapter_is_an_invalid_model(make_app: Any, adapters_dir: Path, tiny_model_dir: Path):
    client = make_app(engine_factory=RecordingEngine, adapters=str(adapters_dir)).test_client()
    name = tiny_model_dir.name
    for model in (f"{name}+dave", f"{name}+carol", "suno/bark-small+carol", "small+carol", f"{name}+"):
        error = error_of(client.post("/synthesize", json={"text": "Hi.", "model": model}))
        assert error["code"] == "invalid_model" and repr(model) in error["message"]
        assert f"adapters: ['{name}+alice', '{name}+bob']" in error["message"]
    speech = {"model": f"{name}+dave", "input": "Hi.", "voice": "alloy"}
    assert error_of(client.post("/v1/audio/speech", json=speech))["code"] == "invalid_model"
    assert error_of(client.post("/jobs", json={"text": "Hi.", "model": f"{name}+dave"}))["code"] == "invalid_model"
    # Without --adapters the same names are unknown models.
    bare = make_app(engine_factory=RecordingEngine).test_client()
    error = error_of(bare.post("/synthesize", json={"text": "Hi.", "model": f"{name}+alice"}))
    assert error["code"] == "invalid_model" and "adapters" not in error["message"]
    assert [m["id"] for m in bare.get("/v1/models").get_json()["data"]] == ["tts-1", name]


def test_the_allowlist_decides_which_models_adapters_are_served(
    make_app: Any, adapters_dir: Path, tiny_model_dir: Path
):
    name = tiny_model_dir.name
    # carol was trained on suno/bark-small: served once that model is allowed, under its served name.
    client = make_app(engine_factory=RecordingEngine, adapters=str(adapters_dir), models=("small",)).test_client()
    listed = [m["id"] for m in client.get("/v1/models").get_json()["data"]]
    assert listed == ["tts-1", name, f"{name}+alice", f"{name}+bob", "suno/bark-small", "suno/bark-small+carol"]
    resolve = client.application.extensions["barkserve"].synthesizer.registry.resolve
    assert resolve("small+carol") == resolve("suno/bark-small+carol") == "suno/bark-small+carol"  # aliases too
    error = error_of(client.post("/synthesize", json={"text": "Hi.", "model": "suno/bark-small+alice"}))
    assert error["code"] == "invalid_model"  # alice belongs to the tiny model, not to suno/bark-small


def test_a_real_engine_speaks_with_the_adapter(make_app: Any, adapters_dir: Path, tiny_model_dir: Path) -> None:
    client = make_app(adapters=str(adapters_dir)).test_client()
    greedy = {"text_temp": 0.0, "waveform_temp": 0.0, "max_duration_sec": 0.3, "seed": 1, "format": "wav"}
    out = client.application.extensions["barkserve"].config.output_dir
    audio = {}
    for model in (tiny_model_dir.name, f"{tiny_model_dir.name}+alice"):
        made = client.post("/synthesize", json={"text": "Hello there.", "model": model, **greedy})
        assert made.status_code == 200, made.get_data(as_text=True)
        audio[model] = sf.read(out / made.get_json()["filename"])[0]
        assert len(audio[model]) > 0
    base, adapted = audio.values()
    assert len(base) != len(adapted) or (base != adapted).any()  # the adapter changed the speech
    speech = {"model": f"{tiny_model_dir.name}+alice", "input": "Hello.", "voice": "alloy", "response_format": "wav"}
    spoken = client.post("/v1/audio/speech", json={**speech, "max_duration_sec": 0.3, "seed": 1})
    assert spoken.status_code == 200 and sf.info(io.BytesIO(spoken.data)).frames > 0
