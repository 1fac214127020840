"""Nested questions split in two: "Where was the director of film Ivanhoe born?" asks who first.

A question that names its subject only through a person related to an entity ("the
director of film X", "X's wife") needs two reads: who or what the inner relation points
to, then the question about that one. Self-ask and IRCoT do this with a large model
writing the sub-question; a 135M reader cannot, so the split is read off the question's
form: the innermost "the <relation> of <Name>" (or "<Name>'s <relation>") where the relation
is a person's (director, performer, author, spouse: ``PERSON_RELATIONS``), when the rest
of the question still asks something about it. The first read answers "Who is the
director of film X?"; the second hop retrieves and reads "Where was <that answer> born?".

The forms were read off the 2WikiMultihopQA and MuSiQue *train* splits; a question with
no such form is read whole, as before.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from setpoint.adapters.domain.choices import NAME_PARTICLES, name_length

__all__ = ["Decomposition", "decompose"]

#: Relations whose value is a person, the only ones split: "the capital of X" or "the
#: development of the AC motor" are phrases one read answers, not hops.
PERSON_RELATIONS = frozenset(
    [
        "director",
        "performer",
        "composer",
        "father",
        "mother",
        "spouse",
        "wife",
        "husband",
        "son",
        "daughter",
        "brother",
        "sister",
        "child",
        "author",
        "writer",
        "founder",
        "creator",
        "producer",
        "singer",
        "actor",
        "actress",
        "player",
        "leader",
        "screenwriter",
        "lyricist",
        "editor",
        "publisher",
        "inventor",
        "designer",
        "architect",
        "developer",
        "manufacturer",
        "grandfather",
        "grandmother",
        "father-in-law",
        "mother-in-law",
    ]
)

_STOP = frozenset(["who", "what", "which", "is", "was", "are", "were", "the", "of"])
# "the director of film X": a relation of one to three words, "of", an optional kind word.
_RELATION = re.compile(r"\bthe ((?:[a-z-]+ ){0,2}[a-z-]+) of ((?:film|song|album|book|novel) )?")
_POSSESSIVE = re.compile(r"(?:'s|’s) ([a-z-]+(?: [a-z-]+)?)\b")


@dataclass(frozen=True)
class Decomposition:
    """A nested question as two reads: ``first`` names the bridge, ``then`` asks about it."""

    first: str
    template: str

    def then(self, bridge: str) -> str:
        """The second read's question with the first read's answer in place."""
        return self.template.replace("{}", bridge.strip())


def _name_end(text: str, start: int) -> int:
    """Where the name that starts at ``start`` ends."""
    words = list(re.finditer(r"\S+", text[start:]))
    n = name_length([m.group(0) for m in words])
    return start + words[n - 1].end() if n else start


def _asks_more(template: str) -> bool:
    # "Who is {}?", "Who is {} in the play?", "Who was hired to be {}?" ask about the
    # bridge itself: one read.
    if re.match(r"(?i)(who|what) (is|was|are|were) \{\}", template) or re.match(
        r"(?i)who\b.*\{\}\W*$", template
    ):
        return False
    rest = re.sub(r"[{}?,.]", " ", template).lower().split()
    return any(word not in _STOP for word in rest)


def _is_person(relation: str) -> bool:
    last = relation.split()[-1]
    return last in PERSON_RELATIONS or last.removesuffix("s") in PERSON_RELATIONS


def _sub_question(relation: str, name: str) -> str:
    return f"Who is the {relation} of {name}?"


def decompose(question: str) -> Decomposition | None:
    """The two reads a nested question needs; None for a question one read can answer.

    Example:
        >>> d = decompose("Where was the director of film French Leave (1948 Film) born?")
        >>> d.first, d.then("Pál Gábor")
        ('Who is the director of film French Leave (1948 Film)?', 'Where was Pál Gábor born?')
        >>> decompose("What is the date of death of Charles Neville, 6Th Earl Of Westmorland's wife?").first
        'Who is the wife of Charles Neville, 6Th Earl Of Westmorland?'
        >>> decompose("Who is the director of film Ivanhoe?") is None
        True
        >>> decompose("When did Beyonce start becoming popular?") is None
        True
    """
    text = " ".join(question.split())
    for match in _POSSESSIVE.finditer(text):
        relation = match.group(1).split()[0]
        if relation not in PERSON_RELATIONS:  # singular: "Tesla's sisters" is not one bridge
            continue
        # The owner: the name that ends at the "'s" (capitalised words back to the first
        # that is not part of it; a question's opening word never is).
        head = text[: match.start()]
        words = head.split()
        n = len(words)
        while n > 1 and (
            words[n - 1][:1].isupper()
            or words[n - 1][:1].isdigit()
            or words[n - 1] in NAME_PARTICLES
        ):
            n -= 1
        while n < len(words) and words[n] in NAME_PARTICLES:
            n += 1
        name = " ".join(words[n:])
        if not name or not any(c.isupper() for c in name):
            continue
        after = match.start() + len(match.group(0)) - len(match.group(1)) + len(relation)
        template = f"{head[: len(head) - len(name)]}{{}}{text[after:]}"
        if _asks_more(template):
            return Decomposition(_sub_question(relation, name), template)
    for match in reversed(list(_RELATION.finditer(text))):
        end = _name_end(text, match.end())
        if end == match.end():
            continue  # "the date of birth of the ...": no name here, an outer relation
        relation, kind = match.group(1), match.group(2) or ""
        name = text[match.end() : end].rstrip(",?.")
        if not _is_person(relation) or not any(c.isupper() for c in name):
            continue
        template = f"{text[: match.start()]}{{}}{text[match.end() + len(name) :]}"
        if not _asks_more(template):
            return None
        return Decomposition(_sub_question(relation, f"{kind}{name}"), template)
    return None
