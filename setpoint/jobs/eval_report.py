"""What an evaluation run reports: a row per strategy, signal AUROCs, threshold sweeps, plots and the console table."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from setpoint.adapters.domain.metrics import auroc
from setpoint.jobs.eval_strategies import CORRECT_F1, EvalRecord, strategy_context

if TYPE_CHECKING:
    from setpoint.graphs.context import Context

__all__ = ["SIGNALS", "frontier", "print_table", "signal_aurocs", "summarize", "write_plots"]


def _percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return math.nan
    index = min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))
    return ordered[index]


def summarize(records: Sequence[EvalRecord]) -> list[dict[str, Any]]:
    """One row per strategy: EM, F1, retrieval and model calls per question, latency, tokens."""
    rows = []
    for strategy in dict.fromkeys(r.strategy for r in records):
        mine = [r for r in records if r.strategy == strategy]
        n = len(mine)
        rows.append(
            {
                "strategy": strategy,
                "questions": n,
                "em": sum(r.em for r in mine) / n,
                "f1": sum(r.f1 for r in mine) / n,
                "f1_core": _mean([r.f1 for r in mine if r.part == "core"]),
                "f1_fringe": _mean([r.f1 for r in mine if r.part == "fringe"]),
                "retrieval_calls_per_q": sum(r.retrieval_calls for r in mine) / n,
                "retrieved_share": sum(1 for r in mine if r.retrieval_calls) / n,
                "model_calls_per_q": sum(r.model_calls for r in mine) / n,
                "median_s": statistics.median(r.seconds for r in mine),
                "p95_s": _percentile([r.seconds for r in mine], 0.95),
                "tokens_per_q": sum(r.tokens for r in mine) / n,
            }
        )
    return rows


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else math.nan


SIGNALS = (
    "first_entropy",
    "first_margin",
    "mean_entropy_k",
    "max_entropy_k",
    "mean_entropy_after_first",
    "max_surprisal_k",
    "probe_score",
)


def signal_aurocs(never: Sequence[EvalRecord]) -> dict[str, float]:
    """AUROC of each closed-book signal for "the closed-book answer is wrong" (higher = more uncertain).

    Margin is negated (a high margin means confident).
    """
    names = list(SIGNALS) + sorted({k for r in never for k in r.signals if k.startswith("lens_")})
    result = {}
    for name in names:
        pairs = _uncertainty_scores(never, name)
        if len(pairs) >= 2:
            result[name] = auroc([score for score, _ in pairs], [w for _, w in pairs])
    return result


def _uncertainty_scores(never: Sequence[EvalRecord], name: str) -> list[tuple[float, bool]]:
    """(score, closed-book wrong) for the questions that have signal ``name``; higher = more unsure."""
    pairs = []
    for record in never:
        value = record.signals.get(name)
        if value is not None:
            score = -float(value) if name == "first_margin" else float(value)  # high margin = sure
            pairs.append((score, record.f1 < CORRECT_F1))
    return pairs


def frontier(
    never: Sequence[EvalRecord],
    always: Sequence[EvalRecord],
    *,
    base_context: Context,
    strategy: str,
    grid: Sequence[float],
) -> list[dict[str, float]]:
    """F1 against retrieval rate as the threshold sweeps, simulated from recorded traces.

    The decision for each threshold is exact (the thermostat replayed on the closed-book
    trace, or the probe score against the threshold); a question that retrieves is scored
    with the ``always`` answer (query = the question alone), which is what the graph
    produces up to the partial answer appended to the query.
    """
    from setpoint.agents.thermostat import Thermostat

    points = []
    by_id = {r.qid: r for r in always}
    for value in grid:
        f1 = 0.0
        fired_count = 0
        for closed in never:
            if strategy == "probe":
                score = closed.signals.get("probe_score")
                fired = score is not None and score > value
            else:
                ctx = strategy_context(replace(base_context, setpoint=value), strategy, None)
                if strategy == "flare":
                    ctx = replace(ctx, setpoint=-math.log(value))
                thermostat = Thermostat(ctx)
                series = closed.signals[
                    "trace_surprisal" if strategy == "flare" else "trace_entropy"
                ]
                fired = any(thermostat.update(h).fired for h in series)
            fired_count += fired
            f1 += by_id[closed.qid].f1 if fired else closed.f1
        points.append(
            {"threshold": value, "retrieval_rate": fired_count / len(never), "f1": f1 / len(never)}
        )
    return points


def write_plots(
    out_dir: Path,
    rows: list[dict[str, Any]],
    frontiers: dict[str, list[dict[str, float]]],
    never: Sequence[EvalRecord],
) -> list[Path]:
    """PNG plots: the F1/retrieval-rate frontier and ROC curves of the closed-book signals."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    fig, ax = plt.subplots(figsize=(7, 5))
    for name, points in frontiers.items():
        pts = sorted(points, key=lambda p: p["retrieval_rate"])
        ax.plot(
            [p["retrieval_rate"] for p in pts],
            [p["f1"] for p in pts],
            marker=".",
            label=f"{name} (swept)",
        )
    for row in rows:
        ax.scatter([row["retrieved_share"]], [row["f1"]], s=60, zorder=3)
        ax.annotate(
            row["strategy"],
            (row["retrieved_share"], row["f1"]),
            textcoords="offset points",
            xytext=(5, 5),
        )
    ax.set_xlabel("share of questions that retrieved")
    ax.set_ylabel("token F1")
    ax.set_title("Accuracy vs retrieval: threshold sweeps and operating points")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    path = out_dir / "frontier.png"
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    paths.append(path)

    fig, ax = plt.subplots(figsize=(6, 6))
    for name in SIGNALS:
        pairs = _uncertainty_scores(never, name)
        scores = [score for score, _ in pairs]
        wrong = [w for _, w in pairs]
        pos = sum(wrong)
        neg = len(wrong) - pos
        if len(pairs) < len(never) or not pos or not neg:
            continue
        ordered = sorted(pairs, key=lambda p: -p[0])
        tpr, fpr, tp, fp = [0.0], [0.0], 0, 0
        for _, is_wrong in ordered:
            tp += is_wrong
            fp += not is_wrong
            tpr.append(tp / pos)
            fpr.append(fp / neg)
        ax.plot(fpr, tpr, label=f"{name} (AUROC {auroc(scores, wrong):.2f})")
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=0.8)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title('ROC: signals for "closed-book answer is wrong"')
    ax.legend(fontsize=7, loc="lower right")
    path = out_dir / "auroc.png"
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    paths.append(path)
    return paths


def print_table(rows: list[dict[str, Any]]) -> None:
    header = f"{'strategy':<9} {'n':>4} {'EM':>5} {'F1':>5} {'ret/q':>6} {'ret%':>5} {'calls/q':>7} {'med s':>6} {'p95 s':>6} {'tok/q':>6}"
    print(header)
    for r in rows:
        print(
            f"{r['strategy']:<9} {r['questions']:>4} {r['em']:>5.3f} {r['f1']:>5.3f} {r['retrieval_calls_per_q']:>6.2f} "
            f"{100 * r['retrieved_share']:>4.0f}% {r['model_calls_per_q']:>7.2f} {r['median_s']:>6.2f} {r['p95_s']:>6.2f} {r['tokens_per_q']:>6.1f}"
        )
