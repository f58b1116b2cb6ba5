"""`--ray` without Ray, at a malformed address, or at an address where nothing listens: clear errors, at once."""

from __future__ import annotations

import json
import socket
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from barkserve.cli import main
from barkserve.errors import RayUnavailable
from barkserve.scale.cluster import connect, host_port


def closed_port() -> int:
    """A port that nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture()
def items(tmp_path: Path) -> Path:
    path = tmp_path / "in.jsonl"
    path.write_text(json.dumps({"text": "Hello."}) + "\n")
    return path


def command_args(command: str, items: Path, tmp_path: Path) -> list[str]:
    """A command line of `command` that would write into tmp_path/out."""
    texts = tmp_path / "texts.txt"
    texts.write_text("Hello.\n", encoding="utf-8")
    return {
        "batch": ["batch", str(items), "--out", str(tmp_path / "out")],
        "serve": ["serve"],
        "make-dataset": ["quantizer", "make-dataset", "--texts", str(texts), "--out", str(tmp_path / "out")],
        "book": ["book", str(texts), "-o", str(tmp_path / "out" / "book.m4b"), "--jobs-dir", str(tmp_path / "out")],
    }[command]


COMMANDS = ["batch", "serve", "make-dataset", "book"]


@pytest.mark.parametrize("command", COMMANDS)
def test_an_unreachable_address_is_reported_without_waiting_for_ray(
    command: str, items: Path, tmp_path: Path, tiny_model_dir: Path
) -> None:
    port = closed_port()
    args = command_args(command, items, tmp_path)
    result = CliRunner().invoke(
        main, [*args, "--model", str(tiny_model_dir), "--offline", "--ray", f"127.0.0.1:{port}"]
    )
    assert result.exit_code == 1
    assert f"no Ray cluster answers at 127.0.0.1:{port}" in result.output and "ray start --head" in result.output
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("address", ["10.0.0.5", "host:port", "ray://:10001", "h:70000"])
def test_a_malformed_address_says_what_an_address_looks_like(address: str) -> None:
    with pytest.raises(RayUnavailable) as info:
        host_port(address)
    assert "HOST:PORT" in info.value.message and repr(address) in info.value.message


ENDPOINTS = [("10.0.0.5:6379", ("10.0.0.5", 6379)), ("ray://head:10001", ("head", 10001)), ("auto", None), ("", None)]


@pytest.mark.parametrize(("address", "endpoint"), ENDPOINTS)
def test_addresses_name_their_endpoint(address: str, endpoint: tuple[str, int] | None) -> None:
    assert host_port(address) == endpoint


@pytest.mark.parametrize("command", COMMANDS)
def test_without_ray_installed_the_flag_says_how_to_install_it(
    command: str, items: Path, tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now fails as if it were not installed
    with pytest.raises(RayUnavailable) as info:
        connect("")
    assert "pip install 'barkserve[ray]'" in info.value.message
    args = command_args(command, items, tmp_path)
    result = CliRunner().invoke(main, [*args, "--model", str(tiny_model_dir), "--offline", "--ray"])
    assert result.exit_code == 1 and "pip install 'barkserve[ray]'" in result.output
