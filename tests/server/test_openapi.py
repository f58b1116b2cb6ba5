"""GET /openapi.json and /docs: every route documented, option schemas built from the dataclasses."""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import jsonschema
import pytest
from flask import Flask

from barkserve.errors import InvalidRequest
from barkserve.options import SynthesisOptions
from barkserve.qc import QualityCheck
from barkserve.server.openapi_schemas import BOUNDS, LEXICON, MARKUP_FIELDS, dataclass_schema, option_schemas
from barkserve.server.requests import CAPTION_FIELDS, JOB_FIELDS, OPENAI_FIELDS, REQUEST_FIELDS, TIMESTAMP_FIELDS
from barkserve.server.routes_openai import BATCH_ITEM_FIELDS
from barkserve.server.speech_batch import MAX_ITEMS


@pytest.fixture()
def app(make_app: Any) -> Flask:
    app: Flask = make_app(max_text_chars=321)
    return app


@pytest.fixture()
def spec(app: Flask) -> dict[str, Any]:
    response = app.test_client().get("/openapi.json")
    assert response.status_code == 200
    document: dict[str, Any] = response.get_json()
    return document


def test_every_route_and_method_is_documented(app: Flask, spec: dict[str, Any]) -> None:
    documented = {(path, method.upper()) for path, ops in spec["paths"].items() for method in ops}
    routed = {
        (re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule), method)
        for rule in app.url_map.iter_rules()
        if rule.endpoint != "static"
        for method in (rule.methods or set()) - {"HEAD", "OPTIONS"}
    }
    assert documented == routed
    assert spec["openapi"].startswith("3.1")


def test_every_schema_in_the_document_is_valid_json_schema(spec: dict[str, Any]) -> None:
    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            if "schema" in node and isinstance(node["schema"], dict):
                yield node["schema"]
            for value in node.values():
                yield from walk(value)
        elif isinstance(node, list):
            for value in node:
                yield from walk(value)

    schemas = list(walk(spec["paths"]))
    assert len(schemas) > 40
    for schema in [*schemas, *spec["components"]["schemas"].values()]:
        jsonschema.Draft202012Validator.check_schema(schema)


def test_request_bodies_list_every_field_the_views_accept(spec: dict[str, Any]) -> None:
    options = {f.name for f in dataclasses.fields(SynthesisOptions)}
    for path, extension in (("/synthesize", set(CAPTION_FIELDS)), ("/jobs", set(JOB_FIELDS))):
        body = spec["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]
        assert set(body["properties"]) == set(REQUEST_FIELDS) | options | extension
        assert body["additionalProperties"] is False and body["required"] == ["text"]
    synth = spec["paths"]["/synthesize"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert synth["properties"]["text"]["maxLength"] == 321  # the app's own max_text_chars
    speech = spec["paths"]["/v1/audio/speech"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    speech_fields = set(OPENAI_FIELDS) | set(CAPTION_FIELDS) | set(TIMESTAMP_FIELDS) | set(MARKUP_FIELDS)
    assert set(speech["properties"]) == speech_fields
    batch = spec["paths"]["/v1/audio/speech/batch"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert set(batch["properties"]["items"]["items"]["properties"]) == set(BATCH_ITEM_FIELDS) & set(
        speech["properties"]
    )
    assert batch["properties"]["items"]["maxItems"] == MAX_ITEMS
    plan = spec["paths"]["/v1/audio/speech/plan"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert plan == speech  # the dry run takes what the speech takes
    assert speech["properties"]["lexicon"] == synth["properties"]["lexicon"]
    assert speech["properties"]["lexicon"]["anyOf"] == [LEXICON, {"type": "null"}]
    jobs = spec["paths"]["/jobs"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    for schema in (synth, speech):
        assert schema["properties"]["captions"]["enum"] == ["none", "srt", "vtt", "json"]
    for schema in (synth, speech, jobs):
        assert schema["properties"]["caption_words"]["type"] == "boolean"
    assert "aligner_unavailable" in jobs["properties"]["caption_words"]["description"]
    temp = synth["properties"]["text_temp"]
    assert (temp["type"], temp["minimum"], temp["maximum"], temp["default"]) == ("number", 0, 5, 0.7)
    assert "greedy" in temp["description"]  # the dataclass field's own comment


def test_a_new_option_field_appears_with_its_type_and_comment() -> None:
    @dataclasses.dataclass(frozen=True)
    class Extended:
        # How loud, in decibels.
        gain_db: float | None = None
        # Whether to whisper.
        whisper: bool = False

    schema = dataclass_schema(Extended)["properties"]
    assert schema["gain_db"] == {
        "anyOf": [{"type": "number"}, {"type": "null"}],
        "default": None,
        "description": "How loud, in decibels.",
    }
    assert schema["whisper"] == {"type": "boolean", "default": False, "description": "Whether to whisper."}


def _at(limit: float, step: float) -> Any:
    return int(limit + step) if float(limit).is_integer() and abs(step) >= 1 else limit + step


@pytest.mark.parametrize("name", sorted(BOUNDS))
def test_documented_ranges_are_the_ones_validation_enforces(name: str) -> None:
    cls = SynthesisOptions if name in {f.name for f in dataclasses.fields(SynthesisOptions)} else QualityCheck
    integer = name in ("seed", "tries")
    step = 1 if integer else 1e-6

    def accepted(value: float) -> bool:
        try:
            cls(**{name: value})
        except InvalidRequest:
            return False
        return True

    bound = BOUNDS[name]
    high = bound["maximum"]
    assert accepted(high) and not accepted(_at(high, step))
    if "minimum" in bound:
        assert accepted(bound["minimum"]) and not accepted(_at(bound["minimum"], -step))
    else:
        low = bound["exclusiveMinimum"]
        assert not accepted(low) and accepted(_at(low, step))
    assert name in option_schemas() or name in dataclass_schema(QualityCheck)["properties"]


def test_answers_match_the_documented_schemas(app: Flask, spec: dict[str, Any]) -> None:
    client = app.test_client()

    def check(path: str, method: str, response: Any) -> None:
        documented = spec["paths"][path][method]["responses"][str(response.status_code)]
        schema = documented["content"]["application/json"]["schema"]
        # The root carries the document's components, so "#/components/schemas/Error" resolves.
        jsonschema.validate(response.get_json(), {**schema, "components": spec["components"]})

    check("/health", "get", client.get("/health"))
    check("/models", "get", client.get("/models"))
    check("/v1/models", "get", client.get("/v1/models"))
    check("/jobs", "get", client.get("/jobs"))
    check("/synthesize", "post", client.post("/synthesize", json={"text": ""}))
    job = client.post("/jobs", json={"text": "Hello."})
    check("/jobs", "post", job)
    check("/jobs/{job_id}", "get", client.get(job.headers["Location"]))
    check("/jobs/{job_id}", "delete", client.delete(job.headers["Location"]))
    check("/jobs/{job_id}", "delete", client.delete(job.headers["Location"]))  # 409: already cancelled


def test_docs_page_lists_every_operation_and_loads_nothing_from_elsewhere(app: Flask, spec: dict[str, Any]) -> None:
    response = app.test_client().get("/docs")
    assert response.status_code == 200 and response.mimetype == "text/html"
    html = response.get_data(as_text=True)
    for ops in spec["paths"].values():
        for op in ops.values():
            assert f"id={op['operationId']}>" in html
    assert "/v1/audio/speech" in html and "text_temp" in html
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html, re.IGNORECASE)
    assert "<script" not in html.lower()


def test_book_uploads_and_chapter_progress_are_described(spec: dict[str, Any]) -> None:
    from barkserve.jobs.submit import BOOK_OUTPUTS
    from barkserve.server.requests import UPLOAD_FIELDS

    post = spec["paths"]["/jobs"]["post"]
    form = post["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert set(form["properties"]) == {"file", *UPLOAD_FIELDS} and form["required"] == ["file"]
    assert "text" not in form["properties"] and form["properties"]["output"]["enum"] == list(BOOK_OUTPUTS)
    assert ".epub" in form["properties"]["file"]["description"]
    assert {"413", "415"} <= set(post["responses"])
    job = spec["paths"]["/jobs/{job_id}"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    job = spec["components"]["schemas"].get("Job", job) if "$ref" in job else job
    assert set(job["properties"]["book"]["required"]) == {"title", "author", "output"}
    chapter = job["properties"]["chapters"]["items"]
    assert set(chapter["required"]) == {"chapter", "title", "chunks_done", "chunks_total"}
    audio = spec["paths"]["/jobs/{job_id}/audio"]["get"]["responses"]["200"]["content"]
    assert {"audio/mp4", "application/zip", "audio/mpeg"} <= set(audio)
    assert {"caption_words", "warnings"} <= set(job["required"])
    captions = spec["paths"]["/jobs/{job_id}/captions"]["get"]
    (chapter,) = [p for p in captions["parameters"] if p["name"] == "chapter"]
    assert chapter["in"] == "query" and chapter["schema"] == {"type": "integer", "minimum": 1}
    assert not chapter["required"]
