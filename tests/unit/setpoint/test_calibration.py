"""Setpoints from data: the thermostat sweep of `setpoint calibrate`, the stream split and the calibration file."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from setpoint.api import calibrated_context
from setpoint.graphs.context import Context
from setpoint.jobs.calibration import _entropy_setpoint, thermostat_fires
from setpoint.jobs.eval_questions import build_stream
from setpoint.jobs.eval_strategies import strategy_context


def _rows(traces: list[tuple[list[float], float]]) -> list[dict[str, object]]:
    return [{"entropies": e, "f1": f1} for e, f1 in traces]


def test_thermostat_fires_only_past_warmup_and_hold() -> None:
    ctx = Context(setpoint=1.0, ema_alpha=1.0, consecutive_steps=2, warmup_steps=1)
    assert not thermostat_fires(
        ctx, [5.0, 5.0]
    )  # the warm-up token is ignored, one step is not two
    assert thermostat_fires(ctx, [0.1, 5.0, 5.0])
    assert not thermostat_fires(ctx, [0.1, 0.5, 0.9, 0.2])


def test_entropy_setpoint_catches_short_wrong_answers_with_a_short_shape() -> None:
    # Right answers: two calm tokens. Wrong answers: two hot tokens, too short for the
    # default shape (1 warm-up token, 2 steps over the setpoint) to ever fire.
    rows = _rows([([0.2, 0.1], 1.0)] * 6 + [([3.0, 2.5], 0.0)] * 4)
    choice = _entropy_setpoint(Context(ema_alpha=1.0), rows, target_rate=0.5)
    assert choice["wrong_caught"] == 1.0
    assert choice["retrieval_rate"] == pytest.approx(0.4)
    assert (choice["warmup_steps"], choice["consecutive_steps"]) in {(0, 2), (0, 1), (1, 1)}
    # The lowest setpoint within the budget: at or below the calm answers' peak of 0.2.
    assert choice["setpoint"] <= 0.2


def test_entropy_setpoint_respects_the_retrieval_budget() -> None:
    rows = _rows([([h, h, h], 0.0) for h in (0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0)])
    choice = _entropy_setpoint(Context(ema_alpha=1.0), rows, target_rate=0.25)
    assert choice["retrieval_rate"] <= 0.25
    assert choice["wrong_caught"] == pytest.approx(0.25)
    assert choice["setpoint"] == pytest.approx(3.0)  # fires on 3.5 and 4.0 only


def test_entropy_setpoint_none_when_nothing_fits() -> None:
    rows = _rows([([9.0, 9.0, 9.0], 0.0)] * 3)
    assert _entropy_setpoint(Context(), rows, target_rate=0.0)["setpoint"] is None


def test_stream_skip_leaves_out_the_calibration_head() -> None:
    passages = [{"id": f"p{i}", "title": f"T{i % 4}", "text": "x"} for i in range(8)]
    questions = [
        {"id": f"q{i}", "question": f"q {i}?", "answers": ["a"], "passage_id": f"p{i % 8}"}
        for i in range(40)
    ]
    full = build_stream(questions, passages, core_titles={"T0", "T1"}, limit=None, seed=3)
    head = build_stream(questions, passages, core_titles={"T0", "T1"}, limit=10, seed=3)
    tail = build_stream(questions, passages, core_titles={"T0", "T1"}, limit=15, seed=3, skip=10)
    assert head == full[:10] and tail == full[10:25]
    assert {q.id for q in head}.isdisjoint(q.id for q in tail)
    assert {q.part for q in full} == {"core", "fringe"}


def test_calibration_file_sets_adapter_thermostat_and_probe(tmp_path: Path) -> None:
    path = tmp_path / "calibration.json"
    path.write_text(
        json.dumps(
            {
                "adapter": "/adapters/core",
                "entropy_setpoint": 0.7,
                "thermostat_warmup_steps": 0,
                "thermostat_consecutive_steps": 1,
                "probe_path": "/p.json",
                "probe_setpoint": 0.4,
            }
        )
    )
    fields = calibrated_context(path)
    assert fields == {
        "adapter": "/adapters/core",
        "setpoint": 0.7,
        "warmup_steps": 0,
        "consecutive_steps": 1,
        "probe_path": "/p.json",
        "probe_setpoint": 0.4,
    }
    ctx = Context(**fields)
    # The entropy strategy is the thermostat alone; the probe strategy keeps the probe.
    entropy = strategy_context(ctx, "entropy", "/p.json")
    assert (
        entropy.probe_path is None
        and entropy.probe_setpoint == math.inf
        and entropy.setpoint == 0.7
    )
    assert strategy_context(ctx, "probe", "/p.json").probe_path == "/p.json"
