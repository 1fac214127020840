"""Refused topics: a keyword matcher (whole words and phrases) and an embedding-similarity matcher per topic."""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from langchain_core.embeddings import Embeddings
    from langchain_core.tools import BaseTool

__all__ = ["Topic", "TopicHit", "TopicMatcher", "make_topic_tool"]


@dataclass(frozen=True)
class TopicHit:
    """Why a text falls under a refused topic: which matcher, what matched, and how close."""

    topic: str
    matcher: str  # "keyword" or "embedding"
    matched: str
    score: float


@dataclass(frozen=True)
class Topic:
    """One refused topic: keywords (whole words, case-insensitive) and example requests.

    ``threshold`` is the cosine similarity at or above which a text counts as a request like
    one of the ``examples``.
    """

    name: str
    keywords: tuple[str, ...] = ()
    examples: tuple[str, ...] = ()
    threshold: float = 0.6
    pattern: re.Pattern[str] | None = field(default=None, compare=False, repr=False)

    @classmethod
    def build(
        cls, name: str, keywords: Sequence[str], examples: Sequence[str], threshold: float
    ) -> Topic:
        pattern = None
        if keywords:
            alternatives = "|".join(
                re.escape(k.strip().lower()).replace(r"\ ", r"\s+") for k in keywords
            )
            pattern = re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)", re.IGNORECASE)
        return cls(name, tuple(keywords), tuple(examples), threshold, pattern)


def _cosine(a: Sequence[float], b: Sequence[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    na = math.sqrt(sum(x * x for x in a))
    nb = math.sqrt(sum(y * y for y in b))
    return dot / (na * nb) if na and nb else 0.0


class TopicMatcher:
    """Matches a text against refused topics; embeds each topic's examples once per embedder.

    Example:
        >>> m = TopicMatcher([Topic.build("weapons", ["bomb"], [], 0.6)])
        >>> m.keyword_hit("How do I build a bomb?").topic
        'weapons'
    """

    def __init__(self, topics: Sequence[Topic]) -> None:
        self.topics = tuple(topics)
        self._vectors: dict[int, list[tuple[Topic, str, list[float]]]] = {}
        # Cached by id(embedder); holding the embedders keeps their ids from being reused.
        self._embedders: list[Embeddings] = []
        self._lock = threading.Lock()

    @property
    def semantic(self) -> bool:
        """Whether any topic has examples (and so the embedding matcher needs an embedder)."""
        return any(t.examples for t in self.topics)

    def keyword_hit(self, text: str) -> TopicHit | None:
        for topic in self.topics:
            if topic.pattern is not None:
                m = topic.pattern.search(text)
                if m:
                    return TopicHit(topic.name, "keyword", m.group(0), 1.0)
        return None

    def _example_vectors(self, embedder: Embeddings) -> list[tuple[Topic, str, list[float]]]:
        key = id(embedder)
        with self._lock:
            cached = self._vectors.get(key)
            if cached is None:
                pairs = [(t, e) for t in self.topics for e in t.examples]
                vectors = embedder.embed_documents([e for _t, e in pairs]) if pairs else []
                cached = [(t, e, v) for (t, e), v in zip(pairs, vectors, strict=True)]
                self._vectors[key] = cached
                self._embedders.append(embedder)
            return cached

    def embedding_hit(self, text: str, embedder: Embeddings) -> TopicHit | None:
        """The topic whose closest example is most similar to ``text``, if at or over its threshold."""
        examples = self._example_vectors(embedder)
        if not examples:
            return None
        query = embedder.embed_query(text)
        best: TopicHit | None = None
        for topic, example, vector in examples:
            score = _cosine(query, vector)
            if score >= topic.threshold and (best is None or score > best.score):
                best = TopicHit(topic.name, "embedding", example, score)
        return best

    def closest(self, text: str, embedder: Embeddings) -> dict[str, float]:
        """Each topic's highest similarity to ``text`` (for calibration and the benchmark)."""
        query = embedder.embed_query(text)
        scores: dict[str, float] = {}
        for topic, _example, vector in self._example_vectors(embedder):
            scores[topic.name] = max(scores.get(topic.name, -1.0), _cosine(query, vector))
        return scores

    def match(self, text: str, embedder: Embeddings | None = None) -> TopicHit | None:
        """Keywords first (free), then the embedding matcher when an embedder is given."""
        hit = self.keyword_hit(text)
        if hit is None and embedder is not None and self.semantic:
            hit = self.embedding_hit(text, embedder)
        return hit


def make_topic_tool(matcher: TopicMatcher, embedder: Embeddings | None = None) -> BaseTool:
    """A ``refused_topic_check`` LangChain tool: text in, ``{"refused", "topic", "matcher", ...}`` out."""
    from langchain_core.tools import StructuredTool

    def refused_topic_check(text: str) -> dict[str, Any]:
        """Say whether the text asks about a topic the policy refuses, and which one."""
        hit = matcher.match(text, embedder)
        if hit is None:
            return {"allowed": True, "refused": False}
        return {
            "allowed": False,
            "reason": f"refused_topic:{hit.topic}",
            "refused": True,
            "topic": hit.topic,
            "matcher": hit.matcher,
            "matched": hit.matched,
            "score": round(hit.score, 4),
        }

    return StructuredTool.from_function(refused_topic_check)
