"""A replicated Weaviate cluster of N managed ``weaviate-server`` nodes on loopback, for tests and trials.

Every node is a :class:`~setpoint.adapters.weaviate.server.WeaviateServer` (same binary,
same PDEATHSIG, pidfile and stale-server cleanup) with its own data dir and its own
gossip, data, Raft and Raft-RPC ports. The nodes find each other by memberlist gossip
(``CLUSTER_JOIN``) and form one Raft group (``RAFT_JOIN``, ``RAFT_BOOTSTRAP_EXPECT=N``).
A node keeps its ports for the life of the cluster object, so a stopped node rejoins
under the same name and address and catches up by async replication.

Run one by hand (Ctrl-C stops it)::

    python -m setpoint.adapters.weaviate.cluster --nodes 3 --data /tmp/setpoint-cluster
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Any

from setpoint.adapters.weaviate.ports import ServerPorts, pick_ports
from setpoint.adapters.weaviate.server import WeaviateServer
from setpoint.errors import RetrievalError, SetpointError

__all__ = ["ClusterNode", "WeaviateCluster", "node_name"]

_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def node_name(index: int) -> str:
    """The Raft and memberlist name of node ``index`` (Raft persists it: never rename a node)."""
    return f"setpoint-node-{index}"


class ClusterNode(WeaviateServer):
    """One member of a :class:`WeaviateCluster`: fixed ports and the whole cluster's addresses.

    Args:
        binary: The ``weaviate-server`` executable.
        data_dir: This node's ``PERSISTENCE_DATA_PATH``.
        index: Position in the cluster (names it ``setpoint-node-<index>``).
        ports: This node's ports, kept across restarts.
        members: Every node's ports, this one's included, in index order.
        api_keys: ``{key: user}`` for API-key authentication on every node; None allows
            anonymous access.
        extra_env: More server environment (e.g. async replication timing).
        startup_timeout_s: How long ``start()`` waits for readiness.
    """

    def __init__(
        self,
        binary: Path,
        data_dir: Path,
        *,
        index: int,
        ports: ServerPorts,
        members: Sequence[ServerPorts],
        api_keys: dict[str, str] | None = None,
        extra_env: dict[str, str] | None = None,
        startup_timeout_s: float = 120.0,
    ) -> None:
        super().__init__(
            binary,
            data_dir,
            http_port=ports.http,
            grpc_port=ports.grpc,
            api_keys=api_keys,
            startup_timeout_s=startup_timeout_s,
        )
        self.index = index
        self.name = node_name(index)
        self._fixed = ports
        self._members = list(members)
        self._extra_env = dict(extra_env or {})

    def choose_ports(self) -> ServerPorts:
        # The peers dial this node at the ports they were told at start; never re-pick.
        return self._fixed

    def environment(self) -> dict[str, str]:
        env = super().environment()
        env.update(
            CLUSTER_HOSTNAME=self.name,
            # Gossip, data and Raft traffic stay on loopback: by default memberlist would
            # advertise (and peers would dial) the machine's first private address.
            CLUSTER_BIND_ADDR="127.0.0.1",
            CLUSTER_ADVERTISE_ADDR="127.0.0.1",
            RAFT_BOOTSTRAP_EXPECT=str(len(self._members)),
            # name:raft-port of every voter; with CLUSTER_IN_LOCALHOST the server derives each
            # peer's Raft RPC port as its Raft port + 1 (so pick_ports keeps them adjacent).
            RAFT_JOIN=",".join(f"{node_name(i)}:{p.raft}" for i, p in enumerate(self._members)),
            # Every other node as a gossip seed: a restarted node rejoins through any live one.
            CLUSTER_JOIN=",".join(
                f"127.0.0.1:{p.gossip}" for i, p in enumerate(self._members) if i != self.index
            ),
        )
        env.update(self._extra_env)
        return env


class WeaviateCluster:
    """N Weaviate nodes on loopback forming one replicated cluster.

    Args:
        binary: The ``weaviate-server`` executable (``Settings.weaviate_binary``).
        base_dir: Parent of the nodes' data dirs (``node-0``, ``node-1``, …).
        size: Number of nodes (and Raft voters).
        api_keys: ``{key: user}`` to require API-key authentication on every node.
        catch_up_s: Async replication's comparison period and propagation delay, in
            seconds. Weaviate's defaults (30 s each) suit production; a test wants a
            rejoined node repaired within seconds.
        startup_timeout_s: How long each node may take to become ready.

    Example:
        >>> with WeaviateCluster(binary, Path("/tmp/wvc")) as cluster:  # doctest: +SKIP
        ...     cluster.stop_node(2)
        ...     cluster.start_node(2)
        ...     [n.url for n in cluster.nodes]
        ['http://127.0.0.1:40101', 'http://127.0.0.1:40111', 'http://127.0.0.1:40121']
    """

    def __init__(
        self,
        binary: Path,
        base_dir: Path,
        *,
        size: int = 3,
        api_keys: dict[str, str] | None = None,
        catch_up_s: float = 1.0,
        startup_timeout_s: float = 120.0,
    ) -> None:
        if size < 1:
            raise SetpointError(f"a cluster needs at least one node, got {size}")
        self.binary = Path(binary)
        self.base_dir = Path(base_dir)
        self.size = size
        self.api_keys = dict(api_keys) if api_keys else None
        self.startup_timeout_s = startup_timeout_s
        period = f"{max(int(catch_up_s * 1000), 100)}ms"
        self._extra_env = {
            "ASYNC_REPLICATION_FREQUENCY": period,
            "ASYNC_REPLICATION_FREQUENCY_WHILE_PROPAGATING": period,
            "ASYNC_REPLICATION_PROPAGATION_DELAY": period,
        }
        self._nodes: list[ClusterNode] | None = None
        self._lock = threading.RLock()

    @property
    def nodes(self) -> list[ClusterNode]:
        if self._nodes is None:
            raise RetrievalError("the Weaviate cluster has not been started")
        return self._nodes

    def _build_nodes(self) -> list[ClusterNode]:
        held: list[socket.socket] = []
        try:
            ports = [pick_ports(None, None, held) for _ in range(self.size)]
        finally:
            for sock in held:
                sock.close()
        return [
            ClusterNode(
                self.binary,
                self.base_dir / f"node-{i}",
                index=i,
                ports=p,
                members=ports,
                api_keys=self.api_keys,
                extra_env=self._extra_env,
                startup_timeout_s=self.startup_timeout_s,
            )
            for i, p in enumerate(ports)
        ]

    def start(self) -> WeaviateCluster:
        """Start every node at once and wait until all are ready and see each other.

        The nodes start in parallel because none is ready before the Raft group has
        its ``size`` voters.

        Raises:
            RetrievalError: a node failed to start (the others are stopped again).
        """
        with self._lock:
            if self._nodes is None:
                self._nodes = self._build_nodes()
            nodes = self._nodes
            with ThreadPoolExecutor(max_workers=self.size) as pool:
                futures = [pool.submit(n.start) for n in nodes]
                errors = [f.exception() for f in futures]
            failed = [e for e in errors if e is not None]
            if failed:
                self.stop()
                raise RetrievalError(f"the Weaviate cluster did not start: {failed[0]}")
            self.wait_healthy()
            return self

    def start_node(self, index: int) -> None:
        """Start one stopped node again (same name, ports and data) and wait until it is ready."""
        with self._lock:
            self.nodes[index].start()
        self.wait_healthy()

    def stop_node(self, index: int, *, kill: bool = False) -> None:
        """Stop one node: SIGTERM (graceful) or, with ``kill``, SIGKILL (a crash)."""
        with self._lock:
            node = self.nodes[index]
            if kill and node.pid is not None and node.is_running():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(node.pid, signal.SIGKILL)
            node.stop()

    def stop(self) -> None:
        """Stop every node; safe to call twice."""
        with self._lock:
            if self._nodes is None:
                return
            with ThreadPoolExecutor(max_workers=self.size) as pool:
                list(pool.map(lambda n: n.stop(), self._nodes))

    def node_status(self, via: int = 0) -> dict[str, str]:
        """``{node name: status}`` as node ``via`` sees the cluster (``HEALTHY``, ``UNAVAILABLE``…)."""
        body = self._get_json(via, "/v1/nodes")
        return {str(n["name"]): str(n.get("status", "")) for n in body.get("nodes", [])}

    def _get_json(self, via: int, path: str) -> dict[str, Any]:
        request = urllib.request.Request(f"{self.nodes[via].url}{path}")
        if self.api_keys:
            request.add_header("Authorization", f"Bearer {next(iter(self.api_keys))}")
        with _NO_PROXY.open(request, timeout=5.0) as response:
            body: dict[str, Any] = json.load(response)
        return body

    def leader(self) -> int:
        """Index of the node that leads the Raft group (the schema's single writer) now.

        Raises:
            RetrievalError: no running node reports a leader.
        """
        for node in self.nodes:
            if not node.is_running():
                continue
            try:
                body = self._get_json(node.index, "/v1/cluster/statistics")
            except (urllib.error.URLError, OSError, ValueError):
                continue
            for stats in body.get("statistics", []):
                if stats.get("raft", {}).get("state") == "Leader":
                    return int(str(stats["name"]).rsplit("-", 1)[1])
        raise RetrievalError("no node of the Weaviate cluster reports a Raft leader")

    def wait_healthy(self, timeout_s: float | None = None) -> None:
        """Wait until every running node reports every running node ``HEALTHY`` and the Raft
        group has a live leader that every running node has caught up with.

        Raises:
            RetrievalError: the cluster did not settle in time.
        """
        deadline = time.monotonic() + (timeout_s or self.startup_timeout_s)
        last: object = None
        while True:
            running = [n for n in self.nodes if n.is_running()]
            wanted = {n.name for n in running}
            try:
                views = [self.node_status(n.index) for n in running]
                last = views
                if all(all(view.get(name) == "HEALTHY" for name in wanted) for view in views):
                    unsettled = self._raft_unsettled(running[0].index, wanted)
                    last = unsettled or views
                    if not unsettled:
                        return
            except (urllib.error.URLError, OSError, ValueError) as exc:
                last = exc
            if time.monotonic() > deadline:
                raise RetrievalError(f"the Weaviate cluster did not become healthy: {last}")
            time.sleep(0.25)

    def _raft_unsettled(self, via: int, wanted: set[str]) -> str | None:
        """Why the schema's Raft group cannot take a change yet, or None when it can.

        Memberlist health comes first; a node that just rejoined is ``HEALTHY`` before it has
        a leader, a loaded database and its log applied, and a schema change (creating a
        collection) sent then timed out under load.
        """
        body = self._get_json(via, "/v1/cluster/statistics")
        stats = {str(s.get("name")): s for s in body.get("statistics", [])}
        for name in sorted(wanted):
            node = stats.get(name)
            if node is None:
                return f"{name}: no Raft statistics yet"
            if not node.get("ready") or not node.get("dbLoaded", True):
                return f"{name}: not ready"
            if str(node.get("leaderId", "")) not in wanted:
                return f"{name}: no live Raft leader (sees {node.get('leaderId')!r})"
            raft = node.get("raft", {})
            if str(raft.get("appliedIndex")) != str(raft.get("commitIndex")):
                return f"{name}: Raft log not applied yet"
        return None

    def __enter__(self) -> WeaviateCluster:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        if self._nodes is None:
            return f"WeaviateCluster({self.base_dir}, {self.size} nodes, not started)"
        states = ", ".join(f"{n.name}={'up' if n.is_running() else 'down'}" for n in self._nodes)
        return f"WeaviateCluster({self.base_dir}, {states})"


def main(argv: Sequence[str] | None = None) -> int:
    """Run a cluster in the foreground until Ctrl-C; print each node's URLs."""
    from setpoint.settings import Settings

    parser = argparse.ArgumentParser(
        prog="python -m setpoint.adapters.weaviate.cluster",
        description="Run a replicated weaviate-server cluster on loopback.",
    )
    parser.add_argument("--nodes", type=int, default=3, help="number of nodes (default 3)")
    parser.add_argument("--data", required=True, help="parent folder of the nodes' data dirs")
    parser.add_argument("--api-key", help="require this API key on every node")
    args = parser.parse_args(argv)
    keys = {args.api_key: "setpoint"} if args.api_key else None
    cluster = WeaviateCluster(
        Settings.from_env().weaviate_binary, Path(args.data), size=args.nodes, api_keys=keys
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        with cluster:
            for node in cluster.nodes:
                print(f"{node.name}: {node.url} grpc={node.grpc_port} data={node.data_dir}")
            print("SETPOINT_WEAVIATE_URL and SETPOINT_WEAVIATE_GRPC_PORT may name any node.")
            sys.stdout.flush()
            with contextlib.suppress(KeyboardInterrupt):
                stop.wait()
    except SetpointError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
