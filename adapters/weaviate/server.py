"""A locally built ``weaviate-server`` run as a managed child process that cannot outlive us.

We do not use weaviate-client's embedded mode: it orphans the server when the parent is
killed, waits forever in ``close()``, and silently restarts a server that died. Here the
child gets ``PR_SET_PDEATHSIG`` (so a SIGKILLed parent still takes it down), a pidfile in
the data directory records who owns it (so a leftover server is found and stopped on the
next start), and readiness is an HTTP poll with a deadline.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import json
import logging
import os
import subprocess
import threading
import time
import urllib.error
import urllib.request
from dataclasses import asdict
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from setpoint.adapters.weaviate.ports import ServerPorts, pick_ports
from setpoint.adapters.weaviate.process import (
    STOP_GRACE_S,
    die_with_parent,
    is_alive,
    is_weaviate,
    spawn,
    start_ticks,
    terminate_pid,
)
from setpoint.errors import RetrievalError

__all__ = ["CLUSTER_HOSTNAME", "LOG_FILE", "PID_FILE", "ServerPorts", "WeaviateServer"]

logger = logging.getLogger(__name__)

#: Raft persists the node name, so it must be identical on every start of one data dir.
CLUSTER_HOSTNAME = "setpoint-node"
PID_FILE = "setpoint-weaviate.pid"
LOG_FILE = "weaviate-server.log"
_LOCK_FILE = ".setpoint-weaviate.lock"
# A loopback readiness poll must never go through an HTTP_PROXY from the environment.
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))

# Servers started by this process, by resolved data dir: a second start on the same dir in
# the same process is a programming error we report instead of letting the server crash.
_running: dict[Path, WeaviateServer] = {}
_running_lock = threading.Lock()


def _log_summary(log_path: Path, lines: int = 3) -> str:
    """The last few log lines, one line: the JSON logs are reduced to their msg/error fields."""
    try:
        tail = log_path.read_text(errors="replace").strip().splitlines()[-lines:]
    except OSError:
        return "no log"
    parts: list[str] = []
    for line in tail:
        try:
            entry = json.loads(line)
        except ValueError:
            parts.append(line.strip()[:300])
            continue
        if isinstance(entry, dict):
            text = str(entry.get("msg", ""))
            if entry.get("error"):
                text = f"{text}: {entry['error']}" if text else str(entry["error"])
            parts.append(text[:300])
    return " | ".join(p for p in parts if p) or "empty log"


class WeaviateServer:
    """A ``weaviate-server`` child process serving one data directory on loopback.

    Args:
        binary: The ``weaviate-server`` executable.
        data_dir: ``PERSISTENCE_DATA_PATH``; also holds the pidfile and the server log.
        host: Interface for the REST API (loopback by default).
        http_port: REST port; None picks a free one at each start.
        grpc_port: gRPC port; None picks a free one at each start.
        api_keys: ``{key: user}`` to require API-key authentication; None allows
            anonymous access.
        startup_timeout_s: How long ``start()`` waits for ``/v1/.well-known/ready``.

    Example:
        >>> with WeaviateServer(binary, Path("/tmp/wv")) as server:  # doctest: +SKIP
        ...     print(server.url, server.grpc_port)
        http://127.0.0.1:40123 40124
    """

    def __init__(
        self,
        binary: Path,
        data_dir: Path,
        host: str = "127.0.0.1",
        http_port: int | None = None,
        grpc_port: int | None = None,
        api_keys: dict[str, str] | None = None,
        startup_timeout_s: float = 60.0,
    ) -> None:
        self.binary = Path(binary)
        self.data_dir = Path(data_dir)
        self.host = host
        self.api_keys = dict(api_keys) if api_keys else None
        self.startup_timeout_s = startup_timeout_s
        self._wanted_http = http_port
        self._wanted_grpc = grpc_port
        self._ports: ServerPorts | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._lock = threading.RLock()
        #: Pid of a leftover server whose owner had died, stopped by the last ``start()``.
        self.stale_pid_cleaned: int | None = None
        #: Seconds the last ``start()`` took until the server answered ready.
        self.startup_seconds: float | None = None

    # -- properties ---------------------------------------------------------------------

    @property
    def pidfile(self) -> Path:
        return self.data_dir / PID_FILE

    @property
    def log_path(self) -> Path:
        return self.data_dir / LOG_FILE

    @property
    def ports(self) -> ServerPorts:
        if self._ports is None:
            raise RetrievalError("the embedded Weaviate server has not been started")
        return self._ports

    @property
    def http_port(self) -> int:
        return self.ports.http

    @property
    def grpc_port(self) -> int:
        return self.ports.grpc

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.http_port}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def is_running(self) -> bool:
        """Whether the child process is alive (not whether it is ready)."""
        with self._lock:
            return self._process is not None and self._process.poll() is None

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> WeaviateServer:
        """Start the server and wait until it is ready; a no-op while it is running.

        Raises:
            RetrievalError: the binary is missing, another live process owns the data dir,
                the server exited during start-up, or it was not ready in time.
        """
        with self._lock:
            if self.is_running():
                return self
            if not (self.binary.is_file() and os.access(self.binary, os.X_OK)):
                raise RetrievalError(
                    f"weaviate-server binary not found at {self.binary}; run `setpoint setup`"
                )
            key = self.data_dir.resolve()
            # Auto-picked ports can be taken between the check and the server's bind; one
            # retry with fresh ports covers that race.
            attempts = 2 if self._wanted_http is None and self._wanted_grpc is None else 1
            for attempt in range(attempts):
                try:
                    self._start_once()
                    break
                except RetrievalError as exc:
                    if attempt + 1 < attempts and "address already in use" in str(exc).lower():
                        continue
                    raise
            with _running_lock:
                _running[key] = self
            atexit.register(self.stop)
            return self

    def _start_once(self) -> None:
        started = time.monotonic()
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            # The lock makes check-pidfile / spawn / write-pidfile atomic against another
            # setpoint process starting on the same directory at the same moment.
            with open(self.data_dir / _LOCK_FILE, "a+b") as lock_file:
                fcntl.flock(lock_file, fcntl.LOCK_EX)
                self._clear_previous_owner()
                self._ports = self.choose_ports()
                self._spawn()
                self._write_pidfile()
        except OSError as exc:
            self.stop()  # a server spawned before the failure must not be left behind
            raise RetrievalError(
                f"cannot use the Weaviate data dir {self.data_dir}: {exc.strerror or exc}; "
                "set SETPOINT_WEAVIATE_DATA to a writable directory"
            ) from None
        self._wait_ready(started)
        self.startup_seconds = time.monotonic() - started

    def choose_ports(self) -> ServerPorts:
        """Ports for this start (a cluster node overrides this to keep its peers' view of it)."""
        return pick_ports(self._wanted_http, self._wanted_grpc)

    def _clear_previous_owner(self) -> None:
        """Refuse a directory a live process serves; stop a server whose owner is gone."""
        record = self._read_pidfile() or {}
        server_pid = int(record.get("server_pid", -1))
        owner_pid = int(record.get("owner_pid", -1))
        if server_pid > 0 and is_weaviate(server_pid):
            owner_alive = owner_pid > 0 and is_alive(owner_pid)
            owner_ticks = record.get("owner_start_ticks")
            # A recycled pid is a different process: compare start times when recorded.
            if owner_alive and owner_ticks is not None:
                owner_alive = start_ticks(owner_pid) == owner_ticks
            if owner_alive and owner_pid != os.getpid():
                raise RetrievalError(
                    f"another setpoint process (pid {owner_pid}) is using the Weaviate data dir "
                    f"{self.data_dir}; stop it, or set SETPOINT_WEAVIATE_DATA to another "
                    "directory, or set SETPOINT_WEAVIATE_URL to share its server"
                )
            if not (owner_alive and self._live_sibling() is not None):
                # A dead owner, or our own pid with no live server object (a leftover): an
                # orphan that holds the directory's locks.
                logger.warning(
                    "stopping stale weaviate-server (pid %d) left running on %s by process %d",
                    server_pid,
                    self.data_dir,
                    owner_pid,
                )
                terminate_pid(server_pid)
                self.stale_pid_cleaned = server_pid
        if self._live_sibling() is not None:
            raise RetrievalError(
                f"this process already runs a Weaviate server on {self.data_dir}; "
                "reuse that store instead of opening a second one"
            )
        with contextlib.suppress(FileNotFoundError):
            self.pidfile.unlink()

    def _live_sibling(self) -> WeaviateServer | None:
        """Another server object of this process that runs on our data dir."""
        with _running_lock:
            other = _running.get(self.data_dir.resolve())
        if other is not None and other is not self and other.is_running():
            return other
        return None

    def _read_pidfile(self) -> dict[str, Any] | None:
        try:
            record = json.loads(self.pidfile.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            logger.warning("ignoring unreadable pidfile %s", self.pidfile)
            return None
        return record if isinstance(record, dict) else None

    def _write_pidfile(self) -> None:
        assert self._process is not None and self._ports is not None
        record = {
            "server_pid": self._process.pid,
            "owner_pid": os.getpid(),
            "owner_start_ticks": start_ticks(os.getpid()),
            "ports": asdict(self._ports),
            "binary": str(self.binary),
            "started": time.time(),
        }
        from setpoint.adapters.domain.json_file import write_json

        write_json(self.pidfile, record, indent=1)

    def environment(self) -> dict[str, str]:
        """The server's environment for this start (a cluster node adds its peers to it)."""
        ports = self.ports
        env = dict(os.environ)
        env.update(
            PERSISTENCE_DATA_PATH=str(self.data_dir),
            GO_PROFILING_DISABLE="true",
            DISABLE_TELEMETRY="true",
            ENABLE_MODULES="",
            DEFAULT_VECTORIZER_MODULE="none",
            CLUSTER_HOSTNAME=CLUSTER_HOSTNAME,
            CLUSTER_IN_LOCALHOST="true",
            RAFT_BOOTSTRAP_EXPECT="1",
            RAFT_JOIN=f"{CLUSTER_HOSTNAME}:{ports.raft}",
            GRPC_PORT=str(ports.grpc),
            CLUSTER_GOSSIP_BIND_PORT=str(ports.gossip),
            CLUSTER_DATA_BIND_PORT=str(ports.data),
            RAFT_PORT=str(ports.raft),
            RAFT_INTERNAL_RPC_PORT=str(ports.raft_internal_rpc),
            PROFILING_PORT=str(ports.profiling),
            # The default multiplier (5) stretches Raft's 1 s heartbeat to tolerate network
            # delay between nodes; a single node on loopback has none, and 5 s of it is most
            # of the start-up time.
            RAFT_TIMEOUTS_MULTIPLIER="1",
            LOG_LEVEL="warning",
            QUERY_DEFAULTS_LIMIT="25",
        )
        if self.api_keys:
            env.update(
                AUTHENTICATION_ANONYMOUS_ACCESS_ENABLED="false",
                AUTHENTICATION_APIKEY_ENABLED="true",
                AUTHENTICATION_APIKEY_ALLOWED_KEYS=",".join(self.api_keys),
                AUTHENTICATION_APIKEY_USERS=",".join(self.api_keys.values()),
            )
        else:
            # An inherited AUTHENTICATION_* setting must not lock us out of our own server.
            for name in [n for n in env if n.startswith("AUTHENTICATION_")]:
                del env[name]
            env["AUTHENTICATION_ANONYMOUS_ACCESS_ENABLED"] = "true"
        return env

    def _spawn(self) -> None:
        if self.log_path.exists():
            # Keep the previous run's log for post-mortems, one generation deep.
            self.log_path.replace(self.log_path.with_name(LOG_FILE + ".1"))
        self._log = open(self.log_path, "wb")  # noqa: SIM115 -- lives as long as the server
        argv = [
            str(self.binary),
            "--host",
            self.host,
            "--port",
            str(self.ports.http),
            "--scheme",
            "http",
        ]
        env = self.environment()
        log = self._log
        preexec = die_with_parent(os.getpid())

        def start() -> subprocess.Popen[bytes]:
            return subprocess.Popen(
                argv,
                env=env,
                cwd=self.data_dir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=preexec,
                # Its own session: a Ctrl-C in the terminal is ours to handle; the server
                # must not die under a request that is still being answered.
                start_new_session=True,
            )

        try:
            self._process = spawn(start)
        except OSError as exc:
            self._close_log()
            # Not an OSError any more: the data dir is fine, the binary is not.
            raise RetrievalError(f"cannot start {self.binary}: {exc.strerror or exc}") from None

    def _wait_ready(self, started: float) -> None:
        assert self._process is not None
        ready_url = f"{self.url}/v1/.well-known/ready"
        deadline = started + self.startup_timeout_s
        while True:
            code = self._process.poll()
            if code is not None:
                self._forget_process()
                raise RetrievalError(
                    f"weaviate-server exited with code {code} during start-up: "
                    f"{_log_summary(self.log_path)} (log: {self.log_path})"
                )
            try:
                with _NO_PROXY.open(ready_url, timeout=1.0) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass  # not listening yet, or 503 while Raft elects itself
            if time.monotonic() > deadline:
                self.stop()
                raise RetrievalError(
                    f"weaviate-server was not ready after {self.startup_timeout_s:.0f} s: "
                    f"{_log_summary(self.log_path)} (log: {self.log_path})"
                )
            time.sleep(0.1)

    def stop(self) -> None:
        """SIGTERM, wait up to 10 s, then SIGKILL; remove the pidfile. Safe to call twice."""
        with self._lock:
            process = self._process
            if process is None:
                return
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    process.terminate()
                try:
                    process.wait(timeout=STOP_GRACE_S)
                except subprocess.TimeoutExpired:
                    logger.warning(
                        "weaviate-server (pid %d) ignored SIGTERM; killing it", process.pid
                    )
                    process.kill()
                    process.wait(timeout=5.0)
            self._forget_process()

    def _forget_process(self) -> None:
        process = self._process
        if process is not None:
            process.poll()  # reap, so no zombie lingers
            record = self._read_pidfile()
            # Another server may own the directory by now (we were cleaned up as stale).
            if record is not None and record.get("server_pid") == process.pid:
                with contextlib.suppress(FileNotFoundError):
                    self.pidfile.unlink()
        self._process = None
        self._close_log()
        with _running_lock:
            key = self.data_dir.resolve()
            if _running.get(key) is self:
                del _running[key]
        atexit.unregister(self.stop)

    def _close_log(self) -> None:
        if self._log is not None:
            with contextlib.suppress(OSError):
                self._log.close()
            self._log = None

    def __enter__(self) -> WeaviateServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"pid {self.pid}, {self.url}" if self.is_running() else "stopped"
        return f"WeaviateServer({self.data_dir}, {state})"
