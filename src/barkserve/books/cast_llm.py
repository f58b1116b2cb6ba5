"""The optional LLM pass of a full cast: an OpenAI-compatible chat endpoint labels quotes with speakers.

The model is shown each quote (by its index) in its narration and answers JSON, labels only:
`{"labels": {"0": "Elizabeth", "1": "narrator", ...}}`. Nothing it writes is ever read aloud: a label
only chooses whose voice reads a quote whose text and offsets the rules found in the source. An
endpoint that cannot be reached, times out, or answers anything else (not JSON, labels for quotes that
do not exist, names that are not names) is not used at all: the rules' labels stay, with a warning.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, replace
from typing import Any

from barkserve.books.cast import MAX_LABEL_CHARS
from barkserve.books.cast_sheet import BookCast
from barkserve.books.model import Book
from barkserve.books.quotes import Quote
from barkserve.errors import CastLabelsUnusable, InvalidRequest

BATCH = 60  # quotes per request
CONTEXT = 200  # characters of narration shown on each side of a quote
NARRATOR = {"narrator", "none", "null", "unknown", ""}
PROMPT = (
    "You label who speaks each numbered quote of a novel's passage. Answer only JSON: "
    '{"labels": {"<index>": "<speaker name>"}}, one entry per quote index given, using the name the book '
    'uses for the character, or "narrator" when no character says it. Do not repeat or change the text.'
)


@dataclass(frozen=True)
class CastLLM:
    """Where the LLM pass asks: `url` (an OpenAI-compatible base URL, e.g. http://localhost:8080/v1),
    `model`, and the environment variable that holds the API key (read when it runs, never stored)."""

    url: str
    model: str = "gpt-4o-mini"
    key_env: str = "BARKSERVE_CAST_LLM_KEY"
    timeout_sec: float = 60.0

    def __post_init__(self) -> None:
        if not re.match(r"https?://", self.url):
            raise InvalidRequest(f"cast_llm must be an http(s) URL of an OpenAI-compatible API; got {self.url!r}")

    def __call__(self, book: Book, cast: BookCast) -> BookCast:
        try:
            return self.label(book, cast)
        except CastLabelsUnusable as exc:
            warning = f"the cast LLM at {self.url} was not used ({exc}); speakers are attributed by rules"
            return replace(cast, warnings=(*cast.warnings, warning))

    def label(self, book: Book, cast: BookCast) -> BookCast:
        """The cast with every quote labelled by the model; CastLabelsUnusable when any answer is unusable."""
        client = self._client()
        chapters = []
        for chapter, quotes in zip(book.chapters, cast.chapters, strict=True):
            labelled = list(quotes)
            for first in range(0, len(quotes), BATCH):
                batch = quotes[first : first + BATCH]
                labels = self._ask(client, chapter.text, batch, first)
                for k, label in labels.items():
                    q = labelled[k]
                    speaker = None if label.casefold() in NARRATOR else label
                    labelled[k] = Quote(q.start, q.end, q.paragraph, speaker, f"LLM {self.model}", q.gender)
            chapters.append(tuple(labelled))
        return replace(cast, chapters=tuple(chapters))

    def _client(self) -> Any:
        try:
            from openai import OpenAI
        except ImportError as exc:  # the extra is not installed
            raise CastLabelsUnusable("the openai package is not installed: pip install 'barkserve[cast]'") from exc
        key = os.environ.get(self.key_env) or "none"
        return OpenAI(base_url=self.url, api_key=key, timeout=self.timeout_sec, max_retries=0)

    def _ask(self, client: Any, text: str, quotes: tuple[Quote, ...], first: int) -> dict[int, str]:
        passage = []
        for k, q in enumerate(quotes, first):
            before = text[max(0, q.start - CONTEXT) : q.start]
            after = text[q.end : q.end + CONTEXT]
            passage.append(f"[{k}] ...{before}<<{text[q.start : q.end]}>>{after}...")
        try:
            reply = client.chat.completions.create(
                model=self.model,
                messages=[{"role": "system", "content": PROMPT}, {"role": "user", "content": "\n\n".join(passage)}],
                temperature=0,
            )
            content = reply.choices[0].message.content
        except Exception as exc:  # the client's errors: connection, timeout, status, malformed response
            raise CastLabelsUnusable(f"{type(exc).__name__}: {exc}") from exc
        return parse_labels(content, range(first, first + len(quotes)))


def parse_labels(content: object, indexes: range) -> dict[int, str]:
    """The labels of an answer, checked: JSON, every key one of `indexes`, every value a short name."""
    if not isinstance(content, str):
        raise CastLabelsUnusable("the answer has no text")
    match = re.search(r"\{.*\}", content, re.S)  # models wrap JSON in prose or code fences
    try:
        data = json.loads(match.group(0) if match else content)
    except ValueError as exc:
        raise CastLabelsUnusable("the answer is not JSON") from exc
    labels = data.get("labels") if isinstance(data, dict) else None
    if not isinstance(labels, dict):
        raise CastLabelsUnusable('the answer has no "labels" object')
    out: dict[int, str] = {}
    for key, value in labels.items():
        if not (isinstance(key, str) and key.isdigit() and int(key) in indexes):
            raise CastLabelsUnusable(f"a label for quote {key!r}, which was not asked about")
        if value is None:
            value = "narrator"
        if not isinstance(value, str) or len(value) > MAX_LABEL_CHARS or "\n" in value:
            raise CastLabelsUnusable(f"quote {key}'s label is not a name: {str(value)[:40]!r}")
        out[int(key)] = " ".join(value.split())
    return out
