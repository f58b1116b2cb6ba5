"""`barkserve serve` in the image (BARKSERVE_REFUSE_ROOT=1) will not run as root unless told to, and says why.

The image test (test_image.py) runs the image's own entry point as root; these cover the rule itself on
any machine, root or not, by setting the effective UID the check reads.
"""

from __future__ import annotations

import importlib
from typing import Any

import pytest
from click.testing import CliRunner

from barkserve.cli import main


@pytest.fixture()
def as_uid(monkeypatch: pytest.MonkeyPatch) -> Any:
    def set_uid(uid: int) -> None:
        # The module, not the `serve` command that barkserve.cli exports under the same name.
        module = importlib.import_module("barkserve.cli.serve")
        monkeypatch.setattr(module.os, "geteuid", lambda: uid)

    return set_uid


@pytest.mark.parametrize("value", ["1", "true", "yes", "on", " 1 "])
def test_serve_refuses_root_where_the_image_asks(as_uid: Any, value: str) -> None:
    as_uid(0)
    # --max-queue-depth -1 fails the settings check after the root check: were the root check missing,
    # the command would end there instead of starting a server.
    result = CliRunner().invoke(main, ["serve", "--max-queue-depth", "-1"], env={"BARKSERVE_REFUSE_ROOT": value})
    assert result.exit_code == 1 and result.exception is not None
    message = " ".join(result.output.split())
    assert "refuses to run as root" in message and "BARKSERVE_REFUSE_ROOT=0" in message and "10001" in message
    assert "Traceback" not in result.output and "max_queue_depth" not in result.output


@pytest.mark.parametrize(("uid", "value"), [(0, "0"), (0, ""), (0, None), (10001, "1"), (43210, "1")])
def test_serve_goes_on_otherwise(as_uid: Any, uid: int, value: str | None) -> None:
    """Told to (0), outside the image (unset) or not root: the check lets `serve` go on to its settings."""
    as_uid(uid)
    env = {"BARKSERVE_REFUSE_ROOT": value} if value is not None else {}
    # Reaching the settings check (--max-queue-depth -1 fails it) shows the root check let the command through.
    result = CliRunner().invoke(main, ["serve", "--max-queue-depth", "-1"], env=env)
    assert "root" not in result.output and "max_queue_depth" in result.output, result.output
