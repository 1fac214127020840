"""The retrieval strategies the evaluation compares, each answering one question into an ``EvalRecord``.

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
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from setpoint.adapters.domain.metrics import best_exact_match, best_f1
from setpoint.errors import ConfigError
from setpoint.jobs.eval_questions import EvalQuestion

if TYPE_CHECKING:
    from setpoint.api import Setpoint
    from setpoint.graphs.context import Context

__all__ = [
    "CORRECT_F1",
    "FLARE_THETA",
    "STRATEGIES",
    "EvalRecord",
    "grader_record",
    "graph_record",
    "oracle_record",
    "strategy_context",
]

STRATEGIES = ("never", "always", "flare", "entropy", "probe", "grader", "oracle")
CORRECT_F1 = 0.5  # "the closed-book answer is right" means token F1 >= 0.5 against the gold set
FLARE_THETA = 0.4


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


def strategy_context(base: Context, strategy: str, probe_path: str | None) -> Context:
    """The graph context that implements a strategy (grader and oracle do not use one)."""
    if strategy == "never":
        # No budget: the echo check (and any other retrieval decision) cannot spend one either.
        return replace(base, setpoint=math.inf, probe_setpoint=math.inf, max_retrievals=0)
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


def graph_record(session: Setpoint, strategy: str, q: EvalQuestion, ctx: Context) -> EvalRecord:
    """One question through the served graph in the strategy's context (``never`` keeps its signals)."""
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
    ids = generator.chat_ids(
        [{"role": "system", "content": system}, {"role": "user", "content": user}]
    )
    text = "".join(t.text for t in generator.stream(ids, max_new_tokens=3)).strip().lower()
    return text.startswith("yes")


def grader_record(session: Setpoint, q: EvalQuestion, ctx: Context) -> EvalRecord:
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


def oracle_record(never: EvalRecord, always: EvalRecord) -> EvalRecord:
    """The oracle's answer: the closed-book one when it is right, else the retrieved one."""
    chosen = never if never.f1 >= CORRECT_F1 else always
    return replace(chosen, strategy="oracle", signals={})
