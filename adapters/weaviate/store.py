"""The passage store: a Weaviate collection of chunk vectors; hybrid, BM25 and vector search; freshness."""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

from setpoint.adapters.domain.chunking import ChunkPolicy
from setpoint.adapters.weaviate.ingestion import IngestReport
from setpoint.errors import ConfigError, InputError, RetrievalError
from setpoint.settings import Settings

log = logging.getLogger(__name__)

#: Tries at creating (or finding) the collection when Weaviate times out; see ensure_collection.
SCHEMA_ATTEMPTS = 3

if TYPE_CHECKING:
    from langchain_core.embeddings import Embeddings
    from weaviate import WeaviateClient
    from weaviate.collections import Collection
    from weaviate.collections.classes.filters import _Filters

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

#: Every object is one chunk of one passage; these are what a search returns of it.
_PROPERTIES = [
    "passage_id",
    "chunk",
    "title",
    "text",
    "source",
    "version",
    "ingested_at",
    "metadata",
]
_DEFAULT_GRPC_PORT = 50051
# The client itself ignores HTTP_PROXY (trust_env=False); our probes must reach the same place.
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))
_LOOPBACK = {"127.0.0.1", "localhost", "::1"}
# Weaviate answers at most QUERY_MAXIMUM_RESULTS (default 10,000) objects per query.
_PAGE = 10_000

SearchMode = Literal["hybrid", "bm25", "vector"]
#: The search modes behind ``WeaviateStore.search`` and the ``weaviate_search`` tool.
SEARCH_MODES: tuple[SearchMode, ...] = ("hybrid", "bm25", "vector")


# Bumped by every ingest or delete in this process: caches of what the index holds (which
# passages an adapter learned from have changed) compare it instead of asking Weaviate.
_index_writes = 0


def index_generation() -> int:
    """How many ingests and deletes this process ran; a cache of index facts is valid while it holds."""
    return _index_writes


def _note_index_write() -> None:
    global _index_writes
    _index_writes += 1


def chunk_uuid(source: str, passage_id: str, chunk: int) -> str:
    """The object UUID of one chunk: a UUIDv5 of ``[source, passage id, chunk]``.

    JSON encoding keeps the name unambiguous whatever characters the source or id hold,
    so ingesting the same passage again always addresses the same objects.

    Example:
        >>> chunk_uuid("squad", "Denver-0", 0) == chunk_uuid("squad", "Denver-0", 0)
        True
    """
    from weaviate.util import generate_uuid5

    return str(generate_uuid5(json.dumps([source, passage_id, chunk], ensure_ascii=False)))


@dataclass(frozen=True)
class SearchHit:
    """One passage returned by a search: its best-matching chunk and a score (higher is better).

    ``version`` (a content hash) and ``ingested_at`` say which edition of the passage
    this is, so a caller can tell a newer passage from what it learned earlier.

    Example:
        >>> hit = SearchHit(id="Denver-0", title="Denver", text="...", source="squad", score=0.82)
        >>> hit.id
        'Denver-0'
    """

    id: str
    title: str
    text: str
    source: str
    score: float
    chunk: int = 0
    version: str = ""
    ingested_at: datetime | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``ingested_at`` as an ISO 8601 string (or None)."""
        return {
            "id": self.id,
            "title": self.title,
            "text": self.text,
            "source": self.source,
            "score": self.score,
            "chunk": self.chunk,
            "version": self.version,
            "ingested_at": self.ingested_at.isoformat() if self.ingested_at else None,
            "metadata": dict(self.metadata),
        }


@dataclass(frozen=True)
class PassageVersion:
    """Which edition of a passage the index holds: content hash and when it was written."""

    id: str
    source: str
    version: str
    ingested_at: datetime


def _short(exc: BaseException | str, limit: int = 240) -> str:
    """The first meaningful line of an error, trimmed (weaviate-client messages run long)."""
    text = exc if isinstance(exc, str) else str(exc) or type(exc).__name__
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    line = lines[0] if lines else text.strip()
    # gRPC errors bury the server's reason in a `details = "..."` line.
    for ln in lines:
        if ln.startswith("details ="):
            line = f"{line} {ln}"
            break
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _as_utc(moment: datetime | float) -> datetime:
    if isinstance(moment, (int, float)):
        return datetime.fromtimestamp(moment, tz=UTC)
    # A naive datetime is taken as local time, as datetime.timestamp() does.
    return moment if moment.tzinfo is not None else moment.astimezone(UTC)


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
        self.collection_name = collection
        self.embedder = embedder
        self.chunking = chunking or ChunkPolicy()
        self.reranker = reranker
        self.rerank = rerank
        self.rerank_depth = rerank_depth
        self.replication_factor = replication_factor
        self.consistency_level = consistency_level
        self.server = server
        self.api_key = api_key
        self.timeout_s = timeout_s
        self._external_url = url.rstrip("/") if url else None
        self._grpc_port = grpc_port
        self._client: WeaviateClient | None = None
        self._collection_ready = False
        self._lock = threading.RLock()
        if url is not None:
            self._endpoint()  # reject a malformed URL now, not at first search

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
    def is_external(self) -> bool:
        return self._external_url is not None

    @property
    def url(self) -> str:
        """Where the store's Weaviate is (the embedded one's URL once started)."""
        if self._external_url is not None:
            return self._external_url
        assert self.server is not None
        if self.server.is_running():
            url: str = self.server.url
            return url
        return f"embedded Weaviate ({self.server.data_dir})"

    def _endpoint(self) -> tuple[str, int, bool, int]:
        """(host, http port, secure, grpc port) of the external URL."""
        assert self._external_url is not None
        parts = urlsplit(self._external_url)
        try:
            port = parts.port
        except ValueError:
            port = -1
        if parts.scheme not in ("http", "https") or not parts.hostname or port == -1:
            raise ConfigError(
                f"SETPOINT_WEAVIATE_URL={self._external_url!r} is not a URL like http://localhost:8080"
            )
        secure = parts.scheme == "https"
        http_port = port if port is not None else (443 if secure else 80)
        return parts.hostname, http_port, secure, self._grpc_port or _DEFAULT_GRPC_PORT

    def connect(self) -> WeaviateClient:
        """Connect (starting the embedded server if this store owns one); idempotent.

        Raises:
            RetrievalError: the server is unreachable, refused the credentials, or the
                embedded server would not start.
        """
        client = self._client
        if client is not None:
            return client
        with self._lock:
            if self._client is None:
                self._client = self._open()
            return self._client

    def _open(self) -> WeaviateClient:
        if self.server is not None:
            self.server.start()
            host, http_port, secure, grpc_port = (
                self.server.host,
                self.server.http_port,
                False,
                self.server.grpc_port,
            )
        else:
            host, http_port, secure, grpc_port = self._endpoint()
        import weaviate
        from weaviate.classes.init import AdditionalConfig, Auth, GrpcConfig, Timeout

        timeout = self.timeout_s
        grpc_config = None
        if host in _LOOPBACK:
            # gRPC (unlike the client's REST side) obeys http_proxy from the environment;
            # a proxy can never reach our loopback, so it must not be asked to.
            grpc_config = GrpcConfig(channel_options=[("grpc.enable_http_proxy", 0)])
        config = AdditionalConfig(
            # Inserts carry whole batches of vectors; give them more room than a query.
            timeout=Timeout(init=timeout, query=timeout, insert=3 * timeout),
            grpc_config=grpc_config,
        )
        try:
            return weaviate.connect_to_custom(
                http_host=host,
                http_port=http_port,
                http_secure=secure,
                grpc_host=host,
                grpc_port=grpc_port,
                grpc_secure=secure,
                additional_config=config,
                auth_credentials=Auth.api_key(self.api_key) if self.api_key else None,
            )
        except Exception as exc:
            raise self._connect_error(exc, grpc_port) from exc

    def _connect_error(self, exc: BaseException, grpc_port: int) -> RetrievalError:
        from weaviate.exceptions import (
            AuthenticationFailedError,
            UnexpectedStatusCodeError,
            WeaviateGRPCUnavailableError,
        )

        url = self.url
        status = getattr(exc, "status_code", None)
        if isinstance(exc, AuthenticationFailedError) or (
            isinstance(exc, UnexpectedStatusCodeError) and status in (401, 403)
        ):
            what = "rejected the API key" if self.api_key else "requires an API key"
            return RetrievalError(
                f"Weaviate at {url} {what} (HTTP {status or 401}); set SETPOINT_WEAVIATE_API_KEY "
                "to a key the server accepts"
            )
        if isinstance(exc, WeaviateGRPCUnavailableError):
            # Its message is a page of advice; keep the gRPC status line if there is one.
            status_line = next(
                (ln for ln in str(exc).splitlines() if ln.startswith("The gRPC call failed")), ""
            )
            cause = f"REST answered but gRPC on port {grpc_port} did not"
            if status_line:
                cause = f"{cause} ({_short(status_line, 160)})"
            cause += "; set SETPOINT_WEAVIATE_GRPC_PORT to its gRPC port"
        else:
            cause = _short(exc)
        if self.is_external:
            return RetrievalError(
                f"Weaviate at {url} is not reachable: {cause}; start it or unset "
                "SETPOINT_WEAVIATE_URL to use the embedded server"
            )
        log = self.server.log_path if self.server is not None else "?"
        return RetrievalError(
            f"the embedded Weaviate at {url} started but did not accept a connection: {cause}; "
            f"see {log}"
        )

    def _http_base(self) -> str:
        if self._external_url is not None:
            return self._external_url
        assert self.server is not None
        url: str = self.server.url
        return url

    def _not_ready_reason(self) -> str | None:
        """Why Weaviate cannot answer right now, or None when it can; takes at most ~2 s.

        weaviate-client retries a gRPC call on an unreachable server with a fixed
        exponential backoff (1+2+...+32 s, about a minute, not configurable), so searches
        ask this cheap question first and fail fast instead.
        """
        if self.server is not None and not self.server.is_running():
            return (
                f"the embedded Weaviate server has exited; see {self.server.log_path} "
                "and restart setpoint"
            )
        # Our own probe: the client's is_ready() prints its exceptions to stdout. Liveness,
        # not readiness: a cluster node answers 503 on /ready while its peers elect a new
        # schema leader, yet it serves reads and writes at QUORUM all the while.
        try:
            with _NO_PROXY.open(
                f"{self._http_base()}/v1/.well-known/live", timeout=min(self.timeout_s, 2.0)
            ) as response:
                if response.status == 200:
                    return None
                return f"Weaviate at {self.url} is not ready (HTTP {response.status})"
        except urllib.error.HTTPError as exc:
            return f"Weaviate at {self.url} is not ready (HTTP {exc.code})"
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            return f"Weaviate at {self.url} is not reachable ({_short(str(reason), 120)})"

    def is_available(self) -> bool:
        """Whether Weaviate answers now (connects if needed); never raises."""
        try:
            self.connect()
        except Exception:
            return False
        return self._not_ready_reason() is None

    def close(self) -> None:
        """Close the client and stop the embedded server if this store owns one; idempotent."""
        with self._lock:
            client, self._client = self._client, None
            self._collection_ready = False
            if client is not None:
                with contextlib.suppress(Exception):
                    client.close()
            if self.server is not None:
                self.server.stop()

    def __enter__(self) -> WeaviateStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @contextlib.contextmanager
    def _weaviate_errors(self, action: str) -> Iterator[None]:
        """Turn weaviate-client exceptions into a one-line ``RetrievalError``."""
        from weaviate.exceptions import WeaviateBaseError

        try:
            yield
        except WeaviateBaseError as exc:
            if self.server is not None and not self.server.is_running():
                where = f"the embedded Weaviate server (log: {self.server.log_path}) had exited"
                raise RetrievalError(f"{where} while {action}; restart setpoint") from exc
            raise RetrievalError(
                f"Weaviate at {self.url} failed while {action}: {_short(exc)}"
            ) from exc

    # -- collection ---------------------------------------------------------------------

    def _collection(self) -> Collection[Any, Any]:
        collection = self.connect().collections.use(self.collection_name)
        if self.consistency_level is None:
            return collection
        from weaviate.classes.config import ConsistencyLevel

        return collection.with_consistency_level(ConsistencyLevel(self.consistency_level))

    def ensure_collection(self) -> None:
        """Create the collection if it does not exist (vectors are ours; BM25 on title and text).

        Raises:
            RetrievalError: Weaviate failed, or the collection exists with another layout
                (one made by an older setpoint, which has no passage versions).
        """
        if self._collection_ready:
            return
        from weaviate.exceptions import WeaviateTimeoutError

        # On a cluster a schema read or change goes through the Raft leader; while the nodes
        # elect one (a node lost, or starved of CPU) the request can outlast the client
        # timeout and still take effect. A timeout is retried (the exists() check makes a
        # retry safe); anything else, and the last timeout, is the caller's error.
        for attempt in range(1, SCHEMA_ATTEMPTS + 1):
            try:
                self._ensure_collection_once()
                return
            except RetrievalError as exc:
                if attempt == SCHEMA_ATTEMPTS or not isinstance(
                    exc.__cause__, WeaviateTimeoutError
                ):
                    raise
                log.warning(
                    "creating collection %s timed out (attempt %d of %d); retrying",
                    self.collection_name,
                    attempt,
                    SCHEMA_ATTEMPTS,
                )

    def _ensure_collection_once(self) -> None:
        client = self.connect()
        from weaviate.classes.config import Configure, DataType, Property, Tokenization

        def keyword(name: str) -> Property:
            # Identifiers are matched whole, never split into words, and never scored by BM25.
            return Property(
                name=name,
                data_type=DataType.TEXT,
                tokenization=Tokenization.FIELD,
                index_searchable=False,
            )

        with self._lock, self._weaviate_errors(f"creating collection {self.collection_name}"):
            if self._collection_ready:
                return
            if client.collections.exists(self.collection_name):
                self._check_layout()
                self._collection_ready = True
                return
            try:
                client.collections.create(
                    self.collection_name,
                    description="setpoint passages, one object per chunk",
                    vector_config=Configure.Vectors.self_provided(),
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
                if not client.collections.exists(self.collection_name):
                    raise
                self._check_layout()
            self._collection_ready = True

    def _check_layout(self) -> None:
        names = {p.name for p in self._collection().config.get().properties}
        missing = {"chunk", "version", "ingested_at", "title_key"} - names
        if missing:
            raise RetrievalError(
                f"collection {self.collection_name} at {self.url} was made by an older setpoint "
                f"(no {', '.join(sorted(missing))}); run `setpoint ingest --recreate …` to rebuild "
                "it, or set SETPOINT_COLLECTION to a new name"
            )

    def recreate_collection(self) -> None:
        """Delete the collection and everything in it, then create it empty."""
        client = self.connect()
        with self._lock, self._weaviate_errors(f"deleting collection {self.collection_name}"):
            client.collections.delete(self.collection_name)
            self._collection_ready = False
        from setpoint.adapters.weaviate.ingestion import UnfinishedWrites

        UnfinishedWrites.of(self).clear()  # nothing of the old collection is left to mend
        self.ensure_collection()

    def _exists(self) -> bool:
        client = self.connect()
        with self._weaviate_errors(f"looking up collection {self.collection_name}"):
            if self._collection_ready:
                return True
            return bool(client.collections.exists(self.collection_name))

    def count(self) -> int:
        """Number of passages in the collection (0 when it does not exist yet)."""
        return self._count(first_chunks=True)

    def count_chunks(self) -> int:
        """Number of stored objects: chunks, at least one per passage."""
        return self._count(first_chunks=False)

    def _count(self, *, first_chunks: bool) -> int:
        from weaviate.classes.query import Filter

        if not self._exists():
            return 0
        where = Filter.by_property("chunk").equal(0) if first_chunks else None
        with self._weaviate_errors("counting passages"):
            total = (
                self._collection().aggregate.over_all(total_count=True, filters=where).total_count
            )
        return int(total or 0)

    def get(self, passage_id: str, source: str) -> SearchHit | None:
        """The stored passage ingested as ``passage_id`` from ``source`` (whole text, score 0.0), or None."""
        chunks = self.stored_chunks(source, [passage_id]).get(passage_id)
        if not chunks:
            return None
        first = chunks[min(chunks)]
        text = (
            "\n\n".join(chunks[n].text for n in sorted(chunks)) if len(chunks) > 1 else first.text
        )
        return SearchHit(
            id=first.id,
            title=first.title,
            text=text,
            source=first.source,
            score=0.0,
            chunk=0,
            version=first.version,
            ingested_at=first.ingested_at,
            metadata=first.metadata,
        )

    def stored_chunks(
        self, source: str, passage_ids: Sequence[str]
    ) -> dict[str, dict[int, SearchHit]]:
        """Every stored chunk of these passages of ``source``: ``{passage id: {chunk: hit}}``."""
        found: dict[str, dict[int, SearchHit]] = {}
        for props in self._fetch_chunks(source, passage_ids, _PROPERTIES):
            hit = self._hit(props, 0.0)
            found.setdefault(hit.id, {})[hit.chunk] = hit
        return found

    def _stored_versions(
        self, source: str, passage_ids: Sequence[str]
    ) -> dict[str, dict[int, str]]:
        """``{passage id: {chunk: version}}``: what an ingest compares against, without the text."""
        found: dict[str, dict[int, str]] = {}
        for props in self._fetch_chunks(source, passage_ids, ["passage_id", "chunk", "version"]):
            chunks = found.setdefault(str(props.get("passage_id") or ""), {})
            chunks[int(props.get("chunk") or 0)] = str(props.get("version") or "")
        return found

    def _fetch_chunks(
        self, source: str, passage_ids: Sequence[str], properties: list[str]
    ) -> Iterator[Any]:
        from weaviate.classes.query import Filter

        if not passage_ids or not self._exists():
            return
        pending = [list(dict.fromkeys(passage_ids))]
        with self._weaviate_errors(f"reading passages of {source}"):
            while pending:
                ids = pending.pop()
                where = Filter.by_property("source").equal(source) & Filter.by_property(
                    "passage_id"
                ).contains_any(ids)
                response = self._collection().query.fetch_objects(
                    filters=where, limit=_PAGE, return_properties=properties
                )
                if len(response.objects) >= _PAGE and len(ids) > 1:
                    # More chunks than one answer holds: ask again in halves.
                    pending += [ids[: len(ids) // 2], ids[len(ids) // 2 :]]
                    continue
                for obj in response.objects:
                    yield obj.properties

    @staticmethod
    def _hit(props: Any, score: float) -> SearchHit:
        raw_meta = props.get("metadata")
        try:
            metadata = json.loads(raw_meta) if raw_meta else {}
        except ValueError:
            metadata = {}
        ingested = props.get("ingested_at")
        return SearchHit(
            id=str(props.get("passage_id") or ""),
            title=str(props.get("title") or ""),
            text=str(props.get("text") or ""),
            source=str(props.get("source") or ""),
            score=float(score),
            chunk=int(props.get("chunk") or 0),
            version=str(props.get("version") or ""),
            ingested_at=ingested if isinstance(ingested, datetime) else None,
            metadata=metadata if isinstance(metadata, dict) else {"value": metadata},
        )

    # -- ingest and delete -----------------------------------------------------------------

    def ingest(
        self,
        records: Iterable[PassageRecord],
        *,
        source: str,
        batch_size: int = 64,
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
        from setpoint.adapters.weaviate.ingestion import write_passages

        _note_index_write()
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
            _note_index_write()  # again: a check during the write saw a half-written index

    def delete(
        self, passage_ids: Sequence[str], *, source: str | None = None
    ) -> list[tuple[str, str]]:
        """Delete passages (all their chunks) by id, in one source or in all of them.

        Returns the ``(source, passage id)`` pairs that were deleted; ids not stored are
        not an error, they are simply absent from the result.
        """
        from weaviate.classes.query import Filter

        if not passage_ids or not self._exists():
            return []
        _note_index_write()
        where = Filter.by_property("passage_id").contains_any(list(passage_ids))
        if source is not None:
            where = where & Filter.by_property("source").equal(source)
        return self._delete_where(where, f"deleting {len(passage_ids)} passages")

    def delete_source(
        self, source: str, *, keep: Sequence[str] | None = None
    ) -> list[tuple[str, str]]:
        """Delete every passage of ``source`` except the ids in ``keep``; returns what went."""
        from weaviate.classes.query import Filter

        if not self._exists():
            return []
        _note_index_write()
        where = Filter.by_property("source").equal(source)
        if keep:
            where = where & Filter.by_property("passage_id").contains_none(list(keep))
        return self._delete_where(where, f"deleting passages of {source}")

    def _delete_where(self, where: _Filters, action: str) -> list[tuple[str, str]]:
        from weaviate.classes.query import Filter

        collection = self._collection()
        gone: set[tuple[str, str]] = set()
        with self._weaviate_errors(action):
            first = where & Filter.by_property("chunk").equal(0)
            while True:
                # Learn the passages first: delete_many reports objects, not passages.
                listed = collection.query.fetch_objects(
                    filters=first, limit=_PAGE, return_properties=["passage_id", "source"]
                ).objects
                gone.update(
                    (str(o.properties["source"]), str(o.properties["passage_id"])) for o in listed
                )
                result = collection.data.delete_many(where=where)
                # One call deletes at most QUERY_MAXIMUM_RESULTS objects; repeat until none match.
                if result.matches == 0 or (result.matches < _PAGE and len(listed) < _PAGE):
                    break
        return sorted(gone)

    def sources(self) -> dict[str, int]:
        """Every source in the collection with its number of passages."""
        from weaviate.classes.aggregate import GroupByAggregate
        from weaviate.classes.query import Filter

        if not self._exists():
            return {}
        with self._weaviate_errors("listing sources"):
            response = self._collection().aggregate.over_all(
                filters=Filter.by_property("chunk").equal(0),
                group_by=GroupByAggregate(prop="source", limit=_PAGE),
                total_count=True,
            )
        return {str(g.grouped_by.value): int(g.total_count or 0) for g in response.groups}

    # -- freshness ------------------------------------------------------------------------

    def versions(
        self, passage_ids: Sequence[str], *, source: str | None = None
    ) -> dict[tuple[str, str], PassageVersion]:
        """The stored edition of each passage: ``{(source, id): PassageVersion}``."""
        from weaviate.classes.query import Filter

        found: dict[tuple[str, str], PassageVersion] = {}
        if not passage_ids or not self._exists():
            return found
        where = Filter.by_property("chunk").equal(0) & Filter.by_property(
            "passage_id"
        ).contains_any(list(passage_ids))
        if source is not None:
            where = where & Filter.by_property("source").equal(source)
        with self._weaviate_errors("reading passage versions"):
            response = self._collection().query.fetch_objects(
                filters=where,
                limit=_PAGE,
                return_properties=["passage_id", "source", "version", "ingested_at"],
            )
        for obj in response.objects:
            props = obj.properties
            key = (str(props["source"]), str(props["passage_id"]))
            found[key] = PassageVersion(
                id=key[1],
                source=key[0],
                version=str(props.get("version") or ""),
                ingested_at=_as_utc(props["ingested_at"]),
            )
        return found

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
        cutoff = _as_utc(since)
        stored: dict[str, list[PassageVersion]] = {}
        for version in self.versions(passage_ids, source=source).values():
            stored.setdefault(version.id, []).append(version)
        changed: dict[str, PassageVersion | None] = {}
        for passage_id in dict.fromkeys(passage_ids):
            editions = stored.get(passage_id)
            if not editions:
                changed[passage_id] = None
                continue
            newest = max(editions, key=lambda v: v.ingested_at)
            if newest.ingested_at > cutoff:
                changed[passage_id] = newest
        return changed

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
        if not query or not query.strip():
            raise InputError("the search query is empty")
        if k < 1:
            raise InputError(f"k must be at least 1, got {k}")
        if mode not in SEARCH_MODES:
            raise InputError(f"search mode must be one of {', '.join(SEARCH_MODES)}, got {mode!r}")
        if not 0.0 <= alpha <= 1.0:
            raise InputError(
                f"alpha must be between 0 (BM25 only) and 1 (vectors only), got {alpha}"
            )
        use_reranker = self.reranker is not None and (rerank if rerank is not None else self.rerank)
        if rerank and self.reranker is None:
            raise InputError("this store has no reranker; build it with reranker=…")
        client = self.connect()
        reason = self._not_ready_reason()
        if reason is not None:
            raise RetrievalError(reason)
        vector: list[float] | None = None
        if mode != "bm25":
            vector = (
                list(query_vector) if query_vector is not None else self.embedder.embed_query(query)
            )
        # Over-fetch: several chunks of one passage collapse into one hit, and the
        # reranker needs a pool deeper than k to reorder.
        pool = max(self.rerank_depth, k) if use_reranker else k
        limit = pool + max(pool // 2, 5)
        where = self._filters(source, title)
        with self._weaviate_errors(f"searching {self.collection_name}"):
            if not self._collection_ready:
                if not client.collections.exists(self.collection_name):
                    raise RetrievalError(
                        f"Weaviate at {self.url} has no collection {self.collection_name}; "
                        "run `setpoint ingest` first"
                    )
                self._collection_ready = True
            hits = self._query(query, vector, mode, alpha, limit, where)
        best: dict[tuple[str, str], SearchHit] = {}
        for hit in hits:
            best.setdefault((hit.source, hit.id), hit)  # results come best first
        ranked = list(best.values())[:pool]
        if use_reranker:
            assert self.reranker is not None
            ranked = self.reranker.rerank(query, ranked)
        return ranked[:k]

    def _query(
        self,
        query: str,
        vector: list[float] | None,
        mode: SearchMode,
        alpha: float,
        limit: int,
        where: _Filters | None,
    ) -> list[SearchHit]:
        from weaviate.classes.query import HybridFusion, MetadataQuery

        collection = self._collection()
        if mode == "vector":
            response = collection.query.near_vector(
                near_vector=vector,  # type: ignore[arg-type]
                limit=limit,
                filters=where,
                return_metadata=MetadataQuery(distance=True),
                return_properties=_PROPERTIES,
            )
            # Cosine distance is 1 - similarity; report the similarity (higher is better).
            return [
                self._hit(o.properties, 1.0 - (o.metadata.distance or 0.0))
                for o in response.objects
            ]
        if mode == "bm25":
            response = collection.query.bm25(
                query=query,
                limit=limit,
                query_properties=["title", "text"],
                filters=where,
                return_metadata=MetadataQuery(score=True),
                return_properties=_PROPERTIES,
            )
        else:
            response = collection.query.hybrid(
                query=query,
                vector=vector,
                alpha=alpha,
                limit=limit,
                fusion_type=HybridFusion.RELATIVE_SCORE,
                query_properties=["title", "text"],
                filters=where,
                return_metadata=MetadataQuery(score=True),
                return_properties=_PROPERTIES,
            )
        return [self._hit(o.properties, o.metadata.score or 0.0) for o in response.objects]

    @staticmethod
    def _filters(
        source: str | Sequence[str] | None, title: str | Sequence[str] | None
    ) -> _Filters | None:
        from weaviate.classes.query import Filter

        parts = []
        for prop, value in (("source", source), ("title_key", title)):
            if value is None:
                continue
            values = [value] if isinstance(value, str) else list(value)
            if not values:
                raise InputError(f"the {prop.removesuffix('_key')} filter is an empty list")
            parts.append(
                Filter.by_property(prop).equal(values[0])
                if len(values) == 1
                else Filter.by_property(prop).contains_any(values)
            )
        if not parts:
            return None
        return Filter.all_of(parts) if len(parts) > 1 else parts[0]

    def __repr__(self) -> str:
        return f"WeaviateStore({self.url}, collection={self.collection_name})"
