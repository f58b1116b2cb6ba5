"""Square brackets in real books are text, not Bark cues: a bracketed editorial note or a manual's
"prints the [ ... prints the ]" is cut like any other text, so the book plans instead of being refused.

The passages come from PDFs that Debian's texlive-base ships (installed with the producers by
`.ci/system-deps.sh`): BibTeX's manual opens with a bracketed note of several sentences, and LuaTeX's
manual names both brackets a paragraph apart. Before cues were bounded, planning either refused them
("a piece of the text without any break is 473 tokens").
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from barkserve.books import read_book
from barkserve.config import ServerConfig
from barkserve.synthesizer import MAX_TEXT_TOKENS, Synthesizer
from barkserve.text import CUE, chunk_text
from conftest import unavailable

TEXLIVE_DOC = Path("/usr/share/doc/texlive-doc")
PASSAGES = {
    "bibtex/base/btxdoc.pdf": "[This document will be expanded",
    "luatex/base/luatex.pdf": "prints the [",
}


def passage(relative: str, marker: str) -> str:
    file = TEXLIVE_DOC / relative
    if not file.is_file():
        unavailable(f"{file} (Debian's texlive-base)")
    book = read_book(file.read_bytes(), file.name)
    for chapter in book.chapters:
        at = chapter.text.find(marker)
        if at >= 0:
            return chapter.text[max(0, at - 300) : at + 1500]
    raise AssertionError(f"{marker!r} is not in {file.name} as read")


@pytest.mark.parametrize(("relative", "marker"), PASSAGES.items())
def test_a_real_books_brackets_are_cut_like_text_and_the_passage_plans(
    relative: str, marker: str, tiny_model_dir: Any, tmp_path: Path
) -> None:
    text = passage(relative, marker)
    synth = Synthesizer(ServerConfig(model=str(tiny_model_dir), voices_dir=tmp_path, offline=True))
    plan = synth.plan(text, options={"seed": 1})
    assert max(len(ids) for ids in plan.token_ids) <= MAX_TEXT_TOKENS
    assert len(plan.token_ids) > 1  # the bracketed stretch was cut, not kept whole
    assert "".join(c.text for c in plan.info.chunks).split() == text.split()  # every word kept, in order


def test_bark_cues_stay_whole_and_long_brackets_are_not_cues() -> None:
    text = (
        "She stopped. [clears throat] Then she sang ♪ la la la ♪ and left. [Editor's note: this chapter "
        "was written in 1911. It was revised twice, and the second revision is printed here.] The end."
    )
    cues = [m.group() for m in CUE.finditer(text)]
    assert cues == ["[clears throat]", "♪ la la la ♪"]
    chunks = chunk_text(text, count_tokens=len, max_tokens=40)
    assert [m.group() for c in chunks for m in CUE.finditer(c.text)] == cues  # never cut
    assert all(len(c.text.strip()) <= 40 for c in chunks)  # the long note is cut like any text (40 = the limit here)
    assert "".join(c.text for c in chunks) == text
