"""The full cast: quotes by the book's language, attribution by rules, the verbatim check on every corpus
book, the cast sheet, and the LLM pass against a real HTTP server speaking OpenAI's chat completions."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
from test_corpus import EXPECTED, corpus_file

from barkserve.books import Book, Chapter, read_book
from barkserve.books.cast import attribute
from barkserve.books.cast_llm import CastLLM
from barkserve.books.cast_sheet import cast_book, cast_lines, make_sheet, read_sheet
from barkserve.books.quotes import find_quotes
from barkserve.books.voices import VOICE_TAG, voice_book
from barkserve.errors import CastTextChanged, InvalidRequest, InvalidVoice

PRESETS = {f"v2/{lang}_speaker_{n}" for lang in ("en", "fr", "de", "ru") for n in range(10)}


def resolve(name: object) -> str:
    text = str(name)
    if text not in PRESETS:
        raise InvalidVoice(f"unknown voice {text!r}")
    return text


def spoken(text: str, language: str) -> list[str]:
    return [text[q.start : q.end] for q in find_quotes(text, language)]


@pytest.mark.parametrize(
    ("language", "text", "quotes"),
    [
        ("en", 'He waved. "Come in," said Tom. "Sit."', ['"Come in,"', '"Sit."']),
        ("en", "“Yes,” she said.\n\n“No!” he cried.", ["“Yes,”", "“No!”"]),
        ("fr", "« Entrez », dit Jean. Il sourit.", ["« Entrez »"]),
        ("de", "„Komm herein“, sagte Anna.", ["„Komm herein“"]),
        ("de", "»Wer da?« rief er.", ["»Wer da?«"]),
        ("ru", "— Здравствуй, — сказала Анна. — Как дела?\n— Хорошо.", ["— Здравствуй, ", "— Как дела?", "— Хорошо."]),
        ("es", "—¿Vienes? —preguntó Juan.", ["—¿Vienes? "]),
        ("ja", "彼は「おはよう」と言った。", ["「おはよう」"]),
        # An English quote over two paragraphs: the first is left open and runs to its end.
        ("en", '"It was long.\n\n"Very long," said Ann.', ['"It was long.', '"Very long,"']),
    ],
)
def test_quotes_are_found_by_the_books_language(language: str, text: str, quotes: list[str]) -> None:
    assert spoken(text, language) == quotes


DIALOGUE = """"Where have you been?" said Mrs. Hale.

"In the garden," replied Tom.

"All day?"

"All day, aunt."

"Tom, you are a strange boy," said she. "Go in."

Tom went in. "Goodnight," he said.
"""


def test_rules_attribute_by_tags_pronouns_alternation_and_paragraph() -> None:
    quotes = attribute(DIALOGUE, find_quotes(DIALOGUE, "en"), "en")
    speakers = [(DIALOGUE[q.start : q.end], q.speaker) for q in quotes]
    assert speakers == [
        ('"Where have you been?"', "Mrs. Hale"),  # said NAME (a title: female)
        ('"In the garden,"', "Tom"),
        ('"All day?"', "Mrs. Hale"),  # alternation
        ('"All day, aunt."', "Tom"),
        ('"Tom, you are a strange boy,"', "Mrs. Hale"),  # "said she": the last woman who spoke
        ('"Go in."', "Mrs. Hale"),  # same paragraph
        ('"Goodnight,"', "Tom"),  # NAME ... he said
    ]


def test_french_and_russian_dialogue_tags() -> None:
    fr = "« Vous partez ? » demanda Marie.\n\n« Demain », répondit Paul."
    assert [q.speaker for q in attribute(fr, find_quotes(fr, "fr"), "fr")] == ["Marie", "Paul"]
    ru = "— Ты придёшь? — спросила Анна.\n— Приду, — ответил Иван."
    quotes = attribute(ru, find_quotes(ru, "ru"), "ru")
    assert [(q.speaker, q.gender) for q in quotes] == [("Анна", "female"), ("Иван", "male")]


def book_of(*texts: str, language: str = "en") -> Book:
    return Book("A Story", chapters=tuple(Chapter(f"Part {k}", t) for k, t in enumerate(texts, 1)), language=language)


def test_a_full_cast_reads_each_speaker_in_their_voice_and_keeps_every_byte() -> None:
    text = "Part 1.\n\n" + DIALOGUE + "\n\nThe end [voice:v2/en_speaker_3] of the day."
    book = book_of(text)
    lines, sheet, warnings = cast_lines(book, "auto", None, "v2/en_speaker_6", resolve)
    voices = {s["name"]: s["voice"] for s in sheet["speakers"]}
    assert set(voices) == {"Mrs. Hale", "Tom"} and warnings == []
    assert voices["Mrs. Hale"] == "v2/en_speaker_9"  # the one female English preset
    assert voices["Tom"] != "v2/en_speaker_6"  # never the narrator's
    chapter = voice_book(book, "v2/en_speaker_6", resolve, cast=lines)[0]
    assert chapter.text == VOICE_TAG.sub("", text)  # nothing added, lost or moved
    by_speaker = {(s.speaker, s.voice) for s in chapter.segments}
    assert ("Mrs. Hale", voices["Mrs. Hale"]) in by_speaker and ("Tom", voices["Tom"]) in by_speaker
    assert chapter.segments[-1].voice == "v2/en_speaker_3"  # a tag still wins over the cast
    assert next(s for s in chapter.segments if s.speaker == "Tom").text.startswith('"In the garden,"')


def test_the_verbatim_check_stops_a_cast_that_would_change_the_text(monkeypatch: pytest.MonkeyPatch) -> None:
    book = book_of(DIALOGUE)
    lines, _, _ = cast_lines(book, "auto", None, "v2/en_speaker_6", resolve)
    from barkserve.books import voices as voices_module

    real = voices_module.cut

    def overlapping(start: int, end: int, found: Any) -> Any:  # a bug that reads a line twice
        pieces = real(start, end, found)
        return [*pieces[:2], pieces[1], *pieces[2:]]

    monkeypatch.setattr(voices_module, "cut", overlapping)
    with pytest.raises(CastTextChanged):
        voice_book(book, "v2/en_speaker_6", resolve, cast=lines)


@pytest.mark.parametrize("path", sorted(EXPECTED), ids=[p.split("/share/")[-1] for p in sorted(EXPECTED)])
def test_the_cast_keeps_every_corpus_book_verbatim(path: str, built_book: Callable[[str], Path]) -> None:
    file = corpus_file(path, built_book)
    book = read_book(file.read_bytes(), file.name)
    lines, _sheet, _ = cast_lines(book, "auto", None, "v2/en_speaker_6", lambda v: str(v))
    voiced = voice_book(book, "v2/en_speaker_6", lambda v: str(v), cast=lines)  # raises if any byte changed
    assert [c.text for c in voiced] == [VOICE_TAG.sub("", c.text) for c in book.chapters]


def test_a_cast_sheet_is_read_back_with_aliases_and_unknown_speakers_go_to_the_narrator() -> None:
    book = book_of(DIALOGUE)
    sheet = {"speakers": [{"name": "Thomas", "aliases": ["Tom"], "voice": "v2/en_speaker_2"}]}
    lines, view, _ = cast_lines(book, json.dumps(sheet), None, "v2/en_speaker_6", resolve)
    assert {line.speaker for line in lines[0]} == {"Tom"}  # Mrs. Hale is not on the sheet: the narrator's
    assert all(line.voice == "v2/en_speaker_2" for line in lines[0])
    assert view["speakers"][0]["lines"] == 3


@pytest.mark.parametrize(
    ("sheet", "error", "words"),
    [
        ({"speakers": [{"name": "Tom", "voice": "v2/xx_speaker_1"}]}, InvalidVoice, "'Tom'"),
        ({"speakers": "Tom"}, InvalidRequest, '"speakers"'),
        ({"speakers": [{"voice": "v2/en_speaker_1"}]}, InvalidRequest, '"name"'),
        ("{not json", InvalidRequest, "not JSON"),
        (42, InvalidRequest, "auto"),
    ],
)
def test_bad_cast_sheets_say_what_is_wrong(sheet: Any, error: type, words: str) -> None:
    with pytest.raises(error, match=words):
        cast_lines(book_of(DIALOGUE), sheet if isinstance(sheet, str | int) else json.dumps(sheet), None, "n", resolve)


def test_voices_follow_the_books_language_and_stated_gender() -> None:
    text = "« Bonjour », dit Madame Roux.\n\n« Salut », répondit Monsieur Blanc."
    book = book_of(text, language="fr")
    sheet = make_sheet(cast_book(book), book, "v2/fr_speaker_1", lambda v: v in PRESETS)
    voices = {s["name"]: (s["gender"], s["voice"]) for s in sheet["speakers"]}
    assert voices["Madame Roux"] == ("female", "v2/fr_speaker_2")  # French, female, not the narrator (1)
    assert voices["Monsieur Blanc"] == ("male", "v2/fr_speaker_0")
    assert read_sheet(sheet, resolve).voice_of("madame roux") == "v2/fr_speaker_2"
    # English has one female preset (9): when the narrator has it, a woman gets another voice, not hers.
    english = book_of(DIALOGUE)
    sheet = make_sheet(cast_book(english), english, "v2/en_speaker_9", lambda v: v in PRESETS)
    assert all(s["voice"] != "v2/en_speaker_9" for s in sheet["speakers"])


# --- the LLM pass, against a real HTTP server that answers as OpenAI's chat completions do ---


class Chat(BaseHTTPRequestHandler):
    reply: Callable[[dict[str, Any]], str] = staticmethod(lambda body: "{}")
    hold: threading.Event | None = None
    asked: ClassVar[list[dict[str, Any]]] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).asked.append({"path": self.path, "auth": self.headers.get("Authorization"), **body})
        if self.hold is not None:
            self.hold.wait()  # until the test ends: the client's timeout fires first
            return
        answer = {
            "id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": body["model"],
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": type(self).reply(body)}}],
        }  # fmt: skip
        data = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def chat_server() -> Iterator[tuple[str, type[Chat]]]:
    handler = type("Handler", (Chat,), {"asked": [], "hold": None})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/v1", handler
    if handler.hold is not None:
        handler.hold.set()
    server.shutdown()
    server.server_close()


def test_the_llm_labels_speakers_and_the_text_still_comes_from_the_source(
    chat_server: tuple[str, type[Chat]], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, handler = chat_server
    # Labels, and a rewritten text the pass must ignore: only labels are read.
    handler.reply = staticmethod(lambda body: json.dumps({"labels": {"2": "Nurse", "3": "narrator"}, "text": "X"}))
    monkeypatch.setenv("MY_KEY", "sk-test")
    book = book_of(DIALOGUE)
    llm = CastLLM(url, "local-model", "MY_KEY")
    lines, _sheet, warnings = cast_lines(book, "auto", llm, "v2/en_speaker_6", resolve)
    assert warnings == []
    asked = handler.asked[0]
    assert asked["path"] == "/v1/chat/completions" and asked["model"] == "local-model"
    assert asked["auth"] == "Bearer sk-test"
    quotes = {DIALOGUE[line.start : line.end]: line.speaker for line in lines[0]}
    assert quotes['"All day?"'] == "Nurse"  # the model's label
    assert '"All day, aunt."' not in quotes  # "narrator": read by the narrator
    assert quotes['"In the garden,"'] == "Tom"  # not labelled by the model: the rules' label stays
    chapter = voice_book(book, "v2/en_speaker_6", resolve, cast=lines)[0]
    assert chapter.text == DIALOGUE


@pytest.mark.parametrize(
    "answer",
    [
        "Tom says the first one.",  # not JSON
        json.dumps({"speakers": ["Tom"]}),  # not the format asked for
        json.dumps({"labels": {"0": "Tom", "99": "Ann"}}),  # a quote that does not exist
        json.dumps({"labels": {"0": "x" * 500}}),  # not a name
    ],
)
def test_a_misbehaving_llm_falls_back_to_the_rules_with_a_warning(
    chat_server: tuple[str, type[Chat]], answer: str
) -> None:
    url, handler = chat_server
    handler.reply = staticmethod(lambda body: answer)
    book = book_of(DIALOGUE)
    with_llm = cast_lines(book, "auto", CastLLM(url, "m"), "v2/en_speaker_6", resolve)
    rules = cast_lines(book, "auto", None, "v2/en_speaker_6", resolve)
    assert with_llm[0] == rules[0]
    assert len(with_llm[2]) == 1 and "speakers are attributed by rules" in with_llm[2][0]


def test_an_unreachable_or_silent_llm_falls_back_to_the_rules(chat_server: tuple[str, type[Chat]]) -> None:
    url, handler = chat_server
    handler.hold = threading.Event()
    silent = CastLLM(url, "m", timeout_sec=0.5)
    book = book_of(DIALOGUE)
    rules = cast_lines(book, "auto", None, "v2/en_speaker_6", resolve)[0]
    lines, _, warnings = cast_lines(book, "auto", silent, "v2/en_speaker_6", resolve)
    assert lines == rules and "Timeout" in warnings[0]
    closed = CastLLM("http://127.0.0.1:9/v1", "m")  # the discard port: nothing listens
    lines, _, warnings = cast_lines(book, "auto", closed, "v2/en_speaker_6", resolve)
    assert lines == rules and "Connection" in warnings[0]
