"""The public entry point: a ``Setpoint`` session that owns the graph, its resources and tracing."""

from __future__ import annotations

import time
import uuid
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from setpoint.settings import Settings
from setpoint.tracing import ATTR, configure_tracing, set_attributes, tracer_from

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

    from setpoint.agents.resources import Resources
    from setpoint.graphs.context import Context

__all__ = ["AskResult", "Setpoint"]


@dataclass(frozen=True)
class AskResult:
    """One answered (or refused) question, as the CLI prints it."""

    question: str
    answer: str
    status: str
    route: str
    reason: str
    probe_entropy: float | None
    answer_entropy: float | None
    setpoint: float
    retrieval_calls: int
    retrieval_unavailable: bool
    adapter: str | None
    citations: list[dict[str, Any]] = field(default_factory=list)
    dropped_passages: list[dict[str, Any]] = field(default_factory=list)
    trace_file: str | None = None
    trace_id: str | None = None
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def calibrated_context(path: Path) -> dict[str, Any]:
    """The context fields a ``calibration.json`` sets (probe path and probe setpoint)."""
    import json

    from setpoint.errors import ConfigError

    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read calibration file {path}: {exc}; run `setpoint calibrate`") from None
    fields: dict[str, Any] = {}
    if record.get("probe_path") and record.get("probe_setpoint") is not None:
        fields["probe_path"] = record["probe_path"]
        fields["probe_setpoint"] = float(record["probe_setpoint"])
    return fields


class Setpoint:
    """A reusable session: load once, ask many questions.

    Example:
        >>> with Setpoint() as sp:  # doctest: +SKIP
        ...     result = sp.ask("Where did Super Bowl 50 take place?")
        ...     print(result.route, result.answer, result.citations)
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        tracer_provider: TracerProvider | None = None,
        resources: Resources | None = None,
    ) -> None:
        from setpoint.agents.resources import Resources
        from setpoint.graphs.graph import build_graph

        self.settings = settings or Settings.from_env()
        self._owns_provider = tracer_provider is None
        self.tracer_provider = tracer_provider or configure_tracing(
            jsonl_path=self.settings.trace_file, console=self.settings.trace_console
        )
        self.resources = resources or Resources(
            settings=self.settings, tracer_provider=self.tracer_provider
        )
        self.graph = build_graph(self.resources)

    def context(self, **overrides: Any) -> Context:
        """A run context from the settings' setpoint with ``overrides`` applied."""
        from setpoint.graphs.context import Context

        base = Context(setpoint=self.settings.setpoint)
        if self.settings.calibration_file is not None:
            base = replace(base, **calibrated_context(self.settings.calibration_file))
        return replace(base, **overrides)

    def ask(
        self, question: str, *, context: Context | None = None, thread_id: str | None = None
    ) -> AskResult:
        """Run one question through the graph inside a root ``invoke_agent`` span."""
        ctx = context or self.context()
        tracer = tracer_from(self.tracer_provider)
        started = time.perf_counter()
        conversation = thread_id or uuid.uuid4().hex
        with tracer.start_as_current_span("invoke_agent setpoint") as root:
            set_attributes(
                root,
                {
                    ATTR.OPERATION: "invoke_agent",
                    ATTR.AGENT_NAME: "setpoint",
                    ATTR.CONVERSATION: conversation,
                    ATTR.SETPOINT: ctx.setpoint,
                },
            )
            config = {"configurable": {"thread_id": conversation}}
            state = self.graph.invoke({"question": question}, config=config, context=ctx)
            decision = state.get("decision") or {}
            set_attributes(
                root,
                {
                    ATTR.ROUTE: state.get("route"),
                    ATTR.REASON: state.get("reason"),
                    ATTR.RETRIEVAL_CALLS: state.get("retrieval_calls", 0),
                    ATTR.ENTROPY: decision.get("answer_entropy"),
                    ATTR.ADAPTER: decision.get("adapter"),
                    ATTR.RETRIEVAL_UNAVAILABLE: state.get("retrieval_unavailable"),
                },
            )
            trace_id = format(root.get_span_context().trace_id, "032x")
        return AskResult(
            question=state.get("question", question),
            answer=state.get("answer", ""),
            status=state.get("status", "answered"),
            route=state.get("route", ""),
            reason=state.get("reason", ""),
            probe_entropy=decision.get("probe_entropy"),
            answer_entropy=decision.get("answer_entropy"),
            setpoint=ctx.setpoint,
            retrieval_calls=int(state.get("retrieval_calls", 0)),
            retrieval_unavailable=bool(state.get("retrieval_unavailable")),
            adapter=decision.get("adapter"),
            citations=list(state.get("citations") or []),
            dropped_passages=list(state.get("dropped_passages") or []),
            trace_file=str(self.settings.trace_file) if self._owns_provider else None,
            trace_id=trace_id,
            seconds=time.perf_counter() - started,
        )

    def ingest(self, path: Path, *, progress: bool = True) -> Any:
        """Ingest a JSONL file of passages into the configured collection; returns the report."""
        from setpoint.adapters.corpus import read_jsonl

        records, bad_lines = read_jsonl(path)
        store = self.resources.store()
        store.ensure_collection()
        report = store.ingest(records, source=path.name, progress=progress)
        report.skipped_lines.extend(bad_lines)
        return report

    def close(self) -> None:
        self.resources.close()
        if self._owns_provider:
            self.tracer_provider.shutdown()

    def __enter__(self) -> Setpoint:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
