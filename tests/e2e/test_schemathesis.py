"""Schemathesis against a live server on the tiny checkpoint: no 5xx, answers as /openapi.json says."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from barkserve.testing.tiny import make_tiny_ctc
from serverproc import create_key, running_server

HERE = Path(__file__).resolve().parent
CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"
# Examples per operation in the fuzzing phase; the coverage phase adds each schema's edge values.
MAX_EXAMPLES = 25
HANG_GUARD_SEC = 900  # stops a hung run; not a speed assertion


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("schemathesis")


@pytest.fixture(scope="module")
def admin_key(root: Path) -> str:
    """Keys are on (a key exists): every request carries this admin key, and the document says so."""
    return create_key(root, "schemathesis", "admin")


@pytest.fixture(scope="module")
def base(tiny_model_dir: Path, root: Path, admin_key: str, monkeypatch_module: pytest.MonkeyPatch) -> Iterator[str]:
    # Short texts and chunks keep every generated synthesis quick on the tiny model.
    monkeypatch_module.setenv("BARKSERVE_MAX_JOB_CHARS", "200")
    monkeypatch_module.setenv("BARKSERVE_OPENAI_MAX_INPUT_CHARS", "80")
    # Word captions (caption_words) align with a tiny random CTC checkpoint: the hub's cannot be fetched here.
    ctc = make_tiny_ctc(root / "ctc")
    flags = ("--max-text-chars", "80", "--max-duration-sec", "0.3", "--align-model", str(ctc))
    with running_server(tiny_model_dir, root, *flags) as url:
        yield url


@pytest.fixture(scope="module")
def monkeypatch_module() -> Iterator[pytest.MonkeyPatch]:
    with pytest.MonkeyPatch.context() as patch:
        yield patch


def test_schemathesis_finds_no_server_error_and_no_schema_mismatch(base: str, admin_key: str, tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "schemathesis.cli", "run", f"{base}/openapi.json", "--checks", CHECKS,
           "--header", f"Authorization: Bearer {admin_key}",
           "--max-examples", str(MAX_EXAMPLES), "--generation-deterministic", "--phases", "examples,coverage,fuzzing",
           "--workers", "1", "--request-timeout", "120", "--no-color"]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=HANG_GUARD_SEC)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-6000:]
    operations = sum(len(ops) for ops in requests.get(f"{base}/openapi.json", timeout=30).json()["paths"].values())
    tested = re.search(r"Tested: (\d+)", output)
    # Every operation but GET /openapi.json, which Schemathesis leaves out as the schema's own location.
    assert tested is not None and int(tested.group(1)) == operations - 1, output[-3000:]
    cases = re.search(r"(\d+) generated, (\d+) passed", output)
    assert cases is not None and cases.group(1) == cases.group(2) and int(cases.group(1)) > 10 * operations


def test_a_subnormal_temperature_is_sampling_at_its_limit(base: str, admin_key: str) -> None:
    # Found by Schemathesis: 2.2e-308 overflowed the division by the temperature (NaN, a 500).
    body = {"text": "Hello.", "waveform_temp": 2.2250738585072014e-308, "seed": 1}
    headers = {"Authorization": f"Bearer {admin_key}"}
    response = requests.post(f"{base}/synthesize", json=body, headers=headers, timeout=120)
    assert response.status_code == 200, response.text
