"""``BusyAs503``: a waiting run that failed with BusyError answers 503 + Retry-After; nothing else changes."""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

import pytest

from setpoint.graphs.served_http import BusyAs503, busy_error

BUSY = {"error": "BusyError", "message": "generator busy: 1 rows decoding; retry after 2.4 s"}


def run_server_emitting(
    chunks: list[bytes], path: str, method: str = "POST"
) -> list[dict[str, Any]]:
    """Messages sent to the client when an upstream app streams ``chunks`` behind the middleware."""

    async def upstream(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for i, chunk in enumerate(chunks):
            await send(
                {"type": "http.response.body", "body": chunk, "more_body": i < len(chunks) - 1}
            )

    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        sent.append(dict(message))

    scope = {"type": "http", "method": method, "path": path, "headers": []}
    asyncio.run(BusyAs503(upstream)(scope, receive, send))
    return sent


@pytest.mark.parametrize("path", ["/runs/wait", "/threads/3f2a/runs/wait"])
def test_a_busy_run_becomes_503_with_retry_after(path: str) -> None:
    # The API sends newlines while the run waits, then the run's error.
    sent = run_server_emitting([b"\n", b"\n", json.dumps({"__error__": BUSY}).encode()], path)
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]
    assert sent[0]["status"] == 503
    headers = dict(sent[0]["headers"])
    assert (
        headers[b"retry-after"] == b"3"
    )  # 2.4 s rounded up: never earlier than the scheduler said
    assert json.loads(sent[1]["body"]) == BUSY
    assert int(headers[b"content-length"]) == len(sent[1]["body"])


def test_an_answer_and_other_errors_pass_unchanged() -> None:
    answer = [b"\n", json.dumps({"answer": "Denver", "status": "answered"}).encode()]
    sent = run_server_emitting(answer, "/runs/wait")
    assert sent[0]["status"] == 200 and b"".join(m.get("body", b"") for m in sent[1:]) == b"".join(
        answer
    )
    other = json.dumps({"__error__": {"error": "InputError", "message": "empty question"}}).encode()
    sent = run_server_emitting([other], "/runs/wait")
    assert sent[0]["status"] == 200 and sent[1]["body"] == other


def test_other_routes_stream_through_untouched() -> None:
    busy = json.dumps({"__error__": BUSY}).encode()
    chunks = [b"event: metadata\n\n", b"event: error\ndata: " + busy + b"\n\n"]
    sent = run_server_emitting(chunks, "/runs/stream")
    assert sent[0]["status"] == 200
    assert [m["body"] for m in sent[1:]] == chunks  # not held, not merged
    assert run_server_emitting([busy], "/runs/wait", method="GET")[0]["status"] == 200


def test_busy_error_reads_only_busy_payloads() -> None:
    assert busy_error(b"not json") is None
    assert busy_error(b"[1, 2]") is None
    assert busy_error(json.dumps({"__error__": {"error": "BusyError"}}).encode()) == (
        "generator busy; retry later",
        1,
    )


def test_the_lifespan_gives_every_admitted_run_a_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    # 20 runs admitted at once (``--n-jobs-per-worker 20``): 20 synchronous nodes must be
    # able to run together. asyncio's default pool (6 threads on two cores) would leave
    # 14 of them queued behind the barrier and the wait would time out.
    from setpoint.graphs.served_http import wide_executor

    runs = 20
    monkeypatch.setenv("N_JOBS_PER_WORKER", str(runs))
    barrier = threading.Barrier(runs, timeout=10)

    async def serve() -> list[int]:
        async with wide_executor(None):
            loop = asyncio.get_running_loop()
            return list(
                await asyncio.gather(
                    *(loop.run_in_executor(None, barrier.wait) for _ in range(runs))
                )
            )

    assert sorted(asyncio.run(serve())) == list(range(runs))
