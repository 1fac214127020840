"""The public entry point: a ``Setpoint`` session that owns the graph, its resources and tracing."""

from __future__ import annotations

import time
import uuid
from contextlib import ExitStack
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
    #: The run's thread in the checkpointer (what ``setpoint review`` resumes).
    thread_id: str | None = None
    #: For ``status == "pending_review"``: the interrupt payload a reviewer sees; after a
    #: review: the reviewer's decision.
    review: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def calibrated_context(path: Path) -> dict[str, Any]:
    """The context fields a ``calibration.json`` sets: knowledge adapter, entropy setpoint, probe and its setpoint."""
    import json

    from setpoint.errors import ConfigError

    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"cannot read calibration file {path}: {exc}; run `setpoint calibrate`"
        ) from None
    fields: dict[str, Any] = {}
    if record.get("adapter"):
        fields["adapter"] = record["adapter"]
    if record.get("entropy_setpoint") is not None:
        fields["setpoint"] = float(record["entropy_setpoint"])
        for name in ("warmup_steps", "consecutive_steps"):
            if record.get(f"thermostat_{name}") is not None:
                fields[name] = int(record[f"thermostat_{name}"])
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
        checkpointer: Any = None,
    ) -> None:
        from setpoint.agents.resources import Resources
        from setpoint.graphs.graph import build_graph
        from setpoint.tools.pii import RedactingSpanExporter

        self.settings = settings or Settings.from_env()
        self._owns_provider = tracer_provider is None
        self.tracer_provider = tracer_provider or configure_tracing(
            jsonl_path=self.settings.trace_file,
            console=self.settings.trace_console,
            wrap=RedactingSpanExporter,
        )
        self.resources = resources or Resources(
            settings=self.settings, tracer_provider=self.tracer_provider
        )
        self._exit = ExitStack()
        if checkpointer is None and (self.settings.review or self.settings.checkpoint_url):
            from setpoint.adapters.checkpoints import open_checkpointer

            checkpointer = self._exit.enter_context(open_checkpointer(self.settings.checkpoints))
        self.checkpointer = checkpointer
        self.graph = build_graph(self.resources, checkpointer=checkpointer)

    def context(self, **overrides: Any) -> Context:
        """A run context from the settings' setpoint with ``overrides`` applied."""
        from setpoint.graphs.context import Context

        base = Context(setpoint=self.settings.setpoint, review=self.settings.review)
        if self.settings.calibration_file is not None:
            base = replace(base, **calibrated_context(self.settings.calibration_file))
        return replace(base, **overrides)

    def ask(
        self, question: str, *, context: Context | None = None, thread_id: str | None = None
    ) -> AskResult:
        """Run one question through the graph inside a root ``invoke_agent`` span.

        With review on, an escalated run comes back with ``status == "pending_review"``, its
        ``thread_id`` and the reviewer's payload in ``review``; ``resume`` finishes it.
        """
        ctx = context or self.context()
        if ctx.review and self.checkpointer is None:
            from setpoint.errors import ConfigError

            raise ConfigError(
                "review needs a checkpointer: set SETPOINT_REVIEW=true (SQLite by default) or "
                "SETPOINT_CHECKPOINT_URL, or pass checkpointer= to Setpoint"
            )
        return self._run({"question": question}, ctx, thread_id or uuid.uuid4().hex)

    def _run(self, graph_input: Any, ctx: Context, conversation: str) -> AskResult:
        tracer = tracer_from(self.tracer_provider)
        started = time.perf_counter()
        question = graph_input.get("question", "") if isinstance(graph_input, dict) else ""
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
            state = self.graph.invoke(graph_input, config=config, context=ctx)
            interrupts = state.get("__interrupt__") or ()
            if interrupts:
                # Paused in escalate: the output holds the state so far, the payload is the interrupt's.
                snapshot = self.graph.get_state(config)
                state = {**snapshot.values, "status": "pending_review", "route": "escalate"}
                state["review"] = interrupts[0].value
                state["reason"] = interrupts[0].value.get("reason", state.get("reason", ""))
                state["answer"] = ""
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
                    "setpoint.status": state.get("status"),
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
            thread_id=conversation if self.checkpointer is not None else None,
            review=state.get("review") or None,
        )

    def pending_reviews(self) -> list[dict[str, Any]]:
        """Paused runs in the checkpointer, newest first: ``{"thread_id", "created_at", **payload}``."""
        if self.checkpointer is None:
            return []
        # Collect the threads first: SqliteSaver holds its lock while list() iterates, and
        # get_state inside the loop would wait for that lock forever.
        threads = list(
            dict.fromkeys(
                str(item.config["configurable"]["thread_id"])
                for item in self.checkpointer.list(None)
            )
        )
        pending: list[dict[str, Any]] = []
        for thread in threads:
            snapshot = self.graph.get_state({"configurable": {"thread_id": thread}})
            if snapshot.interrupts:
                payload = snapshot.interrupts[0].value
                pending.append({"thread_id": thread, "created_at": snapshot.created_at, **payload})
        return pending

    def resume(self, thread_id: str, decision: Any, *, context: Context | None = None) -> AskResult:
        """Finish a paused run with a reviewer's decision (see ``parse_review`` for its forms).

        Raises:
            InputError: no run is paused on ``thread_id``, or the decision is malformed.
        """
        from langgraph.types import Command

        from setpoint.agents.escalate import parse_review
        from setpoint.errors import InputError

        parsed = parse_review(decision)
        snapshot = (
            self.graph.get_state({"configurable": {"thread_id": thread_id}})
            if self.checkpointer is not None
            else None
        )
        if snapshot is None or not snapshot.interrupts:
            raise InputError(
                f"no run is waiting for review on thread {thread_id!r}; list them with `setpoint review`"
            )
        ctx = replace(context or self.context(), review=True)
        return self._run(Command(resume=parsed.to_dict()), ctx, thread_id)

    def ingest(
        self,
        path: Path,
        *,
        progress: bool = True,
        sync: bool = False,
        chunking: Any = None,
        batch_size: int = 64,
    ) -> Any:
        """Ingest a passage file (JSONL, Markdown, text) or folder; returns the ``IngestReport``.

        Re-ingesting writes only what changed; ``sync`` (folders) also deletes passages
        whose file or line is gone. ``chunking`` is a ``ChunkPolicy`` (default: 180 words,
        30 overlap). See :func:`setpoint.adapters.weaviate.ingestion.ingest_path`.
        """
        from setpoint.adapters.weaviate.ingestion import ingest_path

        return ingest_path(
            self.resources.store(),
            Path(path),
            sync=sync,
            progress=progress,
            chunking=chunking,
            batch_size=batch_size,
        )

    def delete_passages(self, passage_ids: list[str], *, source: str | None = None) -> Any:
        """Delete passages by id (in ``source`` only, if given); returns an ``IngestReport``."""
        from setpoint.adapters.weaviate.ingestion import IngestReport

        started = time.perf_counter()
        report = IngestReport(source=source or "")
        report.deleted = self.resources.store().delete(passage_ids, source=source)
        report.seconds = time.perf_counter() - started
        return report

    def close(self) -> None:
        self.resources.close()
        self._exit.close()
        if self._owns_provider:
            self.tracer_provider.shutdown()

    def __enter__(self) -> Setpoint:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
