"""The public entry point: a ``Setpoint`` session that owns the graph, its resources and tracing."""

from __future__ import annotations

import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from setpoint.events import AskResult, ResultEvent, StreamEvent, events_from_chunk
from setpoint.settings import INGEST_BATCH, Settings
from setpoint.tracing import ATTR, configure_tracing, set_attributes, tracer_from

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Span

    from setpoint.agents.resources import Resources
    from setpoint.graphs.context import Context

__all__ = ["DURABILITY", "AskResult", "Setpoint", "StreamEvent"]

#: When a checkpointer is attached, each step's checkpoint is written before the next step
#: starts: a process killed mid-run resumes from its last finished node (RELIABILITY.md).
DURABILITY: Literal["sync"] = "sync"


@dataclass
class _Run:
    """One run's input and what its stream has shown so far (shared by ``stream`` and ``astream``)."""

    graph_input: Any
    context: Context
    thread_id: str
    started: float = field(default_factory=time.perf_counter)
    state: dict[str, Any] = field(default_factory=dict)
    interrupts: tuple[Any, ...] = ()

    @property
    def config(self) -> dict[str, Any]:
        return {"configurable": {"thread_id": self.thread_id}}

    def read(self, mode: str, chunk: Any) -> list[StreamEvent]:
        """Keep the latest state and any interrupt; return the chunk's events."""
        if mode == "values":
            self.state = chunk
        elif mode == "updates" and "__interrupt__" in chunk:
            self.interrupts = tuple(chunk["__interrupt__"])
        return events_from_chunk(mode, chunk)


def _final(events: Iterator[StreamEvent]) -> AskResult:
    """Run a stream to its end; its last event holds the result."""
    last = deque(events, maxlen=1)
    if not last or not isinstance(last[0], ResultEvent):
        raise RuntimeError("a run's stream ended without its result")
    return last[0].result


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

        base = Context(**self.settings.thermostat, review=self.settings.review)  # type: ignore[arg-type]
        if self.settings.calibration_file is not None:
            base = replace(base, **calibrated_context(self.settings.calibration_file))
        return replace(base, **overrides)

    def ask(
        self, question: str, *, context: Context | None = None, thread_id: str | None = None
    ) -> AskResult:
        """Answer one question: one graph run, one trace under a root ``invoke_agent`` span.

        With review on, an escalated run comes back with ``status == "pending_review"``, its
        ``thread_id`` and the reviewer's payload in ``review``; ``resume`` finishes it.

        Args:
            question: The question, as a user typed it.
            context: The run's settings (setpoints, budgets); ``self.context()`` when None.
            thread_id: The run's thread in the checkpointer; a fresh one when None.

        Returns:
            The answer (or refusal) with its route, reason, entropies, citations and trace id.

        Raises:
            InputError: The question is empty, too long or not text.
            ConfigError: Review is on and the session has no checkpointer.

        Example:
            >>> with Setpoint() as sp:  # doctest: +SKIP
            ...     result = sp.ask("Where did Super Bowl 50 take place?")
            ...     print(result.route, result.answer)
            retrieve Levi's Stadium
        """
        return _final(self.stream(question, context=context, thread_id=thread_id))

    def stream(
        self, question: str, *, context: Context | None = None, thread_id: str | None = None
    ) -> Iterator[StreamEvent]:
        """Answer one question as ``ask`` does, yielding what happens while it runs.

        The events arrive in the order the graph makes them: a ``NodeEvent`` when a node
        finishes (with the route and reason it set), a ``TokenEvent`` for each decoded token
        (with its entropy and the thermostat's smoothed value), a ``ThermostatEvent`` when the
        thermostat fires, and last a ``ResultEvent`` holding the same ``AskResult`` that
        ``ask`` returns. The run is inside the same root span as ``ask``'s; consume the
        iterator from one thread (the span is current between its steps).

        Args:
            question: The question, as a user typed it.
            context: The run's settings; ``self.context()`` when None.
            thread_id: The run's thread in the checkpointer; a fresh one when None.

        Returns:
            An iterator of ``StreamEvent``; the graph runs as it is consumed.

        Raises:
            ConfigError: Review is on and the session has no checkpointer (raised at once);
                the run's own errors (``InputError``, ``RetrievalError``) come from the iterator.

        Example:
            >>> from setpoint.events import ResultEvent, TokenEvent
            >>> with Setpoint() as sp:  # doctest: +SKIP
            ...     for event in sp.stream("Where did Super Bowl 50 take place?"):
            ...         if isinstance(event, TokenEvent):
            ...             print(event.token, round(event.entropy, 2))
            ...         elif isinstance(event, ResultEvent):
            ...             print(event.result.route)
        """
        return self._events(self._start({"question": question}, context, thread_id))

    def astream(
        self, question: str, *, context: Context | None = None, thread_id: str | None = None
    ) -> AsyncIterator[StreamEvent]:
        """The async twin of ``stream``: the same events, for an event loop (an SSE endpoint).

        Example:
            >>> from setpoint.events import ResultEvent
            >>> async def answer(sp: Setpoint) -> str:
            ...     async for event in sp.astream("Where did Super Bowl 50 take place?"):
            ...         if isinstance(event, ResultEvent):
            ...             return event.result.answer
            ...     raise AssertionError("a stream ends with its result")
        """
        return self._aevents(self._start({"question": question}, context, thread_id))

    def _start(self, graph_input: Any, context: Context | None, thread_id: str | None) -> _Run:
        ctx = context or self.context()
        if ctx.review and self.checkpointer is None:
            from setpoint.errors import ConfigError

            raise ConfigError(
                "review needs a checkpointer: set SETPOINT_REVIEW=true (SQLite by default) or "
                "SETPOINT_CHECKPOINT_URL, or pass checkpointer= to Setpoint"
            )
        return _Run(graph_input, ctx, thread_id or uuid.uuid4().hex)

    def _stream_args(self, run: _Run) -> dict[str, Any]:
        args: dict[str, Any] = {
            "input": run.graph_input,
            "config": run.config,
            "context": run.context,
            "stream_mode": ["values", "updates", "custom"],
        }
        if self.checkpointer is not None:
            # LangGraph warns when durability is given without a checkpointer.
            args["durability"] = DURABILITY
        return args

    def _events(self, run: _Run) -> Iterator[StreamEvent]:
        with self._root_span(run) as root:
            for mode, chunk in self.graph.stream(**self._stream_args(run)):
                yield from run.read(mode, chunk)
            result = self._result(root, run)
        # After the span has ended, so its final attributes are exported by the time a
        # caller holds the result.
        yield ResultEvent(result)

    async def _aevents(self, run: _Run) -> AsyncIterator[StreamEvent]:
        with self._root_span(run) as root:
            async for mode, chunk in self.graph.astream(**self._stream_args(run)):
                for event in run.read(mode, chunk):
                    yield event
            result = self._result(root, run)
        yield ResultEvent(result)

    @contextmanager
    def _root_span(self, run: _Run) -> Iterator[Span]:
        """The run's root span: current while the graph runs, so every node's span nests under it."""
        tracer = tracer_from(self.tracer_provider)
        with tracer.start_as_current_span("invoke_agent setpoint") as root:
            set_attributes(
                root,
                {
                    ATTR.OPERATION: "invoke_agent",
                    ATTR.AGENT_NAME: "setpoint",
                    ATTR.CONVERSATION: run.thread_id,
                    ATTR.SETPOINT: run.context.setpoint,
                },
            )
            yield root

    def _result(self, root: Span, run: _Run) -> AskResult:
        """The run's ``AskResult`` from its last state; also sets the root span's outcome."""
        state = run.state
        if run.interrupts:
            # Paused in escalate: the state so far is the checkpoint's, the payload the interrupt's.
            snapshot = self.graph.get_state(run.config)
            payload = run.interrupts[0].value
            state = {**snapshot.values, "status": "pending_review", "route": "escalate"}
            state.update(review=payload, reason=payload.get("reason", state.get("reason", "")))
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
        asked = run.graph_input.get("question") if isinstance(run.graph_input, dict) else None
        return AskResult.from_state(
            state,
            question=str(asked or ""),
            setpoint=run.context.setpoint,
            trace_file=str(self.settings.trace_file) if self._owns_provider else None,
            trace_id=format(root.get_span_context().trace_id, "032x"),
            seconds=time.perf_counter() - run.started,
            thread_id=run.thread_id if self.checkpointer is not None else None,
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
        return _final(self._events(_Run(Command(resume=parsed.to_dict()), ctx, thread_id)))

    def ingest(
        self,
        path: Path,
        *,
        progress: bool = True,
        sync: bool = False,
        chunking: Any = None,
        batch_size: int = INGEST_BATCH,
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
