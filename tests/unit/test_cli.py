"""The CLI's promises that need no model: light import, help everywhere, one-line errors."""

from __future__ import annotations

import subprocess
import sys

import pytest

from setpoint.cli import build_parser, main


def test_import_setpoint_is_light() -> None:
    code = (
        "import sys, setpoint, setpoint.cli, setpoint.graphs.graph\n"
        "heavy = [m for m in ('torch', 'transformers', 'weaviate', 'sentence_transformers') if m in sys.modules]\n"
        "print(heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("verb", ["setup", "ingest", "ask", "demo"])
def test_help_on_every_verb(verb: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args([verb, "--help"])
    assert exit_info.value.code == 0
    assert "usage: setpoint " + verb in capsys.readouterr().out


@pytest.mark.parametrize(
    ("question", "message"),
    [
        ("", "the question is empty"),
        ("   ", "the question is empty"),
        ("x" * 3000, "over the limit of 2000"),
    ],
)
def test_bad_question_one_line_nonzero(
    question: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["ask", question]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_bad_env_setting_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SETPOINT_SETPOINT", "warm")
    assert main(["ask", "Who wrote Hamlet?"]) == 2
    assert "SETPOINT_SETPOINT='warm' is not a number" in capsys.readouterr().err
