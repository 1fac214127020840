"""``Setpoint.stream`` and ``Setpoint.astream`` on the tiny model: events in node order, ending in ``ask``'s result."""

from __future__ import annotations

import asyncio
import math
import warnings
from dataclasses import replace
from typing import Any

import pytest
from langgraph.checkpoint.memory import InMemorySaver
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from setpoint.agents.resources import Resources
from setpoint.api import AskResult, Setpoint
from setpoint.errors import ConfigError, InputError
from setpoint.events import NodeEvent, ResultEvent, StreamEvent, ThermostatEvent, TokenEvent
from setpoint.graphs.context import Context

QUESTION = "who won the super bowl ?"
# Setpoint 0 with one step: the thermostat fires on the first token, so the run goes
# generate -> retrieve -> generate (reader) and streams both passes.
RETRIEVING = Context(
    max_new_tokens=6, setpoint=0.0, consecutive_steps=1, escalate_after_budget=False
)
CLOSED_BOOK = Context(max_new_tokens=5, setpoint=math.inf)


def session(resources: Resources, **kwargs: Any) -> Setpoint:
    return Setpoint(
        resources.settings,
        tracer_provider=resources.tracer_provider,
        resources=resources,
        **kwargs,
    )


def same_run(result: AskResult) -> AskResult:
    """The result without what differs between two runs of one question: trace id and time."""
    return replace(result, trace_id=None, seconds=0.0)


def collect_async(sp: Setpoint, question: str, context: Context) -> list[StreamEvent]:
    async def run() -> list[StreamEvent]:
        return [event async for event in sp.astream(question, context=context)]

    return asyncio.run(run())


@pytest.mark.parametrize("context", [RETRIEVING, CLOSED_BOOK], ids=["retrieving", "closed_book"])
def test_stream_ends_with_the_result_ask_returns(resources: Resources, context: Context) -> None:
    sp = session(resources)
    events = list(sp.stream(QUESTION, context=context))
    asked = sp.ask(QUESTION, context=context)
    assert isinstance(events[-1], ResultEvent)
    assert not any(isinstance(e, ResultEvent) for e in events[:-1])
    assert same_run(events[-1].result) == same_run(asked)
    assert asked.answer and asked.status == "answered"


def test_events_arrive_in_node_order_with_tokens_inside_generate(resources: Resources) -> None:
    sp = session(resources)
    events = list(sp.stream(QUESTION, context=RETRIEVING))
    result = events[-1]
    assert isinstance(result, ResultEvent) and result.result.route == "retrieve"
    nodes = [e.node for e in events if isinstance(e, NodeEvent)]
    assert nodes[:5] == ["guard_input", "probe", "generate", "retrieve", "generate"]
    assert nodes[-1] == "finalize"
    # Each run of tokens belongs to the generate node that finishes right after it.
    for i, event in enumerate(events):
        if isinstance(event, (TokenEvent, ThermostatEvent)):
            following = next(e for e in events[i:] if isinstance(e, NodeEvent))
            assert following.node == "generate"
    tokens = [e for e in events if isinstance(e, TokenEvent)]
    assert tokens[0].phase == "closed_book" and tokens[-1].phase == "reader"
    assert all(t.entropy >= 0.0 and math.isfinite(t.ema) for t in tokens)
    # The thermostat fires on the token that pushed the smoothed entropy over the setpoint.
    fired = next(i for i, e in enumerate(events) if isinstance(e, ThermostatEvent))
    before = events[fired - 1]
    assert isinstance(before, TokenEvent) and before.fired
    probe = next(e for e in events if isinstance(e, NodeEvent) and e.node == "probe")
    assert probe.route is not None and probe.reason


def test_stream_runs_inside_one_root_span(
    resources: Resources, spans: InMemorySpanExporter
) -> None:
    sp = session(resources)
    events = list(sp.stream(QUESTION, context=RETRIEVING))
    result = events[-1]
    assert isinstance(result, ResultEvent)
    finished = spans.get_finished_spans()
    roots = [s for s in finished if s.name == "invoke_agent setpoint"]
    assert len(roots) == 1 and roots[0].parent is None
    root = roots[0]
    assert format(root.context.trace_id, "032x") == result.result.trace_id
    assert {s.context.trace_id for s in finished} == {root.context.trace_id}
    assert root.attributes is not None
    assert root.attributes["gen_ai.operation.name"] == "invoke_agent"
    assert root.attributes["setpoint.route"] == "retrieve"
    assert root.attributes["setpoint.retrieval_calls"] == result.result.retrieval_calls == 1
    # The node spans, in the order they started, are the node events' order.
    node_spans = sorted(
        (s for s in finished if s.name.startswith("node ")), key=lambda s: s.start_time or 0
    )
    nodes = [e.node for e in events if isinstance(e, NodeEvent)]
    assert [s.name.removeprefix("node ") for s in node_spans] == nodes


def test_astream_gives_the_same_events_as_stream(resources: Resources) -> None:
    sp = session(resources)
    synchronous = list(sp.stream(QUESTION, context=RETRIEVING))
    asynchronous = collect_async(sp, QUESTION, RETRIEVING)
    assert synchronous[:-1] == asynchronous[:-1]
    last_sync, last_async = synchronous[-1], asynchronous[-1]
    assert isinstance(last_sync, ResultEvent) and isinstance(last_async, ResultEvent)
    assert same_run(last_sync.result) == same_run(last_async.result)
    assert last_sync.result.trace_id != last_async.result.trace_id


def test_a_bad_question_fails_inside_the_stream_and_is_traced(
    resources: Resources, spans: InMemorySpanExporter
) -> None:
    sp = session(resources)
    with pytest.raises(InputError, match="the question is empty"):
        list(sp.stream("   ", context=CLOSED_BOOK))
    (root,) = [s for s in spans.get_finished_spans() if s.name == "invoke_agent setpoint"]
    assert root.status.status_code.name == "ERROR"


def test_review_without_a_checkpointer_is_refused_at_the_call(resources: Resources) -> None:
    sp = session(resources)
    with pytest.raises(ConfigError, match="review needs a checkpointer"):
        sp.stream(QUESTION, context=replace(CLOSED_BOOK, review=True))


def test_with_a_checkpointer_a_paused_run_streams_its_pending_review(resources: Resources) -> None:
    sp = session(resources, checkpointer=InMemorySaver())
    unsure = replace(CLOSED_BOOK, max_retrievals=0, abstain_above=0.0, review=True)
    with warnings.catch_warnings():
        # No "durability has no effect" or other warning from our own call.
        warnings.simplefilter("error")
        events = list(sp.stream(QUESTION, context=unsure, thread_id="paused"))
    result = events[-1]
    assert isinstance(result, ResultEvent)
    assert result.result.status == "pending_review" and result.result.route == "escalate"
    assert result.result.thread_id == "paused" and result.result.review
    assert "__interrupt__" not in [e.node for e in events if isinstance(e, NodeEvent)]
    # The checkpoint holds the thread, waiting at escalate, as `setpoint review` lists it.
    assert [p["thread_id"] for p in sp.pending_reviews()] == ["paused"]
    asked = sp.ask(QUESTION, context=unsure, thread_id="paused-again")
    assert same_run(replace(result.result, thread_id=None)) == same_run(
        replace(asked, thread_id=None)
    )


def test_with_a_checkpointer_a_retrieving_run_is_saved_step_by_step(resources: Resources) -> None:
    """Durable mode "sync" with every node the run takes, the retrieval included."""
    saver = InMemorySaver()
    sp = session(resources, checkpointer=saver)
    events = list(sp.stream(QUESTION, context=RETRIEVING, thread_id="durable"))
    result = events[-1]
    assert isinstance(result, ResultEvent) and result.result.route == "retrieve"
    snapshot = sp.graph.get_state({"configurable": {"thread_id": "durable"}})
    assert snapshot.next == () and snapshot.values["answer"] == result.result.answer
    # One checkpoint per finished step (plus the input's): each node's work was saved.
    nodes = [e for e in events if isinstance(e, NodeEvent)]
    saved = list(saver.list({"configurable": {"thread_id": "durable", "checkpoint_ns": ""}}))
    assert len(saved) >= len(nodes) + 1


def test_without_a_checkpointer_no_warning(resources: Resources) -> None:
    sp = session(resources)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = sp.ask(QUESTION, context=CLOSED_BOOK)
    assert result.thread_id is None and result.answer


def test_ask_gives_an_unsure_answer_with_its_guess_and_citations(resources: Resources) -> None:
    """Above the reader setpoint, once the budget is spent: the best guess, status unsure."""
    unsure = Context(max_new_tokens=6, probe_setpoint=0.0, reader_setpoint=-0.5, max_retrievals=1)
    result = session(resources).ask(QUESTION, context=unsure)
    assert result.status == "unsure" and result.route == "retrieve"
    assert result.answer and result.citations
    assert result.reason.startswith("unsure:reader uncertainty")
    assert result.to_dict()["status"] == "unsure"
