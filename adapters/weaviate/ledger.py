"""The ledger of cut-short writes: passages sent to Weaviate without an answer, kept on disk until written again."""

from __future__ import annotations

import contextlib
import hashlib
import json
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from setpoint.adapters.weaviate.connection import short_error
from setpoint.errors import IngestError

if TYPE_CHECKING:
    from setpoint.adapters.weaviate.store import WeaviateStore

__all__ = ["UnfinishedWrites"]

_LEDGER_LOCK = threading.Lock()


class UnfinishedWrites:
    """Passages whose batch went to Weaviate without an answer, kept on disk until written again.

    Weaviate stores an object in steps: its row, then one inverted index after another,
    then the vector index. A batch cut short (the shard turning read-only as the disk
    fills, the server killed) can leave an object stored but only partly indexed: missing
    from a filter, from keyword search or from vector search. Sending the same object
    again does not mend it, because Weaviate sees an unchanged vector and rewrites only
    the properties that changed. So each batch's passages are recorded here before it is
    sent and struck off once Weaviate has acknowledged them; the next ingest of the same
    source deletes the recorded chunks by id, which removes every trace of them, and
    writes those passages afresh.

    One JSON file per (Weaviate, collection) under the cache dir:
    ``{source: {passage id: chunks sent}}``.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    @classmethod
    def of(cls, store: WeaviateStore) -> UnfinishedWrites:
        """The ledger of ``store``'s collection (the embedded server is known by its data dir)."""
        from setpoint.settings import default_cache_dir

        where = str(store.server.data_dir.resolve()) if store.server is not None else store.url
        key = hashlib.sha256(f"{where}\n{store.collection_name}".encode()).hexdigest()[:20]
        return cls(default_cache_dir() / "unfinished-writes" / f"{key}.json")

    def pending(self, source: str) -> dict[str, int]:
        """``{passage id: chunks sent}`` of ``source`` still unacknowledged."""
        with self._locked():
            return dict(self._read().get(source, {}))

    def record(self, source: str, passages: dict[str, int]) -> None:
        """Note ``passages`` (id → chunks about to be sent) before their batch goes out."""

        def add(known: dict[str, int]) -> None:
            # A passage cut short twice keeps the larger chunk count: all of them get deleted.
            for pid, n in passages.items():
                known[pid] = max(n, known.get(pid, 0))

        if passages:
            self._update(source, add)

    def settle(self, source: str, passage_ids: Iterable[str]) -> None:
        """Strike off passages Weaviate acknowledged."""
        done = list(passage_ids)
        if done:
            self._update(source, lambda known: [known.pop(pid, None) for pid in done])

    def clear(self) -> None:
        """Forget everything (the collection was deleted)."""
        with self._locked():
            self.path.unlink(missing_ok=True)

    def _update(self, source: str, change: Callable[[dict[str, int]], object]) -> None:
        with self._locked():
            ledger = self._read()
            known = ledger.setdefault(source, {})
            change(known)
            if not known:
                del ledger[source]
            try:
                if ledger:
                    from setpoint.adapters.domain.json_file import write_json

                    write_json(self.path, ledger)
                else:
                    self.path.unlink(missing_ok=True)
            except OSError as exc:
                raise IngestError(
                    f"cannot keep the ingest ledger {self.path} ({exc.strerror or exc}); "
                    "make SETPOINT_CACHE_DIR writable and run the ingest again"
                ) from exc

    def _read(self) -> dict[str, dict[str, int]]:
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
            return {
                str(source): {str(pid): int(n) for pid, n in passages.items()}
                for source, passages in raw.items()
            }
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, TypeError, AttributeError) as exc:
            raise IngestError(
                f"the ingest ledger {self.path} is unreadable ({short_error(exc)}); it lists writes "
                "that were cut short, so delete it and rebuild the collection with "
                "`setpoint ingest --recreate …`"
            ) from exc

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """One writer at a time, across threads and processes (flock where the OS has it)."""
        with _LEDGER_LOCK:
            try:
                import fcntl
            except ImportError:  # pragma: no cover - not POSIX
                yield
                return
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                handle = open(self.path.parent / ".lock", "a")  # noqa: SIM115  (one for all)
            except OSError as exc:
                raise IngestError(
                    f"cannot keep the ingest ledger in {self.path.parent} "
                    f"({exc.strerror or exc}); make SETPOINT_CACHE_DIR writable"
                ) from exc
            with handle:
                fcntl.flock(handle, fcntl.LOCK_EX)
                yield
