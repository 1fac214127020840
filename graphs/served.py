"""The served graph (``langgraph.json``, ``setpoint serve``): built on first request, not at import.

``make_graph`` is a LangGraph graph factory: the server calls it when it needs the graph
and gets the same compiled graph every time, built once per process from ``SETPOINT_*``
settings (a server, so its embedded Weaviate requires a key; see ``Settings.for_server``).
A bad ``SETPOINT_*`` variable therefore fails the server's first request with a
``ConfigError``, never an ``import`` of setpoint.
"""

from __future__ import annotations

import threading
from typing import Any

__all__ = ["make_graph"]

_built: list[Any] = []
_building = threading.Lock()


def make_graph() -> Any:
    """The process's served graph, compiled on the first call.

    Example:
        >>> graph = make_graph()  # reads SETPOINT_* now; loads no model yet  # doctest: +SKIP
        >>> graph.invoke({"question": "Who wrote Hamlet?"})  # doctest: +SKIP
    """
    # The server may ask for the graph from several runs at once: build it (and its one
    # generator, whose scheduler batches every run) exactly once.
    with _building:
        if not _built:
            from setpoint.agents.resources import Resources
            from setpoint.graphs.graph import build_graph
            from setpoint.settings import Settings

            _built.append(build_graph(Resources(settings=Settings.from_env().for_server())))
        return _built[0]
