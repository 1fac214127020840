"""The ``calculator`` LangChain tool, and the question matcher that lets setpoint route to it."""

from __future__ import annotations

import ast
import re
from typing import Any

from langchain_core.callbacks import CallbackManagerForToolRun
from langchain_core.tools import BaseTool, ToolException
from pydantic import BaseModel, Field

from setpoint_calculator.arithmetic import (
    MAX_CHARS,
    CalculationError,
    NotArithmetic,
    calculate,
    parse_expression,
)

__all__ = ["CalculatorArgs", "CalculatorTool", "make_tool", "question_expression"]

# "What is …?", "Calculate …", "How much is …", "What's the value of …", or the bare expression.
_QUESTION = re.compile(
    r"^\s*(?:(?:please|can you|could you)\s+)?"
    r"(?:(?:what\s+is|what's|whats|how\s+much\s+is|compute|calculate|evaluate|work\s+out)\s+)?"
    r"(?:the\s+(?:value|result)\s+of\s+)?"
    r"(?P<expression>.+?)\s*=?\s*[?.!]*\s*$",
    re.IGNORECASE | re.DOTALL,
)


def question_expression(question: str) -> str | None:
    """The arithmetic expression a question asks for, or None when it is not an arithmetic question.

    A question counts only when what follows the lead-in is a whole expression with at least
    one operation, so "What is the capital of France?" and "What is 42?" are left to the model.

    Example:
        >>> question_expression("What is 12 * (3 + 4)?")
        '12 * (3 + 4)'
        >>> question_expression("Who won Super Bowl 50?") is None
        True
    """
    match = _QUESTION.match(question)
    if match is None:
        return None
    try:
        tree = parse_expression(match["expression"])
    except NotArithmetic:
        return None
    # Division by zero and the like are still arithmetic questions: the tool explains them.
    if any(isinstance(node, (ast.BinOp, ast.Call)) for node in ast.walk(tree)):
        return match["expression"]
    return None


class CalculatorArgs(BaseModel):
    """Arguments of ``calculator``."""

    expression: str = Field(
        min_length=1,
        max_length=MAX_CHARS,
        description="Arithmetic in Python syntax or words, e.g. '12 * (3 + 4)', '2^10', "
        "'15% of 200', 'the square root of 144'.",
    )


class CalculatorTool(BaseTool):
    """Exact, safe arithmetic as a LangChain tool; ``handles`` is setpoint's routing hook.

    Errors (division by zero, an unknown function, a result too large) come back as an error
    ``ToolMessage`` whose text says what was wrong, not as an exception.

    Example:
        >>> CalculatorTool().invoke({"expression": "7 x 6"})
        '7 * 6 = 42'
    """

    name: str = "calculator"
    description: str = (
        "Evaluate an arithmetic expression exactly: + - * / // % ** (or ^), parentheses, "
        "sqrt abs round floor ceil exp ln log10 log2 sin cos tan factorial, pi e tau; words "
        "such as plus, times, divided by, 'to the power of' and '15% of' work too. "
        "Returns 'expression = result'."
    )
    args_schema: type[BaseModel] = CalculatorArgs
    handle_tool_error: bool = True

    def _run(self, expression: str, run_manager: CallbackManagerForToolRun | None = None) -> str:
        try:
            return str(calculate(expression))
        except CalculationError as exc:
            raise ToolException(f"cannot calculate {expression!r}: {exc}") from exc

    def handles(self, question: str) -> dict[str, Any] | None:
        """setpoint's hook: the tool's arguments when ``question`` is arithmetic, else None."""
        expression = question_expression(question)
        return None if expression is None else {"expression": expression}


def make_tool() -> CalculatorTool:
    """The entry point's factory (``setpoint.tools``: ``calculator``)."""
    return CalculatorTool()
