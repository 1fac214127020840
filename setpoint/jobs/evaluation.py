"""The evaluation harness: one question stream, several retrieval strategies, the same questions for all.

Strategies (all on the same loaded model and the same Weaviate collection):

* ``never``   — weights only (setpoint = ∞).
* ``always``  — retrieve before generating, every question.
* ``entropy`` — setpoint's thermostat on per-token entropy (the graph's default).
* ``flare``   — FLARE-style: retrieve as soon as a generated token's probability falls
  below θ (the thermostat on surprisal, α = 1, N = 1, no warm-up).
* ``probe``   — route on a calibrated linear probe's P(closed-book wrong) at prefill.
* ``grader``  — the adaptive/self-RAG pattern: the same model is asked whether it needs to
  look the question up, then whether each retrieved passage is relevant (one extra model
  call per decision).
* ``oracle``  — retrieve exactly when the closed-book answer is wrong (upper bound; derived
  from ``never`` and ``always``, no extra run).

Results are appended per (strategy, question) to ``results.jsonl``, so a crashed run
resumes where it stopped.
"""

from __future__ import annotations

import json
import math
import random
import statistics
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from setpoint.adapters.domain.metrics import auroc, best_exact_match, best_f1
from setpoint.errors import ConfigError

if TYPE_CHECKING:
    from setpoint.api import Setpoint
    from setpoint.graphs.context import Context

__all__ = [
    "STRATEGIES",
    "EvalQuestion",
    "EvalRecord",
    "build_stream",
    "load_squad",
    "run_eval",
    "split_titles",
    "summarize",
]

STRATEGIES = ("never", "always", "flare", "entropy", "probe", "grader", "oracle")
CORRECT_F1 = 0.5  # "the closed-book answer is right" means token F1 >= 0.5 against the gold set
FLARE_THETA = 0.4


@dataclass(frozen=True)
class EvalQuestion:
    id: str
    question: str
    answers: list[str]
    passage_id: str
    title: str
    part: str  # "core" or "fringe"


@dataclass
class EvalRecord:
    strategy: str
    qid: str
    part: str
    answer: str
    em: float
    f1: float
    retrieval_calls: int
    model_calls: int
    tokens: int
    seconds: float
    route: str
    gold_cited: bool = False
    signals: dict[str, Any] = field(default_factory=dict)


# ------------------------------------------------------------------ data
def load_squad(squad_dir: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Passages and questions from a SQuAD JSONL folder (``passages.jsonl``, ``questions.jsonl``).

    Read and checked by ``qa_data.load_squad`` (a missing file, a malformed line or a question
    naming an unknown passage is a one-line ``InputError``), as plain rows.
    """
    from setpoint.adapters.lora.qa_data import load_squad as read_squad

    data = read_squad(squad_dir, option="--squad-dir")
    passages = [{"id": p.id, "title": p.title, "text": p.text} for p in data.passages.values()]
    questions = [
        {"id": q.id, "question": q.question, "answers": list(q.answers), "passage_id": q.passage_id}
        for q in data.questions
    ]
    return passages, questions


def split_titles(
    titles: Iterable[str], core_fraction: float, seed: int
) -> tuple[set[str], set[str]]:
    """Split article titles into core and fringe sets, reproducibly.

    Example:
        >>> core, fringe = split_titles(["a", "b", "c", "d"], 0.5, seed=1)
        >>> len(core), len(fringe), core.isdisjoint(fringe)
        (2, 2, True)
    """
    if not 0.0 <= core_fraction <= 1.0:
        raise ConfigError(f"core fraction must be in [0, 1], got {core_fraction}")
    ordered = sorted(set(titles))
    random.Random(seed).shuffle(ordered)
    cut = round(len(ordered) * core_fraction)
    return set(ordered[:cut]), set(ordered[cut:])


def build_stream(
    questions: Sequence[dict[str, Any]],
    passages: Sequence[dict[str, Any]],
    *,
    core_titles: set[str],
    limit: int | None,
    seed: int,
    skip: int = 0,
) -> list[EvalQuestion]:
    """Core and fringe questions mixed into one seeded stream (``limit`` of it after the first ``skip``).

    ``setpoint calibrate`` reads the head of a stream and ``setpoint eval --skip`` the rest,
    so the probe and the setpoints are never chosen on the questions they are scored on.
    """
    title_of = {p["id"]: p["title"] for p in passages}
    stream = [
        EvalQuestion(
            q["id"],
            q["question"].strip(),
            list(q["answers"]),
            q["passage_id"],
            title_of[q["passage_id"]],
            "core" if title_of[q["passage_id"]] in core_titles else "fringe",
        )
        for q in questions
    ]
    random.Random(seed).shuffle(stream)
    stream = stream[skip:]
    return stream[:limit] if limit else stream


# ------------------------------------------------------------------ strategies
def strategy_context(base: Context, strategy: str, probe_path: str | None) -> Context:
    """The graph context that implements a strategy (grader and oracle do not use one)."""
    if strategy == "never":
        return replace(base, setpoint=math.inf, probe_setpoint=math.inf)
    if strategy == "always":
        return replace(base, setpoint=math.inf, probe_setpoint=-math.inf)
    if strategy == "entropy":
        # The thermostat alone: a calibrated probe in the base context is the probe strategy's.
        return replace(base, probe_path=None, probe_setpoint=math.inf)
    if strategy == "flare":
        return replace(
            base,
            probe_path=None,
            probe_setpoint=math.inf,
            trigger="surprisal",
            setpoint=-math.log(FLARE_THETA),
            ema_alpha=1.0,
            consecutive_steps=1,
            warmup_steps=0,
        )
    if strategy == "probe":
        if not probe_path:
            raise ConfigError(
                "the probe strategy needs a calibrated probe: run `setpoint calibrate` or pass --probe"
            )
        return replace(base, probe_path=probe_path, setpoint=math.inf)
    raise ConfigError(f"strategy {strategy!r} does not run through the graph context")


def _closed_book_signals(state: dict[str, Any], k: int = 8) -> dict[str, Any]:
    trace = [r for r in state.get("signal_trace") or [] if r.get("phase") == "closed_book"]
    first_pass: list[dict[str, Any]] = []
    for record in trace:
        if record["step"] == 0 and first_pass:
            break
        first_pass.append(record)
    entropies = [r["entropy"] for r in first_pass]
    head = entropies[:k] or [0.0]
    probe = state.get("probe") or {}
    lens = probe.get("lens_entropy") or {}
    return {
        "first_entropy": probe.get("entropy"),
        "first_margin": probe.get("margin"),
        "mean_entropy_k": sum(head) / len(head),
        "max_entropy_k": max(head),
        "mean_entropy_after_first": (sum(entropies[1:k]) / len(entropies[1:k]))
        if len(entropies) > 1
        else 0.0,
        "max_surprisal_k": max(
            (-math.log(max(r.get("top_prob", 1.0), 1e-45)) for r in first_pass[:k]), default=0.0
        ),
        **{f"lens_{layer}": value for layer, value in lens.items()},
        "probe_score": probe.get("probe_score"),
        "trace_entropy": entropies,
        "trace_surprisal": [-math.log(max(r.get("top_prob", 1.0), 1e-45)) for r in first_pass],
    }


def _graph_record(session: Setpoint, strategy: str, q: EvalQuestion, ctx: Context) -> EvalRecord:
    started = time.perf_counter()
    state = session.graph.invoke({"question": q.question}, context=ctx)
    seconds = time.perf_counter() - started
    trace = state.get("signal_trace") or []
    answer = state.get("answer", "") if state.get("status") == "answered" else ""
    cited = [c["id"] for c in state.get("citations") or []]
    return EvalRecord(
        strategy=strategy,
        qid=q.id,
        part=q.part,
        answer=answer,
        em=best_exact_match(answer, q.answers),
        f1=best_f1(answer, q.answers),
        retrieval_calls=int(state.get("retrieval_calls", 0)),
        model_calls=sum(1 for r in trace if r["step"] == 0),
        tokens=len(trace),
        seconds=seconds,
        route=str(state.get("route", "")),
        gold_cited=q.passage_id in cited,
        signals=_closed_book_signals(state) if strategy == "never" else {},
    )


def _yes(generator: Any, system: str, user: str) -> bool:
    messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
    ids = generator.tokenizer.apply_chat_template(
        messages, add_generation_prompt=True, tokenize=True
    )
    if hasattr(ids, "keys"):
        ids = ids["input_ids"]
    text = "".join(t.text for t in generator.stream(list(ids), max_new_tokens=3)).strip().lower()
    return text.startswith("yes")


def _grader_record(session: Setpoint, q: EvalQuestion, ctx: Context) -> EvalRecord:
    """LangGraph's adaptive-RAG pattern with the same model as grader."""
    from setpoint.adapters.model.generator import Passage
    from setpoint.adapters.model.quoting import answer_question
    from setpoint.agents.probe import select_adapter

    generator = session.resources.generator()
    started = time.perf_counter()
    # Same weights as the graph's routes: the knowledge adapter judges and answers closed
    # book, the reader adapter reads (with grounded decoding when the context asks for it).
    select_adapter(session.resources, ctx.adapter)
    calls = 1
    needs_lookup = not _yes(
        generator,
        "You judge your own knowledge. Reply with yes or no only.",
        f"Question: {q.question}\nDo you know the answer to this question for certain, without looking it up?",
    )
    passages: list[Passage] = []
    retrievals = 0
    cited: list[str] = []
    if needs_lookup:
        retrievals = 1
        hits = session.resources.store().hybrid_search(q.question, k=ctx.top_k, alpha=ctx.alpha)
        for hit in hits:
            calls += 1
            if _yes(
                generator,
                "You grade retrieved passages. Reply with yes or no only.",
                f"Passage: {hit.text}\n\nQuestion: {q.question}\nDoes the passage help answer the question?",
            ):
                passages.append(Passage(hit.id, hit.title, hit.text))
        if not passages and hits:  # the grader rejected all: keep the best hit rather than none
            passages.append(Passage(hits[0].id, hits[0].title, hits[0].text))
        cited = [p.id for p in passages]
    calls += 1
    if passages:
        from setpoint.adapters.lora.reader import resolve_reader

        select_adapter(
            session.resources, resolve_reader(generator.model.config, ctx.reader_adapter)
        )
    reply = answer_question(
        generator, q.question, passages, max_new_tokens=ctx.max_new_tokens, grounded=ctx.grounded
    )
    answer = reply.text
    return EvalRecord(
        strategy="grader",
        qid=q.id,
        part=q.part,
        answer=answer,
        em=best_exact_match(answer, q.answers),
        f1=best_f1(answer, q.answers),
        retrieval_calls=retrievals,
        model_calls=calls,
        tokens=len(reply.answer_tokens),
        seconds=time.perf_counter() - started,
        route="retrieve" if retrievals else "answer",
        gold_cited=q.passage_id in cited,
    )


def _oracle_record(never: EvalRecord, always: EvalRecord) -> EvalRecord:
    chosen = never if never.f1 >= CORRECT_F1 else always
    return replace(chosen, strategy="oracle", signals={})


# ------------------------------------------------------------------ running
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
                    record = _grader_record(session, q, base_context)
                else:
                    record = _graph_record(session, strategy, q, contexts[strategy])
                done[(strategy, q.id)] = record
                sink.write(json.dumps(asdict(record)) + "\n")
                sink.flush()
    bar.close()
    records = [done[(s, q.id)] for q in questions for s in runnable]
    if "oracle" in wanted:
        records += [
            _oracle_record(done[("never", q.id)], done[("always", q.id)]) for q in questions
        ]
    return [r for r in records if r.strategy in wanted]


# ------------------------------------------------------------------ summaries
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
                thermostat = Thermostat(ctx.thresholds())
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


# ------------------------------------------------------------------ the `setpoint eval` job
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
