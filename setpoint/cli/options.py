"""From parsed flags to run settings: the ``Settings`` and run-context overrides every verb shares."""

from __future__ import annotations

import argparse
import math
import os
from pathlib import Path
from typing import Any

from setpoint.settings import Settings

__all__ = [
    "CONTEXT_FLAGS",
    "context_overrides",
    "number",
    "sample_corpus",
    "settings_from",
    "squad_dir",
]

#: Run-context fields a flag of the same name (``--top-k`` → ``top_k``) overrides. ``setpoint``
#: is also a settings field: listed here too, so a calibration file cannot win over the flag.
CONTEXT_FLAGS = (
    "setpoint",
    "probe_setpoint",
    "max_retrievals",
    "reader_setpoint",
    "hop_setpoint",
    "nested_hops",
    "compare_dates",
    "reread_echo",
    "top_k",
    "alpha",
    "max_new_tokens",
    "adapter",
)


def number(text: str) -> float:
    """An argparse type: a float, with ``inf`` spelled as users write it.

    Example:
        >>> number("1.6"), number("inf")
        (1.6, inf)
    """
    try:
        return math.inf if text.lower() in {"inf", "infinity"} else float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a number (use e.g. 1.6 or inf)"
        ) from None


def settings_from(args: argparse.Namespace) -> Settings:
    """``SETPOINT_*`` settings with the flags of ``args`` applied (flags win).

    Raises:
        ConfigError: a bad environment variable, or a bad ``--collection`` name.
    """
    settings = Settings.from_env()
    changes: dict[str, Any] = {}
    if getattr(args, "collection", None):
        changes["collection"] = args.collection
    if getattr(args, "setpoint", None) is not None:
        changes["setpoint"] = args.setpoint
    if getattr(args, "trace_file", None):
        changes["trace_file_override"] = Path(args.trace_file)
    if getattr(args, "console_trace", False):
        changes["trace_console"] = True
    if getattr(args, "review", False):
        changes["review"] = True
    return settings.replace(**changes) if changes else settings


def context_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The run-context fields given on the command line (``Setpoint.context(**these)``)."""
    values = {name: getattr(args, name, None) for name in CONTEXT_FLAGS}
    return {name: value for name, value in values.items() if value is not None}


def sample_corpus() -> Path:
    """The packaged SQuAD sample (50 passages) that ``demo`` and a bare ``ingest`` write."""
    from importlib import resources

    return Path(str(resources.files("setpoint").joinpath("data/squad_sample.jsonl")))


def squad_dir(args: argparse.Namespace) -> Path:
    """``--squad-dir``, else ``SETPOINT_SQUAD_DIR``, else ``../shared/data/squad``."""
    if args.squad_dir:
        return Path(args.squad_dir).expanduser()
    env = os.environ.get("SETPOINT_SQUAD_DIR")
    return Path(env).expanduser() if env else Path.cwd().parent / "shared" / "data" / "squad"
