"""Is an adapter's knowledge still what the index holds? Stale learned passages, cached per process.

An adapter learned facts from passages at known times (its record's ``learned`` section).
When one of those passages gets a new edition with different text, or leaves the index,
answering from the weights would repeat the superseded fact. ``StaleKnowledge`` asks the
store once per adapter (``changed_since`` over the learned ids, then the text of the few
that changed) and keeps the answer until this process ingests or deletes anything, or
``ttl_s`` passes (writes by other processes).
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from setpoint.adapters.lora.knowledge import AdapterCard, matching_question, stale_ids
from setpoint.tools.search import changed_passages, search_passages

__all__ = ["StaleKnowledge", "StaleVerdict"]


@dataclass(frozen=True)
class StaleVerdict:
    """Why a question must not be answered from an adapter: which learned passage, found how."""

    passage_id: str
    how: str  # "learned question" or "top search hit"

    def reason(self, adapter: str) -> str:
        return (
            f"stale adapter knowledge: passage {self.passage_id} changed after adapter "
            f"{adapter} learned it ({self.how})"
        )


@dataclass
class StaleKnowledge:
    """Stale learned passages per adapter, cached until the index changes.

    Example:
        >>> cache = StaleKnowledge()
        >>> cache.stale(card, store)  # doctest: +SKIP
        frozenset({'Denver-1'})
    """

    ttl_s: float = 60.0
    lookups: int = 0
    #: Learned passages this process has seen in the index: their absence later is a deletion.
    _seen: set[str] = field(default_factory=set)
    _cache: dict[str, tuple[int, float, frozenset[str]]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def stale(self, card: AdapterCard, store: Any) -> frozenset[str]:
        """Ids of ``card``'s learned passages that changed or left the index since it learned them.

        Raises:
            RetrievalError: the store could not be read (nothing is cached then).
        """
        from setpoint.adapters.weaviate.store import index_generation

        if not card.passages:
            return frozenset()
        generation, now = index_generation(), time.monotonic()
        with self._lock:
            hit = self._cache.get(card.directory)
            if hit is not None and hit[0] == generation and now - hit[1] < self.ttl_s:
                return hit[2]
        result = self._lookup(card, store)
        with self._lock:
            self._cache[card.directory] = (generation, now, result)
        return result

    def _lookup(self, card: AdapterCard, store: Any) -> frozenset[str]:
        self.lookups += 1
        by_time: dict[float, list[str]] = defaultdict(list)
        for passage in card.passages.values():
            by_time[passage.learned_at].append(passage.id)
        changed: dict[str, Any] = {}
        for learned_at, ids in by_time.items():
            changed.update(changed_passages(store, ids, learned_at))
        texts: dict[str, str | None] = {}
        getter = getattr(store, "get", None)
        for pid, edition in changed.items():
            if edition is not None and callable(getter):
                current = getter(pid, edition.source)
                texts[pid] = current.text if current is not None else None
        keys = {f"{card.directory}\0{pid}" for pid in card.passages}
        with self._lock:
            self._seen.update(
                f"{card.directory}\0{pid}"
                for pid in card.passages
                if pid not in changed or changed[pid] is not None
            )
            seen = {k.split("\0", 1)[1] for k in keys & self._seen}
        return stale_ids(card, changed, texts, seen)

    def relevant(
        self, question: str, card: AdapterCard, store: Any, *, alpha: float = 0.5
    ) -> StaleVerdict | None:
        """The stale learned passage this question is about, or None.

        Cheap when nothing is stale (the cached set is empty). Otherwise the question is
        about a stale passage when it restates a question the adapter learned from it, or
        when the passage is the question's top search hit.
        """
        stale = self.stale(card, store)
        if not stale:
            return None
        learned = [q for q in card.questions if q.get("passage_id") in stale]
        match = matching_question(question, learned)
        if match is not None:
            return StaleVerdict(str(match["passage_id"]), "learned question")
        hits = search_passages(store, question, 1, alpha)
        if hits and hits[0].id in stale:
            return StaleVerdict(hits[0].id, "top search hit")
        return None

    def clear(self) -> None:
        with self._lock:
            self._cache.clear()
