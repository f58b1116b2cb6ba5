"""Operations: GET /metrics (Prometheus), GET /openapi.json and GET /docs."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Flask, Response, current_app, jsonify
from prometheus_client import CONTENT_TYPE_LATEST

from barkserve.config import ServerConfig
from barkserve.server import docs_page, openapi
from barkserve.server import metrics as app_metrics
from barkserve.server.state import state

bp = Blueprint("ops", __name__)


@bp.get("/metrics")
def metrics() -> Any:
    """Every metric in Prometheus's text format."""
    return Response(app_metrics.metrics().render(), content_type=CONTENT_TYPE_LATEST)


@bp.get("/openapi.json")
def openapi_document() -> Any:
    """The OpenAPI 3.1 document of every route."""
    return jsonify(openapi.build(current_app, state().config))


@bp.get("/docs")
def docs() -> Any:
    """The API reference as an HTML page."""
    html = docs_page.render(openapi.build(current_app, state().config))
    return Response(html, mimetype="text/html")


def init_app(app: Flask, config: ServerConfig) -> None:
    """Register the operations routes and the per-request metrics and access log."""
    app.register_blueprint(bp)
    app_metrics.init_app(app, config.log_format)
