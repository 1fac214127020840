"""Filling a new embedder's named vector for every stored chunk while searches keep using the old one."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from setpoint.adapters.weaviate.batches import BatchWriter
from setpoint.adapters.weaviate.ingestion import embedding_text
from setpoint.adapters.weaviate.ledger import UnfinishedWrites
from setpoint.adapters.weaviate.records import STORED_PROPERTIES, vector_name_of
from setpoint.errors import IngestError, RetrievalError
from setpoint.settings import INGEST_BATCH

if TYPE_CHECKING:
    from langchain_core.embeddings import Embeddings

    from setpoint.adapters.weaviate.store import WeaviateStore

__all__ = ["ReembedReport", "reembed"]


@dataclass
class ReembedReport:
    """What a re-embed did: chunks given the new vector, chunks that had it, failures."""

    vector: str
    embedded: int = 0
    already: int = 0
    failed: int = 0
    seconds: float = 0.0

    def summary(self) -> str:
        rate = self.embedded / self.seconds if self.seconds > 0 else 0.0
        return (
            f"vector {self.vector}: {self.embedded} chunks embedded, {self.already} had it, "
            f"{self.failed} failed in {self.seconds:.1f} s ({rate:.0f} passages/s)"
        )


def reembed(
    store: WeaviateStore,
    embedder: Embeddings,
    *,
    batch_size: int = INGEST_BATCH,
    progress: bool = True,
) -> ReembedReport:
    """Give every stored chunk ``embedder``'s named vector; the other vectors stay as they are.

    Each batch rewrites its objects whole (same UUID, same properties, every vector they
    had plus the new one), so a search on the old vector finds every passage throughout.
    Batches go through the ledger of unfinished writes like an ingest: one cut short is
    mended by the next ingest of its source. Run it again after an interruption: chunks
    that have the vector already are skipped.

    Raises:
        IngestError: Weaviate is unreachable, or the collection has one unnamed vector.
    """
    from tqdm.auto import tqdm
    from weaviate.classes.data import DataObject

    name = vector_name_of(embedder)
    report = ReembedReport(vector=name)
    try:
        store.add_vector(name)
        total = store.count_chunks()
        handle = store.collection()
    except RetrievalError as exc:
        raise IngestError(str(exc)) from exc
    writer = BatchWriter(handle, store.not_ready_reason)
    ledger = UnfinishedWrites.of(store)
    started = time.perf_counter()
    bar = tqdm(total=total, unit=" chunks", desc=f"re-embed {name}", disable=not progress)
    pending: list[Any] = []

    def flush() -> None:
        texts = [
            embedding_text(str(o.properties["title"]), str(o.properties["text"])) for o in pending
        ]
        vectors = embedder.embed_documents(texts)
        sent: dict[tuple[str, str], int] = {}
        objects = []
        for obj, vector in zip(pending, vectors, strict=True):
            key = (str(obj.properties["source"]), str(obj.properties["passage_id"]))
            sent[key] = max(sent.get(key, 0), int(obj.properties["chunk"]) + 1)
            objects.append(
                DataObject(
                    properties=dict(obj.properties),
                    uuid=obj.uuid,
                    vector={**obj.vector, name: vector},
                )
            )
        for source in {s for s, _ in sent}:
            ledger.record(source, {p: n for (s, p), n in sent.items() if s == source})
        errors = writer.write(objects)
        report.failed += len(errors)
        report.embedded += len(objects) - len(errors)
        bad = {
            (str(pending[i].properties["source"]), str(pending[i].properties["passage_id"]))
            for i in errors
        }
        for source in {s for s, _ in sent}:
            ledger.settle(source, [p for (s, p) in sent if s == source and (s, p) not in bad])
        pending.clear()
        elapsed = time.perf_counter() - started
        bar.set_postfix_str(f"{report.embedded / elapsed:.0f} passages/s", refresh=False)

    try:
        with store.weaviate_errors(f"re-embedding {store.collection_name}"):
            for obj in handle.iterator(include_vector=True, return_properties=STORED_PROPERTIES):
                bar.update(1)
                if name in (obj.vector or {}):
                    report.already += 1
                    continue
                pending.append(obj)
                if len(pending) >= batch_size:
                    flush()
            if pending:
                flush()
    except RetrievalError as exc:
        raise IngestError(str(exc)) from exc
    finally:
        bar.close()
    report.seconds = time.perf_counter() - started
    return report
