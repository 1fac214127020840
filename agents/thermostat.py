"""The thermostat: pure routing decisions from uncertainty numbers (no model, no I/O).

``choose_route`` decides before generation from the probe's signals; ``Thermostat`` watches
the per-token entropy during generation and fires a retrieval when the smoothed signal stays
above the setpoint for N consecutive steps, re-arming only once it falls below
``setpoint - hysteresis``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Literal

from setpoint.errors import ConfigError

__all__ = ["Route", "Thermostat", "ThermostatEvent", "Thresholds", "choose_route", "probe_signal"]

Route = Literal["answer", "retrieve", "escalate"]


@dataclass(frozen=True)
class Thresholds:
    """Every number the routing decisions use.

    Attributes:
        probe_setpoint: probe signal (nats) above which the question goes to retrieval
            before any token is generated.
        setpoint: smoothed per-token entropy (nats) above which generation is uncertain.
        hysteresis: the trigger re-arms only below ``setpoint - hysteresis``.
        ema_alpha: weight of the newest step in the exponential moving average (0 < a <= 1).
        consecutive_steps: steps the smoothed signal must stay above the setpoint to fire.
        warmup_steps: first answer tokens the per-step trigger ignores (the first token is the
            probe's business, and its entropy is high for any phrasing choice).
        max_retrievals: retrieval budget per question.
        escalate_above: probe signal above which the question is escalated outright.
        abstain_above: mean answer entropy above which a retrieved answer is still too unsure
            to give once the budget is spent (``inf`` never abstains).

    Example:
        >>> Thresholds(setpoint=2.0).hysteresis
        0.4
    """

    probe_setpoint: float = math.inf
    setpoint: float = 1.6
    hysteresis: float = 0.4
    ema_alpha: float = 0.5
    consecutive_steps: int = 2
    warmup_steps: int = 1
    max_retrievals: int = 1
    escalate_above: float = math.inf
    abstain_above: float = math.inf

    def __post_init__(self) -> None:
        if math.isnan(self.setpoint) or math.isnan(self.probe_setpoint):
            raise ConfigError("a setpoint cannot be NaN; use inf to disable it")
        if self.hysteresis < 0:
            raise ConfigError(f"hysteresis must be >= 0, got {self.hysteresis}")
        if not 0 < self.ema_alpha <= 1:
            raise ConfigError(f"ema_alpha must be in (0, 1], got {self.ema_alpha}")
        if self.consecutive_steps < 1:
            raise ConfigError(f"consecutive_steps must be >= 1, got {self.consecutive_steps}")
        if self.warmup_steps < 0:
            raise ConfigError(f"warmup_steps must be >= 0, got {self.warmup_steps}")
        if self.max_retrievals < 0:
            raise ConfigError(f"max_retrievals must be >= 0, got {self.max_retrievals}")

    def to_dict(self) -> dict[str, float]:
        return {k: float(v) for k, v in asdict(self).items()}


def probe_signal(entropy: float, lens_entropy: dict[int, float] | None = None) -> float:
    """The single number the probe routes on: predictive entropy of the first answer token.

    Kept as a function so that a calibrated combination (logit lens, trained probe) can
    replace it in one place.
    """
    del lens_entropy  # recorded for calibration; not part of the default rule
    return entropy


def choose_route(signal: float, thresholds: Thresholds, *, retrievals_used: int = 0) -> Route:
    """Route a question from its probe signal.

    Returns ``"escalate"`` above ``escalate_above``, or when retrieval is needed but the
    budget is spent; ``"retrieve"`` above ``probe_setpoint``; otherwise ``"answer"``.

    Example:
        >>> choose_route(0.3, Thresholds(probe_setpoint=1.0))
        'answer'
        >>> choose_route(2.5, Thresholds(probe_setpoint=1.0))
        'retrieve'
        >>> choose_route(2.5, Thresholds(probe_setpoint=1.0, max_retrievals=0))
        'escalate'
    """
    if math.isnan(signal):
        return "escalate"
    if signal > thresholds.escalate_above:
        return "escalate"
    if signal > thresholds.probe_setpoint:
        return "retrieve" if retrievals_used < thresholds.max_retrievals else "escalate"
    return "answer"


@dataclass(frozen=True)
class ThermostatEvent:
    """What one step did to the thermostat."""

    step: int
    entropy: float
    ema: float
    above: int
    fired: bool
    armed: bool


class Thermostat:
    """Per-token trigger: EMA smoothing, N consecutive steps above setpoint, hysteresis, budget.

    Example:
        >>> t = Thermostat(Thresholds(setpoint=1.0, consecutive_steps=2, warmup_steps=0, ema_alpha=1.0))
        >>> [t.update(h).fired for h in (0.2, 1.5, 1.6, 1.7)]
        [False, False, True, False]
    """

    def __init__(self, thresholds: Thresholds, *, retrievals_used: int = 0) -> None:
        self.thresholds = thresholds
        self.retrievals_used = retrievals_used
        self.step = 0
        self.ema: float | None = None
        self.above = 0
        self.armed = True
        self.fired_after_budget = False

    @property
    def budget_left(self) -> int:
        return max(0, self.thresholds.max_retrievals - self.retrievals_used)

    def update(self, entropy: float) -> ThermostatEvent:
        """Feed one step's entropy; ``fired`` is True on the step that calls for retrieval."""
        th = self.thresholds
        step = self.step
        self.step += 1
        if step < th.warmup_steps:
            return ThermostatEvent(step, entropy, entropy, 0, False, self.armed)
        self.ema = (
            entropy if self.ema is None else th.ema_alpha * entropy + (1 - th.ema_alpha) * self.ema
        )
        fired = False
        if self.ema > th.setpoint:
            self.above += 1
        else:
            self.above = 0
            if self.ema < th.setpoint - th.hysteresis:
                self.armed = True
        if self.armed and self.above >= th.consecutive_steps:
            self.armed = False
            if self.budget_left > 0:
                fired = True
                self.retrievals_used += 1
            else:
                self.fired_after_budget = True
        return ThermostatEvent(step, entropy, self.ema, self.above, fired, self.armed)
