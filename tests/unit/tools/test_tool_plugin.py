"""The example plug-in (examples/setpoint_calculator) registered as pip would: the graph routes arithmetic to it, traced."""

from __future__ import annotations

import json
import math
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from setpoint.agents.resources import Resources
from setpoint.api import Setpoint
from setpoint.graphs.context import Context
from setpoint.graphs.graph import build_graph
from setpoint.tools.registry import get_tool, match_question, registered_names

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "setpoint_calculator"


@pytest.fixture
def calculator(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """What ``pip install -e examples/setpoint_calculator`` registers, without installing anything:
    its ``src`` on sys.path and a dist-info holding the entry points its pyproject.toml declares."""
    project = tomllib.loads((EXAMPLE / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    declared = project["entry-points"]["setpoint.tools"]
    info = tmp_path / f"{project['name'].replace('-', '_')}-{project['version']}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n",
        encoding="utf-8",
    )
    (info / "entry_points.txt").write_text(
        "[setpoint.tools]\n" + "".join(f"{k} = {v}\n" for k, v in declared.items()),
        encoding="utf-8",
    )
    monkeypatch.syspath_prepend(str(EXAMPLE / "src"))
    monkeypatch.syspath_prepend(str(tmp_path))
    get_tool.cache_clear()
    import setpoint_calculator

    yield setpoint_calculator
    get_tool.cache_clear()


def session(res: Resources) -> Setpoint:
    return Setpoint(res.settings, tracer_provider=res.tracer_provider, resources=res)


def ancestors(span: ReadableSpan, spans: list[ReadableSpan]) -> list[str]:
    """Names of the span's parents up to the root, nearest first."""
    by_id = {s.context.span_id: s for s in spans}
    names: list[str] = []
    parent = span.parent
    while parent is not None:
        current = by_id[parent.span_id]
        names.append(current.name)
        parent = current.parent
    return names


def test_the_example_declares_a_calculator_tool(calculator: Any) -> None:
    assert "calculator" in registered_names()
    tool = get_tool("calculator")
    assert tool.name == "calculator" and "arithmetic" in tool.description.lower()
    assert tool.invoke({"expression": "12 * (3 + 4)"}) == "12 * (3 + 4) = 84"
    assert match_question("What is 12 * (3 + 4)?") is not None
    assert match_question("who won the super bowl ?") is None


def test_arithmetic_is_answered_by_the_plugin_in_a_traced_tool_span(
    calculator: Any, resources: Resources, spans: InMemorySpanExporter
) -> None:
    resources.settings = resources.settings.replace(trace_content=True)
    with session(resources) as sp:
        result = sp.ask("What is 12 * (3 + 4)?")
    assert result.answer == "12 * (3 + 4) = 84"
    assert result.route == "tool" and result.status == "answered"
    assert result.retrieval_calls == 0 and resources.store().searches == 0

    finished = list(spans.get_finished_spans())
    names = [s.name for s in finished]
    # No model ran: the tool's answer went straight to the output checks.
    assert "node probe" not in names and not any(n.startswith("chat ") for n in names)
    assert names.index("node call_tool") < names.index("node check_output")
    [tool_span] = [s for s in finished if s.name == "execute_tool calculator"]
    [root] = [s for s in finished if s.name == "invoke_agent setpoint"]
    assert ancestors(tool_span, finished) == ["node call_tool", "invoke_agent setpoint"]
    assert tool_span.context.trace_id == root.context.trace_id
    attrs = dict(tool_span.attributes or {})
    assert attrs["gen_ai.operation.name"] == "execute_tool"
    assert attrs["gen_ai.tool.name"] == "calculator" and attrs["gen_ai.tool.type"] == "function"
    assert str(attrs["gen_ai.tool.call.id"]).startswith("call_")
    assert json.loads(str(attrs["gen_ai.tool.call.arguments"])) == {"expression": "12 * (3 + 4)"}
    assert attrs["gen_ai.tool.call.result"] == "12 * (3 + 4) = 84"
    assert tool_span.status.status_code != StatusCode.ERROR
    assert dict(root.attributes or {})["setpoint.route"] == "tool"
    guard = next(s for s in finished if s.name == "node guard_input")
    assert dict(guard.attributes or {})["setpoint.tool"] == "calculator"


def test_tool_text_stays_out_of_spans_unless_opted_in(
    calculator: Any, resources: Resources, spans: InMemorySpanExporter
) -> None:
    with session(resources) as sp:
        assert sp.ask("Calculate 2 to the power of 10").answer == "2 ** 10 = 1024"
    [tool_span] = [s for s in spans.get_finished_spans() if s.name == "execute_tool calculator"]
    attrs = dict(tool_span.attributes or {})
    assert "gen_ai.tool.call.arguments" not in attrs and "gen_ai.tool.call.result" not in attrs


def test_other_questions_still_go_to_the_model(
    calculator: Any, resources: Resources, spans: InMemorySpanExporter
) -> None:
    out = build_graph(resources).invoke(
        {"question": "who won the super bowl ?"},
        context=Context(max_new_tokens=4, setpoint=math.inf),
    )
    assert out["route"] == "answer" and out["decision"]["tool"] is None
    assert not any(s.name.startswith("execute_tool") for s in spans.get_finished_spans())


def test_without_the_plugin_arithmetic_goes_to_the_model(resources: Resources) -> None:
    out = build_graph(resources).invoke(
        {"question": "What is 12 * (3 + 4)?"}, context=Context(max_new_tokens=4, setpoint=math.inf)
    )
    assert out["route"] == "answer" and out["answer"] != "12 * (3 + 4) = 84"


def test_a_failed_tool_call_escalates_with_its_reason(
    calculator: Any, resources: Resources, spans: InMemorySpanExporter
) -> None:
    out = build_graph(resources).invoke(
        {"question": "What is 1 / 0?"}, context=Context(max_new_tokens=4)
    )
    assert out["status"] == "abstained" and out["route"] == "escalate"
    assert out["reason"] == "tool_error:calculator"
    assert "could not answer" in out["answer"]
    [tool_span] = [s for s in spans.get_finished_spans() if s.name == "execute_tool calculator"]
    assert tool_span.status.status_code == StatusCode.ERROR
    assert "division by zero" in (tool_span.status.description or "")
    assert dict(tool_span.attributes or {})["error.type"] == "tool_error"


def test_a_tool_failure_reaches_a_reviewer(calculator: Any, resources: Resources) -> None:
    from langgraph.checkpoint.memory import InMemorySaver
    from langgraph.types import Command

    graph = build_graph(resources, checkpointer=InMemorySaver())
    config: Any = {"configurable": {"thread_id": "t1"}}
    paused = graph.invoke({"question": "sqrt(-4)"}, config=config, context=Context(review=True))
    [pending] = paused["__interrupt__"]
    assert pending.value["reason"] == "tool_error:calculator"
    [failed] = pending.value["failed_checks"]
    assert failed["target"] == "tool" and "negative number" in failed["matched"]
    done = graph.invoke(
        Command(resume={"action": "edit", "answer": "No real root: 2i is imaginary."}),
        config=config,
        context=Context(review=True),
    )
    assert done["status"] == "answered" and done["answer"] == "No real root: 2i is imaginary."


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("0.1 + 0.2", "0.1 + 0.2 = 0.3"),
        ("1/3 + 1/6", "1 / 3 + 1 / 6 = 0.5"),
        ("2^10 - 15% of 200", "2 ** 10 - 15 / 100 * 200 = 994"),
        ("1,234 x 3", "1234 * 3 = 3702"),
        ("the square root of 144", "sqrt(144) = 12"),
        ("sqrt(2)", "sqrt(2) = 1.41421356237"),
        ("-2 ** 2", "-2 ** 2 = -4"),
        ("17 mod 5 plus 7 // 2", "17 % 5 + 7 // 2 = 5"),
        ("5 squared minus 2 cubed", "5 ** 2 - 2 ** 3 = 17"),
        ("factorial(20)", "factorial(20) = 2432902008176640000"),
        ("2 ** -2", "2 ** (-2) = 0.25"),
        ("pi * 2", "pi * 2 = 6.28318530718"),
    ],
)
def test_calculator_arithmetic(calculator: Any, expression: str, expected: str) -> None:
    assert str(calculator.calculate(expression)) == expected


@pytest.mark.parametrize(
    "expression",
    [
        "__import__('os').system('true')",
        "(1).__class__.__bases__",
        "'a' * 3",
        "(lambda: 1)()",
        "[1][0] + 1",
        "abs(-3, 2)",
        "log(100)",
        "x + 1",
        "True + 1",
    ],
)
def test_calculator_refuses_what_is_not_arithmetic(calculator: Any, expression: str) -> None:
    with pytest.raises(calculator.NotArithmetic):
        calculator.calculate(expression)
    assert calculator.make_tool().handles(f"What is {expression}?") is None


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("1 / 0", "division by zero"),
        ("9 ** 9 ** 9", "exponents are limited"),
        ("(10 ** 5000) ** 2 * 10 ** 5000", "too large"),
        ("factorial(100000)", "factorial is limited"),
        ("(-8) ** (1/3)", "no real value"),
        ("1e300 ** 3.5", "too large"),
    ],
)
def test_calculator_bounds_and_errors_are_explained(
    calculator: Any, expression: str, message: str
) -> None:
    # Unbounded, the first three would run out of memory or time instead of raising.
    with pytest.raises(calculator.CalculationError, match=message):
        calculator.calculate(expression)
    # Still arithmetic questions: the tool is chosen and answers with an error message.
    tool = calculator.make_tool()
    assert tool.handles(f"What is {expression}?") == {"expression": expression}
    assert (
        message
        in tool.invoke(
            {
                "name": "calculator",
                "args": {"expression": expression},
                "id": "c1",
                "type": "tool_call",
            }
        ).content
    )
