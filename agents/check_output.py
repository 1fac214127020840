"""Node ``check_output``: the policy's output rules on the answer, and whether it is still too uncertain to give.

Checks, all recorded as verdicts: an empty answer, refused-topic keywords, grounding in the
cited passages, extra checks from the ``setpoint.tools`` group, uncertainty after retrieval
or after the retrieval budget, and PII (redacted, or escalated when the policy says so).
The first failure is the escalation's reason code; every failure reaches a reviewer.
"""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from setpoint.agents.resources import Resources, RunContext
from setpoint.tracing import ATTR, node_span, set_attributes

__all__ = ["make_check_output", "output_problem"]


def output_problem(
    answer: str,
    *,
    answer_entropy: float,
    abstain_above: float,
    used_passages: bool,
    budget_spent: bool,
    uncertain_after_budget: bool = False,
    escalate_after_budget: bool = False,
) -> str | None:
    """The uncertainty reason code that stops an answer, or None when it may be given. Pure.

    Example:
        >>> output_problem("", answer_entropy=0.1, abstain_above=9, used_passages=False, budget_spent=False)
        'empty_answer'
        >>> output_problem("Paris", answer_entropy=0.1, abstain_above=9, used_passages=False, budget_spent=False)
        >>> output_problem("Paris", answer_entropy=0.1, abstain_above=9, used_passages=True, budget_spent=True,
        ...                uncertain_after_budget=True, escalate_after_budget=True)
        'uncertain_after_budget'
    """
    if not answer.strip():
        return "empty_answer"
    if (used_passages or budget_spent) and answer_entropy > abstain_above:
        return "uncertain_after_retrieval"
    if uncertain_after_budget and escalate_after_budget:
        return "uncertain_after_budget"
    return None


def make_check_output(res: Resources) -> Any:
    def check_output(state: dict[str, Any], runtime: Runtime[RunContext]) -> dict[str, Any]:
        ctx = runtime.context
        thresholds = ctx.thresholds()
        policy = res.policy(ctx.policy_file)
        with node_span(res.tracer, "check_output") as span:
            raw = state.get("answer", "")
            # Redact first: every later check, verdict, span and message sees the clean text.
            answer, pii_kinds = policy.redact(raw)
            passages = state.get("passages") or []
            failed: list[dict[str, Any]] = []
            verdicts = list(state.get("verdicts") or [])

            def record(verdict: Any) -> None:
                entry = {**verdict.to_dict(), "target": "answer"}
                verdicts.append(entry)
                if not verdict.allowed:
                    failed.append(entry)

            record(policy.check_answer(answer))
            if passages and raw.strip():
                embedder = (
                    res.embedder()
                    if policy.grounding is not None and policy.grounding.method != "lexical"
                    else None
                )
                # Grounding compares the raw answer with the raw passages (a placeholder such as
                # [EMAIL] would match nothing); only the score leaves this node.
                record(policy.grounded(raw, [p["text"] for p in passages], embedder))
            if pii_kinds:
                from setpoint.tools.policy import Verdict

                escalate_pii = policy.pii.action == "escalate"
                record(
                    Verdict(
                        "pii",
                        not escalate_pii,
                        "pii" if escalate_pii else "",
                        ", ".join(sorted(set(pii_kinds))),
                    )
                )
            uncertainty = output_problem(
                answer,
                answer_entropy=float(state.get("answer_entropy", 0.0)),
                abstain_above=thresholds.abstain_above,
                used_passages=bool(passages),
                budget_spent=int(state.get("retrieval_calls", 0)) >= thresholds.max_retrievals,
                uncertain_after_budget=bool(state.get("uncertain_after_budget")),
                escalate_after_budget=ctx.escalate_after_budget,
            )
            if uncertainty is not None:
                # Uncertainty is the controller's own finding and names the failure first.
                entry = {"check": "uncertainty", "allowed": False, "reason": uncertainty}
                verdicts.append({**entry, "target": "answer"})
                failed.insert(0, {**entry, "target": "answer"})
            set_attributes(
                span,
                {
                    ATTR.ENTROPY: float(state.get("answer_entropy", 0.0)),
                    "setpoint.pii_redacted": sorted(set(pii_kinds)),
                    "setpoint.failed_checks": [f["reason"] for f in failed],
                },
            )
            update: dict[str, Any] = {"verdicts": verdicts, "answer": answer}
            if not failed:
                span.set_attribute(ATTR.ROUTE, state.get("route", "answer"))
                return update
            reason = failed[0]["reason"]
            span.set_attribute(ATTR.ROUTE, "escalate")
            span.set_attribute(ATTR.REASON, reason)
            return {**update, "route": "escalate", "reason": reason}

    return check_output
