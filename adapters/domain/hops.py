"""Pure helpers of the retrieval hops: the echo detector, the second hop's bridge query, the merge of two hops' passages.

No model and no I/O: ``agents.generate`` measures with them, ``agents.decide`` decides.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from setpoint.adapters.domain.lexical import words

__all__ = [
    "BRIDGE_ENTITIES",
    "ECHO_MIN_WORDS",
    "bridge_query",
    "echo_overlap",
    "merge_passages",
    "named_entities",
    "restates_question",
]

#: Answers with fewer content words are never echoes: "Paris" to "Is Paris in France?"
#: names the answer, it does not restate the question.
ECHO_MIN_WORDS = 3


def echo_overlap(answer: str, question: str) -> float:
    """Share of the answer's content words (stop words dropped) that the question already has.

    0.0 for answers of fewer than ``ECHO_MIN_WORDS`` content words. An answer that mostly
    restates the question ("The 2011-12 VCU Rams men's basketball team, led by ...") scores
    near 1 and tells nothing new, whatever its entropy says: copying is low-entropy.

    Example:
        >>> echo_overlap("The VCU Rams men's basketball team", "Who coached the VCU Rams men's basketball team?")
        1.0
        >>> round(echo_overlap("Jane Austen wrote it", "Who wrote Pride and Prejudice?"), 2)
        0.33
        >>> echo_overlap("Paris", "Is Paris the capital of France?")
        0.0
    """
    said = words(answer)
    if len(said) < ECHO_MIN_WORDS:
        return 0.0
    asked = set(words(question))
    return sum(w in asked for w in said) / len(said)


def restates_question(answer: str, question: str) -> bool:
    """Whether every content word of a read answer is already in the question.

    Such an answer names what was asked about, not what was asked ("Calpurnia" to "What
    is Calpurnia's son's name?"): quoting the passage's words for the question's subject
    is a reader's typical slip. Answers without content words never count. The caller
    leaves out questions that name their answers ("X or Y?").

    Example:
        >>> restates_question("Calpurnia", "calpurnia son name in to kill a mockingbird")
        True
        >>> restates_question("Zeebo", "calpurnia son name in to kill a mockingbird")
        False
    """
    said = words(answer)
    return bool(said) and set(said) <= set(words(question))


#: Names from the best passage that the second hop's query may add (besides its title).
BRIDGE_ENTITIES = 3

# A name: capitalised words, with the lower-case particles names carry ("Ludwig van
# Beethoven", "Isabella of France") between them.
_WORD = r"(?:[A-Z]\.|[A-Z][\w'’-]*)"  # an initial ("M.") or a capitalised word
_NAME = re.compile(
    rf"{_WORD}(?:\s+(?:(?:of|de|del|da|di|du|van|von|der|den|la|le|bin|ibn)\s+)?{_WORD})*"
)


def named_entities(text: str) -> list[str]:
    """Capitalised names in ``text``, each once, in order of first mention.

    Example:
        >>> named_entities("Forbidden Ground is a 1968 Hungarian film directed by Pál Gábor.")
        ['Forbidden Ground', 'Hungarian', 'Pál Gábor']
    """
    return list(dict.fromkeys(m.group(0) for m in _NAME.finditer(text)))


def _new(text: str, seen: str) -> bool:
    """Whether ``text`` brings a content word ``seen`` lacks."""
    have = set(words(seen))
    return any(w not in have for w in words(text))


def bridge_query(
    question: str,
    passages: Sequence[Mapping[str, Any]],
    answer: str = "",
    *,
    entities: int = BRIDGE_ENTITIES,
) -> str | None:
    """The second hop's query: the question plus what the first hop found (IRCoT / self-ask style).

    The bridge is the best passage's title (the entity the first hop landed on), the
    reader's partial answer, and up to ``entities`` names from the best passage's text
    (the director, the spouse, the city the question asks about without naming it), each
    only when it adds a word the query lacks. None when nothing new was found: the same
    query would fetch the same passages.

    Example:
        >>> bridge_query("What is the population of the city where X was born?",
        ...              [{"title": "Strasbourg", "text": "..."}], "Strasbourg")
        'What is the population of the city where X was born? Strasbourg'
        >>> bridge_query("Who directed the film whose director was born first, Forbidden Ground?",
        ...              [{"title": "Forbidden Ground", "text": "A 1968 film directed by Pál Gábor."}])
        'Who directed the film whose director was born first, Forbidden Ground? Pál Gábor'
        >>> bridge_query("Who founded Paris?", [{"title": "Paris"}], "") is None
        True
    """
    query = question.strip()
    best = passages[0] if passages else {}
    title = str(best.get("title") or "").replace("_", " ")
    for extra in (title, answer.strip()):
        if extra and _new(extra, query):
            query = f"{query} {extra}"
    added = 0
    for name in named_entities(str(best.get("text") or "")):
        if added >= entities:
            break
        if _new(name, query):
            query, added = f"{query} {name}", added + 1
    return None if query == question.strip() else query


def merge_passages(
    earlier: Sequence[Mapping[str, Any]], found: Sequence[Mapping[str, Any]], limit: int
) -> list[dict[str, Any]]:
    """Two hops' passages for one reader prompt: alternately by rank, each id once, at most ``limit``.

    Alternating keeps the best of each hop at the top (the bridge passage and the one the
    bridge led to); scores of two different queries are not comparable, ranks are.

    Example:
        >>> a = [{"id": "b1"}, {"id": "b2"}, {"id": "b3"}]
        >>> [p["id"] for p in merge_passages(a, [{"id": "n1"}, {"id": "b2"}], 4)]
        ['b1', 'n1', 'b2', 'b3']
    """
    out: dict[str, dict[str, Any]] = {}
    for i in range(max(len(earlier), len(found))):
        for hop in (earlier, found):
            if i < len(hop) and str(hop[i]["id"]) not in out:
                out[str(hop[i]["id"])] = dict(hop[i])
    return list(out.values())[:limit]
