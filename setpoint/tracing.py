"""OpenTelemetry set-up and span helpers: GenAI semantic-convention names plus ``setpoint.*`` attributes.

Tracing is injected: a ``TracerProvider`` is built here (JSON-lines file, console, OTLP when
``OTEL_EXPORTER_OTLP_*`` is set) or passed in by the caller (tests use an in-memory exporter).
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.trace import SpanKind

if TYPE_CHECKING:
    from opentelemetry.trace import Span, Tracer

__all__ = [
    "ATTR",
    "JsonLinesSpanExporter",
    "configure_tracing",
    "guardrail_results",
    "node_span",
    "retrieval_span",
    "set_attributes",
    "tracer_from",
]

TRACER_NAME = "setpoint"


class ATTR:
    """Attribute names: GenAI semantic conventions where one exists, ``setpoint.*`` otherwise.

    The ``gen_ai.*`` names follow the OpenTelemetry GenAI conventions (development status):
    ``gen_ai.provider.name`` (which replaced ``gen_ai.system``), retrieval spans, and
    guardrail result events.
    """

    OPERATION = "gen_ai.operation.name"
    PROVIDER = "gen_ai.provider.name"
    AGENT_NAME = "gen_ai.agent.name"
    REQUEST_MODEL = "gen_ai.request.model"
    REQUEST_MAX_TOKENS = "gen_ai.request.max_tokens"
    REQUEST_TEMPERATURE = "gen_ai.request.temperature"
    INPUT_TOKENS = "gen_ai.usage.input_tokens"
    OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
    FINISH_REASONS = "gen_ai.response.finish_reasons"
    TOOL_NAME = "gen_ai.tool.name"
    TOOL_TYPE = "gen_ai.tool.type"
    TOOL_DESCRIPTION = "gen_ai.tool.description"
    TOOL_CALL_ID = "gen_ai.tool.call.id"
    TOOL_CALL_ARGUMENTS = "gen_ai.tool.call.arguments"
    TOOL_CALL_RESULT = "gen_ai.tool.call.result"
    ERROR_TYPE = "error.type"
    DATA_SOURCE = "gen_ai.data_source.id"
    # Retrieval spans name their passage count gen_ai.request.top_k up to semantic-conventions
    # 1.41 and gen_ai.retrieval.top_k since the GenAI conventions' own v0.1.0; both are set.
    REQUEST_TOP_K = "gen_ai.request.top_k"
    RETRIEVAL_TOP_K = "gen_ai.retrieval.top_k"
    RETRIEVAL_DOCUMENTS = "gen_ai.retrieval.documents"
    GUARDRAIL_RESULT = "gen_ai.guardrail.result"  # the event's name
    GUARDRAIL_COMPONENT = "gen_ai.guardrail.component.name"
    GUARDRAIL_POLICY_ID = "gen_ai.guardrail.policy.id"
    GUARDRAIL_RULE_ID = "gen_ai.guardrail.policy.rule.id"
    GUARDRAIL_SOURCE = "gen_ai.guardrail.source"
    GUARDRAIL_RESULT_TYPE = "gen_ai.guardrail.result.type"
    GUARDRAIL_RESULT_VALUE = "gen_ai.guardrail.result.value"
    GUARDRAIL_RESULT_REASON = "gen_ai.guardrail.result.reason"
    GUARDRAIL_RISK_SCORE = "gen_ai.guardrail.risk.score"
    CONVERSATION = "gen_ai.conversation.id"
    INPUT_MESSAGES = "gen_ai.input.messages"
    OUTPUT_MESSAGES = "gen_ai.output.messages"
    DB_SYSTEM = "db.system.name"
    DB_COLLECTION = "db.collection.name"
    ROUTE = "setpoint.route"
    REASON = "setpoint.reason"
    ENTROPY = "setpoint.entropy"
    SETPOINT = "setpoint.setpoint"
    RETRIEVAL_CALLS = "setpoint.retrieval_calls"
    ADAPTER = "setpoint.adapter"
    #: The generator's weights: ``float32`` or ``bfloat16`` (``SETPOINT_PRECISION``).
    PRECISION = "setpoint.precision"
    NODE = "setpoint.node"
    PASSAGE_IDS = "setpoint.passage_ids"
    DROPPED_PASSAGES = "setpoint.dropped_passages"
    THERMOSTAT_FIRED_AT = "setpoint.thermostat.fired_at_step"
    RETRIEVAL_UNAVAILABLE = "setpoint.retrieval_unavailable"
    TOKEN_ENTROPY = "setpoint.token_entropy"
    TOKEN_EMA = "setpoint.token_ema"
    HYSTERESIS = "setpoint.hysteresis"
    TRIGGER = "setpoint.trigger"
    TOOL = "setpoint.tool"


class JsonLinesSpanExporter(SpanExporter):
    """Writes each finished span as one JSON object per line (what ``setpoint trace`` reads)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._file: IO[str] | None = path.open("a", encoding="utf-8")

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        with self._lock:
            if self._file is None:
                return SpanExportResult.FAILURE
            for span in spans:
                # to_json() is the SDK's own serialisation; compacted to a single line.
                self._file.write(json.dumps(json.loads(span.to_json())) + "\n")
            self._file.flush()
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        with self._lock:
            if self._file is not None:
                self._file.flush()
        return True


def configure_tracing(
    *,
    service_name: str = "setpoint",
    jsonl_path: Path | None = None,
    console: bool = False,
    exporters: Sequence[SpanExporter] = (),
    wrap: Callable[[SpanExporter], SpanExporter] | None = None,
) -> TracerProvider:
    """Build a ``TracerProvider`` with the requested exporters (not installed globally).

    OTLP export is added when ``OTEL_EXPORTER_OTLP_ENDPOINT`` or
    ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` is set and the OTLP exporter package is installed.
    ``wrap``, when given, wraps every exporter (the session passes PII redaction here, so no
    exporter sees a raw email, phone, card or IBAN).

    Example:
        >>> from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
        >>> provider = configure_tracing(exporters=[InMemorySpanExporter()])
    """
    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))

    def wrapped(exporter: SpanExporter) -> SpanExporter:
        return wrap(exporter) if wrap is not None else exporter

    # Synchronous export: a CLI run is short and must not lose its spans at exit.
    if jsonl_path is not None:
        provider.add_span_processor(SimpleSpanProcessor(wrapped(JsonLinesSpanExporter(jsonl_path))))
    if console:
        provider.add_span_processor(SimpleSpanProcessor(wrapped(ConsoleSpanExporter())))
    for exporter in exporters:
        provider.add_span_processor(SimpleSpanProcessor(wrapped(exporter)))
    if os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get(
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
    ):
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        except ImportError:  # pragma: no cover - optional dependency
            pass
        else:
            from opentelemetry.sdk.trace.export import BatchSpanProcessor

            provider.add_span_processor(BatchSpanProcessor(wrapped(OTLPSpanExporter())))
    return provider


def tracer_from(provider: trace.TracerProvider | None) -> Tracer:
    """The setpoint tracer of ``provider``, or of the global provider when None."""
    if provider is None:
        return trace.get_tracer(TRACER_NAME)
    return provider.get_tracer(TRACER_NAME)


def set_attributes(span: Span, attributes: Mapping[str, Any]) -> None:
    """Set attributes, skipping None and turning dicts into JSON (OTel takes only scalars and lists)."""
    for key, value in attributes.items():
        if value is None:
            continue
        if isinstance(value, dict):
            value = json.dumps(value, sort_keys=True)
        elif isinstance(value, (list, tuple)) and value and isinstance(value[0], dict):
            value = json.dumps(list(value), sort_keys=True)
        span.set_attribute(key, value)


@contextmanager
def node_span(tracer: Tracer, node: str, **attributes: Any) -> Iterator[Span]:
    """A span for one graph node, named ``node <name>`` and tagged ``setpoint.node``."""
    with tracer.start_as_current_span(f"node {node}") as span:
        set_attributes(span, {ATTR.NODE: node, **attributes})
        yield span


@contextmanager
def retrieval_span(tracer: Tracer, data_source: str, top_k: int) -> Iterator[Span]:
    """A GenAI ``retrieval`` span named ``retrieval <data_source>``, its ``error.type`` set on failure.

    Its kind is CLIENT: the passage store answers from another process.

    Example:
        >>> from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
        >>> exporter = InMemorySpanExporter()
        >>> tracer = tracer_from(configure_tracing(exporters=[exporter]))
        >>> with retrieval_span(tracer, "SetpointPassages", 3):
        ...     pass
        >>> span = exporter.get_finished_spans()[0]
        >>> span.name, span.attributes["gen_ai.operation.name"], span.attributes["gen_ai.request.top_k"]
        ('retrieval SetpointPassages', 'retrieval', 3)
    """
    with tracer.start_as_current_span(f"retrieval {data_source}", kind=SpanKind.CLIENT) as span:
        set_attributes(
            span,
            {
                ATTR.OPERATION: "retrieval",
                ATTR.DATA_SOURCE: data_source,
                ATTR.REQUEST_TOP_K: top_k,
                ATTR.RETRIEVAL_TOP_K: top_k,
            },
        )
        try:
            yield span
        except Exception as exc:
            span.set_attribute(ATTR.ERROR_TYPE, type(exc).__qualname__)
            raise


def guardrail_results(
    span: Span, verdicts: Iterable[Mapping[str, Any]], *, policy_id: str, source: str
) -> None:
    """One ``gen_ai.guardrail.result`` event on ``span`` per policy verdict.

    A verdict is ``{"check", "allowed", "reason"?, "score"?}`` (``Verdict.to_dict()``): the
    check is the rule, ``allowed`` the native result. What a check matched stays out of
    the event (it is user text); the reason code says why.

    Example:
        >>> from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
        >>> exporter = InMemorySpanExporter()
        >>> tracer = tracer_from(configure_tracing(exporters=[exporter]))
        >>> with tracer.start_as_current_span("node guard_input") as span:
        ...     guardrail_results(span, [{"check": "topic", "allowed": False, "reason": "refused_topic:weapons"}],
        ...                       policy_id="default policy", source="input")
        >>> event = exporter.get_finished_spans()[0].events[0]
        >>> event.name, event.attributes["gen_ai.guardrail.result.value"]
        ('gen_ai.guardrail.result', 'false')
    """
    for verdict in verdicts:
        attributes = {
            ATTR.GUARDRAIL_COMPONENT: "setpoint policy",
            ATTR.GUARDRAIL_POLICY_ID: policy_id,
            ATTR.GUARDRAIL_RULE_ID: str(verdict["check"]),
            ATTR.GUARDRAIL_SOURCE: source,
            ATTR.GUARDRAIL_RESULT_TYPE: "allowed",
            ATTR.GUARDRAIL_RESULT_VALUE: "true" if verdict["allowed"] else "false",
            ATTR.GUARDRAIL_RESULT_REASON: verdict.get("reason") or None,
            ATTR.GUARDRAIL_RISK_SCORE: verdict.get("score"),
        }
        span.add_event(
            ATTR.GUARDRAIL_RESULT, {k: v for k, v in attributes.items() if v is not None}
        )
