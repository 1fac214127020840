"""The served graph (``langgraph.json``, ``setpoint serve``): built on first request, not at import.

``make_graph`` is a LangGraph graph factory: the server calls it when it needs the graph
and gets the same compiled graph every time, built once per process from ``SETPOINT_*``
settings (a server, so its embedded Weaviate requires a key and its concurrent runs are
decoded in one batch unless ``SETPOINT_BATCHING=off``; see ``Settings.for_server``).
A bad ``SETPOINT_*`` variable therefore fails the server's first request with a
``ConfigError``, never an ``import`` of setpoint.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from setpoint.settings import Settings

__all__ = ["make_graph", "served_settings"]

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

            _built.append(build_graph(Resources(settings=served_settings())))
        return _built[0]


def served_settings() -> Settings:
    """``SETPOINT_*`` settings as the served graph uses them (``Settings.for_server``)."""
    from setpoint.settings import Settings

    return Settings.from_env().for_server()
