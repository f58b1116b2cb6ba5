"""What every read-along EPUB of the tests must be, read back with lxml, PyAV and epubcheck alone."""

from __future__ import annotations

import io
import itertools
import json
import posixpath
import re
import shutil
import subprocess
import zipfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

import av
from lxml import etree

from barkserve.captions import Cue
from conftest import unavailable

OPF = "{http://www.idpf.org/2007/opf}"
SMIL = "{http://www.w3.org/ns/SMIL}"
CLOSING = ".!?:;…\"'”’)]»"


@dataclass
class Clip:
    page: str  # the XHTML document's path in the archive
    text_id: str
    element: etree._Element
    chapter: int  # from 0
    begin: float
    end: float


def epubcheck_errors(path: Path) -> set[tuple[str, str, str]]:
    """epubcheck's errors (and fatals) for an EPUB: (ID, path in the book, message), positions left out."""
    found = shutil.which("epubcheck")
    if found is None or shutil.which("java") is None:
        unavailable("epubcheck (Debian package epubcheck)")
    assert found is not None
    jar = Path(found).resolve()
    # Debian's /usr/bin/epubcheck is the jar itself (run by binfmt_misc, which containers often lack).
    command = ["java", "-jar", str(jar)] if jar.suffix == ".jar" else [str(jar)]
    report = path.with_suffix(".epubcheck.json")
    subprocess.run([*command, str(path), "--json", str(report), "-q"], capture_output=True, check=False)
    messages = json.loads(report.read_text(encoding="utf-8"))["messages"]
    return {
        (m["ID"], (m["locations"] or [{"path": ""}])[0]["path"], m["message"])
        for m in messages
        if m["severity"] in ("ERROR", "FATAL")
    }


def compact(text: str) -> str:
    return "".join(text.split())


def seconds(value: str) -> float:
    assert value.endswith("s"), value
    return float(value[:-1])


def clock(value: str) -> float:
    h, m, s = value.split(":")
    return int(h) * 3600 + int(m) * 60 + float(s)


def read_overlays(data: bytes) -> tuple[list[Clip], dict[str, bytes]]:
    """Every `<par>` of the book in reading order, checked against the package document on the way:
    the manifest's overlays and audio, `media-overlay` on each page, the durations, the active class."""
    archive = zipfile.ZipFile(io.BytesIO(data))
    assert archive.namelist()[0] == "mimetype" and archive.getinfo("mimetype").compress_type == zipfile.ZIP_STORED
    members = {name: archive.read(name) for name in archive.namelist()}
    container = etree.fromstring(members["META-INF/container.xml"])
    opf_path = str(next(container.iter("{*}rootfile")).get("full-path"))
    opf = etree.fromstring(members[opf_path])
    assert opf.get("version") == "3.0"
    base = posixpath.dirname(opf_path)
    items = {str(i.get("id")): i for i in opf.iter(f"{OPF}item")}
    path_of = {k: posixpath.normpath(posixpath.join(base, unquote(str(i.get("href"))))) for k, i in items.items()}
    metas = [(m.get("property"), m.get("refines"), m.text) for m in opf.iter(f"{OPF}meta")]
    assert ("media:active-class", None, "-epub-media-overlay-active") in metas
    durations = {refines: clock(str(text)) for prop, refines, text in metas if prop == "media:duration"}
    spine = [str(r.get("idref")) for r in opf.iter(f"{OPF}itemref")]
    clips: list[Clip] = []
    total = 0.0
    for idref in spine:
        overlay = items[idref].get("media-overlay")
        if overlay is None:
            continue
        assert items[overlay].get("media-type") == "application/smil+xml"
        smil_path = path_of[overlay]
        here = posixpath.dirname(smil_path)
        page_root = etree.fromstring(members[path_of[idref]])
        by_id = {str(e.get("id")): e for e in page_root.iter() if e.get("id") is not None}
        sum_clips = 0.0
        for par in etree.fromstring(members[smil_path]).iter(f"{SMIL}par"):
            text, audio = par.find(f"{SMIL}text"), par.find(f"{SMIL}audio")
            assert text is not None and audio is not None
            page, _, text_id = str(text.get("src")).partition("#")
            assert posixpath.normpath(posixpath.join(here, unquote(page))) == path_of[idref]
            assert text_id in by_id, f"{text_id} is not an id of {path_of[idref]}"  # every clip's text exists
            audio_path = posixpath.normpath(posixpath.join(here, unquote(str(audio.get("src")))))
            assert audio_path in path_of.values() and audio_path in members
            chapter = int(re.fullmatch(r".*chapter(\d{4})\.mp3", audio_path).group(1)) - 1  # type: ignore[union-attr]
            begin, end = seconds(str(audio.get("clipBegin"))), seconds(str(audio.get("clipEnd")))
            assert 0 <= begin < end
            clips.append(Clip(path_of[idref], text_id, by_id[text_id], chapter, begin, end))
            sum_clips += end - begin
        assert durations[f"#{overlay}"] == approx_ms(sum_clips)
        total += durations[f"#{overlay}"]
    assert durations[None] == approx_ms(total)
    return clips, members


def approx_ms(value: float) -> float:
    import pytest

    return pytest.approx(value, abs=0.0015)  # type: ignore[no-any-return]


def check_clips_match_captions(clips: list[Clip], captions: dict[int, list[Cue]], words: bool = False) -> int:
    """Each chapter's pars, in order, cover its captions (or caption words) exactly: each par's clip starts
    where a caption starts and ends where one ends, the next par starts where it ends; a par on a
    `<span>` holds exactly its caption's text. Returns how many pars are on a paragraph (fallback)."""
    fallbacks = 0
    for chapter, cues in captions.items():
        units = (
            [(w.start, w.end, w.text) for c in cues for w in c.words]
            if words
            else [(c.start, c.end, c.text) for c in cues]
        )
        mine = [c for c in clips if c.chapter == chapter]
        assert mine, f"chapter {chapter + 1} has no overlay"
        assert near(mine[0].begin, units[0][0]) and near(mine[-1].end, units[-1][1])
        for previous, clip in itertools.pairwise(mine):
            assert clip.begin >= previous.end
            if not words:
                assert clip.begin == previous.end  # sentence captions are contiguous
        for clip in mine:
            first = next((k for k, u in enumerate(units) if near(clip.begin, u[0])), None)
            assert first is not None and any(near(clip.end, u[1]) for u in units), (clip, units)
            if clip.element.tag.endswith("}span") and clip.text_id.startswith("bs-ra-"):
                said = compact(units[first][2])
                shown = compact("".join(clip.element.itertext()))
                # The reader adds a full stop to a heading; Bark's cues are not captioned.
                assert shown == said or shown == said.rstrip(CLOSING), (shown, said)
            else:
                fallbacks += 1
    return fallbacks


def near(clip: float, caption: float) -> bool:
    """The same time to the millisecond (captions round to it one way or the other: JSON and SRT differ)."""
    return abs(clip - caption) <= 0.0011


def page_text(data: bytes) -> str:
    return "".join(etree.fromstring(data).itertext())


def check_original_kept(source: bytes, members: dict[str, bytes]) -> int:
    """Every member of the source is in the book; each page's text is unchanged (only markup around it
    differs), every other member but the package document is byte for byte the same. Returns how many
    pages changed."""
    original = zipfile.ZipFile(io.BytesIO(source))
    changed = 0
    for name in original.namelist():
        if name.endswith("/"):
            continue
        before, after = original.read(name), members[name]
        if before == after:
            continue
        if name.endswith((".xhtml", ".html", ".htm")):
            assert page_text(after) == page_text(before), name
            changed += 1
        else:
            assert name.endswith(".opf"), f"{name} changed"
    return changed


def audio_seconds(data: bytes) -> float:
    with av.open(io.BytesIO(data)) as container:
        return float(container.duration / av.time_base)
