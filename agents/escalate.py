"""Node ``escalate``: abstain politely with the reason code, or pause for a human reviewer.

With ``Context(review=True)`` the node calls LangGraph's ``interrupt()`` with a JSON payload
(question, draft answer, signals, failed checks); the run waits in the checkpointer until a
reviewer resumes it with ``Command(resume=...)``: approve the draft, edit it, or reject it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from langgraph.runtime import Runtime
from langgraph.types import interrupt

from setpoint.agents.resources import Resources
from setpoint.errors import InputError
from setpoint.tracing import ATTR, node_span, set_attributes

if TYPE_CHECKING:
    from setpoint.graphs.context import Context

__all__ = ["ReviewDecision", "abstention", "make_escalate", "parse_review", "review_payload"]

_MESSAGES = {
    "refused_topic": "I can't help with that topic.",
    "prompt_injection": "I can't follow instructions embedded in the question.",
    "uncertain": "I'm not confident enough to answer that.",
    "uncertain_after_retrieval": "I couldn't find a reliable answer to that, even after looking it up.",
    "uncertain_after_budget": "I couldn't find a reliable answer to that within my lookup budget.",
    "ungrounded_answer": "I couldn't find support for an answer in the sources I have.",
    "pii": "My answer would have disclosed personal data, so I've withheld it.",
    "empty_answer": "I couldn't produce an answer to that.",
    "tool_error": "The tool that answers this kind of question could not answer it.",
    "rejected_by_reviewer": "A reviewer decided this question should not be answered.",
}
REVIEW_ACTIONS = ("approve", "edit", "reject")


def abstention(reason: str) -> str:
    """The user-facing refusal for a reason code (``family:detail`` or ``family``).

    Example:
        >>> abstention("refused_topic:weapons")
        "I can't help with that topic. (reason: refused_topic:weapons)"
    """
    family = reason.split(":", 1)[0]
    text = _MESSAGES.get(family, "I can't answer that.")
    return f"{text} (reason: {reason})"


@dataclass(frozen=True)
class ReviewDecision:
    """A reviewer's answer to an interrupted run."""

    action: Literal["approve", "edit", "reject"]
    answer: str = ""
    note: str = ""

    def to_dict(self) -> dict[str, str]:
        return {"action": self.action, "answer": self.answer, "note": self.note}


def parse_review(value: Any) -> ReviewDecision:
    """Read a ``Command(resume=...)`` value: ``"approve"``, ``"reject"``, or a mapping.

    Mappings: ``{"action": "approve"}``, ``{"action": "edit", "answer": "..."}``,
    ``{"action": "reject", "note": "..."}`` (``note`` is optional everywhere).

    Raises:
        InputError: the value is none of these.

    Example:
        >>> parse_review({"action": "edit", "answer": "Paris."}).answer
        'Paris.'
    """
    if isinstance(value, str):
        value = {"action": value}
    if not isinstance(value, Mapping):
        raise InputError(
            f"a review decision must be 'approve', 'reject' or a mapping with 'action', got {type(value).__name__}"
        )
    action = value.get("action")
    if action not in REVIEW_ACTIONS:
        raise InputError(
            f"review action must be one of {', '.join(REVIEW_ACTIONS)}, got {action!r}"
        )
    note = value.get("note") or ""
    answer = value.get("answer") or ""
    if not isinstance(note, str) or not isinstance(answer, str):
        raise InputError("review 'note' and 'answer' must be text")
    if action == "edit" and not answer.strip():
        raise InputError("an 'edit' decision needs the edited 'answer' text")
    return ReviewDecision(action, answer.strip(), note.strip())


def _number(value: Any) -> float | None:
    # JSON has no infinity or NaN; an unset threshold is reported as null.
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def review_payload(
    state: Mapping[str, Any], reason: str, thresholds: Context, redact: Any
) -> dict[str, Any]:
    """What a reviewer sees: JSON-serialisable, PII redacted. Pure.

    ``redact`` maps text to its redacted form (the policy's ``redact(text)[0]``).
    """
    probe = state.get("probe") or {}
    failed = [
        {k: v for k, v in verdict.items() if isinstance(v, (str, int, float, bool)) or v is None}
        for verdict in state.get("verdicts") or []
        if not verdict.get("allowed", True)
    ]
    for verdict in failed:
        if isinstance(verdict.get("matched"), str):
            verdict["matched"] = redact(verdict["matched"])
        if "score" in verdict:
            verdict["score"] = _number(verdict["score"])
    return {
        "question": redact(str(state.get("question", ""))),
        "draft_answer": redact(str(state.get("answer") or "")),
        "reason": reason,
        "abstention": abstention(reason),
        "signals": {
            "route": state.get("route"),
            "probe_entropy": _number(probe.get("signal")),
            "answer_entropy": _number(state.get("answer_entropy")),
            "setpoint": _number(thresholds.setpoint),
            "abstain_above": _number(thresholds.abstain_above),
            "retrieval_calls": int(state.get("retrieval_calls", 0)),
            "max_retrievals": int(thresholds.max_retrievals),
            "uncertain_after_budget": bool(state.get("uncertain_after_budget")),
        },
        "failed_checks": failed,
        "passages": [
            {"id": str(p.get("id")), "title": str(p.get("title", ""))}
            for p in state.get("passages") or []
        ],
        "dropped_passages": [
            {"id": str(d.get("id")), "reason": str(d.get("reason", ""))}
            for d in state.get("dropped_passages") or []
        ],
        "actions": list(REVIEW_ACTIONS),
    }


def make_escalate(res: Resources) -> Any:
    def escalate(state: dict[str, Any], runtime: Runtime[Context]) -> dict[str, Any]:
        ctx = runtime.context
        reason = state.get("reason") or "uncertain"
        policy = res.policy(ctx.policy_file)
        draft = policy.redact(str(state.get("answer") or ""))[0]
        decision: ReviewDecision | None = None
        if ctx.review:
            # interrupt() raises on the first pass (the run pauses here) and returns the
            # reviewer's value when the run is resumed, re-executing this node from the top.
            payload = review_payload(state, reason, ctx, lambda text: policy.redact(text)[0])
            decision = parse_review(interrupt(payload))
        with node_span(res.tracer, "escalate") as span:
            set_attributes(span, {ATTR.ROUTE: "escalate", ATTR.REASON: reason})
            base = {"route": "escalate", "reason": reason, "draft_answer": draft}
            if decision is None:
                return {**base, "status": "abstained", "answer": abstention(reason)}
            span.set_attribute("setpoint.review.action", decision.action)
            review = {**decision.to_dict(), "reason": reason}
            if decision.action == "edit":
                answer = policy.redact(decision.answer)[0]
                return {**base, "status": "answered", "answer": answer, "review": review}
            if decision.action == "approve" and draft.strip():
                return {**base, "status": "answered", "answer": draft, "review": review}
            # Rejected, or approved with no draft to give (e.g. a refused question).
            text = abstention(reason if decision.action == "approve" else "rejected_by_reviewer")
            if decision.note:
                text = f"{text} Reviewer's note: {policy.redact(decision.note)[0]}"
            return {**base, "status": "abstained", "answer": text, "review": review}

    return escalate
