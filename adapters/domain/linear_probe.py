"""A logistic-regression probe on one hidden layer that scores "the closed-book answer will be wrong".

Stored as JSON next to the model it belongs to: layer, standardisation, weights, the data it
saw and its validation AUROC. Scoring is a dot product, so it costs nothing next to prefill.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from setpoint.adapters.domain.json_file import write_json
from setpoint.errors import ConfigError

__all__ = ["LinearProbe"]


@dataclass(frozen=True)
class LinearProbe:
    """``P(wrong) = sigmoid(w · (h - mean) / scale + b)`` on the hidden state of ``layer``.

    Example:
        >>> probe = LinearProbe(layer=1, mean=[0.0, 0.0], scale=[1.0, 1.0], weights=[2.0, 0.0], bias=0.0)
        >>> round(probe.score([1.0, 5.0]), 3)
        0.881
    """

    layer: int
    mean: list[float]
    scale: list[float]
    weights: list[float]
    bias: float
    model: str = ""
    adapter: str | None = None
    validation_auroc: float = math.nan
    trained_on: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.weights)
        if n == 0 or len(self.mean) != n or len(self.scale) != n:
            raise ConfigError("probe weights, mean and scale must be non-empty and equally long")
        if any(s <= 0 for s in self.scale):
            raise ConfigError("probe scale values must be positive")

    def score(self, hidden: Sequence[float]) -> float:
        if len(hidden) != len(self.weights):
            raise ConfigError(
                f"probe expects a hidden state of size {len(self.weights)}, got {len(hidden)}; "
                "it was trained for another model"
            )
        z = self.bias + sum(
            w * (h - m) / s
            for w, h, m, s in zip(self.weights, hidden, self.mean, self.scale, strict=True)
        )
        return 1.0 / (1.0 + math.exp(-z)) if z >= 0 else math.exp(z) / (1.0 + math.exp(z))

    def save(self, path: Path) -> Path:
        return write_json(path, asdict(self))

    @classmethod
    def load(cls, path: Path) -> LinearProbe:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigError(
                f"cannot read probe file {path}: {exc}; run `setpoint calibrate`"
            ) from None
        try:
            return cls(**data)
        except TypeError as exc:
            raise ConfigError(f"probe file {path} is malformed: {exc}") from None
