"""Ray: `batch --ray` on a Data actor pool and `serve --ray` on Serve, against the plain path, on a
local 2-CPU cluster started once for this module (tiny checkpoint)."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import ray_gate
import requests
from click.testing import CliRunner

from barkserve.cli import main
from barkserve.scale.items import Manifest
from barkserve.server import create_app
from serverproc import free_port
from support import server_config

pytestmark = pytest.mark.slow
SHORT = {"max_duration_sec": 0.2}
STREAM_SEED, KILL_SEED = 5000, 7000
# A replica runs on 1 CPU thread (Ray sets OMP_NUM_THREADS from its CPUs); the plain path does the
# same in these tests, so float sums run in the same order and the audio is bit-identical.
REPLICA_CPUS = 0.5
BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def test_batch_on_ray_makes_the_same_files_as_locally(
    ray_cluster: Any, one_thread: None, tmp_path: Path, tiny_model_dir: Path
) -> None:
    rows = [{"text": "One.", "seed": 3}, {"text": "Two.", "voice": "nobody"}, {"text": "Three."}, {"text": "Four."}]
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps({**SHORT, **r, "format": "flac" if i == 3 else "wav"}) + "\n"
                            for i, r in enumerate(rows)))  # fmt: skip
    flags = ["--model", str(tiny_model_dir), "--offline", "--device", "cpu", "--voices-dir", str(tmp_path / "v")]
    local = CliRunner().invoke(main, ["batch", str(path), "--out", str(tmp_path / "local"), *flags])
    on_ray = CliRunner().invoke(main, ["batch", str(path), "--out", str(tmp_path / "ray"), "--ray", "--ray-replicas",
                                       "2", "--ray-cpus-per-replica", str(REPLICA_CPUS), *flags])  # fmt: skip
    assert local.exit_code == on_ray.exit_code == 1  # the unknown voice, reported in both
    assert "line 2 (line-2) failed: invalid_voice" in on_ray.output
    mine, theirs = Manifest(tmp_path / "local").records(), Manifest(tmp_path / "ray").records()
    assert theirs["line-2"]["error"] == mine["line-2"]["error"]
    for item_id in ("line-1", "line-3", "line-4"):
        assert theirs[item_id]["status"] == mine[item_id]["status"] == "ok"
        name = theirs[item_id]["file"]
        assert (tmp_path / "ray" / name).read_bytes() == (tmp_path / "local" / name).read_bytes()
        assert theirs[item_id]["worker"] != mine[item_id]["worker"]  # made in an actor, not here
    rerun = CliRunner().invoke(main, ["batch", str(path), "--out", str(tmp_path / "ray"), "--ray", *flags])
    assert "0 made, 3 already done, 1 failed" in rerun.output


@pytest.fixture(scope="module")
def served(
    ray_cluster: Any, tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    from barkserve.scale.serve import RayServeConfig, deploy

    root = tmp_path_factory.mktemp("serve")
    gates = root / "gates"
    gates.mkdir()
    config = server_config(tiny_model_dir, root, device="cpu", port=free_port())
    factory = ray_gate.GatedFactory(config, gates, frozenset({STREAM_SEED + 1, KILL_SEED}))
    deploy(config, RayServeConfig(cpus_per_replica=REPLICA_CPUS), engine_factory=factory)
    yield {"url": f"http://127.0.0.1:{config.port}", "gates": gates}


@pytest.fixture()
def plain(tiny_model_dir: Path, tmp_path: Path, one_thread: None) -> Iterator[Any]:
    app = create_app(server_config(tiny_model_dir, tmp_path, device="cpu"), start_jobs=False)
    yield app.test_client()
    app.extensions["barkserve"].synthesizer.close()


def test_serve_answers_like_the_plain_server(served: dict[str, Any], plain: Any) -> None:
    url = served["url"]
    body = {"text": "Hello there.", "voice_preset": 2, "seed": 11, **SHORT}
    mine, theirs = plain.post("/synthesize", json=body), requests.post(f"{url}/synthesize", json=body)
    assert mine.status_code == theirs.status_code == 200
    a, b = mine.get_json(), theirs.json()
    assert {k: v for k, v in a.items() if "processing" not in k and k not in ("message", "filename", "url")} == {
        k: v for k, v in b.items() if "processing" not in k and k not in ("message", "filename", "url")
    }
    assert requests.get(f"{url}{b['url']}").content == plain.get(a["url"]).data
    speech = {"model": "tts-1", "input": "Hello there. And a second sentence.", "voice": "alloy"}
    speech |= {"response_format": "pcm", "seed": 12, **SHORT}
    theirs_pcm = requests.post(f"{url}/v1/audio/speech", json=speech)
    assert theirs_pcm.status_code == 200 and theirs_pcm.content == plain.post("/v1/audio/speech", json=speech).data
    for bad in ({"text": "Hi", "voice_preset": "nobody"}, {"text": ""}, {"text": "Hi", "seed": "x"}):
        mine, theirs = plain.post("/synthesize", json=bad), requests.post(f"{url}/synthesize", json=bad)
        assert theirs.status_code == mine.status_code == 400 and theirs.json() == mine.get_json()
    metrics = requests.get(f"{url}/metrics").text
    assert 'barkserve_http_requests_total{method="POST",route="/synthesize",status="400"} 3.0' in metrics


def test_serve_streams_each_chunk_as_it_is_made(served: dict[str, Any], plain: Any) -> None:
    # The second chunk (seed + 1) is held in the replica until the first piece has reached the client.
    speech = {"model": "tts-1", "input": "Hello there. And a second sentence here.", "voice": "alloy"}
    speech |= {"response_format": "pcm", "seed": STREAM_SEED, **SHORT}
    expected = plain.post("/v1/audio/speech", json=speech).data
    with requests.post(f"{served['url']}/v1/audio/speech", json=speech, stream=True, timeout=300) as answer:
        assert answer.status_code == 200 and answer.headers["x-chunks"] == "2"
        pieces = answer.iter_content(chunk_size=None)
        first = next(pieces)
        (served["gates"] / f"open-{STREAM_SEED + 1}").touch()
        rest = b"".join(pieces)
    assert 0 < len(first) < len(expected) and first + rest == expected


def test_a_killed_replica_is_replaced_and_its_request_sent_again(served: dict[str, Any], plain: Any) -> None:
    # Serve replaces a dead replica within the ingress's retry window (REPLICA_RETRY_SEC), so on the live
    # path the answer is the retried 200, never 503. The 503 `replica_lost` is for a replica that stays
    # dead past the window: test_ray_engine.py pins it against a handle (no cluster waits 120 s).
    url, gates = served["url"], served["gates"]
    body = {"text": "Still here.", "seed": KILL_SEED, **SHORT}
    answers: list[requests.Response] = []
    caller = threading.Thread(target=lambda: answers.append(requests.post(f"{url}/synthesize", json=body)))
    caller.start()
    pid = int(ray_gate.wait_for(gates / f"started-{KILL_SEED}", "the request reaching its replica"))
    os.kill(pid, signal.SIGKILL)  # the replica dies with the request in flight
    (gates / f"open-{KILL_SEED}").touch()
    caller.join()
    answer = answers[0]
    assert answer.status_code == 200, answer.text
    # Made again, by the replica that replaced the dead one, with the same seed: the same audio.
    assert int((gates / f"started-{KILL_SEED}").read_text()) != pid
    expected = plain.post("/synthesize", json=body)
    assert requests.get(f"{url}{answer.json()['url']}").content == plain.get(expected.get_json()["url"]).data
    again = requests.post(f"{url}/synthesize", json={"text": "After.", "seed": 13, **SHORT})
    assert again.status_code == 200 and again.json()["duration_sec"] > 0


def test_ray_bench_runs_end_to_end_on_the_tiny_checkpoint(ray_cluster: Any, capsys: pytest.CaptureFixture[str]) -> None:
    # Smoke mode of benchmarks/bench_ray.py on this module's cluster (one Serve replica holds 0.5 CPU).
    spec = importlib.util.spec_from_file_location("bench_ray", BENCHMARKS / "bench_ray.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--quick", "--cpus", "1"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(result["items_per_min"]) == {"local", "ray-1", "ray-2"} and result["items"] == 4
    for row in result["items_per_min"].values():
        assert row["generation"]["median"] >= row["end_to_end"]["median"] > 0
    assert result["two_over_one_replica"] > 0 and "1 CPU cores" in result["note"]
