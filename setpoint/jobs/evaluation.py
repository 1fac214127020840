"""The evaluation harness: one question stream, every retrieval strategy on the same questions, the `setpoint eval` job.

The strategies are in ``eval_strategies``, the stream in ``eval_questions``, the summaries
and plots in ``eval_report``. Results are appended per (strategy, question) to
``results.jsonl``, so a crashed run resumes where it stopped.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from setpoint.errors import ConfigError
from setpoint.jobs.eval_questions import EvalQuestion, build_stream, load_squad, split_titles
from setpoint.jobs.eval_report import frontier, signal_aurocs, summarize, write_plots
from setpoint.jobs.eval_strategies import (
    STRATEGIES,
    EvalRecord,
    grader_record,
    graph_record,
    oracle_record,
    strategy_context,
)

if TYPE_CHECKING:
    from setpoint.api import Setpoint
    from setpoint.graphs.context import Context

__all__ = ["evaluate", "index_passages", "run_eval"]


def _load_done(path: Path) -> dict[tuple[str, str], EvalRecord]:
    done: dict[tuple[str, str], EvalRecord] = {}
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                record = EvalRecord(**json.loads(line))
            except (ValueError, TypeError):
                continue  # a line cut by a crash: that question runs again
            done[(record.strategy, record.qid)] = record
    return done


def run_eval(
    session: Setpoint,
    questions: Sequence[EvalQuestion],
    strategies: Sequence[str],
    out_dir: Path,
    *,
    base_context: Context,
    probe_path: str | None = None,
    progress: bool = True,
) -> list[EvalRecord]:
    """Run every strategy on every question (resuming from ``out_dir/results.jsonl``)."""
    from tqdm import tqdm

    unknown = set(strategies) - set(STRATEGIES)
    if unknown:
        raise ConfigError(
            f"unknown strategies {sorted(unknown)}; choose from {', '.join(STRATEGIES)}"
        )
    wanted = list(dict.fromkeys(strategies))
    runnable = [s for s in wanted if s != "oracle"]
    if "oracle" in wanted:
        runnable = list(dict.fromkeys(["never", "always", *runnable]))
    out_dir.mkdir(parents=True, exist_ok=True)
    results_path = out_dir / "results.jsonl"
    done = _load_done(results_path)
    contexts = {s: strategy_context(base_context, s, probe_path) for s in runnable if s != "grader"}
    bar = tqdm(total=len(questions) * len(runnable), disable=not progress, desc="eval", unit="run")
    with results_path.open("a", encoding="utf-8") as sink:
        for q in questions:
            for strategy in runnable:
                bar.update(1)
                if (strategy, q.id) in done:
                    continue
                if strategy == "grader":
                    record = grader_record(session, q, base_context)
                else:
                    record = graph_record(session, strategy, q, contexts[strategy])
                done[(strategy, q.id)] = record
                sink.write(json.dumps(asdict(record)) + "\n")
                sink.flush()
    bar.close()
    records = [done[(s, q.id)] for q in questions for s in runnable]
    if "oracle" in wanted:
        records += [oracle_record(done[("never", q.id)], done[("always", q.id)]) for q in questions]
    return [r for r in records if r.strategy in wanted]


def index_passages(
    session: Setpoint, passages: Sequence[dict[str, Any]], questions: Sequence[EvalQuestion]
) -> int:
    """Ingest every passage of every article the stream draws from (idempotent); returns the count."""
    from setpoint.adapters.weaviate.corpus import PassageRecord

    titles = {q.title for q in questions}
    records = [
        PassageRecord(p["id"], p["title"], p["text"], {}) for p in passages if p["title"] in titles
    ]
    store = session.resources.store()
    store.ensure_collection()
    report = store.ingest(records, source="squad", progress=False)
    if report.failed:
        raise ConfigError(
            f"{len(report.failed)} passages failed to ingest, e.g. {report.failed[0]}"
        )
    return len(records)


def evaluate(
    session: Setpoint,
    *,
    squad_dir: Path,
    out_dir: Path,
    strategies: Sequence[str],
    limit: int | None,
    seed: int = 0,
    core_fraction: float = 0.5,
    probe_path: str | None = None,
    progress: bool = True,
    skip: int = 0,
    context: Context | None = None,
) -> dict[str, Any]:
    """The whole job: stream, index, run, summarise, sweep, plot, and write ``summary.json``.

    ``skip`` leaves out the head of the stream (the questions ``setpoint calibrate`` used);
    ``context`` is the base run context (default: the session's, calibration included).
    """
    passages, raw_questions = load_squad(squad_dir)
    core, fringe = split_titles({p["title"] for p in passages}, core_fraction, seed)
    stream = build_stream(
        raw_questions, passages, core_titles=core, limit=limit, seed=seed, skip=skip
    )
    indexed = index_passages(session, passages, stream)
    base = context or session.context()
    records = run_eval(
        session,
        stream,
        strategies,
        out_dir,
        base_context=base,
        probe_path=probe_path,
        progress=progress,
    )
    rows = summarize(records)
    never = [r for r in records if r.strategy == "never"]
    always = [r for r in records if r.strategy == "always"]
    frontiers: dict[str, list[dict[str, float]]] = {}
    if never and always:
        frontiers["entropy"] = frontier(
            never,
            always,
            base_context=base,
            strategy="entropy",
            grid=[0.4, 0.6, 0.8, 1.0, 1.2, 1.4, 1.6, 1.8, 2.0, 2.4, 2.8, 3.5],
        )
        frontiers["flare"] = frontier(
            never,
            always,
            base_context=base,
            strategy="flare",
            grid=[0.02, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9],
        )
        if any(r.signals.get("probe_score") is not None for r in never):
            frontiers["probe"] = frontier(
                never, always, base_context=base, strategy="probe", grid=[i / 20 for i in range(21)]
            )
    summary: dict[str, Any] = {
        "rows": rows,
        "signal_auroc": signal_aurocs(never) if never else {},
        "frontiers": frontiers,
        "split": {
            "seed": seed,
            "core_fraction": core_fraction,
            "core_titles": sorted(core),
            "fringe_titles": sorted(fringe),
        },
        "stream": {
            "questions": len(stream),
            "skip": skip,
            "core": sum(q.part == "core" for q in stream),
            "indexed_passages": indexed,
        },
        "context": {
            k: (v if not isinstance(v, float) or math.isfinite(v) else str(v))
            for k, v in asdict(base).items()
        },
        "probe_path": probe_path,
        "model": session.resources.generator().name,
    }
    summary["plots"] = (
        [str(p) for p in write_plots(out_dir, rows, frontiers, never)] if never else []
    )
    (out_dir / "summary.json").write_text(
        json.dumps(summary, indent=2, default=str), encoding="utf-8"
    )
    return summary
