"""A small in-memory BM25 index over passages: the lexical retriever that picks RAFT distractors reproducibly."""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from setpoint.errors import ConfigError

__all__ = ["Bm25Index", "words"]

_WORD = re.compile(r"\w+")
# Function words carry no topic; dropping them keeps "the" from ranking every passage.
_STOP = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "by",
        "did",
        "do",
        "does",
        "for",
        "from",
        "had",
        "has",
        "have",
        "he",
        "her",
        "his",
        "how",
        "in",
        "is",
        "it",
        "its",
        "of",
        "on",
        "or",
        "she",
        "that",
        "the",
        "their",
        "them",
        "they",
        "this",
        "to",
        "was",
        "were",
        "what",
        "when",
        "where",
        "which",
        "who",
        "whom",
        "why",
        "with",
    ]
)


def words(text: str) -> list[str]:
    """Lower-cased word tokens without stop words.

    Example:
        >>> words("Who won Super Bowl 50?")
        ['won', 'super', 'bowl', '50']
    """
    return [w for w in _WORD.findall(text.lower()) if w not in _STOP]


@dataclass(frozen=True)
class _Doc:
    passage: Any
    terms: Counter[str]
    length: int


class Bm25Index:
    """Okapi BM25 (k1 = 1.2, b = 0.75) over passage title + text.

    Unlike Weaviate's hybrid search it needs no server and gives the same ranking on every
    machine, which is what a reproducible training set needs.

    Example:
        >>> from setpoint.adapters.generator import Passage
        >>> index = Bm25Index([Passage("p1", "Paris", "Paris is in France."), Passage("p2", "Rome", "Rome is in Italy.")])
        >>> [p.id for p in index.search("capital of Italy", k=1)]
        ['p2']
    """

    def __init__(self, passages: Iterable[Any], *, k1: float = 1.2, b: float = 0.75) -> None:
        if k1 < 0 or not 0 <= b <= 1:
            raise ConfigError(f"BM25 needs k1 >= 0 and 0 <= b <= 1, got k1={k1}, b={b}")
        self.k1, self.b = k1, b
        self._docs = []
        for p in passages:
            tokens = words(f"{p.title.replace('_', ' ')} {p.text}")
            self._docs.append(_Doc(p, Counter(tokens), len(tokens)))
        if not self._docs:
            raise ConfigError("a BM25 index needs at least one passage")
        self._avg_len = sum(d.length for d in self._docs) / len(self._docs)
        df: Counter[str] = Counter()
        for d in self._docs:
            df.update(d.terms.keys())
        n = len(self._docs)
        self._idf = {t: math.log(1 + (n - f + 0.5) / (f + 0.5)) for t, f in df.items()}

    def __len__(self) -> int:
        return len(self._docs)

    def scores(self, query: str) -> list[float]:
        terms = [t for t in words(query) if t in self._idf]
        out = []
        for d in self._docs:
            norm = self.k1 * (1 - self.b + self.b * d.length / self._avg_len)
            score = 0.0
            for t in terms:
                tf = d.terms.get(t, 0)
                if tf:
                    score += self._idf[t] * tf * (self.k1 + 1) / (tf + norm)
            out.append(score)
        return out

    def search(self, query: str, *, k: int = 3, exclude: Sequence[str] = ()) -> list[Any]:
        """The ``k`` best passages for ``query`` (ties broken by index order), skipping ids in ``exclude``."""
        skip = set(exclude)
        scores = self.scores(query)
        ranked = sorted(
            (i for i, d in enumerate(self._docs) if d.passage.id not in skip),
            key=lambda i: -scores[i],
        )
        return [self._docs[i].passage for i in ranked[:k]]
