"""Questions that name their answers: alternatives ("Who was born first, Ada Lovelace or Charles Babbage?") and yes/no.

A question that compares two named things and asks which one ("Which film came out
first, X or Y?", "Was X or Y born first?") has exactly two possible answers, and both are
in the question. Read freely, a small reader quotes some other span of its passages (a
date, the bridge entity) and scores nothing; constrained to the options, it at least
answers the question that was asked, and its uncertainty is its doubt between them.

Only comparisons count: the clause that asks must hold a comparative or an ordinal cue
("first", "younger", "more"), so lists ("a work like the Quran, Torah or Bible") and
open questions with an "or" in them ("difficulty or loss of ability") are left alone.
The forms were read off the 2WikiMultihopQA *train* split and checked against SQuAD and
NQ-Open questions, which have lists and "or" phrases but almost no comparisons.
"""

from __future__ import annotations

import re

__all__ = [
    "COMPARISON_CUES",
    "NAME_PARTICLES",
    "POLAR_OPENERS",
    "YES_NO",
    "answer_options",
    "closed_answers",
    "is_polar",
    "name_length",
]

#: Words that make "X or Y" a choice between the two: comparatives, superlatives, ordinals.
COMPARISON_CUES = frozenset(
    [
        "first",
        "last",
        "earlier",
        "later",
        "earliest",
        "latest",
        "older",
        "younger",
        "oldest",
        "youngest",
        "elder",
        "eldest",
        "longer",
        "shorter",
        "longest",
        "shortest",
        "more",
        "most",
        "less",
        "least",
        "fewer",
        "fewest",
        "bigger",
        "biggest",
        "larger",
        "largest",
        "smaller",
        "smallest",
        "higher",
        "highest",
        "lower",
        "lowest",
        "taller",
        "tallest",
        "closer",
        "closest",
        "farther",
        "further",
        "newer",
        "newest",
        "better",
        "best",
        "worse",
        "worst",
        "faster",
        "slower",
        "sooner",
        "before",
        "after",
    ]
)

_WH = frozenset(["which", "who", "whose", "what", "where", "when"])
#: Words that open a yes/no question ("Are both rivers in the same country?").
POLAR_OPENERS = frozenset(
    [
        "is",
        "are",
        "was",
        "were",
        "am",
        "do",
        "does",
        "did",
        "has",
        "have",
        "had",
        "can",
        "could",
        "will",
        "would",
        "shall",
        "should",
        "may",
        "might",
        "must",
    ]
)
#: What a yes/no question may be answered with.
YES_NO = ("yes", "no", "Yes", "No")
# Lower-case words that may sit inside a name ("Isabella of France", "Believe Me, Xantippe").
NAME_PARTICLES = frozenset(
    [
        "of",
        "the",
        "and",
        "de",
        "del",
        "da",
        "di",
        "du",
        "van",
        "von",
        "der",
        "den",
        "la",
        "le",
        "bin",
        "ibn",
        "on",
        "in",
        "a",
    ]
)
_MAX_OPTION_WORDS = 12


def _cue(words: list[str]) -> bool:
    return any(w.lower().strip(",.;:'\"") in COMPARISON_CUES for w in words)


def _clean(option: str) -> str:
    return option.strip().strip("\"',").strip()


def _fits(options: list[str]) -> bool:
    return (
        len(options) == 2
        and all(options)
        and options[0].lower() != options[1].lower()
        and all(len(o.split()) <= _MAX_OPTION_WORDS for o in options)
    )


def _wh_choice(text: str) -> list[str] | None:
    # "Which film came out first, X or Y": the options follow the first comma after the cue.
    words = text.split()
    if not words or words[0].lower() not in _WH or "," not in text:
        return None
    ask, _, rest = text.partition(",")
    if not _cue(ask.split()) or " or " not in rest:
        return None
    left, _, right = rest.rpartition(" or ")
    options = [_clean(left), _clean(right)]
    return options if _fits(options) else None


def name_length(words: list[str]) -> int:
    """How many leading words form a name (capitalised words, numbers, particles between).

    Example:
        >>> name_length("Isabella of France was born".split())
        3
    """
    n = 0
    for i, word in enumerate(words):
        head = word.lstrip("(\"'")
        if head[:1].isupper() or head[:1].isdigit():
            n = i + 1
        elif word.lower() not in NAME_PARTICLES:
            break
    return n


def _polar_choice(text: str) -> list[str] | None:
    # "Was X or Y born first": X before " or ", Y the name after it, then the cue.
    words = text.split()
    if len(words) < 4 or words[0].lower() not in POLAR_OPENERS or " or " not in text:
        return None
    left, _, right = text.partition(" or ")
    first = " ".join(left.split()[1:])
    tail = right.split()
    n = name_length(tail)
    if n == 0 or n == len(tail) or not _cue(tail[n:]):
        return None
    options = [_clean(first), _clean(" ".join(tail[:n]))]
    if not all(name_length(o.split()) == len(o.split()) for o in options):
        return None
    return options if _fits(options) else None


def answer_options(question: str) -> tuple[str, ...]:
    """The two things an alternative question asks to choose between; ``()`` for any other.

    Example:
        >>> answer_options("Which film came out first, Blind Shaft or The Mask Of Fu Manchu?")
        ('Blind Shaft', 'The Mask Of Fu Manchu')
        >>> answer_options("Was Ian Brennan (Footballer) or Jagnandan Singh born first?")
        ('Ian Brennan (Footballer)', 'Jagnandan Singh')
        >>> answer_options("Who would teach from a work like the Quran, Torah or Bible?")
        ()
        >>> answer_options("Are the Tamar and the Badam in the same country?")
        ()
    """
    text = " ".join(question.split()).rstrip("?").strip()
    options = _wh_choice(text) or _polar_choice(text)
    return tuple(options) if options else ()


def closed_answers(question: str) -> tuple[str, ...]:
    """Every answer a question allows, when it names them; ``()`` for an open question.

    An alternative question's two options (``answer_options``); for a yes/no question
    (opened by an auxiliary verb, with no "or" in it) yes and no. A yes/no question with
    an "or" ("Were the experiments high-voltage or low-voltage?") is an alternative whose
    options are not names: it stays open.

    Example:
        >>> closed_answers("Do Billy Mitchell and Carla Garrett have the same nationality?")
        ('yes', 'no', 'Yes', 'No')
        >>> closed_answers("Were Tesla's experiments high-voltage or low-voltage?")
        ()
    """
    options = answer_options(question)
    if options:
        return options
    if is_polar(question) and not re.search(r"\bor\b", question, re.IGNORECASE):
        return YES_NO
    return ()


def is_polar(question: str) -> bool:
    """Whether the question opens with an auxiliary verb, as a yes/no question does.

    Example:
        >>> is_polar("Are both rivers in the same country?"), is_polar("Which river is longer?")
        (True, False)
    """
    words = question.split(maxsplit=1)
    return bool(words) and words[0].lower().strip("\"'(") in POLAR_OPENERS
