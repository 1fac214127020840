"""Node ``guard_input``: validate the question and apply the policy before any model work."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from langchain_core.messages import HumanMessage
from langgraph.runtime import Runtime

from setpoint.agents.decide import after_guard
from setpoint.agents.resources import Resources
from setpoint.errors import InputError
from setpoint.tools.registry import match_question
from setpoint.tracing import ATTR, guardrail_results, node_span

if TYPE_CHECKING:
    from setpoint.graphs.context import Context

__all__ = ["make_guard_input", "question_from_state", "validate_question"]

# Fields that describe one question; cleared at the start of every turn of a conversation.
PER_QUESTION_RESET: dict[str, Any] = {
    "route": "",
    "reason": "",
    "probe": {},
    "signal_trace": [],
    "partial_answer": None,
    "hop_question": None,
    "query": "",
    "passages": [],
    "found_passages": [],
    "dropped_passages": [],
    "verdicts": [],
    "answer": "",
    "citations": [],
    "retrieval_calls": 0,
    "retrieval_unavailable": False,
    "adapter": None,
    "answer_entropy": 0.0,
    "uncertain_after_budget": False,
    "status": "answered",
    "draft_answer": "",
    "decision": {},
    "review": {},
    "tool_call": {},
}


def validate_question(question: object, max_chars: int) -> str:
    """Return the stripped question, or raise ``InputError`` saying what is wrong with it.

    Example:
        >>> validate_question("  Who wrote Hamlet? ", 100)
        'Who wrote Hamlet?'
    """
    if not isinstance(question, str):
        raise InputError(f"the question must be text, got {type(question).__name__}")
    text = question.strip()
    if not text:
        raise InputError(
            'the question is empty; ask something, e.g. setpoint ask "Who wrote Hamlet?"'
        )
    if len(text) > max_chars:
        raise InputError(
            f"the question is {len(text)} characters, over the limit of {max_chars}; "
            "shorten it or raise SETPOINT_MAX_QUESTION_CHARS"
        )
    # Lone surrogates (from JSON "\ud800" escapes or undecodable argv bytes) are not text:
    # no tokenizer accepts them.
    controls = sum(
        1
        for ch in text
        if (ord(ch) < 32 and ch not in "\t\n\r") or ch == "\ufffd" or "\ud800" <= ch <= "\udfff"
    )
    if controls:
        raise InputError(
            f"the question contains {controls} control or undecodable character(s); "
            "send plain UTF-8 text"
        )
    return text


def question_from_state(state: dict[str, Any]) -> object:
    """The question field, or the content of the last human message."""
    question = state.get("question")
    if question:
        return question
    for message in reversed(state.get("messages") or []):
        if isinstance(message, HumanMessage):
            return message.content
    return question


def make_guard_input(res: Resources) -> Any:
    def guard_input(state: dict[str, Any], runtime: Runtime[Context]) -> dict[str, Any]:
        with node_span(res.tracer, "guard_input") as span:
            question = validate_question(
                question_from_state(state), res.settings.max_question_chars
            )
            policy = res.policy(runtime.context.policy_file)
            # The embedder is needed only for topics with examples; keyword-only policies stay model-free.
            embedder = res.embedder() if policy.topics.semantic else None
            verdict = policy.check_question(question, embedder)
            update: dict[str, Any] = {
                **PER_QUESTION_RESET,
                "question": question,
                "verdicts": [{**verdict.to_dict(), "target": "question"}],
            }
            guardrail_results(span, update["verdicts"], policy_id=policy.source, source="input")
            if not state.get("messages") or state.get("question"):
                update["messages"] = [HumanMessage(question)]
            # A registered tool that declares it handles the question answers it (see
            # call_tool); asked only for questions the policy allows.
            match = match_question(question) if verdict.allowed else None
            decision = after_guard(verdict.allowed, verdict.reason, match.name if match else None)
            update.update(decision.update())
            if match is not None:
                update["tool_call"] = {"name": match.name, "args": match.args}
                span.set_attribute(ATTR.TOOL, match.name)
            # Before any answer route is chosen, the span names the next hop (probe).
            span.set_attribute(ATTR.ROUTE, decision.route or decision.next_node)
            if decision.route == "escalate":
                span.set_attribute(ATTR.REASON, verdict.reason)
            return update

    return guard_input
