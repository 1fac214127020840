"""How well the passages back an answer as a reply to the question: the reader probe's support features.

A confident reader is most often wrong by quoting another name, date or number of the
right kind from a sentence the question does not describe; these word counts say whether
the answer sits in the sentence the question is about (``reader_probe.SUPPORT`` names them).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from setpoint.adapters.model.generator import Passage

__all__ = ["MAX_RANK", "STOP_WORDS", "WINDOW_WORDS", "support_features"]

#: Words that say little about what a question asks (matched lower-cased, whole words).
STOP_WORDS = frozenset(
    """a an the of in on at to for from by with and or is are was were be been being do does
    did what which who whom whose when where why how that this these those it its as into than
    then there their they he she his her him not no can could would should may might will
    shall has have had about after before during over under between much many one""".split()  # noqa: SIM905
)
_WORD = re.compile(r"\w+")
#: Words on each side of the answer that ``question_overlap_answer_window`` looks at.
WINDOW_WORDS = 12
#: ``answer_sentence_rank`` counts at most this many better-matching sentences.
MAX_RANK = 5


def _words(text: str) -> list[str]:
    return [w.lower() for w in _WORD.findall(text)]


def _find(words: list[str], needle: list[str]) -> list[int]:
    """Where ``needle`` starts in ``words`` (none for an empty needle)."""
    n = len(needle)
    return [i for i in range(len(words) - n + 1) if words[i : i + n] == needle] if n else []


def support_features(question: str, passages: Sequence[Passage], answer: str) -> dict[str, float]:
    """How the passages back ``answer`` as a reply to ``question``: the ``SUPPORT`` features.

    With Q the question's content words (``STOP_WORDS`` left out), each overlap is the share
    of Q found in some text: the best sentence that contains the answer, the best sentence
    of all, and the ``WINDOW_WORDS`` words either side of an occurrence of the answer.
    ``answer_sentence_rank`` is how many sentences share more of Q than the answer's best
    one (at most ``MAX_RANK``). An answer found nowhere has overlaps 0.

    Example:
        >>> from setpoint.adapters.model.generator import Passage
        >>> p = Passage("p1", "Moon", "Armstrong walked on the Moon in 1969. Apollo 13 flew in 1970.")
        >>> f = support_features("When did Armstrong walk on the Moon?", [p], "1969")
        >>> round(f["question_overlap_answer_sentence"], 2), f["answer_sentence_rank"]
        (0.67, 0.0)
        >>> support_features("When did Armstrong walk on the Moon?", [p], "1970")["answer_sentence_rank"]
        1.0
    """
    from setpoint.adapters.domain.chunking import split_sentences

    asked = {w for w in _words(question) if w not in STOP_WORDS}
    said = _words(answer)

    def overlap(words: Sequence[str]) -> float:
        return len(asked.intersection(words)) / len(asked) if asked else 0.0

    sentences = [_words(s) for p in passages for s in split_sentences(p.text)]
    overlaps = [overlap(s) for s in sentences]
    answer_sentence = max(
        (o for o, s in zip(overlaps, sentences, strict=True) if _find(s, said)), default=0.0
    )
    window = 0.0
    for passage in passages:
        words = _words(passage.text)
        for i in _find(words, said):
            around = (
                words[max(0, i - WINDOW_WORDS) : i]
                + words[i + len(said) : i + len(said) + WINDOW_WORDS]
            )
            window = max(window, overlap(around))
    return {
        "question_overlap_answer_sentence": answer_sentence,
        "question_overlap_best_sentence": max(overlaps, default=0.0),
        "question_overlap_answer_window": window,
        "answer_sentence_rank": float(min(MAX_RANK, sum(o > answer_sentence for o in overlaps))),
    }
