"""`setpoint eval --limit 5` end to end on the real model and Weaviate, and its resume."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

STRATEGIES = ["never", "always", "flare", "entropy", "grader", "oracle"]


def test_eval_limit_5_end_to_end_and_resumes(tmp_path: Path, squad_dir: Path) -> None:
    env = {
        **os.environ,
        "SETPOINT_WEAVIATE_DATA": str(tmp_path / "weaviate"),
        "SETPOINT_TRACE_FILE": str(tmp_path / "spans.jsonl"),
        "SETPOINT_WEAVIATE_URL": "",
    }
    out = tmp_path / "eval"
    cmd = [
        sys.executable, "-m", "setpoint.cli", "eval", "--limit", "5", "--quiet",
        "--squad-dir", str(squad_dir), "--out", str(out), "--collection", "EvalTest",
        "--strategies", ",".join(STRATEGIES),
    ]  # fmt: skip
    first = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900, check=False)
    assert first.returncode == 0, first.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    rows = {r["strategy"]: r for r in summary["rows"]}
    assert set(rows) == set(STRATEGIES)
    assert all(r["questions"] == 5 for r in rows.values())
    assert rows["never"]["retrieval_calls_per_q"] == 0.0
    assert rows["always"]["retrieved_share"] == 1.0
    assert rows["grader"]["model_calls_per_q"] >= 2.0  # the grader's own decision is a model call
    assert rows["oracle"]["f1"] >= max(rows["never"]["f1"], rows["always"]["f1"]) - 1e-9
    assert summary["split"]["seed"] == 0 and summary["stream"]["questions"] == 5
    assert (out / "frontier.png").stat().st_size > 0 and (out / "auroc.png").stat().st_size > 0
    lines = (out / "results.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 5 * (len(STRATEGIES) - 1)  # oracle is derived, not run

    # A rerun finds every question done: nothing is appended, the table is the same.
    second = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert second.returncode == 0, second.stderr[-2000:]
    assert (out / "results.jsonl").read_text(encoding="utf-8").splitlines() == lines
    again = {r["strategy"]: r["f1"] for r in json.loads((out / "summary.json").read_text())["rows"]}
    assert again == {name: row["f1"] for name, row in rows.items()}
