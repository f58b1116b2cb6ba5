"""The SSML subset barkserve speaks: parsed safely (defusedxml: no DTD, no entities, no external
references), bounded in size and depth, read into a `Script`.

Supported: `<speak>` (the root only), `<p>`, `<s>`, `<break time strength>`, `<voice name>`,
`<prosody rate>`, `<sub alias>`, `<say-as interpret-as>` (characters, cardinal, ordinal, digits, date,
telephone), `<emphasis>` (its words are spoken as they are: Bark has no emphasis control). Bark's cues
(`[laughs]`, `♪ ... ♪`) and `[pause]` tags in the text pass through. Anything else, `<phoneme>`
included (Bark has no phoneme input), is an `InvalidRequest` naming the element.
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring

from barkserve.errors import InvalidRequest
from barkserve.markup import normalize as spell
from barkserve.markup.script import MAX_PAUSE_SEC, Replacement, Run, Script, pause_seconds, with_pause_tags
from barkserve.text import JOINERS, normalize_text

MAX_SSML_CHARS = 200_000
MAX_DEPTH = 32
MAX_ELEMENTS = 10_000
# SSML's break strengths in seconds; `<break/>` alone is "medium".
STRENGTHS = {"none": 0.0, "x-weak": 0.1, "weak": 0.25, "medium": 0.5, "strong": 1.0, "x-strong": 2.0}
# A paragraph ends with a pause like a strong break.
PARAGRAPH_PAUSE_SEC = STRENGTHS["medium"]
RATES = {"x-slow": 0.5, "slow": 0.75, "medium": 1.0, "fast": 1.25, "x-fast": 1.5, "default": 1.0}
MIN_SPEED, MAX_SPEED = 0.25, 4.0
SAY_AS = ("characters", "cardinal", "ordinal", "digits", "date", "telephone")
DATE_FORMATS = ("ymd", "dmy", "mdy")
TIME = re.compile(r"(\d{1,6}(?:\.\d{1,6})?)\s*(s|ms)")
# Attributes each element may have (namespaced xml:lang and xmlns are allowed everywhere).
ATTRIBUTES = {
    "speak": {"version"},
    "p": set(),
    "s": set(),
    "break": {"time", "strength"},
    "voice": {"name"},
    "prosody": {"rate"},
    "sub": {"alias"},
    "say-as": {"interpret-as", "format", "detail"},
    "emphasis": {"level"},
}
NAMESPACE = re.compile(r"\{[^}]*\}")


def is_ssml(text: str) -> bool:
    """Whether a text is SSML by its look: it starts with `<speak>` (or `<speak ` with attributes)."""
    head = text.lstrip()[:7]
    return head in ("<speak>", "<speak ", "<speak\t", "<speak\n") or text.lstrip().startswith("<speak/")


@dataclass
class _Builder:
    """The script as it is read: text, runs and replacements, in normalized text coordinates."""

    resolve_voice: Callable[[str], str]
    language_of: Callable[[str | None], str]
    out: list[str] = field(default_factory=list)  # one character each
    runs: list[Run] = field(default_factory=list)
    replacements: list[Replacement] = field(default_factory=list)
    run_start: int = 0
    elements: int = 0

    @property
    def length(self) -> int:
        return len(self.out)

    def text(self, raw: str | None) -> None:
        """Append text, folded as `normalize_text` folds it, so that the script's text is its own normal form."""
        if not raw:
            return
        for c in unicodedata.normalize("NFC", raw):
            kind = unicodedata.category(c)
            if kind in ("Cc", "Zl", "Zp") or c.isspace():
                if self.out and self.out[-1] != " ":
                    self.out.append(" ")
            elif kind != "Cf" or c in JOINERS:
                self.out.append(c)

    def cut(self, voice: str | None, speed: float | None, pause: float | None) -> None:
        """End the current run here (with `pause` after it); the next run starts after a space."""
        end = self.length
        if self.out and self.out[-1] != " ":
            self.out.append(" ")  # block elements and breaks separate words: "<s>A.</s><s>B.</s>" is "A. B."
        if end > self.run_start or pause is not None:
            self.runs.append(Run(self.run_start, end, voice, speed, pause))
        self.run_start = end


def parse_ssml(text: str, resolve_voice: Callable[[str], str], language_of: Callable[[str | None], str]) -> Script:
    """Read an SSML document into a `Script`.

    Args:
        text: The document; it must have `<speak>` as its root.
        resolve_voice: A voice name as written -> the voice's name (raises InvalidVoice for no voice).
        language_of: A voice name (None: the request's) -> its language, for `<say-as>`.

    Raises:
        InvalidRequest: malformed or unsafe XML, unsupported elements or attributes, bad values.
    """
    if len(text) > MAX_SSML_CHARS:
        raise InvalidRequest(f"SSML is at most {MAX_SSML_CHARS} characters; got {len(text)}")
    try:
        root = fromstring(text, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DefusedXmlException as exc:
        raise InvalidRequest(f"SSML must not declare a DTD, entities or external references: {exc}") from exc
    except ET.ParseError as exc:
        raise InvalidRequest(
            f"SSML is not well-formed XML: {exc}; escape '<' and '&' in text as &lt; and &amp;"
        ) from exc
    if _tag(root) != "speak":
        raise InvalidRequest(f"SSML's root element must be <speak>; got <{_tag(root)}>")
    builder = _Builder(resolve_voice, language_of)
    _element(root, builder, None, None, 0)
    builder.cut(None, None, None)
    while builder.out and builder.out[-1] == " ":
        builder.out.pop()
    normalized = "".join(builder.out)
    runs = [Run(r.start, min(r.end, len(normalized)), r.voice, r.speed, r.pause) for r in builder.runs]
    runs = [r for r in runs if r.end > r.start or r.pause is not None]
    if not normalized.strip():
        raise InvalidRequest("the SSML has no text to speak")
    if normalize_text(normalized) != normalized:  # a combining mark at the start of an element's text
        raise InvalidRequest("SSML text must not start an element with a combining mark; put it after its letter")
    script = Script(normalized, normalized, tuple(runs), tuple(builder.replacements), ssml=True)
    return with_pause_tags(script)


def _tag(element: ET.Element) -> str:
    return NAMESPACE.sub("", str(element.tag))


def _element(element: ET.Element, b: _Builder, voice: str | None, speed: float | None, depth: int) -> None:
    """Read `element` (its text, children and tails) in `voice` at `speed`."""
    tag = _tag(element)
    b.elements += 1
    if depth > MAX_DEPTH or b.elements > MAX_ELEMENTS:
        raise InvalidRequest(f"SSML is nested at most {MAX_DEPTH} deep with at most {MAX_ELEMENTS} elements")
    if tag not in ATTRIBUTES:
        raise InvalidRequest(_unsupported(tag))
    if tag == "speak" and depth > 0:
        raise InvalidRequest("<speak> is the root of SSML only; it cannot be nested inside another element")
    for name in element.attrib:
        local = NAMESPACE.sub("", name)
        if local not in ATTRIBUTES[tag] and not name.startswith("{http://www.w3.org/XML/1998/namespace}"):
            raise InvalidRequest(f"<{tag} {local}> is not supported; <{tag}> takes {sorted(ATTRIBUTES[tag]) or 'none'}")
    if tag == "break":
        _break(element, b, voice, speed)
        return
    if tag in ("sub", "say-as"):
        _replaced(element, b, tag, voice)
        return
    inner_voice, inner_speed = voice, speed
    if tag == "voice":
        inner_voice = _voice(element, b)
    elif tag == "prosody":
        inner_speed = _rate(element.get("rate"))
    changes = (inner_voice, inner_speed) != (voice, speed)
    if changes or tag in ("s", "p"):
        b.cut(voice, speed, None)
    b.text(element.text)
    for child in element:
        _element(child, b, inner_voice, inner_speed, depth + 1)
        b.text(child.tail)
    if changes or tag in ("s", "p"):
        b.cut(inner_voice, inner_speed, PARAGRAPH_PAUSE_SEC if tag == "p" else None)


def _unsupported(tag: str) -> str:
    if tag == "phoneme":
        return (
            '<phoneme> is not supported: Bark reads text, not phonemes; respell the word with <sub alias="..."> '
            "or a lexicon entry"
        )
    return f"<{tag}> is not supported; barkserve's SSML subset is {', '.join(f'<{t}>' for t in ATTRIBUTES)}"


def _break(element: ET.Element, b: _Builder, voice: str | None, speed: float | None) -> None:
    if len(element) or (element.text or "").strip():
        raise InvalidRequest('<break> is an empty element: write <break time="1s"/>')
    time, strength = element.get("time"), element.get("strength")
    if time is not None:
        match = TIME.fullmatch(time.strip())
        if match is None:
            raise InvalidRequest(f'<break time="{time[:40]}">: write a time like "1.5s" or "300ms"')
        seconds = pause_seconds(match.group(1), match.group(2), f'<break time="{time}">')
    elif strength is not None:
        if strength not in STRENGTHS:
            raise InvalidRequest(f'<break strength="{strength[:40]}">: strength is one of {list(STRENGTHS)}')
        seconds = STRENGTHS[strength]
    else:
        seconds = STRENGTHS["medium"]
    if seconds > MAX_PAUSE_SEC:
        raise InvalidRequest(f"<break>: a pause is at most {MAX_PAUSE_SEC:g} s")
    b.cut(voice, speed, seconds)


def _voice(element: ET.Element, b: _Builder) -> str:
    name = element.get("name")
    if not name or not name.strip():
        raise InvalidRequest('<voice> needs a name: <voice name="v2/en_speaker_3">')
    try:
        return b.resolve_voice(name.strip())
    except InvalidRequest as exc:
        raise type(exc)(f'<voice name="{name[:64]}">: {exc.message}') from exc


def _rate(rate: str | None) -> float:
    if rate is None:
        raise InvalidRequest('<prosody> needs a rate: <prosody rate="slow"> or rate="120%"')
    value = rate.strip()
    if value in RATES:
        return RATES[value]
    try:
        speed = float(value[:-1]) / 100 if value.endswith("%") else float(value)
    except ValueError:
        speed = -1.0
    if not MIN_SPEED <= speed <= MAX_SPEED:
        raise InvalidRequest(
            f'<prosody rate="{rate[:40]}">: rate is one of {list(RATES)}, a percentage from 25% to 400%, '
            "or a factor from 0.25 to 4"
        )
    return speed


def _replaced(element: ET.Element, b: _Builder, tag: str, voice: str | None) -> None:
    """`<sub>` and `<say-as>`: their text is shown, and said as the alias or spelled out."""
    if len(element):
        raise InvalidRequest(f"<{tag}> holds text only, not <{_tag(element[0])}>")
    shown = element.text or ""
    if not shown.strip():
        raise InvalidRequest(f"<{tag}> needs text inside it")
    if tag == "sub":
        alias = element.get("alias")
        if alias is None or not alias.strip():
            raise InvalidRequest('<sub> needs an alias: <sub alias="World Wide Web">WWW</sub>')
        said = " ".join(alias.split())
    else:
        said = _say_as(element, shown.strip(), b.language_of(voice))
    start = b.length
    b.text(shown)
    end = b.length
    while start < end and b.out[start] == " ":
        start += 1
    while end > start and b.out[end - 1] == " ":
        end -= 1
    b.replacements.append(Replacement(start, end, said, f"ssml:{tag}"))


def _say_as(element: ET.Element, text: str, language: str) -> str:
    kind = element.get("interpret-as")
    where = f'<say-as interpret-as="{kind}">{text[:40]}</say-as>'
    if kind not in SAY_AS:
        raise InvalidRequest(f'<say-as interpret-as="{str(kind)[:40]}"> is not supported; use one of {list(SAY_AS)}')
    if kind == "characters":
        return spell.characters(text, language) if spell.spells(language) else " ".join(text.replace(" ", ""))
    if not spell.spells(language):
        return text  # no words for numbers in this language: Bark reads the digits
    try:
        if kind == "cardinal":
            return spell.cardinal(_number(text, where), language)
        if kind == "ordinal":
            return spell.ordinal(int(_number(text, where)), language)
        if kind == "digits":
            return spell.digits(text, language)
        if kind == "telephone":
            return spell.telephone(text, language)
        return spell.date(_date(text, element.get("format") or "ymd", where), language)
    except (NotImplementedError, OverflowError) as exc:
        raise InvalidRequest(f"{where}: cannot be said in {language!r} ({exc})") from exc


def _number(text: str, where: str) -> int:
    digits = text.replace(",", "").replace(" ", "").replace("\u00a0", "")
    if not re.fullmatch(r"-?\d{1,15}", digits):
        raise InvalidRequest(f"{where}: needs a whole number of at most 15 digits")
    return int(digits)


def _date(text: str, fmt: str, where: str) -> dt.date:
    if fmt not in DATE_FORMATS:
        raise InvalidRequest(f'{where}: format is one of {list(DATE_FORMATS)}; got "{fmt[:20]}"')
    parts = re.split(r"[-/.\s]+", text)
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        raise InvalidRequest(f"{where}: write the date as three numbers, like 2024-03-15 (format {fmt})")
    values = dict(zip(fmt, (int(p) for p in parts), strict=True))
    try:
        return dt.date(values["y"], values["m"], values["d"])
    except ValueError as exc:
        raise InvalidRequest(f"{where}: not a date ({exc})") from exc
