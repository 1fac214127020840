"""The passage store: a Weaviate collection of chunk vectors; hybrid, BM25 and vector search; freshness.

:class:`WeaviateStore` is the one object callers hold. It composes the rooms behind it:
``connection`` (client, liveness, errors), ``schema`` (the collection), ``passages``
(reads and deletes), ``search`` and ``ingestion`` (writes).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Sequence
from datetime import datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any

from setpoint.adapters.domain.chunking import ChunkPolicy
from setpoint.adapters.weaviate import passages
from setpoint.adapters.weaviate.connection import WeaviateConnection
from setpoint.adapters.weaviate.ingestion import IngestReport, write_passages
from setpoint.adapters.weaviate.ledger import UnfinishedWrites
from setpoint.adapters.weaviate.passages import index_generation, note_index_write
from setpoint.adapters.weaviate.records import (
    SEARCH_MODES,
    PassageVersion,
    SearchHit,
    SearchMode,
    chunk_uuid,
    vector_name_of,
)
from setpoint.adapters.weaviate.schema import PassageCollection
from setpoint.adapters.weaviate.search import search_passages
from setpoint.errors import ConfigError, RetrievalError
from setpoint.settings import INGEST_BATCH, Settings

if TYPE_CHECKING:
    from langchain_core.embeddings import Embeddings
    from weaviate import WeaviateClient
    from weaviate.collections import Collection

    from setpoint.adapters.domain.rerank import Reranker
    from setpoint.adapters.weaviate.corpus import PassageRecord
    from setpoint.adapters.weaviate.server import WeaviateServer

__all__ = [
    "SEARCH_MODES",
    "IngestReport",
    "PassageVersion",
    "SearchHit",
    "SearchMode",
    "WeaviateStore",
    "chunk_uuid",
    "index_generation",
]


class WeaviateStore:
    """Passages in a Weaviate collection, searched by BM25 and embedding at once.

    Either ``url`` names a running Weaviate, or ``server`` is an embedded
    :class:`~setpoint.adapters.weaviate.server.WeaviateServer` this store starts on first
    use and stops in ``close()``. Nothing connects until the first call that needs it.

    Args:
        collection: Collection name (Weaviate wants a capitalized identifier).
        embedder: Embeds passages at ingest and queries at search.
        url: An external Weaviate, ``http(s)://host:port``.
        grpc_port: Its gRPC port (default 50051).
        api_key: API key for the external Weaviate.
        timeout_s: Connect and query timeout; inserts get three times as long.
        server: An embedded server to own instead of ``url``.
        chunking: How ``ingest`` cuts long passages (default :class:`ChunkPolicy`).
        reranker: Reorders the best ``rerank_depth`` candidates of a search.
        rerank: Whether searches rerank by default (when there is a reranker).
        rerank_depth: How many candidates the reranker sees.
        replication_factor: Copies of every object a collection this store creates keeps
            (on a multi-node cluster; 1 on a single node).
        consistency_level: ``ONE``, ``QUORUM`` or ``ALL`` replicas that must answer each
            read and acknowledge each write; None leaves Weaviate's default (QUORUM).

    Example:
        >>> with WeaviateStore.from_settings(Settings.from_env()) as store:  # doctest: +SKIP
        ...     store.ingest(records, source="squad")
        ...     store.hybrid_search("Who won Super Bowl 50?", k=3)[0].id
        'Super_Bowl_50-0'
    """

    def __init__(
        self,
        *,
        collection: str,
        embedder: Embeddings,
        url: str | None = None,
        grpc_port: int | None = None,
        api_key: str | None = None,
        timeout_s: float = 10.0,
        server: WeaviateServer | None = None,
        chunking: ChunkPolicy | None = None,
        reranker: Reranker | None = None,
        rerank: bool = True,
        rerank_depth: int = 30,
        replication_factor: int = 1,
        consistency_level: str | None = None,
    ) -> None:
        if (url is None) == (server is None):
            raise ConfigError("WeaviateStore needs exactly one of url= or server=")
        if rerank_depth < 1:
            raise ConfigError(f"rerank_depth must be at least 1, got {rerank_depth}")
        self.embedder = embedder
        self.chunking = chunking or ChunkPolicy()
        self.reranker = reranker
        self.rerank = rerank
        self.rerank_depth = rerank_depth
        # Rejects a malformed URL now, not at first search.
        self._connection = WeaviateConnection(
            url=url, grpc_port=grpc_port, api_key=api_key, timeout_s=timeout_s, server=server
        )
        self._collection = PassageCollection(
            self._connection,
            collection,
            replication_factor=replication_factor,
            consistency_level=consistency_level,
        )

    @classmethod
    def from_settings(cls, settings: Settings, embedder: Embeddings | None = None) -> WeaviateStore:
        """The external Weaviate at ``SETPOINT_WEAVIATE_URL``, else the embedded server.

        Raises:
            RetrievalError: no URL is set and the weaviate-server binary is missing.
            ModelError: no embedder was given and none is installed.
        """
        if embedder is None:
            from setpoint.adapters.model.embedder import Embedder

            embedder = Embedder.from_settings(settings)
        from setpoint.adapters.domain.rerank import SentenceEvidenceReranker

        common: dict[str, Any] = {
            "collection": settings.collection,
            "embedder": embedder,
            "reranker": SentenceEvidenceReranker(),
            "timeout_s": settings.weaviate_timeout_s,
            "replication_factor": settings.replication_factor,
            "consistency_level": settings.consistency_level,
        }
        if settings.weaviate_url:
            return cls(
                url=settings.weaviate_url,
                grpc_port=settings.weaviate_grpc_port,
                api_key=settings.weaviate_api_key,
                **common,
            )
        binary = settings.weaviate_binary
        if not binary.is_file():
            raise RetrievalError(
                f"weaviate-server binary not found at {binary}; run `setpoint setup`"
            )
        from setpoint.adapters.weaviate.server import WeaviateServer

        if not settings.weaviate_auth:
            # Anonymous access on loopback; SETPOINT_WEAVIATE_API_KEY is for an external
            # server and would be refused here.
            return cls(server=WeaviateServer(binary, settings.weaviate_data_dir), **common)
        import secrets

        # A server deployment: the embedded Weaviate takes this key only (random per start
        # unless one is configured) and anonymous clients are turned away.
        key = settings.weaviate_api_key or secrets.token_urlsafe(32)
        server = WeaviateServer(binary, settings.weaviate_data_dir, api_keys={key: "setpoint"})
        return cls(server=server, api_key=key, **common)

    # -- connection ---------------------------------------------------------------------

    @property
    def server(self) -> WeaviateServer | None:
        """The embedded server this store owns, or None for an external Weaviate."""
        return self._connection.server

    @property
    def api_key(self) -> str | None:
        return self._connection.api_key

    @property
    def timeout_s(self) -> float:
        return self._connection.timeout_s

    @property
    def is_external(self) -> bool:
        return self._connection.is_external

    @property
    def url(self) -> str:
        """Where the store's Weaviate is (the embedded one's URL once started)."""
        return self._connection.url

    def connect(self) -> WeaviateClient:
        """Connect (starting the embedded server if this store owns one); idempotent.

        Raises:
            RetrievalError: the server is unreachable, refused the credentials, or the
                embedded server would not start.
        """
        return self._connection.connect()

    def not_ready_reason(self) -> str | None:
        """Why Weaviate cannot answer right now, or None when it can; takes at most ~2 s."""
        return self._connection.not_ready_reason()

    def is_available(self) -> bool:
        """Whether Weaviate answers now (connects if needed); never raises."""
        return self._connection.is_available()

    def weaviate_errors(self, action: str) -> contextlib.AbstractContextManager[None]:
        """A context in which weaviate-client exceptions become a one-line ``RetrievalError``."""
        return self._connection.errors(action)

    def close(self) -> None:
        """Close the client and stop the embedded server if this store owns one; idempotent."""
        with self._connection.lock:
            self._collection.forget()
            self._connection.close()

    def __enter__(self) -> WeaviateStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- collection ---------------------------------------------------------------------

    @property
    def collection_name(self) -> str:
        return self._collection.name

    @property
    def replication_factor(self) -> int:
        return self._collection.replication_factor

    @property
    def consistency_level(self) -> str | None:
        return self._collection.consistency_level

    def collection(self) -> Collection[Any, Any]:
        """The client's handle to the collection, at the store's consistency level (connects)."""
        return self._collection.handle()

    def ensure_collection(self) -> None:
        """Create the collection if it does not exist (vectors are ours; BM25 on title and text).

        Raises:
            RetrievalError: Weaviate failed, or the collection exists with another layout
                (one made by an older setpoint, which has no passage versions).
        """
        self._collection.ensure(self.vector_name)
        self._collection.add_vector(self.vector_name)

    @property
    def vector_name(self) -> str:
        """The named vector this store's embedder writes and its queries search."""
        return vector_name_of(self.embedder)

    def vector_target(self, name: str | None = None) -> str | None:
        """``target_vector`` for ``name`` (default: this store's), None on an unnamed-vector collection.

        Raises:
            RetrievalError: the collection lacks that vector (see ``PassageCollection.target``).
        """
        with self._connection.errors(f"reading the vectors of {self.collection_name}"):
            return self._collection.target(name or self.vector_name)

    def add_vector(self, name: str) -> None:
        """Give the collection named vector ``name`` (creating the collection if needed)."""
        self._collection.ensure(name)
        self._collection.add_vector(name)

    def recreate_collection(self) -> None:
        """Delete the collection and everything in it, then create it empty."""
        self._collection.drop()
        UnfinishedWrites.of(self).clear()  # nothing of the old collection is left to mend
        self.ensure_collection()

    # -- reading passages ---------------------------------------------------------------

    def count(self) -> int:
        """Number of passages in the collection (0 when it does not exist yet)."""
        return passages.count(self._collection, first_chunks=True)

    def count_chunks(self) -> int:
        """Number of stored objects: chunks, at least one per passage."""
        return passages.count(self._collection, first_chunks=False)

    def get(self, passage_id: str, source: str) -> SearchHit | None:
        """The stored passage ingested as ``passage_id`` from ``source`` (whole text, score 0.0), or None."""
        return passages.get(self._collection, passage_id, source)

    def stored_chunks(
        self, source: str, passage_ids: Sequence[str]
    ) -> dict[str, dict[int, SearchHit]]:
        """Every stored chunk of these passages of ``source``: ``{passage id: {chunk: hit}}``."""
        return passages.stored_chunks(self._collection, source, passage_ids)

    def stored_versions(self, source: str, passage_ids: Sequence[str]) -> dict[str, dict[int, str]]:
        """``{passage id: {chunk: version}}``: what an ingest compares against, without the text."""
        return passages.stored_versions(self._collection, source, passage_ids)

    def sources(self) -> dict[str, int]:
        """Every source in the collection with its number of passages."""
        return passages.sources(self._collection)

    # -- ingest and delete ----------------------------------------------------------------

    def ingest(
        self,
        records: Iterable[PassageRecord],
        *,
        source: str,
        batch_size: int = INGEST_BATCH,
        progress: bool = True,
        chunking: ChunkPolicy | None = None,
        prune: bool = False,
    ) -> IngestReport:
        """Chunk, embed and write passages; unchanged passages cost no write at all.

        Each chunk's UUID comes from ``(source, passage id, chunk)``, and each passage
        carries a ``version`` (hash of its title, text, metadata, chunking policy and
        embedder), so a second run skips what is stored already, rewrites what changed,
        and removes chunks an edit made surplus. An interrupted run, run again, finishes
        the job. With ``prune``, passages of ``source`` that are not in ``records`` are
        deleted (what a sync does).

        Raises:
            IngestError: Weaviate is unreachable (before or during the run); what was
                written before stays written.
            ModelError: the embedder failed.
        """
        note_index_write()
        try:
            return write_passages(
                self,
                records,
                source=source,
                batch_size=batch_size,
                progress=progress,
                chunking=chunking or self.chunking,
                prune=prune,
            )
        finally:
            note_index_write()  # again: a check during the write saw a half-written index

    def delete(
        self, passage_ids: Sequence[str], *, source: str | None = None
    ) -> list[tuple[str, str]]:
        """Delete passages (all their chunks) by id, in one source or in all of them.

        Returns the ``(source, passage id)`` pairs that were deleted; ids not stored are
        not an error, they are simply absent from the result.
        """
        return passages.delete_passages(self._collection, passage_ids, source=source)

    def delete_source(
        self, source: str, *, keep: Sequence[str] | None = None
    ) -> list[tuple[str, str]]:
        """Delete every passage of ``source`` except the ids in ``keep``; returns what went."""
        return passages.delete_source(self._collection, source, keep=keep)

    # -- freshness ------------------------------------------------------------------------

    def versions(
        self, passage_ids: Sequence[str], *, source: str | None = None
    ) -> dict[tuple[str, str], PassageVersion]:
        """The stored edition of each passage: ``{(source, id): PassageVersion}``."""
        return passages.versions(self._collection, passage_ids, source=source)

    def changed_since(
        self, passage_ids: Sequence[str], since: datetime | float, *, source: str | None = None
    ) -> dict[str, PassageVersion | None]:
        """Which of these passages changed after ``since`` (a datetime or a Unix time).

        A passage is in the result when a newer edition was written after ``since`` (the
        value is that edition) or when it is no longer in the index (the value is None).
        Passages written at or before ``since`` and still stored are absent: what was
        learned from them then still holds. Re-ingesting an unchanged passage writes
        nothing, so it never looks changed.

        Example:
            >>> store.changed_since(["Denver-0", "Denver-1"], trained_at)  # doctest: +SKIP
            {'Denver-1': PassageVersion(id='Denver-1', source='squad', version='3f…', ingested_at=…)}
        """
        return passages.changed_since(self._collection, passage_ids, since, source=source)

    # -- search -------------------------------------------------------------------------

    def hybrid_search(
        self,
        query: str,
        *,
        k: int = 3,
        alpha: float = 0.5,
        source: str | Sequence[str] | None = None,
        title: str | Sequence[str] | None = None,
        rerank: bool | None = None,
    ) -> list[SearchHit]:
        """The ``k`` best passages by fused BM25 and vector score (see :meth:`search`)."""
        return self.search(
            query, k=k, mode="hybrid", alpha=alpha, source=source, title=title, rerank=rerank
        )

    def search(
        self,
        query: str,
        *,
        k: int = 3,
        mode: SearchMode = "hybrid",
        alpha: float = 0.5,
        source: str | Sequence[str] | None = None,
        title: str | Sequence[str] | None = None,
        rerank: bool | None = None,
        query_vector: Sequence[float] | None = None,
    ) -> list[SearchHit]:
        """The ``k`` best passages for ``query``, at most one chunk per passage.

        Args:
            query: Natural-language query.
            k: How many passages to return.
            mode: ``"hybrid"`` (BM25 and vectors fused by relative score, weighted by
                ``alpha``), ``"bm25"`` (keywords over title and text) or ``"vector"``
                (cosine similarity of the embeddings).
            alpha: Hybrid weight: 0 is pure BM25, 1 is pure vector search.
            source: Only passages from this source (or any of these sources).
            title: Only passages with exactly this title (or any of these titles).
            rerank: Rerank the best candidates with the store's reranker; None uses the
                store's default (on when it has a reranker).
            query_vector: The query's embedding, when the caller has it already.

        Scores are comparable within one mode only: hybrid in [0, 1], BM25 unbounded,
        vector the cosine similarity; a reranked list carries the reranker's score.

        Raises:
            InputError: empty query, ``k < 1``, an unknown mode or ``alpha`` outside [0, 1].
            RetrievalError: Weaviate is unreachable, the collection is missing, or the query failed.
        """
        return search_passages(
            self._collection,
            self.embedder,
            query,
            k=k,
            mode=mode,
            alpha=alpha,
            source=source,
            title=title,
            rerank=rerank,
            reranker=self.reranker,
            rerank_by_default=self.rerank,
            rerank_depth=self.rerank_depth,
            query_vector=query_vector,
            vector_name=self.vector_name,
        )

    def __repr__(self) -> str:
        return f"WeaviateStore({self.url}, collection={self.collection_name})"
