"""Date comparisons between a question's two options, read from their own passages.

"Who was born first, Ada Lovelace or Charles Babbage?" and "Which film came out earlier,
X or Y?" are answered by two dates, one in each option's passage, and a comparison. A
135M reader constrained to the two options picks one about half the time right: it reads
neither date against the other. This module does the comparison the question asks for,
the way a person checks it: find each option's passage (its title is the option), read
the date the question is about (the birth date in the lead's parenthesis, the death date
after its dash, or the year the lead gives a film, book or band), and compare.

It answers only what it can show: both passages found, both dates read, the dates
different at the precision both give. Otherwise it says which option has no passage (a
second hop can fetch it) or nothing, and the reader's pick stands. A comparison of the
options' directors' dates ("Which film has the director born first, X or Y?") follows
"directed by …" from each option's passage to the director's own (``RELATIONS``); any
other related entity (a father, a spouse) is left to the reader.

The forms (cues, the lead's date layouts) were read off the 2WikiMultihopQA *train* split.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from setpoint.adapters.domain.choices import NAME_PARTICLES
from setpoint.adapters.domain.dates import Attribute, DateRead, lifespan_order, read_date

__all__ = [
    "COMPARISON_P_WRONG",
    "RELATIONS",
    "Comparison",
    "asked_attribute",
    "compare_options",
    "option_passage",
    "related_name",
]


#: What a resolved comparison reports as its uncertainty, in place of the reader probe's
#: P(wrong): Laplace's rule on the 2WikiMultihopQA *train* split with each question's own
#: paragraphs, 1 wrong of 83 answered, (1 + 1) / (83 + 2) (`benchmarks/comparisons.py`).
COMPARISON_P_WRONG = 0.024

# Lower-case words inside a person's name ("Erich von Stroheim"): the name particles of
# ``choices`` without those only titles hold ("and" ends a director's name).
_NAME_PARTICLES = (NAME_PARTICLES - {"of", "the", "and", "a", "in", "on"}) | {"della"}
_EARLIEST = frozenset(
    ["first", "earlier", "earliest", "sooner", "before", "older", "oldest", "elder", "eldest"]
)
_LATEST = frozenset(
    [
        "later",
        "latest",
        "last",
        "after",
        "younger",
        "youngest",
        "newer",
        "newest",
        "recently",
        "recent",
    ]
)
_BIRTH = frozenset(["born", "birth", "older", "oldest", "younger", "youngest", "elder", "eldest"])
_DEATH = frozenset(["died", "die", "dies", "death", "dead"])
_YEAR_EVENT = frozenset(
    [
        "released",
        "release",
        "came",
        "come",
        "out",
        "published",
        "founded",
        "established",
        "formed",
        "opened",
        "built",
        "created",
        "premiered",
        "aired",
        "launched",
        "film",
        "movie",
        "album",
        "book",
        "novel",
        "band",
    ]
)
#: Related entities whose dates a comparison may be about, and where an option's passage
#: names them ("Which film has the director born first, X or Y?": "X is a 1953 film
#: directed by Frederick de Cordova").
RELATIONS = {
    # "directed by X", "produced, directed, co-written by and starring X", "directed by and starred X"
    "director": re.compile(r"\bdirected(?:,\s*[\w-]+)*\s+by\s+(?:and\s+star\w*\s+)?", re.IGNORECASE)
}
#: Words that move the compared dates to another related entity: the reader's case.
_RELATED = frozenset(
    [
        "director",
        "directors",
        "father",
        "mother",
        "husband",
        "wife",
        "spouse",
        "son",
        "daughter",
        "composer",
        "performer",
        "producer",
        "author",
        "writer",
        "creator",
        "founder",
        "brother",
        "sister",
        "sibling",
        "child",
        "children",
        "parent",
        "grandfather",
        "grandmother",
        "whose",
    ]
)


@dataclass(frozen=True)
class Comparison:
    """What :func:`compare_options` found: the answer, or the option that has no passage."""

    attribute: Attribute
    answer: str | None = None
    #: option -> (passage id, the dates read from it: one, or birth and death for a lifespan)
    evidence: Mapping[str, tuple[str, tuple[DateRead, ...]]] | None = None
    #: An option none of the passages is about: what a second hop should look up.
    missing: str | None = None
    #: Every passage read, in order: the options' own, and their directors' where asked.
    read: tuple[str, ...] = ()
    #: Whose dates: None for the options' own, else a key of ``RELATIONS``.
    relation: str | None = None

    @property
    def reason(self) -> str:
        """What an ordered comparison answered by, for the decision's reason.

        Example:
            >>> Comparison("birth", answer="X", relation="director").reason
            "answered by comparing the options' directors' birth dates"
        """
        what = {"birth": "birth dates", "death": "death dates", "year": "years"}
        whose = f"options' {self.relation}s'" if self.relation else "options'"
        return f"answered by comparing the {whose} {what.get(self.attribute, 'lifespans')}"

    def span_attributes(self) -> dict[str, Any]:
        """What the reader span records: the date compared, the passages read, the outcome.

        Example:
            >>> Comparison("birth", missing="Ada Lovelace").span_attributes()["setpoint.comparison"]
            'birth: passage missing'
        """
        if self.answer is not None:
            outcome = "ordered"
        elif self.missing is not None:
            outcome = "passage missing"
        else:
            outcome = "dates not read or equal"
        return {
            "setpoint.comparison": f"{self.attribute}: {outcome}",
            "setpoint.comparison_passage_ids": list(self.read),
        }


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z]+", text.lower())


def asked_attribute(
    question: str, options: Sequence[str] = ()
) -> tuple[Attribute, bool, str | None] | None:
    """Which date the question compares, whether the earliest (or shortest life) wins, and whose.

    The third item is None for the options' own dates, else a key of ``RELATIONS``
    (the options' directors). None: not a date comparison this module reads. The
    ``options`` are left out of the words read for cues.

    Example:
        >>> asked_attribute("Who died first, Mary Lightner or Linda Hayes?")
        ('death', True, None)
        >>> asked_attribute("Which film was released more recently, True Bromance or Thoovanam?")
        ('year', False, None)
        >>> asked_attribute("Which film has the director born first, X or Y?")
        ('birth', True, 'director')
        >>> asked_attribute("Whose father was born first, X or Y?") is None
        True
        >>> asked_attribute("Who lived longer, Friedrich Gogarten or Giangiacomo Feltrinelli?")
        ('lifespan', False, None)
    """
    asking = question
    for option in options:
        asking = asking.replace(option, " ")
    # Only the asking words count: "Crime After Crime" is a title, not a cue.
    words = _words(asking)
    related = _RELATED & set(words)
    relation = next((r for r in RELATIONS if {r, f"{r}s"} & related), None)
    # "Which film whose director was born first": "whose" only points at the relation.
    if related - {relation, f"{relation}s", "whose" if relation else ""}:
        return None
    if {"lived", "life", "lifespan"} & set(words):
        shorter = {"shorter", "shortest"} & set(words)
        if shorter or {"longer", "longest"} & set(words):
            return "lifespan", bool(shorter), relation
        return None
    earliest = any(w in _EARLIEST for w in words)
    latest = any(w in _LATEST for w in words)
    if earliest == latest:
        return None
    kinds = set(words)
    if kinds & _DEATH:
        return "death", earliest, relation
    if kinds & _BIRTH:
        return "birth", earliest, relation
    if kinds & _YEAR_EVENT and relation is None:
        return "year", earliest, None
    return None


def _norm(text: str) -> str:
    plain = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return " ".join(re.findall(r"[a-z0-9]+", plain.lower()))


def _bare(text: str) -> str:
    return _norm(re.sub(r"\([^)]*\)", " ", text))


def option_passage(option: str, passages: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The passage about ``option``: its title is the option (a disambiguation in brackets may differ).

    Example:
        >>> ps = [{"id": "1", "title": "Crime After Crime (film)", "text": "..."}]
        >>> option_passage("Crime After Crime (Film)", ps)["id"]
        '1'
    """
    exact, bare = _norm(option), _bare(option)
    loose = None
    for p in passages:
        title = str(p.get("title", ""))
        if _norm(title) == exact:
            return p
        if loose is None and bare and _bare(title) == bare:
            loose = p
    return loose


def compare_options(
    question: str,
    options: Sequence[str],
    passages: Sequence[Mapping[str, Any]],
    *,
    whole_text: Callable[[Mapping[str, Any]], str | None] | None = None,
) -> Comparison | None:
    """Answer a two-option date comparison from the options' passages; None: not one.

    A result with ``answer`` None and ``missing`` set names what no passage is about (an
    option, or an option's director, comma-separated: a second hop's query); with both
    None, the dates were not read or did not order them (the reader decides).

    A search hit may be a later chunk of its passage, without the lead the dates are read
    from: ``whole_text`` (the store's whole passage; None where it has none) is asked for
    the text of each passage read, before the hit's own.

    Example:
        >>> ps = [{"id": "a", "title": "Column South", "text": "Column South is a 1953 film."},
        ...       {"id": "b", "title": "Cuatro balazos", "text": "Cuatro balazos is a 1964 film."}]
        >>> compare_options("Which film was released first, Cuatro balazos or Column South?",
        ...                 ["Cuatro balazos", "Column South"], ps).answer
        'Column South'
    """
    asked = asked_attribute(question, options)
    if asked is None or len(options) != 2:
        return None
    attribute, earliest, relation = asked
    wanted: tuple[Attribute, ...] = ("birth", "death") if attribute == "lifespan" else (attribute,)
    found: dict[str, tuple[str, tuple[DateRead, ...]]] = {}
    lookups: list[str] = []
    read: list[str] = []
    for option in options:
        passage = option_passage(option, passages)
        if passage is not None:
            read.append(str(passage["id"]))
        if passage is not None and relation is not None:
            # The option's passage names whose dates count: the next passage to read.
            name = related_name(_text(passage, whole_text), relation)
            if name is None:
                return Comparison(attribute)
            passage = option_passage(name, passages)
            if passage is not None:
                read.append(str(passage["id"]))
            option_or_name = name
        else:
            option_or_name = option
        if passage is None:
            lookups.append(option_or_name)
            continue
        text, title = _text(passage, whole_text), str(passage.get("title", ""))
        dates = tuple(read_date(text, title, a) for a in wanted)
        if any(d is None for d in dates):
            return Comparison(attribute)
        found[option] = (str(passage["id"]), dates)  # type: ignore[assignment]
    if lookups:
        return Comparison(
            attribute, missing=", ".join(lookups), read=tuple(read), relation=relation
        )
    first, second = (found[o][1] for o in options)
    if attribute == "lifespan":
        order = lifespan_order((first[0], first[1]), (second[0], second[1]))
    else:
        order = first[0].before(second[0])
    if order is None:
        return Comparison(attribute, evidence=found, read=tuple(read), relation=relation)
    answer = options[0] if order == earliest else options[1]
    return Comparison(attribute, answer=answer, evidence=found, read=tuple(read), relation=relation)


def _text(
    passage: Mapping[str, Any], whole_text: Callable[[Mapping[str, Any]], str | None] | None
) -> str:
    whole = whole_text(passage) if whole_text is not None else None
    return whole if whole is not None else str(passage.get("text", ""))


def related_name(text: str, relation: str) -> str | None:
    """The name a passage gives for ``relation`` ("directed by B. Reeves Eason"), or None.

    Example:
        >>> related_name("The Prairie King is a 1927 film directed by B. Reeves Eason and "
        ...              "starring Hoot Gibson.", "director")
        'B. Reeves Eason'
        >>> related_name("Eight on the Lam is a comedy directed by George Marshall. It stars Bob Hope.",
        ...              "director")
        'George Marshall'
    """
    cue = RELATIONS[relation].search(text)
    if cue is None:
        return None
    kept: list[str] = []
    for word in text[cue.end() :].split():
        initial = re.fullmatch(r"[A-Z]\.|[A-Z]\.[A-Z]\.?", word) is not None
        if word[:1].isupper() or initial:
            kept.append(word.rstrip(",;:") if initial else word.rstrip(",.;:"))
            # A name ends at a comma or a full stop ("George Marshall. It stars ...").
            if not initial and word[-1] in ",.;:":
                break
        elif word in _NAME_PARTICLES and kept:
            kept.append(word)
        else:
            break
    while kept and kept[-1] in _NAME_PARTICLES:
        kept.pop()
    name = " ".join(kept)
    return name or None
