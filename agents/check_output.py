"""Node ``check_output``: the policy's output rules on the answer; ``decide.after_check`` routes on the failures.

Checks, all recorded as verdicts: an empty answer, refused-topic keywords, grounding in the
cited passages, extra checks from the ``setpoint.tools`` group, uncertainty after retrieval
or after the retrieval budget, and PII (redacted, or escalated when the policy says so).
The first failure is the escalation's reason code; every failure reaches a reviewer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from langgraph.runtime import Runtime

from setpoint.agents.decide import after_check, output_problem
from setpoint.agents.resources import Resources
from setpoint.tracing import ATTR, guardrail_results, node_span, set_attributes

if TYPE_CHECKING:
    from setpoint.graphs.context import Context

__all__ = ["make_check_output"]


def make_check_output(res: Resources) -> Any:
    def check_output(state: dict[str, Any], runtime: Runtime[Context]) -> dict[str, Any]:
        ctx = runtime.context
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
                from setpoint.tools.verdict import Verdict

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
                abstain_above=ctx.abstain_above,
                used_passages=bool(passages),
                budget_spent=int(state.get("retrieval_calls", 0)) >= ctx.max_retrievals,
                uncertain_after_budget=bool(state.get("uncertain_after_budget")),
                escalate_after_budget=ctx.escalate_after_budget,
                unsure=state.get("status") == "unsure",
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
            guardrail_results(
                span,
                verdicts[len(state.get("verdicts") or []) :],
                policy_id=policy.source,
                source="output",
            )
            decision = after_check([f["reason"] for f in failed], state.get("route", "answer"))
            if failed:
                span.set_attribute(ATTR.ROUTE, "escalate")
                span.set_attribute(ATTR.REASON, str(decision.reason))
            else:
                span.set_attribute(ATTR.ROUTE, state.get("route", "answer"))
            return {"verdicts": verdicts, "answer": answer, **decision.update()}

    return check_output
