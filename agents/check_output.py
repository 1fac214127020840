"""Node ``check_output``: policy on the answer, and whether the answer is still too uncertain to give."""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from setpoint.agents.resources import Resources, RunContext
from setpoint.tracing import ATTR, node_span

__all__ = ["make_check_output", "output_problem"]


def output_problem(
    answer: str,
    *,
    answer_entropy: float,
    abstain_above: float,
    used_passages: bool,
    budget_spent: bool,
) -> str | None:
    """The reason code that stops an answer, or None when it may be given. Pure.

    Example:
        >>> output_problem("", answer_entropy=0.1, abstain_above=9, used_passages=False, budget_spent=False)
        'empty_answer'
        >>> output_problem("Paris", answer_entropy=0.1, abstain_above=9, used_passages=False, budget_spent=False)
    """
    if not answer.strip():
        return "empty_answer"
    if (used_passages or budget_spent) and answer_entropy > abstain_above:
        return "uncertain_after_retrieval"
    return None


def make_check_output(res: Resources) -> Any:
    def check_output(state: dict[str, Any], runtime: Runtime[RunContext]) -> dict[str, Any]:
        ctx = runtime.context
        thresholds = ctx.thresholds()
        with node_span(res.tracer, "check_output") as span:
            answer = state.get("answer", "")
            verdict = res.policy(ctx.policy_file).check_answer(answer)
            verdicts = [*(state.get("verdicts") or []), {**verdict.to_dict(), "target": "answer"}]
            problem = None if verdict.allowed else verdict.reason
            problem = problem or output_problem(
                answer,
                answer_entropy=float(state.get("answer_entropy", 0.0)),
                abstain_above=thresholds.abstain_above,
                used_passages=bool(state.get("passages")),
                budget_spent=int(state.get("retrieval_calls", 0)) >= thresholds.max_retrievals,
            )
            span.set_attribute(ATTR.ENTROPY, float(state.get("answer_entropy", 0.0)))
            if problem is None:
                span.set_attribute(ATTR.ROUTE, state.get("route", "answer"))
                return {"verdicts": verdicts}
            span.set_attribute(ATTR.ROUTE, "escalate")
            span.set_attribute(ATTR.REASON, problem)
            return {"verdicts": verdicts, "route": "escalate", "reason": problem}

    return check_output
