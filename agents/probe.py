"""Node ``probe``: one prefill pass over the closed-book prompt, its signals, and the route they choose."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from langgraph.runtime import Runtime

from setpoint.agents.resources import Resources, RunContext
from setpoint.agents.thermostat import choose_route, probe_signal
from setpoint.tracing import ATTR, node_span

__all__ = ["make_probe", "select_adapter"]


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


def make_probe(res: Resources) -> Any:
    def probe(state: dict[str, Any], runtime: Runtime[RunContext]) -> dict[str, Any]:
        ctx = runtime.context
        thresholds = ctx.thresholds()
        with node_span(res.tracer, "probe") as span:
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
            route = choose_route(
                signal, thresholds, retrievals_used=state.get("retrieval_calls", 0)
            )
            what = "probe P(wrong)" if probe_score is not None else "probe entropy"
            if route == "answer":
                reason = (
                    f"{what} {signal:.2f} <= probe setpoint {thresholds.probe_setpoint:g}"
                )
            elif route == "retrieve":
                reason = (
                    f"{what} {signal:.2f} > probe setpoint {thresholds.probe_setpoint:g}"
                )
            elif signal > thresholds.escalate_above:
                reason = (
                    f"{what} {signal:.2f} > escalate_above {thresholds.escalate_above:g}"
                )
            else:
                reason = "retrieval needed but the retrieval budget is 0"
            span.set_attribute(ATTR.ROUTE, route)
            span.set_attribute(ATTR.REASON, reason)
            span.set_attribute(ATTR.ENTROPY, signal)
            span.set_attribute(ATTR.SETPOINT, thresholds.probe_setpoint)
            span.set_attribute(ATTR.INPUT_TOKENS, len(prompt))
            if adapter:
                span.set_attribute(ATTR.ADAPTER, adapter)
            return {
                "route": route,
                "reason": reason if route != "escalate" else f"uncertain:{reason}",
                "probe": {
                    **signals.to_dict(),
                    "signal": signal,
                    "probe_score": probe_score,
                    "prompt_tokens": len(prompt),
                },
                "adapter": adapter,
            }

    return probe
