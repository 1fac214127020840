"""The per-token thermostat and the run context that sets it, on tables of numbers."""

from __future__ import annotations

import math

import pytest

from setpoint.agents.thermostat import Thermostat
from setpoint.errors import ConfigError
from setpoint.graphs.context import DEFAULT_SETPOINT, Context


def fires(entropies: list[float], **kw: float) -> list[int]:
    thermostat = Thermostat(Context(**kw))  # type: ignore[arg-type]
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
        Context(
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
    ("bad", "field"),
    [
        (dict(ema_alpha=0.0), "ema_alpha"),
        (dict(ema_alpha=1.5), "ema_alpha"),
        (dict(hysteresis=-1.0), "hysteresis"),
        (dict(hysteresis=math.nan), "hysteresis"),
        (dict(consecutive_steps=0), "consecutive_steps"),
        (dict(warmup_steps=-1), "warmup_steps"),
        (dict(max_retrievals=-1), "max_retrievals"),
        (dict(setpoint=math.nan), "setpoint"),
        (dict(probe_setpoint=math.nan), "probe_setpoint"),
        (dict(escalate_above=math.nan), "escalate_above"),
        (dict(abstain_above=math.nan), "abstain_above"),
        (dict(reader_setpoint=math.nan), "reader_setpoint"),
        (dict(top_k=0), "top_k"),
        (dict(alpha=1.5), "alpha"),
        (dict(max_new_tokens=0), "max_new_tokens"),
        (dict(trigger="logits"), "trigger"),
        (dict(reader_samples=33), "reader_samples"),
    ],
)
def test_bad_context_rejected_at_construction(bad: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        Context(**bad)  # type: ignore[arg-type]


def test_context_defaults_and_adapter_list() -> None:
    ctx = Context(adapters="geo,,nfl")  # type: ignore[arg-type]
    assert ctx.adapters == ("geo", "nfl")
    assert ctx.setpoint == DEFAULT_SETPOINT
    assert Context(setpoint=math.inf, probe_setpoint=0.0).setpoint == math.inf


def test_settings_start_from_the_context_default() -> None:
    from setpoint.settings import Settings

    assert Settings().thermostat_setpoint == Context().setpoint == DEFAULT_SETPOINT
