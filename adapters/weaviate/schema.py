"""The passage collection's layout: creating it (with retries on a cluster), checking it, dropping it."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from setpoint.errors import RetrievalError

if TYPE_CHECKING:
    from weaviate.collections import Collection

    from setpoint.adapters.weaviate.connection import WeaviateConnection

__all__ = ["REQUIRED_PROPERTIES", "SCHEMA_ATTEMPTS", "PassageCollection"]

log = logging.getLogger(__name__)

#: Tries at creating (or finding) the collection when Weaviate times out; see ensure().
SCHEMA_ATTEMPTS = 3
#: Properties a collection made by an older setpoint lacks; such a collection must be rebuilt.
REQUIRED_PROPERTIES = frozenset({"chunk", "version", "ingested_at", "title_key"})


class PassageCollection:
    """One Weaviate collection of passage chunks, known to exist once created or found.

    Args:
        connection: The Weaviate it lives in.
        name: Collection name (Weaviate wants a capitalized identifier).
        replication_factor: Copies of every object a collection created here keeps.
        consistency_level: ``ONE``, ``QUORUM`` or ``ALL``; None leaves Weaviate's default.
    """

    def __init__(
        self,
        connection: WeaviateConnection,
        name: str,
        *,
        replication_factor: int = 1,
        consistency_level: str | None = None,
    ) -> None:
        self.connection = connection
        self.name = name
        self.replication_factor = replication_factor
        self.consistency_level = consistency_level
        self._ready = False
        #: Named vectors the collection is known to have (None: not asked yet; empty: one
        #: unnamed vector, a collection made before named vectors).
        self._vectors: set[str] | None = None

    def handle(self) -> Collection[Any, Any]:
        """The client's handle to the collection, at the configured consistency level."""
        collection = self.connection.connect().collections.use(self.name)
        if self.consistency_level is None:
            return collection
        from weaviate.classes.config import ConsistencyLevel

        return collection.with_consistency_level(ConsistencyLevel(self.consistency_level))

    def forget(self) -> None:
        """Ask Weaviate again next time whether the collection exists (the client was closed)."""
        with self.connection.lock:
            self._ready = False
            self._vectors = None

    def exists(self) -> bool:
        """Whether the collection exists (known, or asked of Weaviate)."""
        client = self.connection.connect()
        with self.connection.errors(f"looking up collection {self.name}"):
            if self._ready:
                return True
            return bool(client.collections.exists(self.name))

    def require(self) -> None:
        """Raise unless the collection exists; call inside ``connection.errors``.

        Raises:
            RetrievalError: the collection is missing (nothing was ingested yet).
        """
        if self._ready:
            return
        if not self.connection.connect().collections.exists(self.name):
            raise RetrievalError(
                f"Weaviate at {self.connection.url} has no collection {self.name}; "
                "run `setpoint ingest` first"
            )
        self._ready = True

    def vectors(self) -> set[str]:
        """The collection's named vectors (asked once); empty for a single unnamed vector."""
        if self._vectors is None:
            config = self.handle().config.get()
            self._vectors = set(config.vector_config or {})
        return self._vectors

    def target(self, name: str) -> str | None:
        """The ``target_vector`` for vectors of ``name``; call inside ``connection.errors``.

        Raises:
            RetrievalError: the collection has no such named vector (not filled yet), or it
                has one unnamed vector and ``name`` is another embedder's.
        """
        from setpoint.adapters.weaviate.records import DEFAULT_VECTOR

        known = self.vectors()
        if not known and name == DEFAULT_VECTOR:
            return None
        if not known:
            raise RetrievalError(
                f"collection {self.name} was made before named vectors and holds only the "
                f"packaged embedder's; rebuild it with `setpoint ingest --recreate …` to use "
                f"embedder vector {name!r}"
            )
        if name not in known:
            self._vectors = None  # a re-embed may have added it since
            if name not in self.vectors():
                raise RetrievalError(
                    f"collection {self.name} has no vector {name!r} (it has "
                    f"{', '.join(sorted(known))}); fill it with `setpoint ingest --reembed "
                    "<embedder folder>`, or set SETPOINT_EMBEDDER_DIR back"
                )
        return name

    def add_vector(self, name: str) -> None:
        """Give the collection a named vector ``name`` (no-op when it has it); objects keep theirs."""
        from weaviate.classes.config import Configure

        with self.connection.lock, self.connection.errors(f"adding vector {name} to {self.name}"):
            self._vectors = None
            if name in self.vectors():
                return
            if not self.vectors():
                self.target(name)  # raises unless the name is the unnamed vector's
                return
            self.handle().config.add_vector(
                vector_config=Configure.Vectors.self_provided(name=name)
            )
            self._vectors = None

    def ensure(self, vector: str | None = None) -> None:
        """Create the collection if it does not exist (vectors are ours; BM25 on title and text).

        Raises:
            RetrievalError: Weaviate failed, or the collection exists with another layout
                (one made by an older setpoint, which has no passage versions).
        """
        if self._ready:
            return
        from weaviate.exceptions import WeaviateTimeoutError

        # On a cluster a schema read or change goes through the Raft leader; while the nodes
        # elect one (a node lost, or starved of CPU) the request can outlast the client
        # timeout and still take effect. A timeout is retried (the exists() check makes a
        # retry safe); anything else, and the last timeout, is the caller's error.
        for attempt in range(1, SCHEMA_ATTEMPTS + 1):
            try:
                self._ensure_once(vector)
                return
            except RetrievalError as exc:
                if attempt == SCHEMA_ATTEMPTS or not isinstance(
                    exc.__cause__, WeaviateTimeoutError
                ):
                    raise
                log.warning(
                    "creating collection %s timed out (attempt %d of %d); retrying",
                    self.name,
                    attempt,
                    SCHEMA_ATTEMPTS,
                )

    def _ensure_once(self, vector: str | None) -> None:
        client = self.connection.connect()
        from weaviate.classes.config import Configure, DataType, Property, Tokenization

        def keyword(name: str) -> Property:
            # Identifiers are matched whole, never split into words, and never scored by BM25.
            return Property(
                name=name,
                data_type=DataType.TEXT,
                tokenization=Tokenization.FIELD,
                index_searchable=False,
            )

        with self.connection.lock, self.connection.errors(f"creating collection {self.name}"):
            if self._ready:
                return
            if client.collections.exists(self.name):
                self._check_layout()
                self._ready = True
                return
            try:
                client.collections.create(
                    self.name,
                    description="setpoint passages, one object per chunk",
                    vector_config=Configure.Vectors.self_provided(name=vector or "default"),
                    inverted_index_config=Configure.inverted_index(bm25_b=0.75, bm25_k1=1.2),
                    replication_config=Configure.replication(factor=self.replication_factor)
                    if self.replication_factor > 1
                    else None,
                    properties=[
                        keyword("passage_id"),
                        Property(name="chunk", data_type=DataType.INT),
                        Property(
                            name="title", data_type=DataType.TEXT, tokenization=Tokenization.WORD
                        ),
                        # The title again, whole, so that a filter matches one exact title.
                        keyword("title_key"),
                        Property(
                            name="text", data_type=DataType.TEXT, tokenization=Tokenization.WORD
                        ),
                        keyword("source"),
                        keyword("version"),
                        Property(name="ingested_at", data_type=DataType.DATE),
                        # Free-form JSON; stored and returned, neither searched nor filtered.
                        Property(
                            name="metadata",
                            data_type=DataType.TEXT,
                            index_searchable=False,
                            index_filterable=False,
                        ),
                    ],
                )
            except Exception:
                # Another process may have created it between exists() and create().
                if not client.collections.exists(self.name):
                    raise
                self._check_layout()
            self._ready = True

    def _check_layout(self) -> None:
        names = {p.name for p in self.handle().config.get().properties}
        missing = REQUIRED_PROPERTIES - names
        if missing:
            raise RetrievalError(
                f"collection {self.name} at {self.connection.url} was made by an older setpoint "
                f"(no {', '.join(sorted(missing))}); run `setpoint ingest --recreate …` to rebuild "
                "it, or set SETPOINT_COLLECTION to a new name"
            )

    def drop(self) -> None:
        """Delete the collection and everything in it (no error when it does not exist)."""
        client = self.connection.connect()
        with self.connection.lock, self.connection.errors(f"deleting collection {self.name}"):
            client.collections.delete(self.name)
            self._ready = False
