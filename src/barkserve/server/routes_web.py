"""The web page: GET / and its static files under /web/ (package data in server/web/)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint

bp = Blueprint("web", __name__, static_folder="web", static_url_path="/web")


@bp.get("/")
def index() -> Any:
    """Serve the single-page UI that drives the HTTP API from the same origin."""
    response = bp.send_static_file("index.html")
    # The page loads nothing from elsewhere. An eval report opened on the page is shown in a sandboxed
    # frame that inherits this policy, and its styles are inline: hence 'unsafe-inline' for styles only.
    response.headers["Content-Security-Policy"] = (
        "default-src 'self'; style-src 'self' 'unsafe-inline'; media-src 'self' blob:; img-src 'self' data:; "
        "object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
    )
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response
