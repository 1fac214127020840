"""Answer and signal metrics: SQuAD exact match and token F1, AUROC, and setpoint picking. Pure functions."""

from __future__ import annotations

import math
import re
import string
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "ThresholdChoice",
    "auroc",
    "best_exact_match",
    "best_f1",
    "exact_match",
    "normalize_answer",
    "pick_threshold",
    "token_f1",
]

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = set(string.punctuation)


def normalize_answer(text: str) -> str:
    """Lower-case, drop punctuation and the articles a/an/the, collapse whitespace (SQuAD's rule).

    Example:
        >>> normalize_answer("The  Denver Broncos!")
        'denver broncos'
    """
    text = "".join(ch for ch in text.lower() if ch not in _PUNCT)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(prediction: str, gold: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(gold))


def token_f1(prediction: str, gold: str) -> float:
    """Harmonic mean of token precision and recall after normalisation.

    Example:
        >>> round(token_f1("Denver Broncos won", "the Denver Broncos"), 3)
        0.8
    """
    pred = normalize_answer(prediction).split()
    ref = normalize_answer(gold).split()
    if not pred or not ref:
        return float(pred == ref)
    common = sum((Counter(pred) & Counter(ref)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def best_exact_match(prediction: str, golds: Sequence[str]) -> float:
    """Max over the gold answers, as the official evaluation does."""
    return max((exact_match(prediction, g) for g in golds), default=0.0)


def best_f1(prediction: str, golds: Sequence[str]) -> float:
    return max((token_f1(prediction, g) for g in golds), default=0.0)


def auroc(scores: Sequence[float], labels: Sequence[bool]) -> float:
    """Area under the ROC curve: P(score of a positive > score of a negative), ties count half.

    Returns NaN when one class is absent.

    Example:
        >>> auroc([0.1, 0.4, 0.35, 0.8], [False, False, True, True])
        0.75
    """
    if len(scores) != len(labels):
        raise ValueError("scores and labels differ in length")
    pairs = sorted(zip(scores, labels, strict=True), key=lambda p: p[0])
    positives = sum(1 for _, y in pairs if y)
    negatives = len(pairs) - positives
    if positives == 0 or negatives == 0:
        return math.nan
    # Rank-sum (Mann-Whitney U) with average ranks for ties.
    rank_sum = 0.0
    i = 0
    while i < len(pairs):
        j = i
        while j + 1 < len(pairs) and pairs[j + 1][0] == pairs[i][0]:
            j += 1
        average_rank = (i + j) / 2 + 1
        rank_sum += average_rank * sum(1 for k in range(i, j + 1) if pairs[k][1])
        i = j + 1
    u = rank_sum - positives * (positives + 1) / 2
    return u / (positives * negatives)


@dataclass(frozen=True)
class ThresholdChoice:
    """A setpoint picked on held-out data and what it achieved there."""

    threshold: float
    retrieval_rate: float
    accuracy: float


def pick_threshold(
    scores: Sequence[float],
    closed_correct: Sequence[float],
    open_correct: Sequence[float],
    *,
    target_retrieval_rate: float | None = None,
    target_accuracy: float | None = None,
) -> ThresholdChoice:
    """Choose the setpoint on held-out questions: retrieve when ``score > threshold``.

    ``closed_correct`` / ``open_correct`` are the per-question scores (F1 or EM) without and
    with retrieval. With ``target_retrieval_rate`` the threshold retrieves for at most that
    share of questions (the most uncertain ones); with ``target_accuracy`` it is the highest
    threshold (fewest retrievals) whose mean score reaches the target, or the lowest
    threshold when none does.

    Example:
        >>> pick_threshold([0.1, 0.9, 0.5, 0.7], [1, 0, 1, 0], [1, 1, 1, 1], target_retrieval_rate=0.5)
        ThresholdChoice(threshold=0.5, retrieval_rate=0.5, accuracy=1.0)
    """
    if (target_retrieval_rate is None) == (target_accuracy is None):
        raise ValueError("give exactly one of target_retrieval_rate and target_accuracy")
    n = len(scores)
    if n == 0 or len(closed_correct) != n or len(open_correct) != n:
        raise ValueError("need equally long, non-empty score lists")
    # Candidate thresholds: above every score (never retrieve), each score descending, and
    # below every score (always retrieve).
    candidates = [math.inf, *sorted(set(scores), reverse=True), -math.inf]
    choices = []
    for threshold in candidates:
        retrieve = [s > threshold for s in scores]
        accuracy = (
            sum(
                o if r else c
                for r, c, o in zip(retrieve, closed_correct, open_correct, strict=True)
            )
            / n
        )
        choices.append(ThresholdChoice(threshold, sum(retrieve) / n, accuracy))
    if target_retrieval_rate is not None:
        allowed = [c for c in choices if c.retrieval_rate <= target_retrieval_rate + 1e-12]
        return allowed[-1]
    assert target_accuracy is not None
    for choice in choices:
        if choice.accuracy >= target_accuracy - 1e-12:
            return choice
    return choices[-1]
