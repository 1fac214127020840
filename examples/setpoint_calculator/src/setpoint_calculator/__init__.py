"""setpoint-calculator: an example setpoint tool plug-in for exact, safe arithmetic (ast, never eval)."""

from setpoint_calculator.arithmetic import (
    Calculation,
    CalculationError,
    NotArithmetic,
    calculate,
    parse_expression,
)
from setpoint_calculator.tool import CalculatorArgs, CalculatorTool, make_tool, question_expression

__all__ = [
    "Calculation",
    "CalculationError",
    "CalculatorArgs",
    "CalculatorTool",
    "NotArithmetic",
    "calculate",
    "make_tool",
    "parse_expression",
    "question_expression",
]
