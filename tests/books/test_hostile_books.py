"""Hostile book files: zip bombs, XML entity tricks, PDF bombs and pathological text are refused or read
with bounded work, always as a clear book error (a 4xx), never a crash, a hang or unbounded memory."""

import zipfile
from pathlib import Path

import pytest

from barkserve.books import read_book
from barkserve.books.epub import MAX_MEMBERS, MAX_UNPACKED_BYTES
from barkserve.errors import BookTooLarge
from bookfiles import make_epub


def rewrite_epub(src: Path, dst: Path, replace: dict[str, bytes], extra: dict[str, bytes] | None = None) -> Path:
    """A copy of an EPUB with some members' bytes replaced and `extra` members added."""
    with zipfile.ZipFile(src) as old, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as new:
        for info in old.infolist():
            new.writestr(info.filename, replace.get(info.filename, old.read(info.filename)))
        for name, data in (extra or {}).items():
            new.writestr(name, data)
    return dst


def test_zip_bomb_epub_is_refused_before_any_member_is_unpacked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bomb = b"\0" * (MAX_UNPACKED_BYTES + 1)  # compresses to about a thousandth of that
    path = rewrite_epub(make_epub(tmp_path / "b.epub"), tmp_path / "bomb.epub", {"EPUB/cover.jpg": bomb})
    del bomb
    data = path.read_bytes()
    assert len(data) < MAX_UNPACKED_BYTES // 100
    opened: list[str] = []
    real_open = zipfile.ZipFile.open

    def spy(self: zipfile.ZipFile, name: object, *args: object, **kwargs: object) -> object:
        opened.append(getattr(name, "filename", name))  # type: ignore[arg-type]
        return real_open(self, name, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(zipfile.ZipFile, "open", spy)
    with pytest.raises(BookTooLarge, match="unpacks to"):
        read_book(data, "bomb.epub")
    assert "EPUB/cover.jpg" not in opened


def test_epub_with_countless_members_is_refused(tmp_path: Path) -> None:
    extra = {f"EPUB/junk/{i}.txt": b"" for i in range(MAX_MEMBERS + 1)}
    path = rewrite_epub(make_epub(tmp_path / "b.epub"), tmp_path / "many.epub", {}, extra)
    with pytest.raises(BookTooLarge, match="files"):
        read_book(path.read_bytes(), "many.epub")
