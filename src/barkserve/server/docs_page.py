"""GET /docs: the OpenAPI document as one self-contained HTML page (no scripts, nothing from a CDN)."""

from __future__ import annotations

import json
from html import escape
from typing import Any

STYLE = """body{font:15px/1.45 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}
h2{margin-top:2rem;border-bottom:1px solid #ddd}code{background:#f3f3f3;padding:0 .25em}
.op{margin:1rem 0;padding:.5rem 1rem;border:1px solid #ddd;border-radius:6px}
.m{font-weight:bold;display:inline-block;min-width:4.5rem}table{border-collapse:collapse;margin:.4rem 0}
td,th{border:1px solid #e3e3e3;padding:.15rem .5rem;text-align:left;vertical-align:top}"""


def render(spec: dict[str, Any]) -> str:
    """Every operation of `spec`: method, path, summary, parameters, body fields and answer statuses."""
    info = spec["info"]
    parts = [
        f"<!doctype html><html lang=en><meta charset=utf-8><title>{escape(info['title'])} API</title>",
        f"<style>{STYLE}</style><h1>{escape(info['title'])} {escape(info['version'])}</h1>",
        f"<p>{escape(info['description'])} The machine-readable document: "
        "<a href='/openapi.json'><code>/openapi.json</code></a> (OpenAPI 3.1).</p>",
    ]
    for path, methods in spec["paths"].items():
        for method, op in methods.items():
            parts.append(_operation(path, method, op))
    return "\n".join(parts)


def _operation(path: str, method: str, op: dict[str, Any]) -> str:
    out = [
        f"<div class=op id={escape(op['operationId'])}><p><span class=m>{method.upper()}</span>"
        f"<code>{escape(path)}</code> {escape(op['summary'])}</p>"
    ]
    params = op.get("parameters", [])
    if params:
        rows = [(p["name"], p["in"], _type(p["schema"]), p.get("description", "")) for p in params]
        out.append(_table(("parameter", "in", "schema", ""), rows))
    for media, content in op.get("requestBody", {}).get("content", {}).items():
        props = content["schema"].get("properties", {})
        required = set(content["schema"].get("required", []))
        fields = [(n + (" *" if n in required else ""), _type(s), s.get("description", "")) for n, s in props.items()]
        out.append(f"<p>Body <code>{escape(media)}</code> (* required):</p>" + _table(("field", "schema", ""), fields))
    statuses = ", ".join(f"{s} {escape(r['description'])}" for s, r in op["responses"].items())
    out.append(f"<p>Answers: {statuses}</p></div>")
    return "".join(out)


def _type(schema: dict[str, Any]) -> str:
    """A compact text of a schema: its type or choices and its range."""
    shown = {k: v for k, v in schema.items() if k not in ("description", "properties", "additionalProperties")}
    return json.dumps(shown, separators=(", ", ": "))


def _table(head: tuple[str, ...], rows: list[tuple[Any, ...]]) -> str:
    cells = "".join(f"<th>{escape(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{cells}</tr>{body}</table>"
