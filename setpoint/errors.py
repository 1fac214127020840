"""The error tree: every failure a user can meet is one of these, with a message that says what to do."""

from __future__ import annotations

__all__ = [
    "BusyError",
    "ConfigError",
    "IngestError",
    "InputError",
    "ModelError",
    "PolicyViolation",
    "ProvisioningError",
    "RetrievalError",
    "SetpointError",
]


class SetpointError(RuntimeError):
    """Base class. ``str(err)`` is one line: what was wrong and what to do about it.

    A ``RuntimeError``: the LangGraph API server passes the message of a failed run on to
    its client only for built-in error kinds (others read "An internal error occurred"),
    and a served run's error must say what to do, as in process (a busy generator's
    "retry after N s", a bad question's reason).
    """


class ConfigError(SetpointError):
    """A setting, flag or configuration file has a bad value."""


class InputError(SetpointError):
    """A question or document the user gave cannot be used as it is (empty, too long, binary)."""


class ModelError(SetpointError):
    """The generator or embedder could not be loaded or run (missing file, wrong format)."""


class BusyError(ModelError):
    """Every generation slot and queue place is taken; ``retry_after_s`` says when to try again."""

    def __init__(self, message: str, *, retry_after_s: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class ProvisioningError(SetpointError):
    """``setpoint setup`` could not install or build a component (no Go, no space, build error)."""


class RetrievalError(SetpointError):
    """Weaviate could not be reached or answered with an error."""


class IngestError(SetpointError):
    """An ingestion run could not start (unreadable file, server down); per-line problems are reported, not raised."""


class PolicyViolation(SetpointError):
    """A policy check refused the input; carries the machine-readable reason code."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
