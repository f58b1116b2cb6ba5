"""What the views share, and `state()` to reach it from a request."""

from __future__ import annotations

from dataclasses import dataclass, field

from flask import current_app

from barkserve.audio.files import OutputFolder
from barkserve.cloning.clone import Cloner
from barkserve.config import ServerConfig
from barkserve.jobs import JobRunner, JobStore
from barkserve.server.streams import StreamLog
from barkserve.synthesizer import Synthesizer

EXTENSION = "barkserve"


@dataclass
class AppState:
    """The app's resources; stored in `app.extensions["barkserve"]` by `create_app`."""

    config: ServerConfig
    synthesizer: Synthesizer
    jobs: JobStore
    runner: JobRunner
    cloner: Cloner
    outputs: OutputFolder
    streams: StreamLog = field(default_factory=StreamLog)


def state() -> AppState:
    """The current app's `AppState` (inside a request or an app context)."""
    found: AppState = current_app.extensions[EXTENSION]
    return found
