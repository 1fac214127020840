"""Spans reach an OTLP/HTTP collector configured only through ``OTEL_EXPORTER_OTLP_*`` variables, whole.

The collector is a real HTTP server on loopback that decodes ``ExportTraceServiceRequest``
protobufs, as Jaeger, Phoenix or an OpenTelemetry Collector would. What it receives is
compared with what the process recorded: every span, with its parent, kind, status,
attributes (the GenAI conventions' and ``setpoint.*``) and events.
"""

from __future__ import annotations

import gzip
import importlib.util
import socket
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from setpoint.agents.resources import Resources
from setpoint.api import Setpoint
from setpoint.graphs.context import Context
from setpoint.settings import Settings
from setpoint.tracing import configure_tracing

pytestmark = pytest.mark.integration

QUESTION = "who won the super bowl ?"
RETRIEVING = Context(max_new_tokens=6, setpoint=0.0, consecutive_steps=1)


def _unit_fixtures() -> ModuleType:
    """The tiny model and in-memory store of the unit tests (a conftest is not importable by name)."""
    path = Path(__file__).resolve().parents[2] / "unit" / "conftest.py"
    spec = importlib.util.spec_from_file_location("setpoint_unit_fixtures", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while being defined
    spec.loader.exec_module(module)
    return module


UNIT = _unit_fixtures()


@dataclass
class ReceivedSpan:
    name: str
    trace_id: str
    span_id: str
    parent_id: str
    attributes: dict[str, Any]
    resource: dict[str, Any]
    kind: str = ""
    status: str = ""
    start_ns: int = 0
    end_ns: int = 0
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)


def _value(v: AnyValue) -> Any:
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return [_value(x) for x in v.array_value.values]
    return getattr(v, kind) if kind else None


def _attributes(pairs: Any) -> dict[str, Any]:
    return {a.key: _value(a.value) for a in pairs}


def local_view(span: ReadableSpan) -> ReceivedSpan:
    """A span as this process recorded it, in the collector's terms (tuples are lists on the wire)."""

    def plain(attrs: Any) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dict(attrs or {}).items()}

    assert span.context is not None
    return ReceivedSpan(
        name=span.name,
        trace_id=format(span.context.trace_id, "032x"),
        span_id=format(span.context.span_id, "016x"),
        parent_id=format(span.parent.span_id, "016x") if span.parent else "",
        attributes=plain(span.attributes),
        resource=plain(span.resource.attributes),
        kind=f"SPAN_KIND_{span.kind.name}",
        status=f"STATUS_CODE_{span.status.status_code.name}",
        start_ns=span.start_time or 0,
        end_ns=span.end_time or 0,
        events=[(e.name, plain(e.attributes)) for e in span.events],
    )


@dataclass
class Collector:
    """What the loopback collector received: decoded spans, request paths and headers."""

    url: str
    spans: list[ReceivedSpan] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)


@pytest.fixture
def collector() -> Iterator[Collector]:
    received = Collector(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if self.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            request = ExportTraceServiceRequest()
            request.ParseFromString(body)
            received.paths.append(self.path)
            received.headers.append({k.lower(): v for k, v in self.headers.items()})
            for resource_spans in request.resource_spans:
                resource = _attributes(resource_spans.resource.attributes)
                for scope_spans in resource_spans.scope_spans:
                    for span in scope_spans.spans:
                        received.spans.append(
                            ReceivedSpan(
                                name=span.name,
                                trace_id=span.trace_id.hex(),
                                span_id=span.span_id.hex(),
                                parent_id=span.parent_span_id.hex(),
                                attributes=_attributes(span.attributes),
                                resource=resource,
                                kind=Span.SpanKind.Name(span.kind),
                                status=Status.StatusCode.Name(span.status.code),
                                start_ns=span.start_time_unix_nano,
                                end_ns=span.end_time_unix_nano,
                                events=[(e.name, _attributes(e.attributes)) for e in span.events],
                            )
                        )
            reply = ExportTraceServiceResponse().SerializeToString()
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, format: str, *args: Any) -> None:  # quiet test output
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    received.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield received
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def otel_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """A clean slate: no OTEL_* variable from the developer's shell leaks into the test."""
    import os

    for name in list(os.environ):
        if name.startswith("OTEL_"):
            monkeypatch.delenv(name)
    return monkeypatch


def tiny_resources(settings: Settings, provider: Any) -> Resources:
    return Resources(
        settings=settings,
        tracer_provider=provider,
        _generator=UNIT.make_tiny_generator(),
        _store=UNIT.KeywordStore(list(UNIT.PASSAGES)),
    )


@pytest.mark.parametrize(
    "variable", ["OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"]
)
def test_run_spans_arrive_at_the_collector(
    collector: Collector, otel_env: pytest.MonkeyPatch, tmp_path: Path, variable: str
) -> None:
    # The generic variable is a base URL (the exporter appends /v1/traces); the traces-only
    # one is used verbatim, so a collector behind a custom path works too.
    if variable == "OTEL_EXPORTER_OTLP_ENDPOINT":
        otel_env.setenv(variable, collector.url)
        expected_path = "/v1/traces"
    else:
        otel_env.setenv(variable, f"{collector.url}/ingest/otlp/traces")
        expected_path = "/ingest/otlp/traces"
    otel_env.setenv("OTEL_EXPORTER_OTLP_HEADERS", "x-team=setpoint")
    otel_env.setenv("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip")
    otel_env.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment.name=ci")

    settings = Settings.from_env().replace(cache_dir=tmp_path)
    recorded = InMemorySpanExporter()
    provider = configure_tracing(exporters=[recorded])
    session = Setpoint(
        settings, tracer_provider=provider, resources=tiny_resources(settings, provider)
    )
    result = session.ask(QUESTION, context=RETRIEVING)
    # The OTLP exporter sits behind a BatchSpanProcessor; shutting the provider down flushes it.
    provider.shutdown()

    # Whole: each span the run recorded arrives once, as it was recorded.
    local = sorted((local_view(s) for s in recorded.get_finished_spans()), key=lambda s: s.span_id)
    received = sorted(collector.spans, key=lambda s: s.span_id)
    assert len(local) >= 10 and received == local

    assert result.retrieval_calls == 1
    assert collector.paths and set(collector.paths) == {expected_path}
    assert all(h.get("x-team") == "setpoint" for h in collector.headers)
    assert all(h.get("content-encoding") == "gzip" for h in collector.headers)
    names = [s.name for s in collector.spans]
    for name in (
        "invoke_agent setpoint",
        "node guard_input",
        "node probe",
        "node generate",
        "node retrieve",
        "node finalize",
        "chat tiny-llama",
        "execute_tool weaviate_search",
    ):
        assert name in names
    assert {s.trace_id for s in collector.spans} == {result.trace_id}
    root = next(s for s in collector.spans if s.name == "invoke_agent setpoint")
    assert root.parent_id == ""
    ids = {s.span_id for s in collector.spans}
    assert all(s.parent_id in ids for s in collector.spans if s is not root)
    assert root.attributes["gen_ai.operation.name"] == "invoke_agent"
    assert root.attributes["setpoint.route"] == result.route
    assert root.attributes["setpoint.retrieval_calls"] == 1
    chat = next(s for s in collector.spans if s.name == "chat tiny-llama")
    assert chat.attributes["gen_ai.request.model"] == "tiny-llama"
    assert chat.attributes["gen_ai.usage.input_tokens"] > 0
    assert chat.attributes["gen_ai.response.finish_reasons"] == ["thermostat"]
    assert isinstance(chat.attributes["setpoint.token_entropy"], list)
    tool = next(s for s in collector.spans if s.name == "execute_tool weaviate_search")
    assert tool.attributes["gen_ai.tool.name"] == "weaviate_search"
    assert tool.attributes["setpoint.passage_ids"][0] == "p1"
    assert root.resource["service.name"] == "setpoint"
    assert root.resource["deployment.environment.name"] == "ci"
    # The GenAI conventions a trace viewer reads: a retrieval span and guardrail results.
    retrieval = next(s for s in collector.spans if s.name == f"retrieval {settings.collection}")
    assert retrieval.parent_id == tool.span_id and retrieval.kind == "SPAN_KIND_CLIENT"
    assert retrieval.attributes["gen_ai.operation.name"] == "retrieval"
    assert retrieval.attributes["gen_ai.data_source.id"] == settings.collection
    assert retrieval.attributes["gen_ai.request.top_k"] == RETRIEVING.top_k
    assert chat.attributes["gen_ai.provider.name"] == "transformers"
    guard = next(s for s in collector.spans if s.name == "node guard_input")
    (check,) = [attrs for name, attrs in guard.events if name == "gen_ai.guardrail.result"]
    assert check["gen_ai.guardrail.source"] == "input"
    assert check["gen_ai.guardrail.result.value"] == "true"
    assert check["gen_ai.guardrail.policy.id"]


def test_session_close_flushes_to_the_collector(
    collector: Collector, otel_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A ``Setpoint`` that builds its own tracing sends its spans when closed, with no flush call."""
    otel_env.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.url)
    settings = Settings.from_env().replace(cache_dir=tmp_path)
    with Setpoint(settings) as session:
        # Replace the heavy parts the session would load (documented injection points).
        session.resources._generator = UNIT.make_tiny_generator()
        session.resources._store = UNIT.KeywordStore(list(UNIT.PASSAGES))
        result = session.ask(QUESTION, context=Context(max_new_tokens=4, setpoint=float("inf")))
    assert result.route == "answer"
    assert "invoke_agent setpoint" in [s.name for s in collector.spans]
    assert {s.trace_id for s in collector.spans} == {result.trace_id}
    # the JSON-lines file got the same run
    assert result.trace_id in settings.trace_file.read_text(encoding="utf-8")


def test_unreachable_collector_does_not_break_a_run(
    otel_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]  # closed again when the block ends: nothing listens there
    otel_env.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{dead}")
    otel_env.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "1")
    settings = Settings.from_env().replace(cache_dir=tmp_path)
    started = time.monotonic()
    with Setpoint(settings) as session:
        session.resources._generator = UNIT.make_tiny_generator()
        session.resources._store = UNIT.KeywordStore(list(UNIT.PASSAGES))
        result = session.ask(QUESTION, context=Context(max_new_tokens=4, setpoint=float("inf")))
    assert result.status == "answered" and result.answer is not None
    assert result.trace_id in settings.trace_file.read_text(encoding="utf-8")
    assert time.monotonic() - started < 30
