"""Sending one batch of objects to Weaviate, retrying the per-object failures that may pass."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from setpoint.adapters.weaviate.connection import short_error
from setpoint.errors import IngestError

if TYPE_CHECKING:
    from weaviate.collections import Collection

__all__ = ["BatchWriter", "WritePipeline", "is_transient"]

_T = TypeVar("_T")

# Per-object errors worth another try: the server was busy, not the object wrong.
_TRANSIENT = (
    "timeout",
    "deadline",
    "unavailable",
    "temporar",
    "try again",
    "too many",
    "resource exhausted",
    "connection reset",
    "context canceled",
    # A cluster node whose peer just died: "rpc error: code = Canceled desc = grpc: the client
    # connection is closing" (the write went nowhere; at QUORUM a retry lands on live replicas).
    "code = canceled",
    "connection is closing",
    # The same loss seen from the HTTP/2 side: "Query call with protocol GRPC batch failed with
    # message Received RST_STREAM with error code 8" (CANCEL). Writes are upserts by a UUID
    # derived from the passage, so sending the batch again is safe.
    "rst_stream",
)
_RETRY_DELAYS_S = (0.5, 1.0, 2.0)


@contextlib.contextmanager
def _quiet_client_log() -> Iterator[None]:
    """weaviate-client logs every failed object at ERROR; we report them ourselves, once."""
    log = logging.getLogger("weaviate-client")
    level = log.level
    log.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        log.setLevel(level)


class BatchWriter:
    """Writes the objects of one batch with Weaviate's gRPC batch endpoint, retrying what may pass.

    Args:
        collection: Where the objects go.
        not_ready: Why Weaviate cannot answer now, or None (asked when a whole request
            fails, to stop rather than retry against a server that is gone).
    """

    def __init__(
        self, collection: Collection[Any, Any], not_ready: Callable[[], str | None]
    ) -> None:
        self.collection = collection
        self.not_ready = not_ready

    def write(self, objects: list[Any]) -> dict[int, str]:
        """Insert ``objects``; returns ``{index: reason}`` for the ones that stayed refused."""
        errors: dict[int, str] = {}
        pending = list(range(len(objects)))
        for attempt in range(len(_RETRY_DELAYS_S) + 1):
            refused = self._send([objects[i] for i in pending])
            shard_refusal = next((r for r in refused.values() if "read-only" in r.lower()), None)
            if shard_refusal is not None:
                # A read-only shard refuses a whole batch, but Weaviate (1.39) reports that on
                # the batch's first object only and acknowledges the rest, unwritten: trust
                # none of the batch, and stop before every later batch meets the same fate.
                raise IngestError(
                    f"Weaviate refused the write: {shard_refusal} (a shard turns read-only when "
                    "its disk passes DISK_USE_READONLY_PERCENTAGE, 90% by default); passages "
                    "written before this point are stored: free space, then run the same "
                    "ingest again to finish"
                )
            now_failed = {pending[j]: reason for j, reason in refused.items()}
            for index in pending:
                errors.pop(index, None)
            errors.update(now_failed)
            pending = sorted(i for i, r in now_failed.items() if is_transient(r))
            if not pending or attempt == len(_RETRY_DELAYS_S):
                break
            time.sleep(_RETRY_DELAYS_S[attempt])
        return errors

    def _send(self, objects: list[Any]) -> dict[int, str]:
        from weaviate.exceptions import WeaviateBaseError, WeaviateInsertManyAllFailedError

        try:
            with _quiet_client_log():
                result = self.collection.data.insert_many(objects)
            return {index: short_error(error.message) for index, error in result.errors.items()}
        except WeaviateInsertManyAllFailedError as exc:
            if len(objects) == 1:
                return {0: _reason_of_all_failed(exc)}
            # Every object failed, for reasons the exception lumps together: ask one by one.
            return {
                index: reason
                for index, obj in enumerate(objects)
                for reason in self._send([obj]).values()
            }
        except WeaviateBaseError as exc:
            # The request itself failed. If the server is gone, stop: retrying cannot help.
            down = self.not_ready()
            if down is not None:
                raise IngestError(
                    f"{down}; passages written before this point are stored, "
                    "run the same ingest again to finish"
                ) from exc
            reason = short_error(exc)
            return dict.fromkeys(range(len(objects)), reason)


class WritePipeline(Generic[_T]):
    """Runs each batch's write in one background thread while the caller embeds the next.

    One write at a time, in order: ``submit`` first waits for the write before it (and
    raises what that raised), so at most one embedded batch waits in memory. Each
    write's result is handed to ``done`` in the caller's thread, so the caller's report
    is never touched by two threads. Leaving the ``with`` block waits for the last write,
    also when the caller stops on an error or Ctrl-C: a batch sent is always settled.
    Without ``overlap`` every write runs in the caller's thread at once.

    Example:
        >>> seen = []
        >>> with WritePipeline(overlap=True) as pipeline:
        ...     for n in range(3):
        ...         pipeline.submit(lambda n=n: n * 10, seen.append)
        >>> seen
        [0, 10, 20]
    """

    def __init__(self, overlap: bool = True) -> None:
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="ingest-write") if overlap else None
        self._pending: tuple[Future[_T], Callable[[_T], object]] | None = None

    def submit(self, write: Callable[[], _T], done: Callable[[_T], object]) -> None:
        """Wait for the write before, then start ``write``; ``done`` gets its result later."""
        self.wait()
        if self._pool is None:
            done(write())
            return
        self._pending = (self._pool.submit(write), done)

    def wait(self) -> None:
        """Wait for the write in flight, if any; hand its result to its ``done``."""
        pending, self._pending = self._pending, None
        if pending is not None:
            future, done = pending
            done(future.result())

    def __enter__(self) -> WritePipeline[_T]:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if exc is None:
                self.wait()
            elif self._pending is not None:
                # The caller's error is the one to report; this write only has to finish.
                with contextlib.suppress(Exception):
                    self._pending[0].result()
                self._pending = None
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=True)


def _reason_of_all_failed(exc: BaseException) -> str:
    text = str(exc)
    # "Every object failed during insertion. Here is the set of all errors: <reason>"
    marker = "Here is the set of all errors:"
    if marker in text:
        text = text.split(marker, 1)[1]
    return short_error(text)


def is_transient(reason: str) -> bool:
    """Whether a per-object write failure is worth another try (the server was busy, not the object wrong).

    Example:
        >>> is_transient("context deadline exceeded"), is_transient("store is read-only")
        (True, False)
    """
    lowered = reason.lower()
    return any(word in lowered for word in _TRANSIENT)
