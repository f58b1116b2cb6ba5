"""Text normalization: numbers, ordinals, dates, times, currencies and common abbreviations spelled out
in the voice's language before Bark reads them (num2words for the numbers, Babel for the locale's
separators, month and currency names).

Only what Bark is given changes: captions keep the text as written. Languages num2words cannot spell
(Chinese, Hindi) keep their digits. Each replacement is reported as a `Substitution`.
"""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal, InvalidOperation
from functools import lru_cache

from barkserve.markup.lexicon import Entry, Lexicon, Substitution

# num2words' languages among Bark's (Bark also speaks hi and zh, which num2words cannot spell).
SPELLED = ("en", "de", "es", "fr", "it", "pl", "pt", "ru", "tr", "ja", "ko")
# Longer numbers are read digit by digit: num2words' words for them help no listener.
MAX_DIGITS = 15
# Bare four-digit numbers in this range are read as years ("nineteen ninety").
YEARS = (1100, 2099)
CURRENCIES = {"$": "USD", "€": "EUR", "£": "GBP", "¥": "JPY", "₹": "INR", "₽": "RUB", "₩": "KRW", "₺": "TRY"}
# Ordinal suffixes by language: 1st, 2e, 3º.
ORDINAL_SUFFIX = {
    "en": r"(?:st|nd|rd|th)",
    "fr": r"(?:er|re|e|ème|eme)",
    "es": r"[ºª°]",
    "it": r"[ºª°]",
    "pt": r"[ºª°]",
}
# Common abbreviations, by language: no maintained library lists them, so they are data here, applied
# like a lexicon (whole words, the case rules of barkserve.markup.lexicon).
ABBREVIATIONS = {
    "en": {
        "Dr.": "Doctor", "Mr.": "Mister", "Mrs.": "Missus", "Prof.": "Professor", "Jr.": "Junior",
        "e.g.": "for example", "i.e.": "that is", "etc.": "et cetera", "vs.": "versus", "approx.": "approximately",
    },
    "de": {
        "z.B.": "zum Beispiel", "Dr.": "Doktor", "Hr.": "Herr", "Fr.": "Frau", "bzw.": "beziehungsweise",
        "usw.": "und so weiter", "d.h.": "das heißt", "ca.": "circa", "Nr.": "Nummer", "Prof.": "Professor",
    },
    "fr": {"M.": "Monsieur", "Mme": "Madame", "Mlle": "Mademoiselle", "Dr": "Docteur", "etc.": "et cetera"},
    "es": {
        "Sr.": "Señor", "Sra.": "Señora", "Srta.": "Señorita", "Dr.": "Doctor", "Dra.": "Doctora",
        "etc.": "etcétera", "Ud.": "usted",
    },
    "it": {"Sig.": "Signor", "Dott.": "Dottor", "ecc.": "eccetera"},
    "pt": {"Sr.": "Senhor", "Sra.": "Senhora", "Dr.": "Doutor", "etc.": "etcétera"},
}  # fmt: skip


def spells(language: str) -> bool:
    """Whether numbers can be spelled out in `language`."""
    return language in SPELLED


@lru_cache(maxsize=8192)  # pure, and a long text says the same numbers again while it is cut
def cardinal(number: int | Decimal, language: str) -> str:
    from num2words import num2words

    return str(num2words(number, lang=language))


@lru_cache(maxsize=8192)
def ordinal(number: int, language: str) -> str:
    from num2words import num2words

    return str(num2words(number, lang=language, to="ordinal"))


@lru_cache(maxsize=8192)
def year(number: int, language: str) -> str:
    from num2words import num2words

    if language == "ja":  # num2words writes Japanese years in the imperial era; the year as a number is what is written
        return cardinal(number, language)
    return str(num2words(number, lang=language, to="year"))


def digits(text: str, language: str) -> str:
    """Each digit of `text` as a word ("2024" -> "two zero two four"); other characters dropped."""
    return " ".join(cardinal(int(c), language) for c in text if c.isdigit())


def characters(text: str, language: str) -> str:
    """`text` spelled character by character: letters as letters, digits as words."""
    return " ".join(cardinal(int(c), language) if c.isdigit() else c for c in text if not c.isspace())


def telephone(text: str, language: str) -> str:
    """A telephone number digit by digit, its groups separated by commas (a short pause)."""
    groups = [g for g in re.split(r"[^\d+]+", text) if g]
    return ", ".join(digits(g, language) if g != "+" else "+" for g in groups)


@lru_cache(maxsize=8192)
def date(day: dt.date, language: str) -> str:
    """`day` written the locale's long way (Babel) with its numbers spelled: "March fifth, twenty twenty-four"."""
    from babel.dates import format_date

    written = format_date(day, format="long", locale=language)

    def spell(match: re.Match[str]) -> str:
        number = int(match.group(1))
        if number == day.year and len(match.group(1)) == 4:
            return year(number, language)
        if language in ("en", "de") or match.group(2):  # "March 5" is read "March fifth"; German "5." is ordinal
            return ordinal(number, language)
        return cardinal(number, language)

    return re.sub(r"(\d+)(\.?)", spell, written)


@lru_cache(maxsize=8192)
def clock(hours: int, minutes: int, meridiem: str | None, language: str) -> str:
    """A time of day: "14:30" -> "fourteen thirty", "2:05 pm" -> "two oh five p m"."""
    said = cardinal(hours, language)
    if language == "en":
        if minutes == 0:
            said += "" if meridiem else " hundred" if hours > 12 or hours == 0 else " o'clock"
        else:
            said += (" oh " if minutes < 10 else " ") + cardinal(minutes, language)
        return said + (f" {meridiem[0].lower()} m" if meridiem else "")
    return said if minutes == 0 else f"{said} {cardinal(minutes, language)}"


@lru_cache(maxsize=8192)
def money(amount: Decimal, code: str, language: str) -> str:
    """An amount of a currency in words: num2words where it knows the currency, else Babel's name."""
    from babel.numbers import get_currency_name
    from num2words import num2words

    whole = amount == amount.to_integral_value()
    if not whole:  # num2words says the cents too ("twelve dollars, fifty cents")
        try:
            return str(num2words(amount, lang=language, to="currency", currency=code))
        except (NotImplementedError, KeyError, TypeError, ValueError):
            pass
    number: int | Decimal = int(amount) if whole else amount
    return f"{cardinal(number, language)} {get_currency_name(code, count=int(amount), locale=language)}"


@lru_cache(maxsize=16)
def _pattern(language: str) -> re.Pattern[str]:
    from babel.numbers import get_decimal_symbol, get_group_symbol

    point, group = re.escape(get_decimal_symbol(language)), re.escape(get_group_symbol(language))
    groups = f"(?:{group}|[.\u00a0\u202f ])" if language != "en" else group
    number = rf"\d{{1,3}}(?:{groups}\d{{3}})+(?:{point}\d+)?|\d+(?:{point}\d+)?"
    symbols = "".join(re.escape(s) for s in CURRENCIES)
    ordinal_suffix = ORDINAL_SUFFIX.get(language)
    parts = [
        r"(?P<date>(?<!\w)\d{4}-\d{2}-\d{2}(?!\w))",
        r"(?P<time>(?<![\w:])(?P<h>[01]?\d|2[0-3]):(?P<m>[0-5]\d)(?:\s?(?P<ampm>[AaPp])\.?[Mm]\.?)?(?![\w:]))",
        rf"(?P<money>(?<![\w.,])(?P<sym>[{symbols}])\s?(?P<amount>{number})(?![\w]))",
        rf"(?P<money2>(?<![\w.,])(?P<amount2>{number})\s?(?P<sym2>[{symbols}]))",
    ]
    if ordinal_suffix:
        parts.append(rf"(?P<ordinal>(?<![\w.,])(?P<nth>\d{{1,9}})(?i:{ordinal_suffix})(?!\w))")
    parts.append(rf"(?P<number>(?<![\w.,])(?P<minus>-)?(?P<value>{number})(?!\w))")
    return re.compile("|".join(parts))


@lru_cache(maxsize=8192)
def _decimal(text: str, language: str) -> Decimal | None:
    from babel.numbers import NumberFormatError, parse_decimal

    if sum(c.isdigit() for c in text) > MAX_DIGITS:
        return None
    try:
        return parse_decimal(text.replace("\u00a0", "").replace("\u202f", "").replace(" ", ""), locale=language)
    except (NumberFormatError, InvalidOperation, ValueError):
        return None


def _say(match: re.Match[str], language: str) -> tuple[str, str] | None:
    """What a match is said as, and its kind; None leaves it as written."""
    if match.group("date"):
        try:
            day = dt.date.fromisoformat(match.group("date"))
        except ValueError:
            return None
        return date(day, language), "date"
    if match.group("time"):
        return clock(int(match.group("h")), int(match.group("m")), match.group("ampm"), language), "time"
    if match.group("money") or match.group("money2"):
        symbol, raw = match.group("sym") or match.group("sym2"), match.group("amount") or match.group("amount2")
        amount = _decimal(raw, language)
        return None if amount is None else (money(amount, CURRENCIES[symbol], language), "currency")
    if match.groupdict().get("ordinal"):
        return ordinal(int(match.group("nth")), language), "ordinal"
    value = _decimal(match.group("value"), language)
    if value is None:
        return None
    if match.group("minus"):
        value = -value
    if value == value.to_integral_value() and "." not in str(value):
        whole = int(value)
        if match.group("value").isdigit() and len(match.group("value")) == 4 and YEARS[0] <= whole <= YEARS[1]:
            return year(whole, language), "year"  # "in 1990": a bare four-digit number like a year is read as one
        return cardinal(whole, language), "number"
    return cardinal(value, language), "number"


@lru_cache(maxsize=16)
def abbreviations(language: str) -> Lexicon:
    table = ABBREVIATIONS.get(language, {})
    return Lexicon(tuple(Entry(language, w, s, "normalize:abbreviation") for w, s in table.items()))


def normalize(text: str, language: str) -> tuple[str, list[Substitution]]:
    """`text` with its abbreviations, numbers, dates, times and amounts written as words in `language`."""
    text, found = abbreviations(language).apply(text, language)
    if not spells(language):
        return text, found

    def replace(match: re.Match[str]) -> str:
        try:
            said = _say(match, language)
        except Exception:  # num2words or Babel cannot say this one (their errors vary by language)
            said = None  # Bark reads it as written
        if said is None:
            return match.group(0)
        found.append(Substitution(match.group(0), said[0], f"normalize:{said[1]}"))
        # "1990-1995": the words must not run into the hyphen ("ninety-one thousand")
        before = " " if match.start() > 0 and text[match.start() - 1] in "-/" else ""
        after = " " if match.end() < len(text) and text[match.end()] in "-/" else ""
        return before + said[0] + after

    return _pattern(language).sub(replace, text), found
