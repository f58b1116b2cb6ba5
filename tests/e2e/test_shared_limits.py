"""Per-key limits shared by two real server processes through a real redis-server (`--limits-storage`)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import requests

from serverproc import create_key, running_server
from support import missing

RATE = 4  # requests per minute of the key


@pytest.fixture()
def redis_url() -> str:
    """The redis:// URI of a running redis-server (.ci/run starts one with .ci/redis.sh)."""
    url = os.environ.get("BARKSERVE_TEST_REDIS_URL", "")
    if not url:
        missing("set BARKSERVE_TEST_REDIS_URL to test shared limits on Redis (.ci/redis.sh starts one)")
    return url


def test_two_processes_share_one_keys_request_counter(tiny_model_dir: Path, tmp_path: Path, redis_url: str) -> None:
    jobs = tmp_path / "jobs"  # one key database for both processes
    secret = create_key(tmp_path, "shared", "speak", "--rate", f"{RATE}/min")
    common = ("--jobs-dir", str(jobs), "--limits-storage", redis_url, "--auth", "on")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    headers = {"Authorization": f"Bearer {secret}"}
    with (
        running_server(tiny_model_dir, tmp_path / "a", *common) as a,
        running_server(tiny_model_dir, tmp_path / "b", *common) as b,
    ):
        # Alternate between the processes: each sees only half of the key's requests itself.
        statuses = [requests.get(f"{base}/models", headers=headers, timeout=60) for base in [a, b] * RATE]
        assert [r.status_code for r in statuses] == [200] * RATE + [429] * RATE
        refused = statuses[-1]
        assert refused.json()["error"]["code"] == "rate_limit_exceeded"
        assert int(refused.headers["Retry-After"]) >= 1
        # Other keys and public routes are not affected.
        assert requests.get(f"{b}/health", timeout=60).status_code == 200
