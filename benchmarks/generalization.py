"""Generalisation: the product as a user runs it, on every shared QA set, against the always/never baselines.

Each set in ``../shared/data`` (SQuAD v1.1 ``squad``, SQuAD v2 ``squad_v2`` with unanswerable
questions, ``2wikimultihopqa`` and ``musique`` dev, ``nq_open``) is ingested whole, through
``Setpoint.ingest``, into a Weaviate collection of its own (``GenSquad``, ``GenMusique``, ...),
so retrieval faces every passage of the set as distractors. Ingest is idempotent: a rerun
finds the passages unchanged and writes nothing. The ``_train`` folders are never read here.

SQuAD and SQuAD v2 are scored on the shipped reader's evaluation titles only (its
``split.json``): the reader adapter and its probe learned from the other titles' questions.
``--limit`` questions per set are drawn with a seeded RNG; each goes through ``Setpoint.ask``
three ways, interleaved so that machine load hits all alike:

* ``setpoint``: ``Setpoint.context()`` as it comes (default settings, calibration file if set);
* ``always``: retrieve for every question (probe setpoint -inf, no thermostat re-entry);
* ``never``: closed book (both setpoints +inf, no retrieval budget).

Questions are only scored: nothing here learns from them. Reported per set and strategy: F1
(95 % bootstrap interval), EM, abstention (status other than ``answered``), retrieval calls
per question, median and p90 seconds per question, the accuracy-coverage curve (accuracy =
F1 >= 0.5 among answered questions, least uncertain first) and the recall of the gold /
supporting passages among those retrieved (any / all), how often an answer was given as
"not sure" (status ``unsure``) and the accuracy of the sure and the unsure ones. An abstention scores 0 on an
answerable question (``AskResult`` carries no best guess for it) and 1 on a SQuAD v2
unanswerable one (the official rule: no answer is the right answer); SQuAD v2 also reports
how often each half got "not sure" or an abstention (issue 19's measure).

Run: ``.venv/bin/python benchmarks/generalization.py --limit 100`` (``--help``). Prints
Markdown tables, writes ``benchmarks/results/generalization.json`` (aggregates and sampled
ids only: the sets' text may not be committed). Per-question records go to
``<cache>/bench-generalization/records.jsonl`` so an interrupted run resumes
(``--fresh`` starts over); the index lives in ``<cache>/bench-generalization-weaviate``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from generalization_stats import CORRECT_F1, markdown, score, summarize
from machine_info import machine  # the folder of this script is on sys.path

from setpoint.adapters.model.catalog import DEFAULT_MODEL

__all__ = [
    "DEV_PARTS",
    "SETS",
    "STRATEGIES",
    "dev_part",
    "main",
    "read_questions",
    "run_set",
    "sample_questions",
    "scored_sample",
]

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
#: Folder in ``DATA`` -> Weaviate collection (capitalised, Weaviate's rule).
SETS = {
    "squad": "GenSquad",
    "squad_v2": "GenSquadV2",
    "2wikimultihopqa": "Gen2wikimultihopqa",
    "musique": "GenMusique",
    "nq_open": "GenNqOpen",
}
#: Sets of SQuAD's dev articles: scored on the reader's evaluation titles only.
SQUAD_SETS = ("squad", "squad_v2")
#: Named dev parts of evaluation sets that have no train split: questions set aside for
#: fitting (the reader probe), never scored. Each is drawn (seeded by its name) from the
#: questions outside every scored sample of seed 0 at the limits in ``DEV_GUARD_LIMITS``,
#: and shares no passage with them; a sample at another limit or seed drops any it draws.
DEV_PARTS = {"nq_open": 400}
DEV_GUARD_LIMITS = (25, 50, 100, 250)
#: Training splits, for ``--develop`` only: choosing a method on them, never a reported number.
TRAIN_SETS = {
    "2wikimultihopqa_train": "Gen2wikimultihopqaTrain",
    "musique_train": "GenMusiqueTrain",
}
STRATEGIES = ("setpoint", "always", "never", "two-hop", "no-compare", "no-reread")
#: What ``--strategies`` runs unless told: ``two-hop``, ``no-compare`` and ``no-reread`` are
#: opt-in baselines.
DEFAULT_STRATEGIES = ("setpoint", "always", "never")
WARM_UP = "What is the capital of France?"


# ------------------------------------------------------------------ data
def read_questions(
    name: str, data: Path = DATA, *, develop: bool = False, all_titles: bool = False
) -> list[dict[str, Any]]:
    """A dev/evaluation set's scored questions (a ``_train`` split only with ``develop``).

    ``all_titles`` keeps SQuAD's training titles too, for a dev part chosen among them.
    """
    if name.endswith("_train") and not develop:
        raise SystemExit(f"{name} is a training split; it is never reported")
    path = data / name / "questions.jsonl"
    with path.open(encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle if line.strip()]
    if name not in SQUAD_SETS or all_titles:
        return rows
    # The reader adapter and its probe learned from the training titles of its SQuAD split
    # (and SQuAD v2 shares SQuAD's dev articles): only its evaluation titles are scored.
    scored = set(reader_split().eval)
    return [q for q in rows if str(q.get("passage_id", "")).rsplit("-", 1)[0] in scored]


def reader_split() -> Any:
    """The shipped reader adapter's SQuAD title split (``TitleSplit``)."""
    from setpoint.adapters.lora.qa_data import TitleSplit
    from setpoint.adapters.lora.reader import shipped_reader_dir
    from setpoint.adapters.lora.record import SPLIT_FILE

    return TitleSplit.load(shipped_reader_dir() / SPLIT_FILE)


def sample_questions(
    questions: Sequence[dict[str, Any]], limit: int, seed: int, name: str
) -> list[dict[str, Any]]:
    """``limit`` questions drawn with an RNG seeded by ``seed`` and the set's name, in file order.

    Example:
        >>> qs = [{"id": str(i)} for i in range(10)]
        >>> sample_questions(qs, 3, 0, "x") == sample_questions(qs, 3, 0, "x")
        True
    """
    if limit <= 0 or limit >= len(questions):
        return list(questions)
    picked = random.Random(f"{seed}:{name}").sample(range(len(questions)), limit)
    return [questions[i] for i in sorted(picked)]


def dev_part(name: str, questions: Sequence[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """``name``'s named dev part (``DEV_PARTS``): questions to fit on, never scored.

    ``questions``: the set's questions when the caller has read them already.
    """
    size = DEV_PARTS.get(name, 0)
    if not size:
        return []
    if questions is None:
        questions = read_questions(name)
    guard = {
        str(q["id"]) for n in DEV_GUARD_LIMITS for q in sample_questions(questions, n, 0, name)
    }
    passages = {p for q in questions if str(q["id"]) in guard for p in gold_passages(q)}
    free = [q for q in questions
            if str(q["id"]) not in guard and not passages.intersection(gold_passages(q))]  # fmt: skip
    picked = random.Random(f"dev:{name}").sample(range(len(free)), min(size, len(free)))
    return [free[i] for i in sorted(picked)]


def scored_sample(
    name: str, limit: int, seed: int, *, develop: bool = False
) -> list[dict[str, Any]]:
    """The questions a run scores: ``sample_questions`` of the set, less its dev part."""
    every = read_questions(name, develop=develop)
    questions = sample_questions(every, limit, seed, name)
    held = {str(q["id"]) for q in dev_part(name, every)}
    kept = [q for q in questions if str(q["id"]) not in held]
    if len(kept) < len(questions):
        print(f"{name}: {len(questions) - len(kept)} sampled questions are in its dev part "
              "(DEV_PARTS) and are not scored", flush=True)  # fmt: skip
    return kept


def gold_passages(question: dict[str, Any]) -> list[str]:
    """The passages a question needs: ``supporting_ids`` when given, else its ``passage_id``."""
    if "supporting_ids" in question:
        return [str(p) for p in question["supporting_ids"]]
    return [str(question["passage_id"])] if question.get("passage_id") else []


# ------------------------------------------------------------------ one question
def contexts(sp: Any) -> dict[str, Any]:
    """The run context of every strategy, from the session's own defaults."""
    return {
        "setpoint": sp.context(),
        "always": sp.context(setpoint=math.inf, probe_setpoint=-math.inf),
        "never": sp.context(setpoint=math.inf, probe_setpoint=math.inf, max_retrievals=0),
        # IRCoT-style fixed budget: retrieve first, then always a second hop with the bridge
        # query (hop setpoint -inf), two calls per question; "unsure" as by default.
        "two-hop": sp.context(
            setpoint=math.inf, probe_setpoint=-math.inf, max_retrievals=2, hop_setpoint=-math.inf
        ),
        # The defaults without date comparisons: the reader picks between two options.
        "no-compare": sp.context(compare_dates=False),
        # The defaults with a read echo kept, not read again.
        "no-reread": sp.context(reread_echo=False),
    }


def context_key(ctx: Any) -> str:
    """A short hash of a run context: cached records of another context are not reused."""
    text = json.dumps(asdict(ctx), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def results_suffix(reader: Path) -> str:
    """The results-file suffix of a reader: empty for the default generator's, ``-<model key>`` else.

    Example:
        >>> results_suffix(Path("weights/reader")), results_suffix(Path("weights/reader-qwen2.5-coder-0.5b"))
        ('', '-qwen2.5-coder-0.5b')
    """
    return "" if reader.name == "reader" else "-" + reader.name.removeprefix("reader-")


def probe_key(model: str | None = None) -> str:
    """``:<hash>`` of ``model``'s shipped reader probe (empty without one): its scores make "unsure"."""
    from setpoint.adapters.lora.reader import shipped_reader_dir

    path = shipped_reader_dir(model) / "probe.json"
    return f":{hashlib.sha256(path.read_bytes()).hexdigest()[:12]}" if path.is_file() else ""


def span_facts(spans: Sequence[Any]) -> dict[str, Any]:
    """What the spans of one run add to ``AskResult``: retrieved passage ids and the reader's uncertainty."""
    retrieved: list[str] = []
    uncertainty: float | None = None
    signal: str | None = None
    for span in sorted(spans, key=lambda s: s.start_time or 0):
        attrs = span.attributes or {}
        retrieved += [str(p) for p in attrs.get("setpoint.passage_ids") or ()]
        value = attrs.get("setpoint.reader_uncertainty")
        if isinstance(value, int | float) and not math.isnan(value):
            uncertainty, signal = float(value), str(attrs.get("setpoint.reader_signal") or "")
    return {
        "retrieved_ids": list(dict.fromkeys(retrieved)),
        "reader_uncertainty": uncertainty,
        "reader_signal": signal,
    }


def ask_one(
    sp: Any, exporter: Any, question: dict[str, Any], strategy: str, ctx: Any
) -> dict[str, Any]:
    """One question through ``Setpoint.ask``: the result, its spans' facts and its score."""
    exporter.clear()
    result = sp.ask(question["question"], context=ctx)
    facts = span_facts(exporter.get_finished_spans())
    # "unsure" is an answer shown as a best guess: it is scored as its guess (issue 19);
    # an unsure result with no text (the reader found no answer) claims nothing.
    answered = result.status in ("answered", "unsure") and bool((result.answer or "").strip())
    cited = [str(c["id"]) for c in result.citations]
    return {
        "qid": str(question["id"]),
        "strategy": strategy,
        "answer": result.answer,
        "status": result.status,
        "route": result.route,
        "reason": result.reason,
        "answered": answered,
        "unsure": result.status == "unsure",
        "impossible": bool(question.get("is_impossible")),
        "retrieval_calls": result.retrieval_calls,
        "seconds": result.seconds,
        "answer_entropy": result.answer_entropy,
        "cited_ids": cited,
        **{**facts, "retrieved_ids": list(dict.fromkeys(facts["retrieved_ids"] + cited))},
        "gold_ids": gold_passages(question),
        **score(question, answered, result.answer),
    }


# ------------------------------------------------------------------ run
class Records:
    """Per-question records appended to a JSONL file, keyed by set, strategy, question and context."""

    def __init__(self, path: Path, *, fresh: bool) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        if fresh and path.exists():
            path.unlink()
        self.done: dict[tuple[str, str, str, str], dict[str, Any]] = {}
        if path.exists():
            for line in path.read_text(encoding="utf-8").splitlines():
                row = json.loads(line)
                self.done[(row["set"], row["strategy"], row["qid"], row["context"])] = row

    def get(self, key: tuple[str, str, str, str]) -> dict[str, Any] | None:
        return self.done.get(key)

    def add(self, row: dict[str, Any]) -> None:
        self.done[(row["set"], row["strategy"], row["qid"], row["context"])] = row
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")


def span_recorder() -> tuple[Any, Any]:
    """A tracer provider that keeps finished spans in memory (no trace file is written)."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


def run_set(
    name: str,
    questions: Sequence[dict[str, Any]],
    settings: Any,
    strategies: Sequence[str],
    records: Records,
    tracing: tuple[Any, Any],
) -> tuple[dict[str, list[dict[str, Any]]], dict[str, Any]]:
    """Ingest the set into its collection and ask every question every way; rows per strategy."""
    from setpoint import Setpoint

    provider, exporter = tracing
    rows: dict[str, list[dict[str, Any]]] = {s: [] for s in strategies}
    with Setpoint(settings, tracer_provider=provider) as sp:
        report = sp.ingest(DATA / name / "passages.jsonl", progress=False)
        print(f"{name}: {settings.collection}: {report.summary()}", flush=True)
        if not report.ok:
            raise SystemExit(f"{name}: ingest failed for {len(report.failed)} passages")
        ingest = {
            "collection": settings.collection,
            "passages": report.passages,
            "added": report.added + report.updated,
            "unchanged": report.unchanged,
            "seconds": report.seconds,
        }
        ctxs = contexts(sp)
        # Another generator's answers are other records (the default model keeps its old keys).
        model = (
            ""
            if settings.model_dir is None and settings.model == DEFAULT_MODEL
            else (f"{settings.model_dir or settings.model}:")
        )
        # Nor are the answers scored by another reader probe.
        keys = {s: model + context_key(ctxs[s]) + probe_key(settings.model) for s in strategies}
        # Untimed and unscored: loads the models and adapters the first timed question would.
        sp.ask(WARM_UP, context=ctxs["always"])
        started = time.perf_counter()
        for i, question in enumerate(questions, start=1):
            for strategy in strategies:
                key = (name, strategy, str(question["id"]), keys[strategy])
                row = records.get(key)
                if row is None:
                    row = {"set": name, "context": keys[strategy]}
                    row.update(ask_one(sp, exporter, question, strategy, ctxs[strategy]))
                    records.add(row)
                rows[strategy].append(row)
            elapsed = time.perf_counter() - started
            print(f"  {name} {i}/{len(questions)} ({elapsed:.0f} s)", flush=True)
    ingest["contexts"] = {s: asdict(ctxs[s]) for s in strategies}
    return rows, ingest


def _choices(text: str, allowed: Sequence[str], what: str) -> list[str]:
    picked = [p.strip() for p in text.split(",") if p.strip()]
    unknown = [p for p in picked if p not in allowed]
    if unknown:
        raise SystemExit(f"unknown {what}: {', '.join(unknown)}; choose from {', '.join(allowed)}")
    return picked


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=100, help="questions per set (0: all)")
    parser.add_argument(
        "--sets", help="comma-separated folders of ../shared/data (default: every set)"
    )
    parser.add_argument(
        "--strategies", default=",".join(DEFAULT_STRATEGIES), help=f"of {', '.join(STRATEGIES)}"
    )
    parser.add_argument("--seed", type=int, default=0, help="question sample and bootstrap")
    parser.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks" / "results" / "generalization.json"
    )
    parser.add_argument("--markdown", type=Path, help="also write the tables to this file")
    parser.add_argument(
        "--work", type=Path, help="per-question records (default: <cache>/bench-generalization)"
    )
    parser.add_argument(
        "--index",
        type=Path,
        help="Weaviate data folder (default: <cache>/bench-generalization-weaviate)",
    )
    parser.add_argument("--fresh", action="store_true", help="ignore the records of earlier runs")
    parser.add_argument(
        "--develop",
        action="store_true",
        help=f"run on the training splits ({', '.join(TRAIN_SETS)}) to choose a method; "
        "their numbers are development numbers, never reported as generalisation",
    )
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    collections = {**SETS, **TRAIN_SETS} if args.develop else SETS
    default_sets = TRAIN_SETS if args.develop else SETS
    sets = _choices(args.sets or ",".join(default_sets), list(collections), "set")
    strategies = _choices(args.strategies, STRATEGIES, "strategy")

    from setpoint import Settings

    base = Settings.from_env()
    work = args.work or base.cache_dir / "bench-generalization"
    records = Records(work / "records.jsonl", fresh=args.fresh)
    # The index outlives --fresh: ingest finds it complete and writes nothing.
    index = args.index or base.cache_dir / "bench-generalization-weaviate"
    tracing = span_recorder()
    info = machine()
    started = time.perf_counter()
    results: dict[str, dict[str, Any]] = {}
    ingests: dict[str, Any] = {}
    samples: dict[str, list[str]] = {}
    for name in sets:
        questions = scored_sample(name, args.limit, args.seed, develop=args.develop)
        samples[name] = [str(q["id"]) for q in questions]
        settings = base.replace(
            collection=collections[name], weaviate_url=None, weaviate_data_override=index
        )
        rows, ingests[name] = run_set(name, questions, settings, strategies, records, tracing)
        results[name] = {s: summarize(rows[s], args.seed) for s in strategies}
    info["load_average_end"] = os.getloadavg()
    table = markdown(results)
    print(table)
    command = "benchmarks/generalization.py " + " ".join(argv or sys.argv[1:])
    payload = {
        "command": command.strip(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "seconds": time.perf_counter() - started,
        "machine": info,
        "limit": args.limit,
        "seed": args.seed,
        "correct_f1": CORRECT_F1,
        "coverage_signals": {
            "answer_entropy": "AskResult.answer_entropy: mean token entropy (nats) of the final pass",
            "reader_uncertainty": "span attribute setpoint.reader_uncertainty of the reader "
            "pass (the reader probe's P(wrong) by default); answers read from passages only",
        },
        "sets": {
            name: {"ingest": ingests[name], "question_ids": samples[name], "results": results[name]}
            for name in sets
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=2, default=str) + "\n", encoding="utf-8")
    if args.markdown:
        args.markdown.write_text(table + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
