"""The thermostat: the per-token trigger, pure (no model, no I/O).

``Thermostat`` watches the per-token entropy during generation and fires a retrieval when
the smoothed signal stays above the setpoint for N consecutive steps, re-arming only once it
falls below ``setpoint - hysteresis``. What a firing means for the route is
``setpoint.agents.decide``'s business.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from setpoint.graphs.context import Context

__all__ = ["Thermostat", "ThermostatEvent", "probe_signal"]


def probe_signal(entropy: float, lens_entropy: dict[int, float] | None = None) -> float:
    """The single number the probe routes on: predictive entropy of the first answer token.

    Kept as a function so that a calibrated combination (logit lens, trained probe) can
    replace it in one place.
    """
    del lens_entropy  # recorded for calibration; not part of the default rule
    return entropy


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
        >>> from setpoint.graphs.context import Context
        >>> t = Thermostat(Context(setpoint=1.0, consecutive_steps=2, warmup_steps=0, ema_alpha=1.0))
        >>> [t.update(h).fired for h in (0.2, 1.5, 1.6, 1.7)]
        [False, False, True, False]
    """

    def __init__(self, thresholds: Context, *, retrievals_used: int = 0) -> None:
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
