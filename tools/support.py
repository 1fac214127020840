"""Grounding: how well the cited passages support an answer, as a score in [0, 1].

Two measures, used alone or averaged:

* ``lexical`` — the share of the answer's content words (stop words and answer boilerplate
  removed, light suffix stemming) found in the passages, blended with the share of its
  word pairs found there, so that an answer stitched from scattered words scores lower
  than one read from the text.
* ``embedding`` — the cosine similarity between the answer and the passage sentence closest
  to it (unit vectors from any LangChain ``Embeddings``).

``benchmarks/policy.py`` measures how well each separates right from wrong passages on SQuAD.
"""

from __future__ import annotations

import itertools
import re
import unicodedata
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from langchain_core.embeddings import Embeddings
    from langchain_core.tools import BaseTool

__all__ = [
    "GroundingMethod",
    "content_words",
    "lexical_support",
    "make_grounding_tool",
    "support_score",
]

GroundingMethod = Literal["lexical", "embedding", "hybrid"]

_STOP = frozenset(
    [
        "a",
        "an",
        "the",
        "of",
        "to",
        "in",
        "on",
        "at",
        "by",
        "for",
        "from",
        "with",
        "and",
        "or",
        "but",
        "nor",
        "so",
        "as",
        "is",
        "are",
        "was",
        "were",
        "be",
        "been",
        "being",
        "it",
        "its",
        "it's",
        "this",
        "that",
        "these",
        "those",
        "there",
        "here",
        "he",
        "she",
        "they",
        "them",
        "his",
        "her",
        "their",
        "we",
        "you",
        "your",
        "i",
        "me",
        "my",
        "our",
        "us",
        "do",
        "does",
        "did",
        "done",
        "have",
        "has",
        "had",
        "not",
        "no",
        "yes",
        "than",
        "then",
        "also",
        "which",
        "who",
        "whom",
        "whose",
        "what",
        "when",
        "where",
        "why",
        "how",
        "into",
        "onto",
        "over",
        "under",
        "about",
        "after",
        "before",
        "during",
        "while",
        "because",
        "if",
        "though",
        "although",
        "can",
        "could",
        "would",
        "should",
        "will",
        "shall",
        "may",
        "might",
        "must",
        "very",
        "more",
        "most",
        "much",
        "many",
        "some",
        "any",
        "each",
        "every",
        "all",
        "both",
        "either",
        "neither",
        "other",
        "such",
        "only",
        "own",
        "same",
        "just",
        "too",
        "s",
        "t",
        "answer",
        "question",
        "passage",
        "context",
        "according",
        "based",
        "text",
        "called",
        "known",
        "said",
        "one",
    ]
)
_SENTENCE = re.compile(r"(?<=[.!?])\s+")


def _fold(text: str) -> str:
    text = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in text if not unicodedata.combining(ch)).lower()


def _stem(word: str) -> str:
    # Crude on purpose: plural and tense endings are the variation between a passage and a
    # paraphrasing answer that matters; anything finer is the embedding measure's job.
    if word.isdigit() or len(word) <= 4:
        return word
    for suffix in ("ies", "ing", "ed", "es", "s"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 4:
            return word[: -len(suffix)]
    return word


def content_words(text: str) -> list[str]:
    """Stemmed content words of ``text`` in order (numbers kept, stop words dropped).

    Example:
        >>> content_words("The Denver Broncos won Super Bowl 50.")
        ['denver', 'bronco', 'won', 'super', 'bowl', '50']
    """
    words = re.findall(r"[a-z0-9]+", _fold(text).replace(",", ""))
    return [_stem(w) for w in words if w not in _STOP]


def lexical_support(answer: str, passages: Sequence[str]) -> float | None:
    """Word and word-pair coverage of the answer by the passages; None when the answer has no content words.

    Example:
        >>> lexical_support("Denver Broncos", ["The Denver Broncos defeated the Carolina Panthers."])
        1.0
        >>> lexical_support("Carolina Hurricanes", ["The Denver Broncos won."])
        0.0
    """
    words = content_words(answer)
    if not words:
        return None
    source_words: set[str] = set()
    source_pairs: set[tuple[str, str]] = set()
    for passage in passages:
        seq = content_words(passage)
        source_words.update(seq)
        source_pairs.update(itertools.pairwise(seq))
    unique = list(dict.fromkeys(words))
    unigram = sum(w in source_words for w in unique) / len(unique)
    pairs = list(dict.fromkeys(itertools.pairwise(words)))
    if not pairs:
        return unigram
    bigram = sum(p in source_pairs for p in pairs) / len(pairs)
    return 0.7 * unigram + 0.3 * bigram


def _embedding_support(answer: str, passages: Sequence[str], embedder: Embeddings) -> float:
    sentences = [s for p in passages for s in _SENTENCE.split(p) if s.strip()]
    if not sentences:
        return 0.0
    vectors = embedder.embed_documents([answer, *sentences])
    head, rest = vectors[0], vectors[1:]
    # Vectors are unit length (the setpoint Embedder normalises), so the dot product is the cosine.
    best = max(sum(a * b for a, b in zip(head, v, strict=True)) for v in rest)
    return max(0.0, min(1.0, float(best)))


def support_score(
    answer: str,
    passages: Sequence[str],
    *,
    method: GroundingMethod = "lexical",
    embedder: Embeddings | None = None,
) -> float:
    """How well ``passages`` support ``answer``, in [0, 1] (1: fully supported).

    An answer without content words ("Yes.") gets the embedding score under ``hybrid`` and
    0.5 under ``lexical``: it neither shows nor contradicts support.

    Raises:
        ValueError: ``embedding`` or ``hybrid`` was asked for without an embedder.

    Example:
        >>> support_score("Roger Goodell", ["NFL Commissioner Roger Goodell announced the plan."])
        1.0
    """
    if not passages:
        return 0.0
    if method != "lexical" and embedder is None:
        raise ValueError(f"grounding method {method!r} needs an embedder")
    lexical = lexical_support(answer, passages) if method != "embedding" else None
    if method == "lexical":
        return 0.5 if lexical is None else lexical
    assert embedder is not None
    semantic = _embedding_support(answer, passages, embedder)
    if method == "embedding" or lexical is None:
        return semantic
    return (lexical + semantic) / 2


def make_grounding_tool(
    method: GroundingMethod = "lexical",
    embedder: Embeddings | None = None,
    threshold: float = 0.5,
) -> BaseTool:
    """A ``grounding_check`` LangChain tool: answer + passages in, ``{"allowed", "score", "method"}`` out."""
    from langchain_core.tools import StructuredTool

    def grounding_check(answer: str, passages: list[str]) -> dict[str, Any]:
        """Score in [0, 1] how well the passages support the answer (1: every claim is in them)."""
        score = support_score(answer, passages, method=method, embedder=embedder)
        return {
            "allowed": score >= threshold,
            "reason": "" if score >= threshold else "ungrounded_answer",
            "score": score,
            "method": method,
        }

    return StructuredTool.from_function(grounding_check)
