"""The ``setpoint.tools`` entry-point group: setpoint's own checks and any a package adds, by name.

A package extends setpoint by declaring, in its ``pyproject.toml``::

    [project.entry-points."setpoint.tools"]
    profanity = "my_package.checks:make_profanity_tool"

The target is a LangChain ``BaseTool`` or a zero-argument callable returning one. It plays
one of two parts (or both):

- **check**: a tool named in the policy's ``extra_checks`` is called with ``{"text": ...}`` on
  the question, on each retrieved passage or on the answer, and must return a mapping with
  ``allowed`` (bool) and, when not allowed, a ``reason`` code (the graph escalates with it, or
  drops the passage).
- **answerer**: a tool with a ``handles(question) -> Mapping | None`` method declares which
  questions it answers. ``match_question`` asks every registered answerer; the first (by
  entry-point name) to return arguments gets the question: the graph takes route ``tool``,
  invokes the tool with those arguments and gives its result as the answer (see
  ``setpoint.agents.call_tool``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

from setpoint.errors import ConfigError
from setpoint.tools.verdict import Verdict

if TYPE_CHECKING:
    from langchain_core.tools import BaseTool

__all__ = [
    "ENTRY_POINT_GROUP",
    "ToolMatch",
    "get_tool",
    "match_question",
    "registered_names",
    "run_check",
]

ENTRY_POINT_GROUP = "setpoint.tools"

_log = logging.getLogger(__name__)


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
    out = get_tool(name).invoke({"text": text})
    if not isinstance(out, Mapping) or not isinstance(out.get("allowed"), bool):
        raise ConfigError(
            f"tool {name!r} must return a mapping with a boolean 'allowed', got {out!r:.120}"
        )
    if out["allowed"]:
        return Verdict(name, True, score=out.get("score"))
    reason = str(out.get("reason") or name)
    return Verdict(name, False, reason, str(out.get("matched", "")), out.get("score"))


@dataclass(frozen=True)
class ToolMatch:
    """A registered tool that declared it answers a question, and the arguments to call it with."""

    #: The entry-point name (``get_tool(name)`` loads it).
    name: str
    args: dict[str, Any]


def match_question(question: str) -> ToolMatch | None:
    """The first registered tool, by entry-point name, whose ``handles(question)`` gives arguments.

    Tools without a ``handles`` method (the checks) are skipped. So is a plug-in that fails to
    load, raises in ``handles`` or answers with something other than a mapping: it is logged
    as a warning, and the question goes on to the model as if the plug-in were not installed,
    so one broken package cannot stop every question.

    Example:
        >>> match_question("What is 12 * (3 + 4)?")  # with setpoint-calculator  # doctest: +SKIP
        ToolMatch(name='calculator', args={'expression': '12 * (3 + 4)'})
    """
    for name in sorted(registered_names()):
        try:
            tool = get_tool(name)
        except Exception as exc:  # a factory may raise anything; get_tool wraps only load errors
            _log.warning("skipping tool %r: %s", name, exc)
            continue
        handles = getattr(tool, "handles", None)
        if not callable(handles):
            continue
        try:
            args = handles(question)
        except Exception as exc:
            _log.warning("tool %r failed to match a question, skipped: %s", name, exc)
            continue
        if args is None:
            continue
        if not isinstance(args, Mapping):
            _log.warning(
                "tool %r: handles() must return a mapping of arguments or None, got %s",
                name,
                type(args).__name__,
            )
            continue
        return ToolMatch(name, dict(args))
    return None
