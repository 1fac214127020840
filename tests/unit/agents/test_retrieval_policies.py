"""LangGraph's own mechanisms on the retrieval: a retry policy for transient Weaviate errors, a cache for repeated searches."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from conftest import PASSAGES, KeywordStore, make_tiny_generator, unit_policy
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from setpoint.agents.resources import Resources
from setpoint.agents.retrieve import is_transient
from setpoint.errors import RetrievalError
from setpoint.graphs.context import Context
from setpoint.graphs.graph import build_graph
from setpoint.settings import Settings
from setpoint.tracing import configure_tracing

QUESTION = "who won the super bowl ?"
RETRIEVE_FIRST = {"probe_setpoint": 0.0, "setpoint": math.inf, "max_new_tokens": 4}
MID_ANSWER = {"setpoint": 0.0, "consecutive_steps": 1, "max_new_tokens": 4}


def transient() -> RetrievalError:
    try:
        raise RetrievalError("Weaviate at http://127.0.0.1:8080 timed out") from TimeoutError(
            "read timed out"
        )
    except RetrievalError as exc:
        return exc


def permanent() -> RetrievalError:
    return RetrievalError(
        "Weaviate has no collection SetpointPassages; run `setpoint ingest` first"
    )


@dataclass
class FlakyStore(KeywordStore):
    """The keyword store, failing its first searches with the given errors."""

    failures: list[Exception] = field(default_factory=list)
    attempts: int = 0

    def hybrid_search(self, query: str, *, k: int = 3, alpha: float = 0.5) -> list[Any]:
        self.attempts += 1
        if self.failures:
            raise self.failures.pop(0)
        return super().hybrid_search(query, k=k, alpha=alpha)


def resources_over(store: KeywordStore, tmp_path: Path, spans: InMemorySpanExporter) -> Resources:
    return Resources(
        settings=Settings.from_env().replace(cache_dir=tmp_path, policy_file=unit_policy(tmp_path)),
        tracer_provider=configure_tracing(exporters=[spans]),
        _generator=make_tiny_generator(),
        _store=store,
    )


def retrieve_spans(spans: InMemorySpanExporter) -> list[Any]:
    return [s for s in spans.get_finished_spans() if s.name == "node retrieve"]


def test_a_transient_error_is_retried_and_the_run_answers(
    tmp_path: Path, spans: InMemorySpanExporter
) -> None:
    store = FlakyStore(list(PASSAGES), failures=[transient()])
    graph = build_graph(resources_over(store, tmp_path, spans))
    out = graph.invoke({"question": QUESTION}, context=Context(**RETRIEVE_FIRST))
    assert out["status"] == "answered" and out["route"] == "retrieve"
    assert out["retrieval_calls"] == 1 and out["citations"][0]["id"] == "p1"
    assert (store.attempts, store.searches) == (2, 1)
    assert len(retrieve_spans(spans)) == 2  # the failed attempt, then the one that answered


def test_a_permanent_error_is_not_retried(tmp_path: Path, spans: InMemorySpanExporter) -> None:
    store = FlakyStore(list(PASSAGES), failures=[permanent()])
    graph = build_graph(resources_over(store, tmp_path, spans))
    with pytest.raises(RetrievalError, match="no collection"):
        graph.invoke({"question": QUESTION}, context=Context(**RETRIEVE_FIRST))
    assert store.attempts == 1


def test_mid_answer_falls_back_to_the_weights_once_retries_are_spent(
    tmp_path: Path, spans: InMemorySpanExporter
) -> None:
    store = FlakyStore(list(PASSAGES), failures=[transient() for _ in range(5)])
    graph = build_graph(resources_over(store, tmp_path, spans))
    out = graph.invoke({"question": QUESTION}, context=Context(**MID_ANSWER))
    assert out["status"] == "answered" and out["retrieval_unavailable"] is True
    assert out["route"] == "answer" and out["citations"] == []
    assert store.attempts == 3  # RETRIEVAL_RETRY's max_attempts


def test_a_repeated_identical_search_reads_the_cache(
    tmp_path: Path, spans: InMemorySpanExporter
) -> None:
    store = FlakyStore(list(PASSAGES))
    res = resources_over(store, tmp_path, spans)
    graph = build_graph(res)
    first = graph.invoke({"question": QUESTION}, context=Context(**RETRIEVE_FIRST))
    again = graph.invoke({"question": QUESTION}, context=Context(**RETRIEVE_FIRST))
    assert store.searches == 1
    assert again["answer"] == first["answer"] and again["citations"] == first["citations"]
    assert again["retrieval_calls"] == 1
    # Another k is another search; so is any search after the index changed.
    graph.invoke({"question": QUESTION}, context=Context(top_k=2, **RETRIEVE_FIRST))
    assert store.searches == 2
    res.forget_retrievals()
    graph.invoke({"question": QUESTION}, context=Context(**RETRIEVE_FIRST))
    assert store.searches == 3


def test_failed_searches_are_not_cached(tmp_path: Path, spans: InMemorySpanExporter) -> None:
    store = FlakyStore(list(PASSAGES), failures=[permanent()])
    graph = build_graph(resources_over(store, tmp_path, spans))
    with pytest.raises(RetrievalError):
        graph.invoke({"question": QUESTION}, context=Context(**RETRIEVE_FIRST))
    out = graph.invoke({"question": QUESTION}, context=Context(**RETRIEVE_FIRST))
    assert out["status"] == "answered" and store.searches == 1


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (TimeoutError("read timed out"), True),
        (ConnectionResetError("reset by peer"), True),
        (RetrievalError("Weaviate has no collection X"), False),
        (ValueError("bad query"), False),
    ],
)
def test_is_transient(error: Exception, expected: bool) -> None:
    assert is_transient(error) is expected


def test_is_transient_reads_the_cause_chain_and_an_explicit_flag() -> None:
    assert is_transient(transient())
    flagged = RetrievalError("Weaviate is electing a leader")
    flagged.transient = True  # type: ignore[attr-defined]
    assert is_transient(flagged)
    status = RetrievalError("overloaded")
    status.__cause__ = type("UnexpectedStatusCodeError", (Exception,), {"status_code": 503})()
    assert is_transient(status)
