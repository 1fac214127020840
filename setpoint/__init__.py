"""setpoint: decide, token by token, whether an answer comes from the weights, from Weaviate, or from escalation.

Importing this package is cheap: torch, transformers and weaviate load only when a model or
the store is first used.

Example:
    >>> import setpoint
    >>> with setpoint.Setpoint() as sp:  # doctest: +SKIP
    ...     print(sp.ask("What is the capital of France?").route)
    answer
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from setpoint.errors import (
    ConfigError,
    IngestError,
    InputError,
    ModelError,
    PolicyViolation,
    ProvisioningError,
    RetrievalError,
    SetpointError,
)
from setpoint.openmp import apply_openmp_defaults
from setpoint.settings import Settings

if TYPE_CHECKING:
    from setpoint.api import AskResult, Setpoint
    from setpoint.events import NodeEvent, ResultEvent, StreamEvent, ThermostatEvent, TokenEvent
    from setpoint.graphs.context import Context

__all__ = [
    "AskResult",
    "ConfigError",
    "Context",
    "IngestError",
    "InputError",
    "ModelError",
    "NodeEvent",
    "PolicyViolation",
    "ProvisioningError",
    "ResultEvent",
    "RetrievalError",
    "Setpoint",
    "SetpointError",
    "Settings",
    "StreamEvent",
    "ThermostatEvent",
    "TokenEvent",
    "__version__",
]

__version__ = "0.1.0"

# Before anything of setpoint imports torch: how its OpenMP threads wait (setpoint/openmp.py).
apply_openmp_defaults(os.environ)

_LAZY = {
    "Setpoint": "setpoint.api",
    "AskResult": "setpoint.api",
    "Context": "setpoint.graphs.context",
    **dict.fromkeys(
        ("NodeEvent", "ResultEvent", "StreamEvent", "ThermostatEvent", "TokenEvent"),
        "setpoint.events",
    ),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'setpoint' has no attribute {name!r}")
