"""The setpoint graph: guard_input → {probe → {generate | retrieve | escalate} | call_tool} → check_output → finalize.

``build_graph`` wires the nodes of ``setpoint.agents`` with the edges of
``setpoint.graphs.edges``; importing this module reads no environment and loads no model
(the served graph is built on demand by ``setpoint.graphs.served.make_graph``).
"""

from __future__ import annotations

from typing import Any

from langgraph.graph import END, START, StateGraph

from setpoint.agents.call_tool import make_call_tool
from setpoint.agents.check_output import make_check_output
from setpoint.agents.escalate import make_escalate
from setpoint.agents.finalize import make_finalize
from setpoint.agents.generate import make_generate
from setpoint.agents.guard_input import make_guard_input
from setpoint.agents.probe import make_probe
from setpoint.agents.resources import Resources
from setpoint.agents.retrieve import RETRIEVAL_RETRY, make_retrieve
from setpoint.graphs.context import Context
from setpoint.graphs.edges import (
    after_check,
    after_generate,
    after_guard,
    after_probe,
    after_retrieve,
    after_tool,
)
from setpoint.graphs.state import InputState, OutputState, SetpointState

__all__ = ["build_graph"]


def build_graph(resources: Resources | None = None, *, checkpointer: Any = None) -> Any:
    """Compile the controller graph over ``resources`` (built lazily from settings when None).

    ``checkpointer`` keeps each thread's state between invocations; it is required for
    ``Context(review=True)``, where ``escalate`` pauses with ``interrupt()`` and a later
    ``invoke(Command(resume=...), config)`` on the same thread finishes the run
    (``setpoint.adapters.checkpoints.open_checkpointer`` opens SQLite or Postgres).

    The retrieve node retries transient Weaviate errors (``RETRIEVAL_RETRY``), and its
    search is cached per ``Resources`` (``Resources.retrieval_cache``).

    Example:
        >>> g = build_graph()
        >>> sorted(n for n in g.get_graph().nodes if not n.startswith("__"))
        ['call_tool', 'check_output', 'escalate', 'finalize', 'generate', 'guard_input', 'probe', 'retrieve']
    """
    res = resources if resources is not None else Resources()
    builder = StateGraph(
        SetpointState, context_schema=Context, input_schema=InputState, output_schema=OutputState
    )
    builder.add_node("guard_input", make_guard_input(res))
    builder.add_node("probe", make_probe(res))
    builder.add_node("generate", make_generate(res))
    builder.add_node("retrieve", make_retrieve(res), retry_policy=RETRIEVAL_RETRY)
    builder.add_node("call_tool", make_call_tool(res))
    builder.add_node("check_output", make_check_output(res))
    builder.add_node("escalate", make_escalate(res))
    builder.add_node("finalize", make_finalize(res))

    builder.add_edge(START, "guard_input")
    builder.add_conditional_edges("guard_input", after_guard)
    builder.add_conditional_edges("probe", after_probe)
    builder.add_conditional_edges("retrieve", after_retrieve)
    builder.add_conditional_edges("call_tool", after_tool)
    builder.add_conditional_edges("generate", after_generate)
    builder.add_conditional_edges("check_output", after_check)
    builder.add_edge("escalate", "finalize")
    builder.add_edge("finalize", END)
    return builder.compile(checkpointer=checkpointer, name="setpoint")
