"""The graph's state: what one question accumulates on its way from input to answer."""

from __future__ import annotations

from typing import Annotated, Any, TypedDict

from langchain_core.messages import AnyMessage
from langgraph.graph.message import add_messages

from setpoint.agents.decide import Hop, Route, Status

__all__ = ["InputState", "OutputState", "SetpointState"]


class InputState(TypedDict, total=False):
    """What a caller sends: a question, or chat messages whose last human turn is the question."""

    question: str
    messages: Annotated[list[AnyMessage], add_messages]


class OutputState(TypedDict, total=False):
    """What a caller gets back."""

    question: str
    messages: Annotated[list[AnyMessage], add_messages]
    answer: str
    #: answered; unsure (a best guess the signals doubt, with its citations); abstained.
    status: Status
    #: Where the answer came from: answer (the weights), retrieve, tool or escalate.
    route: Route
    reason: str
    citations: list[dict[str, Any]]
    retrieval_calls: int
    retrieval_unavailable: bool
    dropped_passages: list[dict[str, Any]]
    decision: dict[str, Any]
    #: A reviewer's decision on an escalated run: {"action", "answer", "note", "reason"}.
    review: dict[str, Any]
    #: Signals of the prefill pass and one record per generated token (what a UI plots).
    probe: dict[str, Any]
    signal_trace: list[dict[str, Any]]


class SetpointState(InputState, OutputState, total=False):
    """The full working state. Per-question fields are reset by ``guard_input`` on every turn.

    Attributes:
        next_node: the node the last routing decision chose (``agents.decide``); the
            edges read it.
        route: where the answer comes from so far (answer / retrieve / tool / escalate).
        probe: signals of the prefill pass (entropy, margin, logit-lens entropies).
        signal_trace: one record per generated token (entropy, EMA, margin, fired) across passes.
        partial_answer: what generation had produced when the thermostat fired.
        query: the retrieval query (question, plus the partial answer on mid-answer re-entry).
        hop_question: what the next read asks, after the first half of a nested question
            (``adapters.domain.decompose``); None: the question itself.
        passages: passages that reached the prompt, with id, title, text, source and score.
        found_passages: every passage this question's retrievals returned and the injection
            check kept, each once, in the order found (the prompt holds at most top_k + 1;
            a date comparison reads them all, ``adapters.domain.compare``).
        dropped_passages: passages the injection check removed, with the reason.
        verdicts: every policy verdict, allowed or not.
        adapter: the LoRA adapter the answer was generated with (None: base model).
        tool_call: on route ``tool``, the registered tool that answers and its arguments
            (``{"name": entry-point name, "args": {...}}``).
    """

    next_node: Hop
    partial_answer: str | None
    hop_question: str | None
    query: str
    passages: list[dict[str, Any]]
    found_passages: list[dict[str, Any]]
    verdicts: list[dict[str, Any]]
    adapter: str | None
    answer_entropy: float
    draft_answer: str
    uncertain_after_budget: bool
    tool_call: dict[str, Any]
