"""Who says what: the quotes of a chapter (`books.quotes`) attributed to speakers by rules, in this order:

1. a speech verb next to a name or pronoun in the narration around the quote ("said Elizabeth",
   "Elizabeth replied", "said he", « dit Jean », „sagte er“, «— сказала Анна»; in French also the tag
   inside the quote, « Oui, dit-elle, je viens »); a pronoun is the last
   character of its gender named in the narration before it, else the one the line before addresses,
   else the last speaker of its gender; a tag that names nobody ("said her father") leaves it unattributed;
2. a quote in the same paragraph as an attributed one: the same speaker;
3. a line right after one that addresses a known speaker by name: that speaker;
4. alternation: in a run of unattributed quote paragraphs after two speakers, A B A B (a vocative of
   the earlier speaker makes it the other).

Labels only choose voices: `books.voices.voice_book` cuts the chapter at the quotes' offsets and
`books.quotes.check_verbatim` proves that the pieces join back to it byte for byte.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from barkserve.books.quotes import DASH, Quote

# Speech verbs by language (past tense and the usual historic present); matched as whole words.
VERBS = {
    "en": "said|says|say|replied|replies|answered|asked|asks|cried|exclaimed|added|continued|returned|observed|"
    "whispered|shouted|repeated|rejoined|began|resumed|inquired|enquired|remarked|muttered|called|interrupted|"
    "explained|declared|murmured|protested|insisted|went on|thought|retorted|urged|pursued|persisted|"
    "screamed|sighed|laughed|answered|demanded|responded|stammered|faltered|concluded|agreed|hinted|"
    "admitted|whispered|growled|snapped|told|wrote|spoke|ventured|suggested|reasoned",
    "fr": "dit|disait|répondit|répond|demanda|demande|s'écria|s’écria|s'écrie|s’écrie|reprit|reprend|ajouta|ajoute|"
    "répliqua|réplique|murmura|murmure|cria|crie|continua|continue|fit|poursuivit|poursuit|interrompit|"
    "observa|déclara|s'exclama|s’exclama|répéta|dis-je|fis-je|insista|soupira|hurla|lança|souffla|expliqua|"
    "conclut|objecta",
    "de": "sagte|sagt|fragte|fragt|antwortete|antwortet|rief|erwiderte|meinte|flüsterte|fuhr fort|versetzte|"
    "entgegnete|sprach|bemerkte|schrie|murmelte|fügte hinzu|wiederholte|seufzte|lachte|rief aus|erklärte",
    "ru": "сказал|сказала|спросил|спросила|ответил|ответила|крикнул|крикнула|закричал|закричала|прошептал|"
    "прошептала|продолжал|продолжала|заметил|заметила|произнёс|произнес|произнесла|воскликнул|воскликнула|"
    "проговорил|проговорила|отвечал|отвечала|говорил|говорила|сказал он|подумал|подумала|возразил|возразила|"
    "повторил|повторила|пробормотал|пробормотала|добавил|добавила|спросил он|закричал он",
    "es": "dijo|preguntó|respondió|contestó|exclamó|gritó|replicó|añadió|murmuró|repuso|continuó|insistió|"
    "susurró|explicó|observó",
    "it": "disse|chiese|rispose|esclamò|gridò|replicò|aggiunse|mormorò|domandò|riprese|continuò|osservò|"
    "soggiunse|fece|sussurrò",
    "pl": "powiedział|powiedziała|zapytał|zapytała|odpowiedział|odpowiedziała|krzyknął|krzyknęła|szepnął|"
    "szepnęła|rzekł|rzekła|spytał|spytała|dodał|dodała|mruknął|mruknęła|zawołał|zawołała",
    "pt": "disse|perguntou|respondeu|exclamou|gritou|replicou|acrescentou|murmurou|continuou",
}
PRONOUNS = {  # pronoun -> gender
    "en": {"he": "male", "she": "female"},
    "fr": {"il": "male", "elle": "female"},
    "de": {"er": "male", "sie": "female"},
    "ru": {"он": "male", "она": "female"},
    "es": {"él": "male", "ella": "female"},
    "it": {"lui": "male", "lei": "female", "egli": "male", "ella": "female"},
    "pl": {"on": "male", "ona": "female"},
    "pt": {"ele": "male", "ela": "female"},
}
FIRST_PERSON = {"I", "je", "ich", "я", "yo", "io", "ja", "eu", "Je", "Ich", "Я", "Yo", "Io", "Ja", "Eu"}
TITLES_MALE = r"Mr\.?|Sir|Lord|Colonel|Captain|Dr\.?|Doctor|King|Prince|Monsieur|M\.|Herr|Graf|Don|Señor|Signor|Pan"
TITLES_FEMALE = (
    r"Mrs\.?|Miss|Lady|Madame|Mme\.?|Mlle\.?|Mademoiselle|Frau|Fräulein|Queen|Princess|Doña|Señora|Signora|Pani"
)
UPPER = "A-ZÀ-ÖØ-ÞА-ЯЁŁŚŻŹĆŃÓ"
WORD = r"[\w'’-]+"
NAME_WORD = rf"[{UPPER}][\w'’-]*"
NAME = rf"(?:(?:{TITLES_MALE}|{TITLES_FEMALE})\s+)?{NAME_WORD}(?:\s+{NAME_WORD})?"
# Capitalized words that start sentences or stand in dialogue tags without being anyone's name.
NOT_NAMES = {
    "The", "A", "An", "And", "But", "Then", "When", "Yes", "No", "Oh", "Well", "It", "This", "That", "There",
    "Here", "What", "Why", "How", "Who", "Where", "So", "If", "As", "At", "In", "On", "For", "Now", "Do", "Is",
    "Et", "Mais", "Il", "Elle", "Le", "La", "Les", "Un", "Une", "Oui", "Non", "Ah", "Eh", "Er", "Sie", "Es", "Der",
    "Die", "Das", "Und", "Aber", "Ja", "Nein", "Он", "Она", "И", "Но", "А", "Да", "Нет", "El", "Ella", "Lui", "Lei",
    "Chapter", "Chapitre", "Kapitel", "Глава", "Capítulo", "Capitolo", "Rozdział", "His", "Her", "Their", "She",
    "He", "They", "We", "You", "Your", "My", "Our", "Mr", "Mrs", "Miss", "Lady", "Sir", "Madame", "Monsieur",
}  # fmt: skip
FEMALE_TITLE = re.compile(rf"^(?:{TITLES_FEMALE})\s")
MALE_TITLE = re.compile(rf"^(?:{TITLES_MALE})\s")
# Languages whose dialogue tags stand inside the quote, between commas, with no closing mark before them.
INSIDE_TAGS = {"fr"}
# Between a verb and the name or pronoun after it: a space, or French inversion's hyphen ("dit-il", "demanda-t-elle").
SEP = r"(?:\s+|-(?:t-)?)"
# How much narration around a quote is read for its dialogue tag.
TAG_CHARS = 80
MAX_LABEL_CHARS = 80  # a speaker's name, as long as names get


@dataclass
class Conversation:
    """What attribution remembers while it walks a chapter: recent speakers and genders."""

    recent: list[str] = field(default_factory=list)  # speakers, last one last
    genders: dict[str, str | None] = field(default_factory=dict)  # None: a speaker of unknown gender

    def said(self, name: str, gender: str | None) -> None:
        if gender is not None or name not in self.genders:
            self.genders[name] = self.genders.get(name) or gender
        if name in self.recent:
            self.recent.remove(name)
        self.recent.append(name)

    def last_of(self, gender: str, besides: str | None = None) -> str | None:
        for allowed in ((gender,), (gender, None)):  # a known gender first, then any not known to differ
            for name in reversed(self.recent):
                if self.genders.get(name) in allowed and name != besides:
                    return name
        return None


def attribute(
    text: str, quotes: Sequence[Quote], language: str | None, genders: dict[str, str | None] | None = None
) -> list[Quote]:
    """Each quote with its speaker by the rules (see the module's docstring); None where none applies."""
    lang = language if language in VERBS else "en"
    verbs = VERBS[lang]
    pronouns = PRONOUNS.get(lang, {})
    pronoun = "|".join(map(re.escape, pronouns)) or "(?!)"
    # Verbs and pronouns in any case ("Said he", "Sagte er"); names capitalized.
    who = rf"(?P<who>{NAME}|(?i:{pronoun}))"
    after = re.compile(rf"^[\s,;:.!?…{DASH}]*(?i:{verbs}){SEP}{who}(?!\w)")
    after_name = re.compile(rf"^[\s,;:.!?…{DASH}]*{who}\s+(?:\w+\s+)?(?i:{verbs})(?!\w)")
    before = re.compile(rf"{who}\s+(?:\w+\s+)?(?i:{verbs})(?!\w)[^.!?\"“”«»„]*?[,:]?\s*[{DASH}]?\s*$")
    unnamed = re.compile(rf"^[\s,;:.!?…{DASH}]*(?i:{verbs})\s+(?:his|her|their|the|a|an)\s")
    talk = Conversation(genders=dict(genders) if genders is not None else guess_genders(text, after, lang))
    out: list[Quote] = []
    for k in range(len(quotes)):
        found = _tag(text, quotes, k, (after, after_name, before, unnamed), pronouns, talk, lang)
        out.append(found)
        if found.speaker is not None:
            talk.said(found.speaker, found.gender)
    return _by_context(text, out)


GENDER_WORDS = {
    "en": {"he": "male", "him": "male", "his": "male", "she": "female", "her": "female", "hers": "female"},
    "fr": {"il": "male", "elle": "female"},
    "de": {"er": "male", "ihm": "male", "sein": "male", "seine": "male"},
    "ru": {"он": "male", "его": "male", "ему": "male", "она": "female", "её": "female", "ей": "female"},
    "es": {"él": "male", "ella": "female"},
    "it": {"lui": "male", "lei": "female"},
    "pl": {"on": "male", "ona": "female", "jego": "male", "jej": "female"},
}
GENDER_CONTEXT = 120


def guess_genders(text: str, after: re.Pattern[str], lang: str) -> dict[str, str | None]:
    """Each name that speaks in `text` ("said NAME") by its title, else by the pronouns that most
    often follow it in the narration (before another name comes up)."""
    words = GENDER_WORDS.get(lang, GENDER_WORDS["en"])
    speakers = {
        " ".join(m.group("who").split())
        for m in re.finditer(after.pattern.replace(rf"^[\s,;:.!?…{DASH}]*", r"(?<!\w)", 1), text)
        if m.group("who")[:1].isupper() and m.group("who") not in NOT_NAMES
    }
    firsts = {w for n in speakers for w in n.split()}
    out: dict[str, str | None] = {}
    for name in speakers:
        titled = _gender(name, "", lang)
        if titled is not None:
            out[name] = titled
            continue
        votes = {"male": 0, "female": 0}
        for m in re.finditer(rf"(?<!\w){re.escape(name)}(?!\w)", text):
            window = text[m.end() : m.end() + GENDER_CONTEXT]
            for w in re.findall(r"\w+", window):
                if w in firsts and w not in name.split():
                    break  # another speaker's name: the pronouns after it are theirs
                if w.lower() in words:
                    votes[words[w.lower()]] += 1
                    break
        out[name] = max(votes, key=lambda g: votes[g]) if votes["male"] != votes["female"] else None
    return out


def book_genders(text: str, language: str | None) -> dict[str, str | None]:
    """`guess_genders` over a whole book (every chapter's text), in its language's words."""
    lang = language if language in VERBS else "en"
    pronoun = "|".join(map(re.escape, PRONOUNS.get(lang, {}))) or "(?!)"
    after = re.compile(rf"^[\s,;:.!?…{DASH}]*(?i:{VERBS[lang]}){SEP}(?P<who>{NAME}|(?i:{pronoun}))(?!\w)")
    return guess_genders(text, after, lang)


def _tag(text, quotes, k, patterns, pronouns, talk, lang):
    """Rule 1: a speech verb with a name or pronoun in the narration right after or right before quote k."""
    quote = quotes[k]
    nxt = quotes[k + 1].start if k + 1 < len(quotes) and quotes[k + 1].paragraph == quote.paragraph else None
    tail_end = min(nxt if nxt is not None else len(text), quote.end + TAG_CHARS)
    tail = text[quote.end : tail_end].split("\n\n")[0]
    prev = quotes[k - 1].end if k and quotes[k - 1].paragraph == quote.paragraph else None
    head_start = max(prev if prev is not None else 0, quote.start - TAG_CHARS)
    head = text[head_start : quote.start].split("\n\n")[-1]
    after, after_name, before, unnamed_tag = patterns
    unnamed = unnamed_tag.match(tail)
    if unnamed is not None:  # "said her father": a tag, but no name (the context rules must not guess here)
        return _with(quote, None, f"not named: {tail[: unnamed.end() + 12].strip()!r}")
    places = [(after, tail, "after"), (after_name, tail, "after"), (before, head, "before")]
    if lang in INSIDE_TAGS:  # French writes the tag inside the quote: «Oui, dit Marie, je viens» / --Oui, dit-il.
        inner = text[quote.start + 1 : quote.end]
        places += [(after, inner[m.start() :], "inside") for m in re.finditer(r"(?<=[,!?…])\s", inner)]
    for pattern, part, where in places:
        match = pattern.search(part) if where == "before" else pattern.match(part)
        if match is None:
            continue
        who = re.sub(r"(?:['’]s|[-'’]+)$", "", " ".join(match.group("who").split()))
        if who in FIRST_PERSON:
            return _with(quote, None, f"first person: {match.group(0).strip()!r}")
        gender = pronouns.get(who.lower())
        if gender is not None:
            last = talk.recent[-1] if talk.recent else None
            name = (
                _mentioned(head, gender, talk)
                or _addressed(text, quotes, k, gender, talk)
                or _pronoun(talk, gender, last, quote, quotes, k)
            )
            if name is None:
                continue
            return _with(quote, name, f"{match.group(0).strip()!r} ({who} = {name})", gender)
        if who.split()[0] in NOT_NAMES and len(who.split()) == 1:
            continue
        return _with(quote, who, repr(match.group(0).strip()), _gender(who, match.group(0), lang))
    return quote


def _pronoun(talk: Conversation, gender: str, last: str | None, quote: Quote, quotes, k):  # type: ignore[no-untyped-def]
    """The speaker a pronoun stands for: the last speaker of its gender, but not the one who just spoke
    in another paragraph (a new paragraph is a new speaker)."""
    same_paragraph = k and quotes[k - 1].paragraph == quote.paragraph
    besides = None if same_paragraph else last
    return talk.last_of(gender, besides) or talk.last_of(gender)


def _addressed(text: str, quotes: Sequence[Quote], k: int, gender: str | None, talk: Conversation) -> str | None:
    """The known speaker (of `gender`, when given) whom the quote before k, in the paragraph before, addresses:
    the one who answers ("_You_ observed it, Mr. Darcy," ... "Certainly not.")."""
    if not k or quotes[k - 1].paragraph != quotes[k].paragraph - 1:
        return None
    j = k - 1
    while j and quotes[j - 1].paragraph == quotes[k - 1].paragraph:  # back to the paragraph's first quote
        j -= 1
    first = quotes[j]
    called = _vocative(text, first) or _vocative(text, quotes[k - 1])
    if called is None:
        return None
    known = [n for n in [*reversed(talk.recent), *talk.genders] if _same(called, n)]
    known = [n for n in known if gender is None or talk.genders.get(n) in (gender, None)]
    return known[0] if known else None


def _mentioned(narration: str, gender: str, talk: Conversation) -> str | None:
    """The last name of `gender` in the narration before a quote ("Tom went in. 'Night,' he said")."""
    for allowed in ((gender,), (gender, None)):
        found = [(narration.rfind(n), n) for n, g in talk.genders.items() if g in allowed and n in narration]
        if found:
            return max(found)[1]
    return None


def _gender(name: str, tag: str, lang: str) -> str | None:
    if FEMALE_TITLE.match(name + " "):
        return "female"
    if MALE_TITLE.match(name + " "):
        return "male"
    if lang in ("ru", "pl"):  # the past tense says it: сказала, powiedziała
        verb = tag.lower()
        if re.search(r"(?:ла|ła)\b", verb):
            return "female"
        if re.search(r"(?:л|ł)\b", verb):
            return "male"
    return None


def _with(quote: Quote, speaker: str | None, evidence: str, gender: str | None = None) -> Quote:
    return Quote(quote.start, quote.end, quote.paragraph, speaker, evidence, gender)


def _by_context(text: str, quotes: list[Quote]) -> list[Quote]:
    """Rules 2-4: same paragraph, alternation in two-person runs, vocatives."""
    out = list(quotes)
    # Rule 2: quotes of one paragraph share its attributed speaker.
    named: dict[int, Quote] = {}
    for quote in out:
        if quote.speaker is not None:
            named.setdefault(quote.paragraph, quote)
    for k, quote in enumerate(out):
        mate = named.get(quote.paragraph)
        if quote.speaker is None and not quote.evidence and mate is not None:
            out[k] = _with(quote, mate.speaker, "same paragraph", mate.gender)
    # Rules 3 and 4, by paragraph: a run of speech paragraphs alternates between two speakers.
    talk = Conversation(genders={q.speaker: q.gender for q in out if q.speaker and q.gender})
    for q in out:
        if q.speaker is not None:
            talk.said(q.speaker, None)
    firsts = _paragraph_firsts(out)
    speakers: dict[int, str | None] = {p: out[i].speaker for p, i in firsts.items()}
    order = sorted(firsts)
    for n, paragraph in enumerate(order):
        k = firsts[paragraph]
        if out[k].speaker is not None or out[k].evidence:
            continue
        called = _addressed(text, out, k, None, talk)
        if called is not None and called != speakers.get(paragraph - 1):
            speakers[paragraph] = called
            _fill(out, k, called, "addressed in the paragraph before")
            continue
        if n >= 2 and order[n - 1] == paragraph - 1 and order[n - 2] == paragraph - 2:
            a, b = speakers[order[n - 2]], speakers[order[n - 1]]
            if a is not None and b is not None and a != b:
                addressed = _vocative(text, out[k])
                name = b if addressed is not None and _same(addressed, a) else a
                speakers[paragraph] = name
                _fill(out, k, name, "alternation" + (f", addresses {addressed}" if name == b else ""))
                continue
        addressed = _vocative(text, out[k])
        if addressed is not None and n >= 1 and order[n - 1] == paragraph - 1:
            last = speakers[order[n - 1]]
            if last is not None and not _same(addressed, last):
                speakers[paragraph] = None  # the one addressed is not the last speaker: no guess
    return out


def _fill(quotes: list[Quote], k: int, speaker: str, evidence: str) -> None:
    """Give `speaker` to the unattributed quotes of quote k's paragraph, from k on."""
    i = k
    while i < len(quotes) and quotes[i].paragraph == quotes[k].paragraph:
        if quotes[i].speaker is None:
            quotes[i] = _with(quotes[i], speaker, evidence)
        i += 1


def _paragraph_firsts(quotes: list[Quote]) -> dict[int, int]:
    firsts: dict[int, int] = {}
    for k, quote in enumerate(quotes):
        firsts.setdefault(quote.paragraph, k)
    return firsts


VOCATIVE = re.compile(rf"(?:^|[,!?]\s+)(?:my dear\s+|dear\s+|ma chère\s+|mon cher\s+)?(?P<who>{NAME})\s*[,!?]")


def _vocative(text: str, quote: Quote) -> str | None:
    """The name a quote addresses ("Jane, ..." / "..., Mr. Bennet,"), if any."""
    match = VOCATIVE.search(text[quote.start + 1 : quote.end])
    if match is None or match.group("who").split()[0] in NOT_NAMES:
        return None
    return match.group("who")


def _same(a: str, b: str) -> bool:
    return a == b or a.split()[-1] == b.split()[-1]
