"""Routing decisions on tables of numbers."""

from __future__ import annotations

import math

import pytest

from setpoint.agents.thermostat import Thermostat, Thresholds, choose_route
from setpoint.errors import ConfigError


@pytest.mark.parametrize(
    ("signal", "thresholds", "used", "route"),
    [
        (0.5, Thresholds(probe_setpoint=1.0), 0, "answer"),
        (1.0, Thresholds(probe_setpoint=1.0), 0, "answer"),  # at the setpoint: not above
        (1.5, Thresholds(probe_setpoint=1.0), 0, "retrieve"),
        (1.5, Thresholds(probe_setpoint=1.0, max_retrievals=1), 1, "escalate"),  # budget spent
        (1.5, Thresholds(probe_setpoint=1.0, max_retrievals=0), 0, "escalate"),
        (9.0, Thresholds(probe_setpoint=1.0, escalate_above=8.0), 0, "escalate"),
        (9.0, Thresholds(), 0, "answer"),  # default probe setpoint is inf
        (math.nan, Thresholds(), 0, "escalate"),
    ],
)
def test_choose_route(signal: float, thresholds: Thresholds, used: int, route: str) -> None:
    assert choose_route(signal, thresholds, retrievals_used=used) == route


def fires(entropies: list[float], **kw: float) -> list[int]:
    thermostat = Thermostat(Thresholds(**kw))  # type: ignore[arg-type]
    return [i for i, h in enumerate(entropies) if thermostat.update(h).fired]


def test_needs_n_consecutive_steps() -> None:
    kw = dict(setpoint=1.0, ema_alpha=1.0, consecutive_steps=3, warmup_steps=0, max_retrievals=5)
    assert fires([2, 2, 0, 2, 2, 0], **kw) == []
    assert fires([2, 2, 2, 0], **kw) == [2]


def test_ema_smooths_a_single_spike() -> None:
    kw = dict(setpoint=1.0, ema_alpha=0.3, consecutive_steps=1, warmup_steps=0)
    assert fires([0.2, 2.0, 0.2, 0.2], **kw) == []  # EMA after the spike: 0.74
    assert fires([0.2, 4.0, 0.2], **kw) == [1]  # EMA 1.34


def test_hysteresis_rearms_only_below_band() -> None:
    kw = dict(
        setpoint=1.0,
        hysteresis=0.5,
        ema_alpha=1.0,
        consecutive_steps=1,
        warmup_steps=0,
        max_retrievals=5,
    )
    # dips to 0.8 (inside the band) do not re-arm; 0.4 does
    assert fires([2, 0.8, 2, 0.4, 2], **kw) == [0, 4]


def test_budget_limits_firing_and_is_recorded() -> None:
    thermostat = Thermostat(
        Thresholds(
            setpoint=1.0,
            hysteresis=0.0,
            ema_alpha=1.0,
            consecutive_steps=1,
            warmup_steps=0,
            max_retrievals=1,
        )
    )
    events = [thermostat.update(h).fired for h in (2, 0, 2)]
    assert events == [True, False, False]
    assert thermostat.fired_after_budget and thermostat.budget_left == 0


def test_warmup_steps_are_ignored() -> None:
    kw = dict(setpoint=1.0, ema_alpha=1.0, consecutive_steps=1, warmup_steps=2)
    assert fires([5, 5, 0.1, 5], **kw) == [3]


@pytest.mark.parametrize(
    "bad",
    [
        dict(ema_alpha=0.0),
        dict(hysteresis=-1.0),
        dict(consecutive_steps=0),
        dict(max_retrievals=-1),
        dict(setpoint=math.nan),
    ],
)
def test_bad_thresholds_rejected(bad: dict[str, float]) -> None:
    with pytest.raises(ConfigError):
        Thresholds(**bad)  # type: ignore[arg-type]
