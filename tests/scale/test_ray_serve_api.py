"""`serve --ray` beyond /synthesize: a second model, durable jobs, cloning's 501 and API keys, on a
local 2-CPU cluster (tiny checkpoints), each answer compared with the plain server's where one exists."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
import soundfile as sf

from barkserve.auth.keys import KeyStore
from barkserve.server import create_app
from barkserve.testing.tiny import make_tiny_checkpoint
from serverproc import free_port
from support import server_config

pytestmark = pytest.mark.slow
SHORT = {"max_duration_sec": 0.2}
REPLICA_CPUS = 0.5  # one replica per model; the ingress takes no CPU


@pytest.fixture(scope="module")
def second_model(tmp_path_factory: pytest.TempPathFactory, voices_fixture_dir: Path) -> Path:
    """Another tiny checkpoint: other random weights, so its audio differs from the default model's."""
    return make_tiny_checkpoint(tmp_path_factory.mktemp("second"), presets_from=voices_fixture_dir, seed=1)


@pytest.fixture(scope="module")
def served(
    ray_cluster: Any, tiny_model_dir: Path, second_model: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    from barkserve.scale.serve import RayServeConfig, deploy

    root = tmp_path_factory.mktemp("serve-api")
    config = server_config(tiny_model_dir, root, device="cpu", port=free_port(), models=(str(second_model),))
    deploy(config, RayServeConfig(cpus_per_replica=REPLICA_CPUS))
    yield {"url": f"http://127.0.0.1:{config.port}", "config": config}


@pytest.fixture()
def plain(tiny_model_dir: Path, second_model: Path, tmp_path: Path, one_thread: None) -> Iterator[Any]:
    app = create_app(server_config(tiny_model_dir, tmp_path, device="cpu", models=(str(second_model),)),
                     start_jobs=False)  # fmt: skip
    yield app
    app.extensions["barkserve"].synthesizer.close()


def test_a_second_model_is_served_from_its_own_replica(served: dict[str, Any], plain: Any, second_model: Path) -> None:
    url, client = served["url"], plain.test_client()
    models = [m["id"] for m in requests.get(f"{url}/models", timeout=60).json()["models"]]
    assert models == list(served["config"].allowed_models) and len(models) == 2
    audio = {}
    for name in (None, str(second_model)):
        body = {"text": "Hello there.", "seed": 21, **SHORT, **({"model": name} if name else {})}
        theirs, mine = requests.post(f"{url}/synthesize", json=body, timeout=300), client.post("/synthesize", json=body)
        assert theirs.status_code == mine.status_code == 200, theirs.text
        assert theirs.json()["model"] == mine.get_json()["model"]
        audio[name] = requests.get(f"{url}{theirs.json()['url']}", timeout=60).content
        assert audio[name] == client.get(mine.get_json()["url"]).data  # the same weights made it
    assert audio[None] != audio[str(second_model)]
    unknown = requests.post(f"{url}/synthesize", json={"text": "Hi.", "model": "suno/bark"}, timeout=60)
    assert unknown.status_code == 400 and unknown.json()["error"]["code"] == "invalid_model"


def test_a_job_runs_through_the_replicas_to_the_same_audio(served: dict[str, Any], plain: Any) -> None:
    url = served["url"]
    long = "and it keeps going with enough words that no two of these sentences ever fit into one chunk together"
    body = {"text": f"The first sentence of a job {long}. And its second one {long}.", "seed": 31, **SHORT}
    created = requests.post(f"{url}/jobs", json=body, timeout=60)
    assert created.status_code == 202, created.text
    job = created.json()
    for _ in range(1200):  # a guard against a hang, not a speed check
        state = requests.get(f"{url}/jobs/{job['id']}", timeout=60).json()
        if state["state"] in ("succeeded", "failed", "cancelled"):
            break
        time.sleep(0.25)
    assert state["state"] == "succeeded" and state["chunks_done"] == state["chunks_total"] == 2, state
    theirs = requests.get(f"{url}/jobs/{job['id']}/audio?format=wav", timeout=60)
    client = plain.test_client()
    mine_job = client.post("/jobs", json=body).get_json()
    runner = plain.extensions["barkserve"].runner
    while runner.run_once():
        pass
    mine = client.get(f"/jobs/{mine_job['id']}/audio?format=wav")
    assert theirs.status_code == mine.status_code == 200
    a, _ = sf.read(io.BytesIO(theirs.content), dtype="float32")
    b, _ = sf.read(io.BytesIO(mine.data), dtype="float32")
    assert len(a) == len(b) > 0 and np.array_equal(a, b)


def test_cloning_is_a_501_that_says_what_to_do_and_claims_no_name(served: dict[str, Any]) -> None:
    url = served["url"]
    buf = io.BytesIO()
    sf.write(buf, (0.2 * np.sin(np.arange(48_000) / 10)).astype(np.float32), 24_000, format="WAV")
    for _ in range(2):  # the refused name is not left claimed: a second try is the same 501, not a 409
        got = requests.post(f"{url}/voices", files={"file": ("me.wav", buf.getvalue())}, data={"name": "me"},
                            timeout=60)  # fmt: skip
        assert got.status_code == 501, got.text
        error = got.json()["error"]
        assert error["code"] == "not_available_on_ray" and "barkserve clone" in error["message"]
    assert "me" not in str(requests.get(f"{url}/voices", timeout=60).json()["custom"])


def test_keys_made_by_another_process_are_enforced_by_the_ingress(served: dict[str, Any]) -> None:
    # Last in this module: once a key exists, every request needs one.
    url = served["url"]
    _, secret = KeyStore(served["config"].database).create("ray-speaker", "speak")  # `barkserve keys create`
    auth = {"Authorization": f"Bearer {secret}"}
    refused = requests.post(f"{url}/synthesize", json={"text": "Hi.", **SHORT}, timeout=60)
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "invalid_api_key"
    assert (
        requests.post(f"{url}/synthesize", json={"text": "Hi.", **SHORT}, headers=auth, timeout=300).status_code == 200
    )
    other_scope = requests.post(f"{url}/jobs", json={"text": "Hi."}, headers=auth, timeout=60)
    assert other_scope.status_code == 403 and other_scope.json()["error"]["code"] == "insufficient_scope"
    assert requests.get(f"{url}/health", timeout=60).status_code == 200
