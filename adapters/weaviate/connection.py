"""The client side of a Weaviate: connecting, a fast liveness probe, and one-line errors."""

from __future__ import annotations

import contextlib
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from setpoint.errors import ConfigError, RetrievalError

if TYPE_CHECKING:
    from weaviate import WeaviateClient

    from setpoint.adapters.weaviate.server import WeaviateServer

__all__ = ["DEFAULT_GRPC_PORT", "WeaviateConnection", "short_error"]

DEFAULT_GRPC_PORT = 50051
# The client itself ignores HTTP_PROXY (trust_env=False); our probes must reach the same place.
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))
_LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def short_error(exc: BaseException | str, limit: int = 240) -> str:
    """The first meaningful line of an error, trimmed (weaviate-client messages run long).

    Example:
        >>> short_error("call failed\\n  status = UNAVAILABLE\\n  details = \\"no leader\\"")
        'call failed details = "no leader"'
    """
    text = exc if isinstance(exc, str) else str(exc) or type(exc).__name__
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    line = lines[0] if lines else text.strip()
    # gRPC errors bury the server's reason in a `details = "..."` line.
    for ln in lines:
        if ln.startswith("details ="):
            line = f"{line} {ln}"
            break
    return line if len(line) <= limit else line[: limit - 3] + "..."


class WeaviateConnection:
    """One Weaviate client, opened on first use: an external server by URL, or an embedded one.

    Args:
        url: An external Weaviate, ``http(s)://host:port`` (exclusive with ``server``).
        grpc_port: Its gRPC port (default 50051).
        api_key: API key for the server.
        timeout_s: Connect and query timeout; inserts get three times as long.
        server: An embedded server to start on first use and stop in ``close()``.

    Raises:
        ConfigError: ``url`` is not an http(s) URL with a host.
    """

    def __init__(
        self,
        *,
        url: str | None,
        grpc_port: int | None,
        api_key: str | None,
        timeout_s: float,
        server: WeaviateServer | None,
    ) -> None:
        self.server = server
        self.api_key = api_key
        self.timeout_s = timeout_s
        self._external_url = url.rstrip("/") if url else None
        self._grpc_port = grpc_port
        self._client: WeaviateClient | None = None
        #: Guards the client; the collection's state shares it, so that a close and a
        #: collection create never interleave.
        self.lock = threading.RLock()
        if url is not None:
            self._endpoint()  # reject a malformed URL now, not at first search

    @property
    def is_external(self) -> bool:
        return self._external_url is not None

    @property
    def url(self) -> str:
        """Where the Weaviate is (the embedded one's URL once started)."""
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
        return parts.hostname, http_port, secure, self._grpc_port or DEFAULT_GRPC_PORT

    def connect(self) -> WeaviateClient:
        """The client, connecting (and starting the embedded server) on first call; idempotent.

        Raises:
            RetrievalError: the server is unreachable, refused the credentials, or the
                embedded server would not start.
        """
        client = self._client
        if client is not None:
            return client
        with self.lock:
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
                cause = f"{cause} ({short_error(status_line, 160)})"
            cause += "; set SETPOINT_WEAVIATE_GRPC_PORT to its gRPC port"
        else:
            cause = short_error(exc)
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

    def not_ready_reason(self) -> str | None:
        """Why Weaviate cannot answer right now, or None when it can; takes at most ~2 s.

        weaviate-client retries a gRPC call on an unreachable server with a fixed
        exponential backoff (1+2+...+32 s, about a minute, not configurable), so searches
        and writes ask this cheap question first and fail fast instead.
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
            return f"Weaviate at {self.url} is not reachable ({short_error(str(reason), 120)})"

    def is_available(self) -> bool:
        """Whether Weaviate answers now (connects if needed); never raises."""
        try:
            self.connect()
        except Exception:
            return False
        return self.not_ready_reason() is None

    def close(self) -> None:
        """Close the client and stop the embedded server if there is one; idempotent."""
        with self.lock:
            client, self._client = self._client, None
            if client is not None:
                with contextlib.suppress(Exception):
                    client.close()
            if self.server is not None:
                self.server.stop()

    @contextlib.contextmanager
    def errors(self, action: str) -> Iterator[None]:
        """Turn weaviate-client exceptions raised while doing ``action`` into a one-line ``RetrievalError``.

        The message names the embedded server's log when that server has exited.
        """
        from weaviate.exceptions import WeaviateBaseError

        try:
            yield
        except WeaviateBaseError as exc:
            if self.server is not None and not self.server.is_running():
                where = f"the embedded Weaviate server (log: {self.server.log_path}) had exited"
                raise RetrievalError(f"{where} while {action}; restart setpoint") from exc
            raise RetrievalError(
                f"Weaviate at {self.url} failed while {action}: {short_error(exc)}"
            ) from exc
