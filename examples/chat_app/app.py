"""A Starlette app that embeds the setpoint graph and streams each answer, its route and its entropy over SSE."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import math
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, StreamingResponse
from starlette.routing import Route

from setpoint.api import Setpoint
from setpoint.errors import SetpointError
from setpoint.events import ResultEvent
from setpoint.graphs.context import Context
from setpoint.settings import Settings

__all__ = ["create_app", "sse_event"]

PAGE = Path(__file__).with_name("index.html")
# The fields of the run's AskResult that reach the browser; the rest (entropies, dropped
# passages) is already on the page as tokens or stays on the server.
RESULT_FIELDS = (
    "answer",
    "status",
    "route",
    "reason",
    "citations",
    "retrieval_calls",
    "retrieval_unavailable",
    "setpoint",
    "trace_id",
)


def jsonable(value: Any) -> Any:
    """``value`` with non-finite floats as None: JSON has no Infinity, and setpoint=inf is common."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value


def sse_event(event: str, data: Any) -> str:
    """One Server-Sent Event frame (a single ``data:`` line: the JSON has no raw newlines)."""
    return f"event: {event}\ndata: {json.dumps(jsonable(data), ensure_ascii=False)}\n\n"


def parse_setpoint(raw: str | None, default: float, name: str = "setpoint") -> float:
    """A setpoint from the query string: a number of nats, or ``inf`` (never retrieve)."""
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SetpointError(
            f"{name} {raw!r} is not a number; use e.g. 1.6, or inf to never retrieve"
        ) from None
    if math.isnan(value) or value < 0:
        raise SetpointError(f"{name} {raw!r} must be zero or more nats")
    return value


class ChatService:
    """One ``Setpoint`` session shared by every request: its graph, resources and tracing.

    The session builds what an embedding app needs from ``SETPOINT_*`` settings: the
    resources, the compiled graph, the tracer provider (JSON-lines file, OTLP when
    configured, PII redaction on every exporter) and the default run context (calibrated
    probe, review). Each question is one ``Setpoint.astream`` run, relayed event by event.
    """

    def __init__(self, session: Setpoint | None = None) -> None:
        # Visitors ask at once: their answers are decoded in one batch (for_concurrent_runs).
        self.session = session or Setpoint(Settings.from_env().for_concurrent_runs())

    def context(self, setpoint: str | None = None, probe_setpoint: str | None = None) -> Context:
        """The session's run context, with the setpoints a visitor typed (blank keeps the default)."""
        base = self.session.context()
        return self.session.context(
            setpoint=parse_setpoint(setpoint, base.setpoint),
            probe_setpoint=parse_setpoint(probe_setpoint, base.probe_setpoint, "probe setpoint"),
        )

    def warm_up(self) -> None:
        """Load the model and connect to Weaviate in the background, so the first question is quick."""
        self.session.resources.warm_up_retrieval()
        asyncio.get_running_loop().run_in_executor(None, self._load_generator)

    def _load_generator(self) -> None:
        # A missing model is reported by the first question, where the user can read it.
        with contextlib.suppress(SetpointError):
            self.session.resources.generator()

    def close(self) -> None:
        self.session.close()  # also flushes the OTLP batch exporter, when one is configured

    async def run(self, question: str, context: Context, out: asyncio.Queue[str | None]) -> None:
        """Stream one run into ``out`` as SSE frames; ``Setpoint.astream`` holds its root span."""
        thread_id = uuid.uuid4().hex
        try:
            async for event in self.session.astream(question, context=context, thread_id=thread_id):
                if isinstance(event, ResultEvent):
                    frame = {key: getattr(event.result, key) for key in RESULT_FIELDS}
                    frame.update(thread_id=thread_id, seconds=round(event.result.seconds, 2))
                    await out.put(sse_event("result", frame))
                else:
                    await out.put(sse_event(event.kind, event.to_dict()))
        except SetpointError as exc:
            await out.put(sse_event("error", {"message": str(exc), "kind": type(exc).__name__}))
        except Exception as exc:  # the page must hear about it, not wait forever
            await out.put(
                sse_event(
                    "error", {"message": f"internal error: {exc}", "kind": type(exc).__name__}
                )
            )
        finally:
            await out.put(None)


def create_app(service: ChatService | None = None, *, warm_up: bool = True) -> Starlette:
    """The chat app; ``service`` defaults to one built from ``SETPOINT_*`` settings.

    Example:
        >>> app = create_app()  # doctest: +SKIP
        >>> import uvicorn; uvicorn.run(app, port=8000)  # doctest: +SKIP
    """
    state: dict[str, ChatService] = {}

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        state["service"] = service or ChatService()
        if warm_up:
            state["service"].warm_up()
        try:
            yield
        finally:
            state["service"].close()

    async def index(_request: Request) -> HTMLResponse:
        defaults = state["service"].context()
        page = PAGE.read_text(encoding="utf-8")
        for name, value in (
            ("__DEFAULT_SETPOINT__", defaults.setpoint),
            ("__DEFAULT_PROBE_SETPOINT__", defaults.probe_setpoint),
        ):
            page = page.replace(name, "inf" if math.isinf(value) else f"{value:g}")
        return HTMLResponse(page)

    async def health(_request: Request) -> JSONResponse:
        return JSONResponse({"ok": True})

    async def ask(request: Request) -> StreamingResponse:
        chat = state["service"]
        question = request.query_params.get("question", "")
        out: asyncio.Queue[str | None] = asyncio.Queue()
        try:
            context = chat.context(
                request.query_params.get("setpoint"), request.query_params.get("probe_setpoint")
            )
        except SetpointError as exc:
            await out.put(sse_event("error", {"message": str(exc), "kind": type(exc).__name__}))
            await out.put(None)
            task = None
        else:
            # The run gets its own task and a fresh copy of the context: its root span is
            # entered and left in that task, so a browser that goes away mid-answer cancels
            # the task without leaving a half-detached span in the response's context.
            task = asyncio.create_task(
                chat.run(question, context, out), context=contextvars.copy_context()
            )

        async def frames() -> AsyncIterator[str]:
            try:
                while (frame := await out.get()) is not None:
                    yield frame
            finally:
                if task is not None and not task.done():
                    task.cancel()

        headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
        return StreamingResponse(frames(), media_type="text/event-stream", headers=headers)

    routes = [
        Route("/", index),
        Route("/healthz", health),
        Route("/ask", ask),
    ]
    return Starlette(routes=routes, lifespan=lifespan)
