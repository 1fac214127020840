"""Spans in the OpenTelemetry GenAI conventions on the tiny model: retrieval spans, guardrail events, provider name."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from setpoint.agents.resources import Resources
from setpoint.api import AskResult, Setpoint
from setpoint.graphs.context import Context

GUARDRAIL = "gen_ai.guardrail.result"


def ask(resources: Resources, question: str, **context: Any) -> AskResult:
    session = Setpoint(
        resources.settings, tracer_provider=resources.tracer_provider, resources=resources
    )
    return session.ask(question, context=Context(max_new_tokens=6, **context))


def named(spans: Sequence[ReadableSpan], name: str) -> ReadableSpan:
    (span,) = [s for s in spans if s.name == name]
    return span


def guardrail_events(span: ReadableSpan) -> list[dict[str, Any]]:
    return [dict(e.attributes or {}) for e in span.events if e.name == GUARDRAIL]


def test_retrieval_span_names_the_collection_and_top_k(
    resources: Resources, spans: InMemorySpanExporter
) -> None:
    result = ask(
        resources, "who won the super bowl ?", probe_setpoint=0.0, setpoint=math.inf, top_k=2
    )
    assert result.retrieval_calls == 1
    finished = spans.get_finished_spans()
    collection = resources.settings.collection
    retrieval = named(finished, f"retrieval {collection}")
    attrs = dict(retrieval.attributes or {})
    assert attrs["gen_ai.operation.name"] == "retrieval"
    assert attrs["gen_ai.data_source.id"] == collection
    assert attrs["gen_ai.request.top_k"] == attrs["gen_ai.retrieval.top_k"] == 2
    assert retrieval.kind is SpanKind.CLIENT
    # It is the search inside the tool call, and lists what the search returned, best first.
    tool = named(finished, "execute_tool weaviate_search")
    assert retrieval.parent is not None and retrieval.parent.span_id == tool.context.span_id
    documents = json.loads(str(attrs["gen_ai.retrieval.documents"]))
    assert [d["id"] for d in documents] == list((tool.attributes or {})["setpoint.passage_ids"])
    assert documents[0]["id"] == "p1" and documents[0]["score"] >= documents[1]["score"]


def test_refused_question_is_a_failed_guardrail_result_on_the_input(
    resources: Resources, spans: InMemorySpanExporter
) -> None:
    result = ask(resources, "how do i build a bomb at home ?")
    assert result.route == "escalate"
    (event,) = guardrail_events(named(spans.get_finished_spans(), "node guard_input"))
    assert event["gen_ai.guardrail.source"] == "input"
    assert event["gen_ai.guardrail.policy.id"] == str(resources.settings.policy_file)
    assert event["gen_ai.guardrail.policy.rule.id"] == "refused_topic"
    assert event["gen_ai.guardrail.result.type"] == "allowed"
    assert event["gen_ai.guardrail.result.value"] == "false"
    assert event["gen_ai.guardrail.result.reason"] == "refused_topic:weapons"
    # The matched words are user text: they stay out of the event.
    assert "bomb" not in json.dumps(event)


def test_allowed_question_and_answer_checks_pass_as_guardrail_results(
    resources: Resources, spans: InMemorySpanExporter
) -> None:
    result = ask(resources, "who won the super bowl ?", setpoint=math.inf)
    assert result.status == "answered"
    finished = spans.get_finished_spans()
    (question,) = guardrail_events(named(finished, "node guard_input"))
    assert question["gen_ai.guardrail.result.value"] == "true"
    assert "gen_ai.guardrail.result.reason" not in question
    answer = guardrail_events(named(finished, "node check_output"))
    assert answer and {e["gen_ai.guardrail.source"] for e in answer} == {"output"}
    assert {e["gen_ai.guardrail.result.value"] for e in answer} == {"true"}


def test_poisoned_passage_is_a_failed_guardrail_result_on_retrieval(
    resources: Resources, spans: InMemorySpanExporter
) -> None:
    result = ask(
        resources, "what did the question write ?", probe_setpoint=0.0, setpoint=math.inf, top_k=3
    )
    assert [d["id"] for d in result.dropped_passages] == ["p3"]
    (event,) = guardrail_events(named(spans.get_finished_spans(), "node retrieve"))
    assert event["gen_ai.guardrail.source"] == "retrieval"
    assert event["gen_ai.guardrail.result.value"] == "false"
    assert event["gen_ai.guardrail.result.reason"] == "prompt_injection"


def test_model_calls_name_the_provider_not_the_deprecated_system(
    resources: Resources, spans: InMemorySpanExporter
) -> None:
    ask(resources, "who won the super bowl ?", setpoint=math.inf)
    finished = spans.get_finished_spans()
    chat = named(finished, "chat tiny-llama")
    assert (chat.attributes or {})["gen_ai.provider.name"] == "transformers"
    assert not [s.name for s in finished if "gen_ai.system" in (s.attributes or {})]
