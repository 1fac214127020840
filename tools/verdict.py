"""``Verdict``: the outcome of one policy check, shared by the policy and the plug-in registry."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["Verdict"]


@dataclass(frozen=True)
class Verdict:
    """The outcome of one check: ``allowed``, and when not, a reason code and the matched text.

    Example:
        >>> Verdict("pii", False, "pii", "email").to_dict()["reason"]
        'pii'
    """

    check: str
    allowed: bool
    reason: str = ""
    matched: str = ""
    score: float | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "check": self.check,
            "allowed": self.allowed,
            "reason": self.reason,
            "matched": self.matched,
        }
        if self.score is not None:
            out["score"] = round(float(self.score), 4)
        return out
