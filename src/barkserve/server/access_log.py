"""One access-log line per request: plain `key=value` or a JSON object; never the text, headers or key secret."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass

log = logging.getLogger("barkserve.access")


@dataclass
class RequestRecord:
    """What is known of a finished request."""

    request_id: str
    route: str  # the matched rule, e.g. /jobs/<job_id>: no ids, file names or query strings
    method: str
    status: int
    duration_s: float
    audio_sec: float | None = None
    first_audio_s: float | None = None
    key: str | None = None  # the name of the request's API key; never the key itself


def log_request(rec: RequestRecord, log_format: str) -> None:
    """Write `rec` to the `barkserve.access` logger at INFO."""
    if not log.isEnabledFor(logging.INFO):
        return
    fields = {k: round(v, 4) if isinstance(v, float) else v for k, v in asdict(rec).items() if v is not None}
    if log_format == "json":
        log.info("%s", json.dumps({"event": "request", **fields}))
    else:
        log.info("request %s", " ".join(f"{k}={v}" for k, v in fields.items()))
