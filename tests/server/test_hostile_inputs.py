"""Hostile requests through the app: other tenants' voices named inside books, odd uploads and headers."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from flask import Flask
from test_access import FAST, clone, error_of, new_key

from support import FakeEngine


@pytest.fixture()
def app(make_app: Any) -> Flask:
    app: Flask = make_app(engine_factory=FakeEngine)
    return app


def upload(client: Any, headers: dict[str, str], text: str, name: str = "book.txt", **fields: str) -> Any:
    form = {"file": (io.BytesIO(text.encode()), name), **{k: str(v) for k, v in FAST.items()}, **fields}
    return client.post("/jobs", data=form, content_type="multipart/form-data", headers=headers)


def test_a_book_cannot_name_another_keys_voice(app: Flask) -> None:
    client = app.test_client()
    alice, bob = new_key(app, "alice"), new_key(app, "bob")
    assert clone(client, "alices-voice", alice).status_code == 201
    tagged = "Chapter 1\n\nIt began. [voice:alices-voice] She spoke.\n"
    assert upload(client, alice, tagged).status_code == 202  # her own voice, in her own book
    for response in (
        upload(client, bob, tagged),
        upload(client, bob, "Chapter 1\n\nIt began.\n", chapter_voices=json.dumps({"1": "alices-voice"})),
        upload(client, bob, "Chapter 1\n\nIt began.\n", voice_preset="alices-voice"),
    ):
        assert error_of(response, 400)["code"] == "invalid_voice"
