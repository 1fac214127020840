"""The served graph's HTTP layer (``langgraph.json`` "http"): a full generator answers 503.

With batching on (``SETPOINT_BATCHING``), a run that finds every generation slot and queue
place taken fails with ``BusyError`` ("busy, retry after N s"). The LangGraph API reports a
failed run inside a 200 response (``{"__error__": {"error": ..., "message": ...}}``); an
HTTP client, a load balancer or a retrying SDK expects back-pressure as ``503 Service
Unavailable`` with ``Retry-After``. ``BusyAs503`` makes the waiting run endpoints
(``POST /runs/wait``, ``POST /threads/{id}/runs/wait``) say so; every other response passes
through untouched. Streaming endpoints have sent their 200 before the run fails, so there
the ``error`` event carries the same ``BusyError`` and message. The app's lifespan
(``wide_executor``) gives the server's thread pool one thread per run it admits, so every
concurrent run's synchronous nodes can reach the generator at once.

Starlette comes with the LangGraph API server (``langgraph-cli[inmem]``); this module is
loaded only by that server, never by ``import setpoint``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

__all__ = ["BusyAs503", "admitted_runs", "app", "busy_error", "wide_executor"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: The exception class name the scheduler raises (``setpoint.errors.BusyError``).
_BUSY = "BusyError"
#: The API server's own default for ``N_JOBS_PER_WORKER``.
_SERVER_DEFAULT_RUNS = 10


def busy_error(body: bytes) -> tuple[str, int] | None:
    """``(message, retry_after_s)`` when a run-wait body reports ``BusyError``, else None.

    Example:
        >>> busy_error(b'\\n{"__error__": {"error": "BusyError", "message": "busy; retry after 3 s"}}')
        ('busy; retry after 3 s', 3)
        >>> busy_error(b'{"answer": "Denver"}') is None
        True
    """
    try:
        payload = json.loads(body or b"null")
    except ValueError:
        return None
    error = payload.get("__error__") if isinstance(payload, dict) else None
    if not isinstance(error, dict) or error.get("error") != _BUSY:
        return None
    message = str(error.get("message") or "generator busy; retry later")
    return message, _retry_after(message)


def _retry_after(message: str) -> int:
    """The seconds named by the scheduler's "retry after N s" (1 when it names none)."""
    words = message.rsplit("retry after", 1)
    if len(words) == 2:
        number = words[1].strip().split(" ", 1)[0]
        try:
            return max(1, math.ceil(float(number)))
        except ValueError:
            pass
    return 1


class BusyAs503:
    """ASGI middleware: a waiting run that failed with ``BusyError`` becomes a 503.

    The body of ``.../runs/wait`` is held until the run ends (the LangGraph API sends
    newlines while it waits; they carry no data), then passed on unchanged, or replaced
    by ``503`` with ``Retry-After`` and ``{"error": "BusyError", "message": ...}``.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope.get("type") != "http"
            or scope.get("method") != "POST"
            or not str(scope.get("path", "")).rstrip("/").endswith("/runs/wait")
        ):
            await self.app(scope, receive, send)
            return
        start: Message | None = None
        chunks: list[bytes] = []

        async def hold(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
                return
            if message["type"] != "http.response.body":
                await send(message)
                return
            chunks.append(bytes(message.get("body", b"")))
            if message.get("more_body", False):
                return
            body = b"".join(chunks)
            busy = busy_error(body) if start is not None and start["status"] == 200 else None
            if busy is None:
                if start is not None:
                    await send(start)
                await send({"type": "http.response.body", "body": body})
                return
            text, seconds = busy
            out = json.dumps({"error": _BUSY, "message": text}).encode()
            await send(
                {
                    "type": "http.response.start",
                    "status": 503,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(out)).encode()),
                        (b"retry-after", str(seconds).encode()),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": out})

        await self.app(scope, receive, hold)


def admitted_runs(environ: Mapping[str, str] | None = None) -> int:
    """Runs the API server runs at once: its ``N_JOBS_PER_WORKER`` (set from ``--n-jobs-per-worker``).

    Example:
        >>> admitted_runs({"N_JOBS_PER_WORKER": "80"}), admitted_runs({})
        (80, 10)
    """
    value = (os.environ if environ is None else environ).get("N_JOBS_PER_WORKER", "")
    try:
        return max(1, int(value))
    except ValueError:
        return _SERVER_DEFAULT_RUNS


@contextlib.asynccontextmanager
async def wide_executor(app: Any) -> AsyncIterator[None]:
    """Lifespan: a thread for the synchronous nodes of every run the server runs at once.

    The API server runs a sync node with ``loop.run_in_executor(None, ...)``; asyncio's
    default pool has ``min(32, cores + 4)`` threads, 6 on two cores, so of 16 concurrent
    conversations only 6 were inside the graph and the batching scheduler never saw more
    than 6 rows. The loop's default pool gets one thread per run the server admits
    (``admitted_runs``: ``--n-jobs-per-worker``, which ``setpoint serve`` sets to ``SETPOINT_MAX_BATCH +
    SETPOINT_MAX_QUEUE``), so every admitted run reaches the generator, whose batch and
    queue limits then apply.
    """
    executor = ThreadPoolExecutor(max_workers=admitted_runs(), thread_name_prefix="setpoint-run")
    asyncio.get_running_loop().set_default_executor(executor)
    try:
        yield
    finally:
        executor.shutdown(wait=False, cancel_futures=True)


def _app() -> Any:
    from starlette.applications import Starlette
    from starlette.middleware import Middleware

    return Starlette(middleware=[Middleware(BusyAs503)], lifespan=wide_executor)


#: What ``langgraph.json`` names: no routes of its own, the middleware on every route, and
#: a lifespan that gives every admitted run a thread for its synchronous nodes.
app = _app()
