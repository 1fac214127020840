"""Conditional edges: plain functions of state that name the next node."""

from __future__ import annotations

from typing import Any, Literal

__all__ = [
    "after_check",
    "after_generate",
    "after_guard",
    "after_probe",
    "after_retrieve",
    "after_tool",
]


def after_guard(state: dict[str, Any]) -> Literal["probe", "call_tool", "escalate"]:
    route = state.get("route")
    if route == "escalate":
        return "escalate"
    return "call_tool" if route == "tool" else "probe"


def after_tool(state: dict[str, Any]) -> Literal["check_output", "escalate"]:
    """A tool's answer gets the same output checks as the model's; a failed call escalates."""
    return "escalate" if state.get("route") == "escalate" else "check_output"


def after_probe(state: dict[str, Any]) -> Literal["generate", "retrieve", "escalate"]:
    route = state.get("route")
    if route == "retrieve":
        return "retrieve"
    if route == "escalate":
        return "escalate"
    return "generate"


def after_retrieve(state: dict[str, Any]) -> Literal["generate", "escalate"]:
    return "escalate" if state.get("route") == "escalate" else "generate"


def after_generate(state: dict[str, Any]) -> Literal["retrieve", "check_output"]:
    """Back to retrieval when the thermostat fired mid-answer; otherwise check the answer."""
    return "retrieve" if state.get("pending_retrieval") else "check_output"


def after_check(state: dict[str, Any]) -> Literal["finalize", "escalate"]:
    return "escalate" if state.get("route") == "escalate" else "finalize"
