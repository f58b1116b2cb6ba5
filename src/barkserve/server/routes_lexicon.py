"""GET/PUT/DELETE /lexicon: the calling key's pronunciation lexicon (stored with the keys)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify

from barkserve.errors import InvalidRequest
from barkserve.markup import Lexicon
from barkserve.server.access import access, current
from barkserve.server.requests import check_fields, json_object
from barkserve.server.state import state

bp = Blueprint("lexicon", __name__)


def answer(stored: dict[str, Any] | None) -> dict[str, Any]:
    lexicon = Lexicon.from_value(stored or {}, source="key") or Lexicon()
    server = state().synthesizer.server_lexicon()
    return {"lexicon": lexicon.to_json(), "entries": len(lexicon.entries), "server_entries": len(server.entries)}


@bp.get("/lexicon")
def get_lexicon() -> Any:
    """Show the calling key's lexicon (the server's lexicon_file lies under it; a request's goes over it)."""
    return jsonify(answer(access().keys.lexicon(current().tenant)))


@bp.put("/lexicon")
def put_lexicon() -> Any:
    """Replace the calling key's lexicon with `lexicon` (checked with the server's under it)."""
    body = json_object()
    check_fields(body, ("lexicon",))
    if "lexicon" not in body:
        raise InvalidRequest('field \'lexicon\' is required: {"lexicon": {"en": {"Nguyen": "win"}}}')
    lexicon = Lexicon.from_value(body["lexicon"], source="key")
    if lexicon is None:
        raise InvalidRequest("lexicon must be an object; to remove the lexicon, DELETE /lexicon")
    state().synthesizer.server_lexicon().merged(lexicon)  # a loop through the server's entries is refused now
    access().keys.set_lexicon(current().tenant, lexicon.to_json())
    return jsonify(answer(lexicon.to_json()))


@bp.delete("/lexicon")
def delete_lexicon() -> Any:
    """Remove the calling key's lexicon."""
    return jsonify({"deleted": access().keys.delete_lexicon(current().tenant)})
