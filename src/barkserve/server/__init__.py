"""The HTTP layer: `create_app(config)` wires the synthesizer into Flask blueprints."""

from barkserve.server.app import create_app

__all__ = ["create_app"]
