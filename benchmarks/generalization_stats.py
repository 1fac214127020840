"""Scores and aggregates of ``generalization.py``: EM/F1 per result, bootstrap, accuracy-coverage, passage recall, tables."""

from __future__ import annotations

import math
import random
import statistics
from collections.abc import Sequence
from typing import Any

from reader import coverage_curve  # the folder of this script is on sys.path

__all__ = [
    "CORRECT_F1",
    "accuracy_coverage",
    "bootstrap_ci",
    "markdown",
    "score",
    "summarize",
    "support_recall",
]

CORRECT_F1 = 0.5
COVERAGES = (1.0, 0.8, 0.5)
BOOTSTRAP_RESAMPLES = 1000


def score(question: dict[str, Any], answered: bool, answer: str) -> dict[str, float]:
    """EM and F1 of one result (SQuAD v2 rule for unanswerable questions).

    Example:
        >>> score({"answers": ["Denver Broncos"]}, True, "the Denver Broncos")
        {'f1': 1.0, 'em': 1.0}
        >>> score({"answers": [], "is_impossible": True}, False, "I am not sure.")
        {'f1': 1.0, 'em': 1.0}
    """
    from setpoint.adapters.domain.metrics import best_exact_match, best_f1

    if question.get("is_impossible"):
        right = float(not answered)
        return {"f1": right, "em": right}
    if not answered:
        return {"f1": 0.0, "em": 0.0}
    answers = [str(a) for a in question["answers"]]
    return {"f1": best_f1(answer, answers), "em": best_exact_match(answer, answers)}


# ------------------------------------------------------------------ aggregates
def bootstrap_ci(values: Sequence[float], seed: int) -> list[float]:
    """95 % percentile bootstrap interval of the mean (seeded).

    Example:
        >>> bootstrap_ci([1.0, 1.0], 0)
        [1.0, 1.0]
    """
    if not values:
        return [math.nan, math.nan]
    rng = random.Random(seed)
    n = len(values)
    means = sorted(sum(rng.choices(values, k=n)) / n for _ in range(BOOTSTRAP_RESAMPLES))
    return [means[int(0.025 * len(means))], means[int(0.975 * len(means)) - 1]]


def _quantile(values: Sequence[float], q: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else math.nan


def accuracy_coverage(rows: Sequence[dict[str, Any]], signal: str) -> dict[str, Any]:
    """Accuracy (F1 >= 0.5) of the answered rows that carry ``signal``, least uncertain first."""
    kept = [r for r in rows if r["answered"] and r.get(signal) is not None]
    if not kept:
        return {"signal": signal, "n": 0, "curve": []}
    correct = [float(r["f1"] >= CORRECT_F1) for r in kept]
    curve = coverage_curve([float(r[signal]) for r in kept], correct, COVERAGES)
    return {"signal": signal, "n": len(kept), "curve": curve}


def support_recall(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Over questions that retrieved and have gold passages: any / all of them retrieved."""
    kept = [r for r in rows if r["retrieval_calls"] > 0 and r["gold_ids"]]
    hits = [len(set(r["gold_ids"]) & set(r["retrieved_ids"])) for r in kept]
    return {
        "n": len(kept),
        "any": _mean([float(h > 0) for h in hits]),
        "all": _mean(
            [float(h == len(set(r["gold_ids"]))) for h, r in zip(hits, kept, strict=True)]
        ),
    }


def _not_sure(row: dict[str, Any]) -> float:
    return float(bool(row.get("unsure")) or not row["answered"])


def summarize(rows: Sequence[dict[str, Any]], seed: int) -> dict[str, Any]:
    """The aggregates of one set and strategy."""
    f1 = [r["f1"] for r in rows]
    seconds = [r["seconds"] for r in rows]
    out: dict[str, Any] = {
        "n": len(rows),
        "f1": _mean(f1),
        "f1_ci95": bootstrap_ci(f1, seed),
        "em": _mean([r["em"] for r in rows]),
        "abstention": _mean([float(not r["answered"]) for r in rows]),
        "f1_answered": _mean([r["f1"] for r in rows if r["answered"]]),
        # "Not sure": given as a best guess with status unsure; its accuracy, and that of
        # the answers given as sure (what a chat app states without a caveat).
        "unsure": _mean([float(bool(r.get("unsure"))) for r in rows]),
        "accuracy_sure": _mean(
            [float(r["f1"] >= CORRECT_F1) for r in rows if r["answered"] and not r.get("unsure")]
        ),
        "accuracy_unsure": _mean([float(r["f1"] >= CORRECT_F1) for r in rows if r.get("unsure")]),
        "retrieval_rate": _mean([float(r["retrieval_calls"] > 0) for r in rows]),
        "retrieval_calls_per_question": _mean([float(r["retrieval_calls"]) for r in rows]),
        "seconds_median": statistics.median(seconds) if seconds else math.nan,
        "seconds_p90": _quantile(seconds, 0.9),
        "routes": {
            k: sum(r["route"] == k for r in rows) for k in sorted({r["route"] for r in rows})
        },
        "coverage": {
            "answer_entropy": accuracy_coverage(rows, "answer_entropy"),
            "reader_uncertainty": accuracy_coverage(rows, "reader_uncertainty"),
        },
        "support_recall": support_recall(rows),
    }
    impossible = [r for r in rows if r["impossible"]]
    if impossible:
        answerable = [r for r in rows if not r["impossible"]]
        out["unanswerable"] = {
            "n_unanswerable": len(impossible),
            "n_answerable": len(answerable),
            "abstained_unanswerable": _mean([float(not r["answered"]) for r in impossible]),
            "abstained_answerable": _mean([float(not r["answered"]) for r in answerable]),
            # The measure: "not sure" (status unsure) or no answer at all.
            "not_sure_unanswerable": _mean([_not_sure(r) for r in impossible]),
            "not_sure_answerable": _mean([_not_sure(r) for r in answerable]),
            "f1_answerable": _mean([r["f1"] for r in answerable]),
        }
    return out


# ------------------------------------------------------------------ report
def _fmt(value: float, digits: int = 3) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def _at(cov: dict[str, Any], coverage: float) -> str:
    point = next((p for p in cov["curve"] if p["coverage"] == coverage), None)
    return _fmt(point["score"], 2) if point else "n/a"


def markdown(results: dict[str, dict[str, Any]]) -> str:
    """The tables of BENCHMARKS.md: quality, cost, accuracy-coverage, passages, SQuAD v2."""
    lines = [
        "| set | strategy | n | F1 [95 % CI] | EM | abstained | unsure | acc sure / unsure "
        "| retrieved | calls/q | s/q median | s/q p90 |",
        "|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    each = [(n, s, r) for n, per in results.items() for s, r in per.items()]
    for name, strategy, r in each:
        low, high = r["f1_ci95"]
        lines.append(
            f"| {name} | {strategy} | {r['n']} | {_fmt(r['f1'])} [{_fmt(low, 2)}, {_fmt(high, 2)}] "
            f"| {_fmt(r['em'])} | {_fmt(r['abstention'], 2)} | {_fmt(r.get('unsure', math.nan), 2)} "
            f"| {_fmt(r.get('accuracy_sure', math.nan), 2)} / "
            f"{_fmt(r.get('accuracy_unsure', math.nan), 2)} | {_fmt(r['retrieval_rate'], 2)} "
            f"| {_fmt(r['retrieval_calls_per_question'], 2)} | {_fmt(r['seconds_median'], 1)} "
            f"| {_fmt(r['seconds_p90'], 1)} |"
        )
    lines += [
        "",
        "| set | strategy | by | answered | acc @100 % | @80 % | @50 % | gold any | gold all (n) |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, strategy, r in each:
        recall = r["support_recall"]
        for signal, cov in r["coverage"].items():
            lines.append(
                f"| {name} | {strategy} | {signal} | {cov['n']} | {_at(cov, 1.0)} "
                f"| {_at(cov, 0.8)} | {_at(cov, 0.5)} | {_fmt(recall['any'], 2)} "
                f"| {_fmt(recall['all'], 2)} ({recall['n']}) |"
            )
    v2 = [(n, s, r["unanswerable"]) for n, s, r in each if "unanswerable" in r]
    if v2:
        lines += [
            "",
            "| set | strategy | unanswerable not sure or abstained (n) | answerable not sure "
            "or abstained (n) | of which abstained: unanswerable / answerable | F1 answerable |",
            "|---|---|---:|---:|---:|---:|",
        ]
        for name, strategy, u in v2:
            lines.append(
                f"| {name} | {strategy} | {_fmt(u.get('not_sure_unanswerable', math.nan), 2)} "
                f"({u['n_unanswerable']}) | {_fmt(u.get('not_sure_answerable', math.nan), 2)} "
                f"({u['n_answerable']}) | {_fmt(u['abstained_unanswerable'], 2)} / "
                f"{_fmt(u['abstained_answerable'], 2)} | {_fmt(u['f1_answerable'])} |"
            )
    return "\n".join(lines)
