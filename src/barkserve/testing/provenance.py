"""Where a measurement came from: the commit the benchmarks record beside their figures."""

from __future__ import annotations

import subprocess


def git_commit() -> str:
    """The short commit of the checkout the process runs in; "unknown" without git or a .git folder."""
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True)
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
