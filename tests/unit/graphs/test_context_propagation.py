"""Every span of a run hangs under the run's root span, however the graph is driven (invoke, stream, astream, threads)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry import context as otel_context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from setpoint.agents.resources import Resources
from setpoint.api import Setpoint
from setpoint.graphs.context import Context
from setpoint.graphs.graph import build_graph

QUESTION = "who won the super bowl ?"
# setpoint 0 makes the thermostat fire on the first token: the run visits probe, generate
# (closed book), retrieve (with its tool span), generate again (reader) and finalize.
RETRIEVING = Context(max_new_tokens=6, setpoint=0.0, consecutive_steps=1)
NODE_SPANS = {"node guard_input", "node probe", "node generate", "node retrieve", "node finalize"}


class ThreadRecorder(SpanProcessor):
    """Remembers which thread started each span, so a test can tell it crossed threads."""

    def __init__(self) -> None:
        self.thread_of: dict[int, int] = {}

    def on_start(self, span: Span, parent_context: otel_context.Context | None = None) -> None:
        self.thread_of[span.context.span_id] = threading.get_ident()


@pytest.fixture
def threads(resources: Resources) -> ThreadRecorder:
    recorder = ThreadRecorder()
    assert resources.tracer_provider is not None
    resources.tracer_provider.add_span_processor(recorder)  # type: ignore[attr-defined]
    return recorder


def orphans(spans: list[ReadableSpan], root: ReadableSpan) -> list[str]:
    """Names of spans whose parent chain does not reach ``root`` within the recorded spans."""
    by_id = {s.context.span_id: s for s in spans}
    lost = []
    for span in spans:
        current: ReadableSpan | None = span
        while current is not None and current.context.span_id != root.context.span_id:
            parent = current.parent
            current = by_id.get(parent.span_id) if parent is not None else None
        if current is None:
            lost.append(span.name)
    return lost


def spans_of_run(
    spans: InMemorySpanExporter, root_name: str
) -> tuple[ReadableSpan, list[ReadableSpan]]:
    finished = list(spans.get_finished_spans())
    roots = [s for s in finished if s.name == root_name]
    assert len(roots) == 1, [s.name for s in finished]
    return roots[0], finished


def assert_one_tree(root: ReadableSpan, finished: list[ReadableSpan]) -> None:
    names = [s.name for s in finished]
    assert set(names) >= NODE_SPANS, names
    assert names.count("node generate") == 2 and "execute_tool weaviate_search" in names
    assert orphans(finished, root) == []
    assert {s.context.trace_id for s in finished} == {root.context.trace_id}


def test_ask_puts_every_span_under_its_root(
    resources: Resources, spans: InMemorySpanExporter
) -> None:
    session = Setpoint(
        resources.settings, tracer_provider=resources.tracer_provider, resources=resources
    )
    result = session.ask(QUESTION, context=RETRIEVING)
    root, finished = spans_of_run(spans, "invoke_agent setpoint")
    assert result.retrieval_calls == 1 and result.trace_id == format(root.context.trace_id, "032x")
    assert_one_tree(root, finished)


def _stream_in_root(resources: Resources) -> Iterator[tuple[str, Any]]:
    graph = build_graph(resources)
    with resources.tracer.start_as_current_span("app request"):
        yield from graph.stream(
            {"question": QUESTION}, context=RETRIEVING, stream_mode=["custom", "updates"]
        )


async def _astream_in_root(resources: Resources, root_name: str) -> list[tuple[str, Any]]:
    graph = build_graph(resources)
    parts = []
    with resources.tracer.start_as_current_span(root_name):
        async for part in graph.astream(
            {"question": QUESTION}, context=RETRIEVING, stream_mode=["custom", "updates"]
        ):
            parts.append(part)
    return parts


def test_stream_puts_every_span_under_the_callers_span(
    resources: Resources, spans: InMemorySpanExporter
) -> None:
    parts = list(_stream_in_root(resources))
    assert any(mode == "custom" and chunk["type"] == "token" for mode, chunk in parts)
    assert any(mode == "updates" and "finalize" in chunk for mode, chunk in parts)
    root, finished = spans_of_run(spans, "app request")
    assert_one_tree(root, finished)


def test_astream_nodes_in_worker_threads_keep_the_root(
    resources: Resources, spans: InMemorySpanExporter, threads: ThreadRecorder
) -> None:
    caller = threading.get_ident()
    parts = asyncio.run(_astream_in_root(resources, "app request"))
    assert any(mode == "custom" and chunk["type"] == "thermostat" for mode, chunk in parts)
    root, finished = spans_of_run(spans, "app request")
    # astream runs the graph's synchronous nodes in executor threads: the check below is
    # only meaningful because the node spans really were started away from the caller.
    node_threads = {threads.thread_of[s.context.span_id] for s in finished if s.name in NODE_SPANS}
    assert node_threads - {caller}
    assert_one_tree(root, finished)


def test_concurrent_runs_do_not_share_parents(
    resources: Resources, spans: InMemorySpanExporter
) -> None:
    async def both() -> None:
        await asyncio.gather(
            _astream_in_root(resources, "request one"), _astream_in_root(resources, "request two")
        )

    asyncio.run(both())
    finished = list(spans.get_finished_spans())
    for name in ("request one", "request two"):
        root = next(s for s in finished if s.name == name)
        mine = [s for s in finished if s.context.trace_id == root.context.trace_id]
        assert_one_tree(root, mine)
    assert len({s.context.trace_id for s in finished}) == 2
