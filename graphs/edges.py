"""Conditional edges: plain functions of state that name the next node, as ``agents.decide`` decided it.

Each returns a ``Literal`` of node names (LangGraph draws the diagram from it) and reads the
``next_node`` the deciding node stored; a missing or foreign value is a wiring bug and raises.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast, get_args

from setpoint.agents.decide import CheckHop, GenerateHop, GuardHop, ProbeHop, RetrieveHop, ToolHop
from setpoint.errors import SetpointError

__all__ = [
    "after_check",
    "after_generate",
    "after_guard",
    "after_probe",
    "after_retrieve",
    "after_tool",
]


def _next(state: Mapping[str, Any], hops: Any, node: str) -> str:
    hop = state.get("next_node")
    allowed: tuple[str, ...] = get_args(hops)
    if hop not in allowed:
        raise SetpointError(
            f"{node} stored next_node {hop!r}, not one of {', '.join(allowed)}; "
            "a routing node must store a decide.Decision"
        )
    return str(hop)


def after_guard(state: Mapping[str, Any]) -> GuardHop:
    """Refused: escalate; handled by a plug-in tool: call_tool; otherwise probe."""
    return cast(GuardHop, _next(state, GuardHop, "guard_input"))


def after_tool(state: Mapping[str, Any]) -> ToolHop:
    """A tool's answer gets the same output checks as the model's; a failed call escalates."""
    return cast(ToolHop, _next(state, ToolHop, "call_tool"))


def after_probe(state: Mapping[str, Any]) -> ProbeHop:
    """Answer from the weights (generate), retrieve first, or escalate."""
    return cast(ProbeHop, _next(state, ProbeHop, "probe"))


def after_retrieve(state: Mapping[str, Any]) -> RetrieveHop:
    """Passages (or the flagged fallback to the weights) go to generation."""
    return cast(RetrieveHop, _next(state, RetrieveHop, "retrieve"))


def after_generate(state: Mapping[str, Any]) -> GenerateHop:
    """Back to retrieval when the thermostat fired mid-answer; otherwise check the answer."""
    return cast(GenerateHop, _next(state, GenerateHop, "generate"))


def after_check(state: Mapping[str, Any]) -> CheckHop:
    """A failed check (or an answer marked for escalation) escalates; otherwise finalize."""
    return cast(CheckHop, _next(state, CheckHop, "check_output"))
