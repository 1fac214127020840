"""Switching embedders without downtime: a second named vector is filled while searches answer on the first."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from langchain_core.embeddings import Embeddings

from setpoint.adapters.model.embedder import Embedder
from setpoint.adapters.weaviate.corpus import PassageRecord
from setpoint.adapters.weaviate.ingestion import embedding_text
from setpoint.adapters.weaviate.reembed import reembed
from setpoint.adapters.weaviate.store import WeaviateStore
from tests.integration.conftest import HashEmbeddings


class TunedStandIn(HashEmbeddings):
    """Another embedder version (32-dim): every query lands on one chosen passage's vector."""

    vector_name = "tuned_v1_0123abcd"

    def __init__(self, target_text: str) -> None:
        self.target_text = target_text

    def embed_query(self, text: str) -> list[float]:
        return self._vector(self.target_text)


def _store(base: WeaviateStore, embedder: Embeddings) -> WeaviateStore:
    assert base.server is not None
    return WeaviateStore(
        url=base.url, grpc_port=base.server.grpc_port, collection="TestReembed", embedder=embedder
    )


@pytest.fixture
def old_store(weaviate_store: WeaviateStore, embedder: Embedder) -> Iterator[WeaviateStore]:
    store = _store(weaviate_store, embedder)
    store.recreate_collection()
    yield store
    store.close()


def test_search_answers_throughout_a_reembed_then_uses_the_new_vector(
    old_store: WeaviateStore, weaviate_store: WeaviateStore, squad_passages: list[PassageRecord]
) -> None:
    passages = squad_passages[:40]
    assert old_store.ingest(passages, source="squad", progress=False).ok
    chosen = passages[17]
    new = TunedStandIn(embedding_text(chosen.title, chosen.text))
    failures: list[str] = []
    answered = 0
    done = threading.Event()

    def query_loop() -> None:
        nonlocal answered
        while not done.is_set():
            for mode in ("hybrid", "vector"):
                try:
                    hits = old_store.search("Which NFL team won Super Bowl 50?", k=3, mode=mode)  # type: ignore[arg-type]
                    if not hits:
                        failures.append(f"{mode}: no hits")
                    answered += 1
                except Exception as exc:
                    failures.append(f"{mode}: {exc}")

    reader = threading.Thread(target=query_loop)
    reader.start()
    try:
        report = reembed(old_store, new, batch_size=4, progress=False)
    finally:
        done.set()
        reader.join()
    assert failures == []
    assert answered > 0
    chunks = old_store.count_chunks()
    assert (report.embedded, report.failed) == (chunks, 0)
    # Run again: nothing left to do. An ingest on the old embedder writes nothing either.
    assert reembed(old_store, new, progress=False).already == chunks
    assert old_store.ingest(passages, source="squad", progress=False).unchanged == 40
    # Searches on the old vector still find the gold passage.
    assert old_store.search("Which NFL team won Super Bowl 50?", k=3, mode="vector")[0].title
    # The switch: a store on the new embedder searches its vector, in every mode.
    switched = _store(weaviate_store, new)
    try:
        for mode in ("vector", "hybrid"):
            hits = switched.search("anything at all", k=1, mode=mode, alpha=1.0, rerank=False)  # type: ignore[arg-type]
            assert hits[0].id == chosen.id
    finally:
        switched.close()
