"""Node ``probe``: one prefill pass over the closed-book prompt and its signals; ``decide.after_probe`` routes on them."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from langgraph.runtime import Runtime

from setpoint.adapters.domain.choices import answer_options, closed_answers
from setpoint.adapters.domain.decompose import decompose
from setpoint.agents.decide import after_probe
from setpoint.agents.resources import Resources
from setpoint.agents.thermostat import probe_signal
from setpoint.errors import InputError, RetrievalError
from setpoint.tracing import ATTR, node_span, set_attributes

if TYPE_CHECKING:
    from setpoint.graphs.context import Context

__all__ = ["make_probe", "select_adapter", "select_knowledge"]


def select_adapter(res: Resources, requested: str | None) -> str | None:
    """Switch to the requested adapter and return its name.

    ``requested`` is a loaded adapter's name, a directory holding a PEFT adapter (loaded
    once, then switched to), or None for the base model.
    """
    generator = res.generator()
    if (
        requested is not None
        and requested not in generator.adapters
        and Path(requested).expanduser().is_dir()
    ):
        requested = generator.load_adapter(requested)
    generator.set_adapter(requested)
    return generator.active_adapter


def select_knowledge(
    res: Resources, question: str, folders: tuple[str, ...]
) -> tuple[str | None, str, dict[str, float]]:
    """Pick the registry's adapter for ``question``; returns ``(name, how, signals)``.

    A declared topic or learned title named in the question picks its adapter; otherwise
    (or between several matches) each candidate prefills the closed-book prompt and the
    lowest first-token entropy wins. Each prefill stays in the generator's cache, so the
    chosen adapter decodes without prefilling again.
    """
    from setpoint.adapters.lora.knowledge import choose_by_signal, topic_matches

    cards = res.knowledge_adapters(folders)
    if not cards:
        return select_adapter(res, None), "none", {}
    matched = topic_matches(question, cards)
    pool = [c.name for c in cards if c.name in matched] or [c.name for c in cards]
    how = "topic" if matched else "signal"
    if len(pool) == 1:
        return select_adapter(res, pool[0]), how, {}
    generator = res.generator()
    prompt = generator.prompt_ids(question)
    signals: dict[str, float] = {}
    for name in pool:
        generator.set_adapter(name)
        step = generator.probe(prompt)
        signals[name] = probe_signal(step.entropy, step.lens_entropy)
    return select_adapter(res, choose_by_signal(signals)), how, signals


def make_probe(res: Resources) -> Any:
    def probe(state: dict[str, Any], runtime: Runtime[Context]) -> dict[str, Any]:
        ctx = runtime.context
        folders = ctx.adapters or res.settings.adapters
        with node_span(res.tracer, "probe") as span:
            if ctx.adapter is None and folders:
                adapter, how, candidates = select_knowledge(res, state["question"], folders)
                set_attributes(
                    span,
                    {
                        "setpoint.adapter_selection": how,
                        "setpoint.adapter_signals": candidates or None,
                    },
                )
            else:
                adapter = select_adapter(res, ctx.adapter)
            generator = res.generator()
            prompt = generator.prompt_ids(state["question"])
            probe_score: float | None = None
            if ctx.probe_path:
                linear = res.linear_probe(ctx.probe_path)
                signals, hidden = generator.probe_features(prompt, linear.layer)
                probe_score = linear.score(hidden)
                signal = probe_score
            else:
                signals = generator.probe(prompt)
                signal = probe_signal(signals.entropy, signals.lens_entropy)
            stale = _stale_knowledge(res, state["question"], adapter, ctx.alpha, span)
            decision = after_probe(
                signal,
                ctx,
                retrievals_used=state.get("retrieval_calls", 0),
                calibrated=probe_score is not None,
                stale=stale.reason(str(adapter)) if stale is not None else None,
                multi_fact=_multi_fact(ctx, str(state["question"])),
            )
            span.set_attribute(ATTR.ROUTE, str(decision.route))
            span.set_attribute(ATTR.REASON, str(decision.reason))
            span.set_attribute(ATTR.ENTROPY, signal)
            span.set_attribute(ATTR.SETPOINT, ctx.probe_setpoint)
            span.set_attribute(ATTR.INPUT_TOKENS, len(prompt))
            if adapter:
                span.set_attribute(ATTR.ADAPTER, adapter)
            return {
                **decision.update(),
                "probe": {
                    **signals.to_dict(),
                    "signal": signal,
                    "probe_score": probe_score,
                    "prompt_tokens": len(prompt),
                },
                "adapter": adapter,
            }

    return probe


def _stale_knowledge(
    res: Resources, question: str, adapter: str | None, alpha: float, span: Any
) -> Any:
    """The stale learned passage the question is about (a ``StaleVerdict``), or None."""
    card = res.adapter_card(adapter)
    if card is None or not card.passages:
        return None
    try:
        verdict = res.stale_knowledge().relevant(question, card, res.store(), alpha=alpha)
    except (RetrievalError, InputError) as exc:
        # No index (or one without passage versions): nothing fresher to answer from.
        span.set_attribute("setpoint.stale_check", f"unavailable: {exc}")
        return None
    span.set_attribute("setpoint.stale_check", "stale" if verdict else "fresh")
    if verdict is not None:
        span.set_attribute("setpoint.stale_passage_id", verdict.passage_id)
    return verdict


def _multi_fact(ctx: Context, question: str) -> str | None:
    """Why the question needs two facts (a nested question, a comparison); None: it does not.

    Measured on the 2WikiMultihopQA train split (BENCHMARKS.md): closed book scored 0.01 F1
    on nested questions against 0.29 retrieved, and 0.45 on comparisons against 0.55.
    """
    options = answer_options(question)
    if options:
        return f"comparison of {options[0]!r} and {options[1]!r}: facts on both"
    plan = decompose(question) if ctx.nested_hops and not closed_answers(question) else None
    return f"nested question: first {plan.first!r}" if plan is not None else None
