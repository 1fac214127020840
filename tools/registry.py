"""The ``setpoint.tools`` entry-point group: setpoint's own checks and any a package adds, by name.

A package extends setpoint by declaring, in its ``pyproject.toml``::

    [project.entry-points."setpoint.tools"]
    profanity = "my_package.checks:make_profanity_tool"

The target is a LangChain ``BaseTool`` or a zero-argument callable returning one. A tool named
in the policy's ``extra_checks`` is called with ``{"text": ...}`` on the question, on each
retrieved passage or on the answer, and must return a mapping with ``allowed`` (bool) and,
when not allowed, a ``reason`` code (the graph escalates with it, or drops the passage).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import lru_cache
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

from setpoint.errors import ConfigError

if TYPE_CHECKING:
    from langchain_core.tools import BaseTool

    from setpoint.tools.policy import Verdict

__all__ = ["ENTRY_POINT_GROUP", "get_tool", "registered_names", "run_check"]

ENTRY_POINT_GROUP = "setpoint.tools"


def _entry_points() -> dict[str, Any]:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def registered_names() -> set[str]:
    """Names of every tool in the group (setpoint's own included when setpoint is installed)."""
    return set(_entry_points())


@lru_cache(maxsize=64)
def get_tool(name: str) -> BaseTool:
    """Load the tool registered as ``name``.

    Raises:
        ConfigError: no such entry point, or it does not give a LangChain tool.
    """
    from langchain_core.tools import BaseTool

    found = _entry_points().get(name)
    if found is None:
        known = ", ".join(sorted(registered_names())) or "none"
        raise ConfigError(
            f"no tool named {name!r} in the {ENTRY_POINT_GROUP} entry-point group; installed: {known}"
        )
    try:
        target: Any = found.load()
    except Exception as exc:  # a broken plugin must not look like a setpoint bug
        raise ConfigError(f"cannot load tool {name!r} ({found.value}): {exc}") from exc
    if not isinstance(target, BaseTool) and callable(target):
        factory: Callable[[], Any] = target
        target = factory()
    if not isinstance(target, BaseTool):
        raise ConfigError(
            f"entry point {name!r} ({found.value}) gave {type(target).__name__}, not a LangChain tool"
        )
    return target


def run_check(name: str, text: str) -> Verdict:
    """Call the registered check ``name`` on ``text`` and read its answer as a ``Verdict``."""
    from setpoint.tools.policy import Verdict

    out = get_tool(name).invoke({"text": text})
    if not isinstance(out, Mapping) or not isinstance(out.get("allowed"), bool):
        raise ConfigError(
            f"tool {name!r} must return a mapping with a boolean 'allowed', got {out!r:.120}"
        )
    if out["allowed"]:
        return Verdict(name, True, score=out.get("score"))
    reason = str(out.get("reason") or name)
    return Verdict(name, False, reason, str(out.get("matched", "")), out.get("score"))
