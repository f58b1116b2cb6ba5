"""`--asr-model`, `--speaker-model` and `--mos-model` reach the configuration of serve, say and book."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from barkserve.cli import main

NO_SCORERS = ["--asr-model", "", "--speaker-model", "", "--mos-model", ""]
QC_OFF = "quality control (qc) is off on this server"


def test_say_takes_the_scorer_models_as_flags(tiny_model_dir: Path, tmp_path: Path) -> None:
    args = ["say", "hi", "-o", str(tmp_path / "x.wav"), "--model", str(tiny_model_dir), "--offline", "--qc"]
    result = CliRunner().invoke(main, [*args, *NO_SCORERS])  # the defaults name real models: qc would run
    assert result.exit_code == 1 and QC_OFF in result.output, result.output


def test_book_takes_the_scorer_models_as_flags(tiny_model_dir: Path, tmp_path: Path) -> None:
    text = tmp_path / "book.txt"
    text.write_text("Chapter one.\n\nHello there.\n")
    args = ["book", str(text), "-o", str(tmp_path / "book.zip"), "--model", str(tiny_model_dir), "--offline", "--qc"]
    result = CliRunner().invoke(main, [*args, "--jobs-dir", str(tmp_path / "jobs"), *NO_SCORERS])
    assert QC_OFF in result.output, result.output


def test_serve_takes_the_scorer_models_as_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[Any] = []

    class Stop(Exception):
        pass

    def create_app(config: Any) -> None:
        seen.append(config)
        raise Stop

    monkeypatch.setattr("barkserve.server.create_app", create_app)
    flags = ["--asr-model", "./asr", "--speaker-model", "resemblyzer", "--mos-model", "dnsmos"]
    result = CliRunner().invoke(main, ["serve", *flags])
    assert isinstance(result.exception, Stop), result.output
    (config,) = seen
    assert (config.asr_model, config.speaker_model, config.mos_model) == ("./asr", "resemblyzer", "dnsmos")
