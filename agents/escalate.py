"""Node ``escalate``: abstain politely, with the reason code, instead of answering."""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from setpoint.agents.resources import Resources, RunContext
from setpoint.tracing import ATTR, node_span

__all__ = ["abstention", "make_escalate"]

_MESSAGES = {
    "refused_topic": "I can't help with that topic.",
    "prompt_injection": "I can't follow instructions embedded in the question.",
    "uncertain": "I'm not confident enough to answer that.",
    "uncertain_after_retrieval": "I couldn't find a reliable answer to that, even after looking it up.",
    "empty_answer": "I couldn't produce an answer to that.",
}


def abstention(reason: str) -> str:
    """The user-facing refusal for a reason code (``family:detail`` or ``family``).

    Example:
        >>> abstention("refused_topic:weapons")
        "I can't help with that topic. (reason: refused_topic:weapons)"
    """
    family = reason.split(":", 1)[0]
    text = _MESSAGES.get(family, "I can't answer that.")
    return f"{text} (reason: {reason})"


def make_escalate(res: Resources) -> Any:
    def escalate(state: dict[str, Any], runtime: Runtime[RunContext]) -> dict[str, Any]:
        del runtime
        reason = state.get("reason") or "uncertain"
        with node_span(res.tracer, "escalate") as span:
            span.set_attribute(ATTR.ROUTE, "escalate")
            span.set_attribute(ATTR.REASON, reason)
            return {
                "route": "escalate",
                "reason": reason,
                "status": "abstained",
                "draft_answer": state.get("answer", ""),
                "answer": abstention(reason),
            }

    return escalate
