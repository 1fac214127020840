"""`setpoint trace` on a span file written by a real (tiny-model) run."""

from __future__ import annotations

from pathlib import Path

import pytest

from setpoint.agents.resources import Resources
from setpoint.api import Setpoint
from setpoint.cli import main
from setpoint.graphs.context import Context
from setpoint.tracing import configure_tracing


def test_trace_tree_sparkline_and_png(
    resources: Resources, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spans = tmp_path / "spans.jsonl"
    provider = configure_tracing(jsonl_path=spans)
    res = Resources(
        settings=resources.settings,
        tracer_provider=provider,
        _generator=resources.generator(),
        _store=resources.store(),
    )
    session = Setpoint(res.settings, tracer_provider=provider, resources=res)
    result = session.ask(
        "who won the super bowl ?",
        context=Context(
            max_new_tokens=6, setpoint=0.0, consecutive_steps=1, escalate_after_budget=False
        ),
    )
    provider.shutdown()
    png = tmp_path / "run.png"
    assert main(["trace", str(spans), "--png", str(png)]) == 0
    out = capsys.readouterr().out
    assert f"trace {result.trace_id}" in out
    for name in (
        "invoke_agent setpoint",
        "node probe",
        "node generate",
        "node retrieve",
        "chat tiny-llama",
    ):
        assert name in out
    assert "route=retrieve" in out and "  entropy " in out
    assert any(ch in out for ch in "▁▂▃▄▅▆▇█")
    assert png.stat().st_size > 1000


def test_trace_rejects_foreign_lines(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "spans.jsonl"
    bad.write_text('{"not": "a span"}\n', encoding="utf-8")
    assert main(["trace", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert "spans.jsonl:1 is not an OpenTelemetry span" in err and len(err.splitlines()) == 1
