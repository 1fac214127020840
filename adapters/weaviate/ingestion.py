"""Writing passages into the store: change detection, batched writes with retries, folder sync."""

from __future__ import annotations

import contextlib
import hashlib
import json
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sized
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any

from setpoint.adapters.domain.chunking import ChunkPolicy, chunk_text
from setpoint.adapters.weaviate.batches import BatchWriter, WritePipeline
from setpoint.adapters.weaviate.ledger import UnfinishedWrites
from setpoint.adapters.weaviate.records import chunk_uuid
from setpoint.errors import IngestError, InputError, RetrievalError
from setpoint.settings import INGEST_BATCH

if TYPE_CHECKING:
    from setpoint.adapters.weaviate.corpus import PassageRecord
    from setpoint.adapters.weaviate.store import WeaviateStore

__all__ = [
    "IngestReport",
    "UnfinishedWrites",
    "embedding_text",
    "ingest_path",
    "passage_version",
    "write_passages",
]


@dataclass
class IngestReport:
    """What an ingest run did: every passage is counted once, nothing fails silently.

    ``added`` are passages new to the index, ``updated`` ones whose content (or chunking
    or embedder) changed, ``unchanged`` ones already stored as they are (no write at all).
    ``deleted`` lists ``(source, id)`` of passages removed (by ``--delete`` or a sync).
    ``failed`` holds ``(passage id, reason)`` for passages not written; ``skipped_lines``
    holds ``(line number, reason)`` for lines of a JSONL file that were unusable. A
    folder ingest keeps one report per file in ``parts`` and sums them.

    Example:
        >>> report = IngestReport(added=48, failed=[("p7", "vector length 5, expected 384")])
        >>> report.added + len(report.failed)
        49
    """

    added: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: list[tuple[str, str]] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    skipped_lines: list[tuple[int, str]] = field(default_factory=list)
    seconds: float = 0.0
    #: Chunks embedded and written (an updated passage rewrites all of its chunks).
    chunks_written: int = 0
    #: Time spent in the embedder, part of ``seconds``.
    embed_seconds: float = 0.0
    #: Passages (among added and updated) written afresh because an earlier ingest was cut
    #: short while writing them (see :class:`UnfinishedWrites`).
    repaired: int = 0
    source: str = ""
    parts: list[IngestReport] = field(default_factory=list)

    @property
    def passages(self) -> int:
        """Passages this run looked at (written, unchanged or failed)."""
        return self.added + self.updated + self.unchanged + len(self.failed)

    @property
    def ok(self) -> bool:
        """True when nothing failed and no line was skipped, in this report or its parts."""
        return not self.failed and not self.skipped_lines and all(p.ok for p in self.parts)

    def absorb(self, part: IngestReport) -> None:
        """Add ``part``'s counts to this report and keep it in ``parts``."""
        self.added += part.added
        self.updated += part.updated
        self.unchanged += part.unchanged
        self.deleted += part.deleted
        self.chunks_written += part.chunks_written
        self.embed_seconds += part.embed_seconds
        self.repaired += part.repaired
        self.parts.append(part)

    def summary(self) -> str:
        """One line: added, updated, unchanged, deleted, failed, time and rate."""
        failed = len(self.failed) + sum(len(p.failed) for p in self.parts)
        rate = self.passages_per_second()
        repaired = f" ({self.repaired} rewritten after a cut-short ingest)" if self.repaired else ""
        return (
            f"{self.added} added, {self.updated} updated{repaired}, {self.unchanged} unchanged, "
            f"{len(self.deleted)} deleted, {failed} failed in {self.seconds:.1f} s ({rate:.0f} passages/s)"
        )

    def passages_per_second(self) -> float:
        total = self.passages + sum(len(p.failed) for p in self.parts)
        return total / self.seconds if self.seconds > 0 else 0.0


def passage_version(record: PassageRecord, policy: ChunkPolicy, embedder_name: str) -> str:
    """Content hash of a passage as it would be stored: same inputs, same version.

    The chunking policy and the embedder are part of it: changing either changes every
    stored chunk, so every passage must be written again.
    """
    payload = json.dumps(
        [record.title, record.text, record.metadata, policy.key, embedder_name],
        sort_keys=True,
        ensure_ascii=False,
        default=str,
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:20]


def _embedder_name(embedder: Any) -> str:
    model_dir = getattr(embedder, "model_dir", None)
    return Path(model_dir).name if model_dir is not None else type(embedder).__name__


def embedding_text(title: str, chunk: str) -> str:
    """The text a chunk is embedded as: its passage's title, a newline, the chunk."""
    # The title disambiguates short chunks ("He was born in 1879." needs "Einstein").
    return f"{title}\n{chunk}" if title else chunk


def _groups(items: Iterable[PassageRecord], size: int) -> Iterator[list[PassageRecord]]:
    it = iter(items)
    while group := list(islice(it, size)):
        yield group


@contextlib.contextmanager
def _stop_between_batches() -> Iterator[Callable[[], bool]]:
    """First Ctrl-C: finish writing the batch in flight, then stop; a second one stops at once.

    A KeyboardInterrupt raised inside the gRPC client can land in a callback that Python
    reports as "Exception ignored" and drops, and the ingest would carry on; a flag read
    between batches stops it every time, at a point where nothing is half-sent.
    """
    requested = threading.Event()
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGINT) is not signal.default_int_handler
    ):
        yield requested.is_set  # not ours to handle: the caller's handler stays
        return

    def on_interrupt(signum: int, frame: object) -> None:
        if requested.is_set():
            raise KeyboardInterrupt
        requested.set()

    signal.signal(signal.SIGINT, on_interrupt)
    try:
        yield requested.is_set
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@dataclass
class _Planned:
    record: PassageRecord
    version: str
    chunks: list[str]
    existed: bool
    surplus: list[int]  # stored chunk numbers the new edition no longer has
    unfinished: int = 0  # chunks an earlier, cut-short write of this passage sent (0: none)


def write_passages(
    store: WeaviateStore,
    records: Iterable[PassageRecord],
    *,
    source: str,
    batch_size: int = INGEST_BATCH,
    progress: bool = True,
    chunking: ChunkPolicy | None = None,
    prune: bool = False,
    overlap: bool = True,
) -> IngestReport:
    """The body of :meth:`WeaviateStore.ingest` (see there).

    With ``overlap`` one batch is written (in a second thread) while the next one is
    embedded; batches are still written one at a time and in order.
    """
    from tqdm.auto import tqdm

    if not source.strip():
        raise InputError("ingest needs a non-empty source name (it keys the passage ids)")
    if batch_size < 1:
        raise InputError(f"batch_size must be at least 1, got {batch_size}")
    policy = chunking or ChunkPolicy()
    _load_in_background(store.embedder)
    try:
        # Connecting may start the embedded server: seconds count the ingest, not that.
        store.connect()
        started = time.perf_counter()
        store.ensure_collection()
    except RetrievalError as exc:
        raise IngestError(str(exc)) from exc
    reason = store.not_ready_reason()
    if reason is not None:
        raise IngestError(reason)
    try:
        target = store.vector_target()
    except RetrievalError as exc:
        raise IngestError(str(exc)) from exc
    writer = BatchWriter(store.collection(), store.not_ready_reason)
    ledger = UnfinishedWrites.of(store)
    unfinished = ledger.pending(source)
    embedder_name = _embedder_name(store.embedder)
    report = IngestReport(source=source)
    seen: set[str] = set()
    total = len(records) if isinstance(records, Sized) else None
    bar = tqdm(
        total=total,
        unit=" passages",
        desc=f"ingest {source}",
        disable=not progress,
        dynamic_ncols=True,
    )
    pipeline: WritePipeline[IngestReport] = WritePipeline(overlap)
    try:
        with _stop_between_batches() as stop_requested, pipeline:
            for group in _groups(records, batch_size):
                planned = _plan(
                    store, group, source, policy, embedder_name, seen, report, unfinished
                )
                if planned:
                    vectors = _embed(store, planned, report)
                    pipeline.submit(
                        partial(
                            _write_batch, store, writer, ledger, planned, vectors, source, target
                        ),
                        partial(_merge, report),
                    )
                bar.update(len(group))
                bar.set_postfix_str(
                    f"added {report.added} updated {report.updated} unchanged {report.unchanged}",
                    refresh=False,
                )
                if stop_requested():
                    raise KeyboardInterrupt
    except RetrievalError as exc:
        raise IngestError(str(exc)) from exc
    finally:
        bar.close()
    if prune:
        try:
            gone = [p for p in unfinished if p not in seen]
            # Cut-short writes of passages the source no longer has: the filter that
            # delete_source goes through may miss them, so by id, then the rest.
            _forget_unfinished(store, source, {p: unfinished[p] for p in gone})
            ledger.settle(source, gone)
            report.deleted += store.delete_source(source, keep=sorted(seen))
        except RetrievalError as exc:
            raise IngestError(str(exc)) from exc
    report.seconds = time.perf_counter() - started
    return report


def _load_in_background(embedder: Any) -> None:
    """Start loading the embedder (if it can load ahead) while the caller connects.

    Starting the embedded server and loading the model take seconds each and need
    different resources (a child process; files and one core), so they overlap. Errors
    are left to the first embedding, which loads again and raises them with its context.
    """
    load = getattr(embedder, "load", None)
    if not callable(load):
        return

    def run() -> None:
        with contextlib.suppress(Exception):
            load()

    threading.Thread(target=run, name="setpoint-embedder-load", daemon=True).start()


def _plan(
    store: WeaviateStore,
    group: list[PassageRecord],
    source: str,
    policy: ChunkPolicy,
    embedder_name: str,
    seen: set[str],
    report: IngestReport,
    unfinished: dict[str, int],
) -> list[_Planned]:
    """Which passages of ``group`` need writing; counts the unchanged and the invalid.

    A passage in ``unfinished`` (its last write was cut short) is written again even if it
    looks stored: some of its index entries may be missing.
    """
    valid: list[PassageRecord] = []
    for record in group:
        if not record.id or not record.text.strip():
            report.failed.append((record.id, "empty id or text"))
        elif record.id in seen:
            report.failed.append((record.id, "duplicate id in this ingest; kept the first"))
        else:
            seen.add(record.id)
            valid.append(record)
    stored = store.stored_versions(source, [r.id for r in valid])
    planned: list[_Planned] = []
    for record in valid:
        version = passage_version(record, policy, embedder_name)
        chunks = chunk_text(record.text, policy)
        old = stored.get(record.id, {})
        cut_short = unfinished.get(record.id, 0)
        # Unchanged means every chunk of this edition is there and nothing else: a run
        # killed half-way through a passage leaves it incomplete, so it is written again.
        if (
            not cut_short
            and set(old) == set(range(len(chunks)))
            and all(v == version for v in old.values())
        ):
            report.unchanged += 1
            continue
        surplus = sorted(n for n in old if n >= len(chunks))
        planned.append(_Planned(record, version, chunks, bool(old), surplus, cut_short))
    return planned


def _embed(store: WeaviateStore, planned: list[_Planned], report: IngestReport) -> list[Any]:
    texts = [embedding_text(p.record.title, c) for p in planned for c in p.chunks]
    embed_started = time.perf_counter()
    vectors = store.embedder.embed_documents(texts)
    report.embed_seconds += time.perf_counter() - embed_started
    return vectors


def _merge(report: IngestReport, written: IngestReport) -> None:
    """Add one written batch's outcome (built in the writer thread) to the run's report."""
    report.added += written.added
    report.updated += written.updated
    report.repaired += written.repaired
    report.chunks_written += written.chunks_written
    report.failed += written.failed


def _write_batch(
    store: WeaviateStore,
    writer: BatchWriter,
    ledger: UnfinishedWrites,
    planned: list[_Planned],
    vectors: list[Any],
    source: str,
    target: str | None,
) -> IngestReport:
    """Write one embedded batch; its outcome comes back as a report of its own."""
    from weaviate.classes.data import DataObject
    from weaviate.classes.query import Filter

    report = IngestReport(source=source)
    now = datetime.now(UTC)
    objects: list[Any] = []
    owner: list[int] = []  # objects[i] belongs to planned[owner[i]]
    vector_iter = iter(vectors)
    for n, plan in enumerate(planned):
        record = plan.record
        metadata = (
            json.dumps(record.metadata, ensure_ascii=False, default=str) if record.metadata else ""
        )
        for number, chunk in enumerate(plan.chunks):
            objects.append(
                DataObject(
                    properties={
                        "passage_id": record.id,
                        "chunk": number,
                        "title": record.title,
                        "title_key": record.title,
                        "text": chunk,
                        "source": source,
                        "version": plan.version,
                        "ingested_at": now,
                        "metadata": metadata,
                    },
                    uuid=chunk_uuid(source, record.id, number),
                    # Named: this embedder's vector only (the object is replaced, so a
                    # vector of another embedder would be stale for the new text anyway).
                    vector=next(vector_iter) if target is None else {target: next(vector_iter)},
                )
            )
            owner.append(n)
    ledger.record(source, {p.record.id: max(len(p.chunks), p.unfinished) for p in planned})
    _forget_unfinished(store, source, {p.record.id: p.unfinished for p in planned if p.unfinished})
    errors = writer.write(objects)
    reasons: dict[int, str] = {}
    for index, reason in errors.items():
        reasons.setdefault(owner[index], reason)
    surplus: list[str] = []
    for n, plan in enumerate(planned):
        if n in reasons:
            # Refused, perhaps after part of it was stored: still unfinished.
            report.failed.append((plan.record.id, reasons[n]))
            continue
        if plan.existed:
            report.updated += 1
        else:
            report.added += 1
        report.repaired += bool(plan.unfinished)
        report.chunks_written += len(plan.chunks)
        surplus += [chunk_uuid(source, plan.record.id, c) for c in plan.surplus]
    if surplus:
        # Only after the new edition is written: a passage is never missing in between.
        with store.weaviate_errors(f"removing {len(surplus)} surplus chunks"):
            store.collection().data.delete_many(where=Filter.by_id().contains_any(surplus))
    ledger.settle(source, [p.record.id for n, p in enumerate(planned) if n not in reasons])
    return report


def _forget_unfinished(store: WeaviateStore, source: str, unfinished: dict[str, int]) -> None:
    """Delete every chunk that an earlier, cut-short write sent (``{passage id: chunks}``).

    By id, one request each: a partly indexed object may be missing from the id filter
    that ``delete_many`` goes through, while a delete by id finds its stored row and
    removes whatever index entries it has.
    """
    uuids = [
        chunk_uuid(source, pid, n) for pid, chunks in unfinished.items() for n in range(chunks)
    ]
    if not uuids:
        return
    data = store.collection().data
    with store.weaviate_errors(f"removing {len(uuids)} chunks of a cut-short write"):
        for uuid in uuids:
            data.delete_by_id(uuid)


def ingest_path(
    store: WeaviateStore,
    path: Path,
    *,
    sync: bool = False,
    progress: bool = True,
    chunking: ChunkPolicy | None = None,
    batch_size: int = INGEST_BATCH,
) -> IngestReport:
    """Ingest a passage file (JSONL, Markdown, text) or every such file in a folder.

    A file's source is its name; a folder's files are ``<folder>/<path inside>``. With
    ``sync`` (folders only) the index is made to mirror the folder: passages gone from a
    file are deleted, and so are all passages of files that are gone.

    Raises:
        IngestError: unreadable path, unknown file type, or Weaviate unreachable.
        InputError: ``sync`` on a single file.
    """
    from setpoint.adapters.weaviate.corpus import find_passage_files, read_passages

    path = Path(path)
    started = time.perf_counter()
    options: dict[str, Any] = {"progress": progress, "chunking": chunking, "batch_size": batch_size}
    if not path.is_dir():
        if sync:
            raise InputError(f"--sync needs a folder, and {path} is not one")
        records, bad_lines = read_passages(path)
        report: IngestReport = store.ingest(records, source=path.name, **options)
        report.skipped_lines.extend(bad_lines)
        return report
    files = find_passage_files(path)
    total = IngestReport(source=f"{path.resolve().name}/")
    for found in files:
        records, bad_lines = read_passages(found.path)
        part = store.ingest(records, source=found.source, prune=sync, **options)
        part.skipped_lines.extend(bad_lines)
        total.absorb(part)
    if sync:
        present = {f.source for f in files}
        try:
            for source in store.sources():
                if source.startswith(total.source) and source not in present:
                    total.deleted += store.delete_source(source)
        except RetrievalError as exc:
            raise IngestError(str(exc)) from exc
    total.seconds = time.perf_counter() - started
    return total
