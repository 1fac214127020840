"""A small in-memory BM25 index over passages: the lexical retriever that picks RAFT distractors reproducibly."""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

from setpoint.errors import ConfigError

__all__ = ["Bm25Index", "words"]

_WORD = re.compile(r"\w+")
# Function words carry no topic; dropping them keeps "the" from ranking every passage.
_STOP_WORDS = (
    "a an and are as at be by did do does for from had has have he her his how in is it its "
    "of on or she that the their them they this to was were what when where which who whom why with"
)
_STOP = frozenset(_STOP_WORDS.split())


def words(text: str) -> list[str]:
    """Lower-cased word tokens without stop words.

    Example:
        >>> words("Who won Super Bowl 50?")
        ['won', 'super', 'bowl', '50']
    """
    return [w for w in _WORD.findall(text.lower()) if w not in _STOP]


class Bm25Index:
    """Okapi BM25 (k1 = 1.2, b = 0.75) over passage title + text.

    Unlike Weaviate's hybrid search it needs no server and gives the same ranking on every
    machine, which is what a reproducible training set needs.

    Example:
        >>> from setpoint.adapters.model.generator import Passage
        >>> index = Bm25Index([Passage("p1", "Paris", "Paris is in France."), Passage("p2", "Rome", "Rome is in Italy.")])
        >>> [p.id for p in index.search("capital of Italy", k=1)]
        ['p2']
    """

    def __init__(self, passages: Iterable[Any], *, k1: float = 1.2, b: float = 0.75) -> None:
        if k1 < 0 or not 0 <= b <= 1:
            raise ConfigError(f"BM25 needs k1 >= 0 and 0 <= b <= 1, got k1={k1}, b={b}")
        self.k1, self.b = k1, b
        self._passages: list[Any] = []
        lengths: list[int] = []
        # Inverted index: term -> [(passage index, term frequency)]; a query touches only
        # the passages that share a term with it.
        self._postings: dict[str, list[tuple[int, int]]] = {}
        for i, p in enumerate(passages):
            tokens = words(f"{p.title.replace('_', ' ')} {p.text}")
            self._passages.append(p)
            lengths.append(len(tokens))
            for term, tf in Counter(tokens).items():
                self._postings.setdefault(term, []).append((i, tf))
        if not self._passages:
            raise ConfigError("a BM25 index needs at least one passage")
        avg = sum(lengths) / len(lengths)
        self._norm = [k1 * (1 - b + b * n / avg) for n in lengths]
        n = len(self._passages)
        self._idf = {
            t: math.log(1 + (n - len(post) + 0.5) / (len(post) + 0.5))
            for t, post in self._postings.items()
        }

    def __len__(self) -> int:
        return len(self._passages)

    def scores(self, query: str) -> list[float]:
        """BM25 score of every passage for ``query`` (0 for passages sharing no term)."""
        out = [0.0] * len(self._passages)
        for term in words(query):
            idf = self._idf.get(term)
            if idf is None:
                continue
            for i, tf in self._postings[term]:
                out[i] += idf * tf * (self.k1 + 1) / (tf + self._norm[i])
        return out

    def search(self, query: str, *, k: int = 3, exclude: Sequence[str] = ()) -> list[Any]:
        """The ``k`` best passages for ``query`` (ties broken by index order), skipping ids in ``exclude``."""
        skip = set(exclude)
        scores = self.scores(query)
        ranked = sorted(
            (i for i, p in enumerate(self._passages) if p.id not in skip), key=lambda i: -scores[i]
        )
        return [self._passages[i] for i in ranked[:k]]
