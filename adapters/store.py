"""The passage store: a Weaviate collection of our vectors, hybrid search, idempotent ingest."""

from __future__ import annotations

import contextlib
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator, Sized
from dataclasses import dataclass, field
from itertools import islice
from types import TracebackType
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from setpoint.errors import ConfigError, IngestError, InputError, RetrievalError
from setpoint.settings import Settings

if TYPE_CHECKING:
    from langchain_core.embeddings import Embeddings
    from weaviate import WeaviateClient
    from weaviate.collections import Collection

    from setpoint.adapters.corpus import PassageRecord
    from setpoint.adapters.weaviate_server import WeaviateServer

__all__ = ["IngestReport", "SearchHit", "WeaviateStore"]

_PROPERTIES = ["passage_id", "title", "text", "source"]
_DEFAULT_GRPC_PORT = 50051
# The client itself ignores HTTP_PROXY (trust_env=False); our probes must reach the same place.
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))
_LOOPBACK = {"127.0.0.1", "localhost", "::1"}


@dataclass(frozen=True)
class SearchHit:
    """One passage returned by a search, with its fused hybrid score (higher is better).

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

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "text": self.text,
            "source": self.source,
            "score": self.score,
        }


@dataclass
class IngestReport:
    """What an ``ingest`` run did: nothing failed silently.

    ``failed`` holds ``(passage id, reason)`` for records Weaviate (or the ingest itself)
    refused; ``skipped_lines`` is for the caller to fill with ``read_jsonl``'s bad lines.

    Example:
        >>> report = IngestReport(added=48, failed=[("p7", "vector length 5, expected 384")])
        >>> report.added + len(report.failed)
        49
    """

    added: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    skipped_lines: list[tuple[int, str]] = field(default_factory=list)
    seconds: float = 0.0


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


def _chunks(items: Iterable[PassageRecord], size: int) -> Iterator[list[PassageRecord]]:
    it = iter(items)
    while chunk := list(islice(it, size)):
        yield chunk


def _embedding_text(record: PassageRecord) -> str:
    # The title disambiguates short passages ("He was born in 1879." needs "Einstein").
    return f"{record.title}\n{record.text}" if record.title else record.text


class WeaviateStore:
    """Passages in a Weaviate collection, searched by BM25 and embedding at once.

    Either ``url`` names a running Weaviate, or ``server`` is an embedded
    :class:`~setpoint.adapters.weaviate_server.WeaviateServer` this store starts on first
    use and stops in ``close()``. Nothing connects until the first call that needs it.

    Args:
        collection: Collection name (Weaviate wants a capitalized identifier).
        embedder: Embeds passages at ingest and queries at search.
        url: An external Weaviate, ``http(s)://host:port``.
        grpc_port: Its gRPC port (default 50051).
        api_key: API key for the external Weaviate.
        timeout_s: Connect and query timeout; inserts get three times as long.
        server: An embedded server to own instead of ``url``.

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
    ) -> None:
        if (url is None) == (server is None):
            raise ConfigError("WeaviateStore needs exactly one of url= or server=")
        self.collection_name = collection
        self.embedder = embedder
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
            from setpoint.adapters.embedder import Embedder

            embedder = Embedder.from_settings(settings)
        common: dict[str, Any] = {
            "collection": settings.collection,
            "embedder": embedder,
            "timeout_s": settings.weaviate_timeout_s,
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
        from setpoint.adapters.weaviate_server import WeaviateServer

        server = WeaviateServer(binary, settings.weaviate_data_dir)
        # The embedded server allows anonymous access only; SETPOINT_WEAVIATE_API_KEY is
        # for an external server and would be refused here.
        return cls(server=server, **common)

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
        # Our own probe: the client's is_ready() prints its exceptions to stdout.
        try:
            with _NO_PROXY.open(
                f"{self._http_base()}/v1/.well-known/ready", timeout=min(self.timeout_s, 2.0)
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
        return self.connect().collections.use(self.collection_name)

    def ensure_collection(self) -> None:
        """Create the collection if it does not exist (vectors are ours; BM25 on title and text)."""
        if self._collection_ready:
            return
        client = self.connect()
        from weaviate.classes.config import Configure, DataType, Property, Tokenization

        with self._lock, self._weaviate_errors(f"creating collection {self.collection_name}"):
            if self._collection_ready or client.collections.exists(self.collection_name):
                self._collection_ready = True
                return
            try:
                client.collections.create(
                    self.collection_name,
                    description="setpoint passages",
                    vector_config=Configure.Vectors.self_provided(),
                    inverted_index_config=Configure.inverted_index(bm25_b=0.75, bm25_k1=1.2),
                    properties=[
                        # Identifiers are matched whole, never split into words.
                        Property(
                            name="passage_id",
                            data_type=DataType.TEXT,
                            tokenization=Tokenization.FIELD,
                            index_searchable=False,
                        ),
                        Property(
                            name="title", data_type=DataType.TEXT, tokenization=Tokenization.WORD
                        ),
                        Property(
                            name="text", data_type=DataType.TEXT, tokenization=Tokenization.WORD
                        ),
                        Property(
                            name="source",
                            data_type=DataType.TEXT,
                            tokenization=Tokenization.FIELD,
                            index_searchable=False,
                        ),
                    ],
                )
            except Exception:
                # Another process may have created it between exists() and create().
                if not client.collections.exists(self.collection_name):
                    raise
            self._collection_ready = True

    def count(self) -> int:
        """Number of passages in the collection (0 when it does not exist yet)."""
        client = self.connect()
        with self._weaviate_errors("counting passages"):
            if not client.collections.exists(self.collection_name):
                return 0
            total = self._collection().aggregate.over_all(total_count=True).total_count
        return int(total or 0)

    def get(self, passage_id: str, source: str) -> SearchHit | None:
        """The stored passage ingested as ``passage_id`` from ``source`` (score 0.0), or None."""
        from weaviate.util import generate_uuid5

        client = self.connect()
        with self._weaviate_errors(f"fetching passage {passage_id}"):
            if not client.collections.exists(self.collection_name):
                return None
            obj = self._collection().query.fetch_object_by_id(
                generate_uuid5(f"{source}:{passage_id}"), return_properties=_PROPERTIES
            )
        if obj is None:
            return None
        return self._hit(obj.properties, 0.0)

    @staticmethod
    def _hit(props: Any, score: float) -> SearchHit:
        return SearchHit(
            id=str(props.get("passage_id") or ""),
            title=str(props.get("title") or ""),
            text=str(props.get("text") or ""),
            source=str(props.get("source") or ""),
            score=float(score),
        )

    # -- ingest -------------------------------------------------------------------------

    def ingest(
        self,
        records: Iterable[PassageRecord],
        *,
        source: str,
        batch_size: int = 64,
        progress: bool = True,
    ) -> IngestReport:
        """Embed and insert passages; re-ingesting the same source and ids never duplicates.

        Each passage's UUID is derived from ``source:id``, so a second run updates the same
        objects. Objects Weaviate refuses are listed in ``IngestReport.failed`` with the
        server's reason.

        Raises:
            IngestError: Weaviate is unreachable, so nothing could be ingested.
            ModelError: the embedder failed.
        """
        from tqdm.auto import tqdm
        from weaviate.util import generate_uuid5

        if not source.strip():
            raise InputError("ingest needs a non-empty source name (it keys the passage ids)")
        if batch_size < 1:
            raise InputError(f"batch_size must be at least 1, got {batch_size}")
        started = time.perf_counter()
        try:
            self.ensure_collection()
        except RetrievalError as exc:
            raise IngestError(str(exc)) from exc
        reason = self._not_ready_reason()
        if reason is not None:
            raise IngestError(reason)
        report = IngestReport()
        total = len(records) if isinstance(records, Sized) else None
        seen: set[str] = set()
        id_by_uuid: dict[str, str] = {}
        sent = 0
        collection = self._collection()
        bar = tqdm(
            total=total,
            unit=" passages",
            desc=f"ingest {source}",
            disable=not progress,
            dynamic_ncols=True,
        )
        try:
            with self._weaviate_errors(f"ingesting into {self.collection_name}"):
                with collection.batch.fixed_size(
                    batch_size=batch_size, concurrent_requests=2
                ) as batch:
                    for chunk in _chunks(records, batch_size):
                        keep: list[PassageRecord] = []
                        for record in chunk:
                            if not record.id or not record.text.strip():
                                report.failed.append((record.id, "empty id or text"))
                            elif record.id in seen:
                                report.failed.append(
                                    (record.id, "duplicate id in this ingest; kept the first")
                                )
                            else:
                                seen.add(record.id)
                                keep.append(record)
                        vectors = self.embedder.embed_documents([_embedding_text(r) for r in keep])
                        for record, vector in zip(keep, vectors, strict=True):
                            uuid = generate_uuid5(f"{source}:{record.id}")
                            id_by_uuid[str(uuid)] = record.id
                            batch.add_object(
                                properties={
                                    "passage_id": record.id,
                                    "title": record.title,
                                    "text": record.text,
                                    "source": source,
                                },
                                uuid=uuid,
                                vector=vector,
                            )
                        sent += len(keep)
                        bar.update(len(chunk))
                failures = list(collection.batch.failed_objects)
        finally:
            bar.close()
        for failure in failures:
            uuid = str(failure.object_.uuid)
            report.failed.append((id_by_uuid.get(uuid, uuid), _short(failure.message)))
        report.added = sent - len(failures)
        report.seconds = time.perf_counter() - started
        return report

    # -- search -------------------------------------------------------------------------

    def hybrid_search(self, query: str, *, k: int = 3, alpha: float = 0.5) -> list[SearchHit]:
        """The ``k`` best passages by fused BM25 and vector score.

        ``alpha`` weights the two: 0 is pure BM25, 1 is pure vector search.

        Raises:
            InputError: empty query, ``k < 1`` or ``alpha`` outside [0, 1].
            RetrievalError: Weaviate is unreachable, the collection is missing, or the query failed.
        """
        if not query or not query.strip():
            raise InputError("the search query is empty")
        if k < 1:
            raise InputError(f"k must be at least 1, got {k}")
        if not 0.0 <= alpha <= 1.0:
            raise InputError(
                f"alpha must be between 0 (BM25 only) and 1 (vectors only), got {alpha}"
            )
        from weaviate.classes.query import MetadataQuery

        client = self.connect()
        reason = self._not_ready_reason()
        if reason is not None:
            raise RetrievalError(reason)
        vector = self.embedder.embed_query(query)
        with self._weaviate_errors(f"searching {self.collection_name}"):
            if not self._collection_ready:
                if not client.collections.exists(self.collection_name):
                    raise RetrievalError(
                        f"Weaviate at {self.url} has no collection {self.collection_name}; "
                        "run `setpoint ingest` first"
                    )
                self._collection_ready = True
            response = self._collection().query.hybrid(
                query=query,
                vector=vector,
                alpha=alpha,
                limit=k,
                query_properties=["title", "text"],
                return_metadata=MetadataQuery(score=True),
                return_properties=_PROPERTIES,
            )
        return [self._hit(obj.properties, obj.metadata.score or 0.0) for obj in response.objects]

    def __repr__(self) -> str:
        return f"WeaviateStore({self.url}, collection={self.collection_name})"
