"""The ports an embedded Weaviate listens on, and picking a free set of them."""

from __future__ import annotations

import socket
from dataclasses import dataclass

from setpoint.errors import RetrievalError

__all__ = ["ServerPorts", "pick_ports"]


@dataclass(frozen=True)
class ServerPorts:
    """Every port the server listens on (all on loopback, all checked free before start)."""

    http: int
    grpc: int
    gossip: int
    data: int
    raft: int
    raft_internal_rpc: int
    profiling: int


def _port_is_free(port: int, *, udp: bool = False) -> bool:
    kind = socket.SOCK_DGRAM if udp else socket.SOCK_STREAM
    with socket.socket(socket.AF_INET, kind) as sock:
        try:
            # Weaviate binds some listeners (gossip) on every interface, so test the wildcard.
            sock.bind(("", port))
        except OSError:
            return False
    return True


def pick_ports(
    http_port: int | None, grpc_port: int | None, held: list[socket.socket] | None = None
) -> ServerPorts:
    """Distinct free ports for one server: ``http_port``/``grpc_port`` as asked (None: any).

    The sockets stay bound until all are chosen so none repeats.

    A caller that picks for several servers passes its own ``held`` list and closes those
    sockets itself once every server's ports are chosen, so no two servers share one.

    Raises:
        RetrievalError: an asked-for port is taken, or no two adjacent Raft ports are free.

    Example:
        >>> ports = pick_ports(None, None)
        >>> ports.raft_internal_rpc == ports.raft + 1
        True
    """
    owned = held is None
    held = [] if held is None else held

    def grab(port: int = 0) -> int:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.bind(("", port))
        except OSError:
            sock.close()
            raise
        held.append(sock)
        return int(sock.getsockname()[1])

    try:
        chosen: dict[str, int] = {}
        for name, wanted in (("http", http_port), ("grpc", grpc_port)):
            if wanted is None:
                chosen[name] = grab()
            else:
                try:
                    chosen[name] = grab(wanted)
                except OSError:
                    raise RetrievalError(
                        f"{name} port {wanted} for the embedded Weaviate is already in use; "
                        "choose another port or leave it unset to pick a free one"
                    ) from None
        while True:
            # Gossip uses UDP as well as TCP.
            gossip = grab()
            if _port_is_free(gossip, udp=True):
                break
        data = grab()
        # With CLUSTER_IN_LOCALHOST the server dials Raft RPC at the Raft port + 1, whatever
        # RAFT_INTERNAL_RPC_PORT says, so the pair must be adjacent and both free.
        for _ in range(50):
            raft = grab()
            try:
                rpc = grab(raft + 1)
                break
            except OSError:
                continue
        else:
            raise RetrievalError("could not find two adjacent free ports for Weaviate's Raft")
        profiling = grab()
    finally:
        if owned:
            for sock in held:
                sock.close()
    return ServerPorts(
        http=chosen["http"],
        grpc=chosen["grpc"],
        gossip=gossip,
        data=data,
        raft=raft,
        raft_internal_rpc=rpc,
        profiling=profiling,
    )
