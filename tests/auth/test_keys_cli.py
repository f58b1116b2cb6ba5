"""`barkserve keys create|list|revoke`: the secret once on stdout, clear errors for bad input, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from barkserve.auth.keys import KeyStore
from barkserve.cli import main


def run(tmp_path: Path, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["keys", *args, "--jobs-dir", str(tmp_path / "jobs")])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.stdout, result.stderr


def test_create_prints_the_secret_once_and_list_never_shows_it(tmp_path: Path) -> None:
    code, out, err = run(tmp_path, "create", "--name", "app", "--scopes", "speak,jobs", "--rate", "60/min",
                         "--quota", "3600")  # fmt: skip
    secret = out.strip()
    assert code == 0 and secret.startswith("bk_") and "shown only now" in err
    store = KeyStore(f"sqlite:///{tmp_path / 'jobs' / 'barkserve.db'}")
    key = store.authenticate(secret)
    assert key is not None and key.scopes == {"speak", "jobs"} and key.rate_per_min == 60
    code, out, _ = run(tmp_path, "list")
    assert code == 0 and "app" in out and "60/min" in out and "3600/day" in out and "active" in out
    assert secret not in out and secret[19:] not in out
    assert run(tmp_path, "revoke", "app")[0] == 0
    assert store.authenticate(secret) is None and "revoked" in run(tmp_path, "list")[1]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--name", "bad name"], "a key name is 1-64"),
        (["--name", "x" * 200], "a key name is 1-64"),
        (["--name", "émoji-🙂"], "a key name is 1-64"),
        (["--name", "ok", "--scopes", "everything"], "scopes are a comma-separated list"),
        (["--name", "ok", "--rate", "0/min"], "rate must be a whole number from 1 to 100000"),
        (["--name", "ok", "--rate", "-1"], "rate must be a whole number"),
        (["--name", "ok", "--rate", "1" * 5000], "rate must be a whole number"),
        (["--name", "ok", "--quota", "99999999999/day"], "quota must be a whole number from 1 to 10000000"),
        (["--name", "ok", "--quota", "5/hour"], "quota is counted per day"),
    ],
)
def test_bad_input_at_create_is_a_clear_error(tmp_path: Path, args: list[str], message: str) -> None:
    code, out, err = run(tmp_path, "create", *args)
    assert code == 1 and message in err and "Traceback" not in err and out == ""


def test_revoking_an_unknown_name_is_a_clear_error(tmp_path: Path) -> None:
    code, _, err = run(tmp_path, "revoke", "nobody")
    assert code == 1 and "no active key named 'nobody'" in err


def test_a_key_made_beforehand_is_registered_from_the_environment_and_never_printed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    made = CliRunner().invoke(main, ["keys", "new-secret"])
    secret = made.stdout.strip()
    assert made.exit_code == 0 and secret.startswith("bk_")
    monkeypatch.setenv("ADMIN_KEY", secret)
    code, out, err = run(tmp_path, "create", "--name", "admin", "--scopes", "admin", "--secret-from-env", "ADMIN_KEY")
    assert code == 0 and out == "" and secret not in err and "registered key 'admin'" in err
    store = KeyStore(f"sqlite:///{tmp_path / 'jobs' / 'barkserve.db'}")
    key = store.authenticate(secret)
    assert key is not None and key.name == "admin" and key.scopes == {"admin"}
    # The same secret again (even under another name) is refused: its id is taken.
    code, _, err = run(tmp_path, "create", "--name", "other", "--secret-from-env", "ADMIN_KEY")
    assert code == 1 and "already exists" in err and secret not in err


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (None, "not set or empty"),
        ("", "not set or empty"),
        ("CHANGE-ME-to-a-key", "make one with `barkserve keys new-secret`"),
        ("bk_0123456789abcdef_short", "make one with `barkserve keys new-secret`"),
        ("bk_0123456789ABCDEF_" + "a" * 43, "make one with `barkserve keys new-secret`"),
    ],
)
def test_a_bad_key_in_the_environment_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: str | None, message: str
) -> None:
    if value is None:
        monkeypatch.delenv("ADMIN_KEY", raising=False)
    else:
        monkeypatch.setenv("ADMIN_KEY", value)
    code, out, err = run(tmp_path, "create", "--name", "admin", "--secret-from-env", "ADMIN_KEY")
    assert code == 1 and message in err and out == "" and "Traceback" not in err
    assert value is None or not value or value not in err  # a mistyped secret is not echoed either
