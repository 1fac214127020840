"""Warm start: a ``setpoint serve`` on this machine answers ``setpoint ask`` without a cold start.

``setpoint serve`` writes a discovery record, ``<cache>/servers/<port>.json`` (its URL, pid,
collection and a fingerprint of its settings), once its API answers, and removes it on
exit. ``setpoint ask`` looks for a record whose fingerprint equals its own settings', whose
process is alive and whose ``/ok`` answers within ``HEALTH_TIMEOUT_S``; it then sends the
question as one thread-less run (``POST /runs/wait``) with the run context it would have
used in process. Anything else (no record, other settings, a dead or slow server, an HTTP
or protocol error) returns None and the caller answers cold, as before.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from setpoint.errors import SetpointError
from setpoint.events import AskResult
from setpoint.settings import Settings

__all__ = [
    "GRAPH_ID",
    "HEALTH_TIMEOUT_S",
    "ask_through_server",
    "daemon_disabled",
    "find_server",
    "remove_record",
    "server_healthy",
    "settings_fingerprint",
    "write_record",
]

#: The assistant (graph) id ``setpoint serve`` serves.
GRAPH_ID = "setpoint"
#: How long ``ask`` waits for a server's health answer before it starts cold instead.
HEALTH_TIMEOUT_S = 1.0
#: Longest silence while a run is on the server; it sends a blank line every 5 s while busy.
RUN_READ_TIMEOUT_S = 60.0
#: Settings that travel with each run (or that the server sets itself, or that only change
#: how generations share the model, never an answer), so they may differ.
PER_RUN_FIELDS = frozenset(
    {"setpoint", "review", "trace_console", "weaviate_auth", "batching", "max_batch", "max_queue"}
)

# Loopback only: a proxy from the environment (http_proxy) must not see these requests.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def daemon_disabled() -> bool:
    """True when ``SETPOINT_NO_DAEMON`` is set to a true value (1, true, yes, on)."""
    return os.environ.get("SETPOINT_NO_DAEMON", "").strip().lower() in {"1", "true", "yes", "on"}


def settings_fingerprint(settings: Settings) -> str:
    """A short hash of the settings that change answers; equal hashes, same index and models.

    Example:
        >>> a = Settings(collection="A")
        >>> settings_fingerprint(a) == settings_fingerprint(a.replace(setpoint=9.0))
        True
        >>> settings_fingerprint(a) == settings_fingerprint(a.replace(collection="B"))
        False
    """
    fields = sorted(
        (f.name, repr(getattr(settings, f.name)))
        for f in dataclasses.fields(settings)
        if f.name not in PER_RUN_FIELDS
    )
    return hashlib.sha256(repr(fields).encode()).hexdigest()[:24]


def _records_dir(settings: Settings) -> Path:
    return settings.cache_dir / "servers"


def write_record(settings: Settings, url: str, port: int) -> Path:
    """Announce a healthy server at ``url`` for clients with ``settings``; returns the record."""
    from setpoint.adapters.domain.json_file import write_json

    record = {
        "url": url,
        "pid": os.getpid(),
        "collection": settings.collection,
        "settings": settings_fingerprint(settings),
        "graph": GRAPH_ID,
        "started": time.time(),
    }
    return write_json(_records_dir(settings) / f"{port}.json", record, indent=2)


def remove_record(path: Path) -> None:
    """Withdraw a record this process wrote (another server may have taken the port since)."""
    try:
        if json.loads(path.read_text(encoding="utf-8")).get("pid") == os.getpid():
            path.unlink()
    except (OSError, ValueError):
        pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def server_healthy(url: str) -> bool:
    """True when ``url``'s ``/ok`` answers 200 within ``HEALTH_TIMEOUT_S``."""
    try:
        with _OPENER.open(f"{url}/ok", timeout=HEALTH_TIMEOUT_S) as response:
            return bool(response.status == 200)
    except (OSError, ValueError):
        return False


def find_server(settings: Settings) -> str | None:
    """The URL of a live, healthy ``setpoint serve`` with these settings, or None."""
    wanted = settings_fingerprint(settings)
    try:
        paths = sorted(_records_dir(settings).glob("*.json"))
    except OSError:
        return None
    for path in paths:
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
            url, pid = str(record["url"]), int(record["pid"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if not _alive(pid):
            path.unlink(missing_ok=True)  # its server died without cleaning up
            continue
        if record.get("settings") == wanted and server_healthy(url):
            return url
    return None


def _run_on_server(url: str, payload: dict[str, Any]) -> dict[str, Any] | None:
    try:
        # JSON has no inf or nan (``--setpoint inf``): such a run stays in process.
        data = json.dumps(payload, allow_nan=False).encode()
        request = urllib.request.Request(
            f"{url}/runs/wait", data=data, headers={"Content-Type": "application/json"}
        )
        with _OPENER.open(request, timeout=RUN_READ_TIMEOUT_S) as response:
            body = json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        if exc.code == 503 and exc.headers.get("Retry-After"):
            # The server's generator is full: asking cold beside it would only add load.
            return {"__error__": _busy_body(exc)}
        return None
    except (OSError, ValueError):
        return None
    return body if isinstance(body, dict) else None


def _busy_body(exc: urllib.error.HTTPError) -> dict[str, Any]:
    """The 503's ``{"error": "BusyError", "message": ...}``, whatever its body held."""
    try:
        body = json.loads(exc.read() or b"{}")
    except (OSError, ValueError):
        body = {}
    message = body.get("message") if isinstance(body, dict) else None
    retry = exc.headers.get("Retry-After", "1")
    return {"error": "BusyError", "message": message or f"server busy; retry after {retry} s"}


def _setpoint_error(error: Any) -> SetpointError | None:
    """The run's error as the user would have seen it in process, if it is one of ours."""
    import setpoint.errors as errors

    if not isinstance(error, dict) or error.get("error") not in errors.__all__:
        return None
    kind = getattr(errors, str(error["error"]))
    return kind(str(error.get("message", ""))) if isinstance(kind, type) else None


def ask_through_server(
    settings: Settings, question: str, context: dict[str, Any]
) -> AskResult | None:
    """Answer ``question`` on a running server; its ``AskResult``, or None (then ask cold).

    ``context`` holds the run-context fields (``Setpoint.context(**context)`` in process).

    Raises:
        SetpointError: the run failed on the server with one of setpoint's errors (a bad
            question, Weaviate down on the retrieve route): the same error a cold run gives.
    """
    url = find_server(settings)
    if url is None:
        return None
    started = time.perf_counter()
    state = _run_on_server(
        url,
        {"assistant_id": GRAPH_ID, "input": {"question": question}, "context": context},
    )
    if state is None or "__interrupt__" in state:
        return None
    if "__error__" in state:
        error = _setpoint_error(state["__error__"])
        if error is None:
            return None
        raise error
    return AskResult.from_state(
        state,
        question=question,
        setpoint=context["setpoint"],
        seconds=time.perf_counter() - started,
    )
