"""Safe arithmetic: natural-language operators rewritten, parsed with ``ast``, evaluated exactly.

Nothing here calls ``eval``: the expression is parsed into a syntax tree and only the node
types listed below are evaluated, so names, attributes, subscripts, lambdas and calls other
than the listed functions are refused before anything runs. Sizes are bounded (characters,
tree nodes, exponents, factorials, digits of intermediate results) so a short expression such
as ``9 ** 9 ** 9`` is refused in microseconds instead of filling memory.
"""

from __future__ import annotations

import ast
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, localcontext
from fractions import Fraction

__all__ = [
    "Calculation",
    "CalculationError",
    "NotArithmetic",
    "calculate",
    "format_number",
    "normalise",
    "parse_expression",
]

MAX_CHARS = 200
MAX_NODES = 80
MAX_EXPONENT = 10_000
MAX_RESULT_BITS = 20_000  # about 6,000 decimal digits
MAX_FACTORIAL = 1_000

Number = Fraction | float


class CalculationError(ValueError):
    """The expression has no finite real result, or is not arithmetic; the message says why."""


class NotArithmetic(CalculationError):
    """The text is not an expression this module accepts (syntax, names, functions, size)."""


@dataclass(frozen=True)
class Calculation:
    """One evaluated expression: the canonical expression, its value and whether it is exact."""

    expression: str
    value: Number

    @property
    def exact(self) -> bool:
        return isinstance(self.value, Fraction)

    @property
    def result(self) -> str:
        return format_number(self.value)

    def __str__(self) -> str:
        return f"{self.expression} = {self.result}"


# Longest phrases first: "multiplied by" must win over a bare "by".
_WORDS: list[tuple[str, str]] = [
    (r"\bto the power of\b", "**"),
    (r"\braised to(?: the power of)?\b", "**"),
    (r"\bmultiplied by\b", "*"),
    (r"\btimes\b", "*"),
    (r"\bdivided by\b", "/"),
    (r"\bplus\b", "+"),
    (r"\bminus\b", "-"),
    (r"\bmod(?:ulo)?\b", "%"),
    (r"\bsquared\b", "**2"),
    (r"\bcubed\b", "**3"),
]
_NUMBER = r"\d+(?:\.\d+)?"
_UNICODE = str.maketrans({"×": "*", "÷": "/", "−": "-", "–": "-", "^": "**"})


def normalise(text: str) -> str:
    """Rewrite everyday notation into Python's arithmetic syntax (no evaluation).

    Example:
        >>> normalise("the square root of 144 plus 2 × 3^2")
        'sqrt(144) + 2 * 3**2'
        >>> normalise("15% of 1,200")
        '(15/100) * 1200'
    """
    expr = text.strip().lower().translate(_UNICODE)
    expr = re.sub(r"(?<=\d),(?=\d{3}\b)", "", expr)  # thousands separators: 1,200 → 1200
    expr = re.sub(rf"({_NUMBER})\s*(?:%|percent)\s+of\b", r"(\1/100) * ", expr)
    expr = re.sub(rf"\b(?:the\s+)?square root of\s*({_NUMBER}|\([^()]*\))", r"sqrt(\1)", expr)
    for pattern, replacement in _WORDS:
        expr = re.sub(pattern, replacement, expr)
    expr = re.sub(r"(?<=[\d)])\s*x\s*(?=[\d(])", " * ", expr)  # 7 x 6
    return re.sub(r"\s+", " ", expr).strip()


def _factorial(value: Number) -> Number:
    if not isinstance(value, Fraction) or value.denominator != 1 or value < 0:
        raise CalculationError("factorial needs a whole number ≥ 0")
    if value > MAX_FACTORIAL:
        raise CalculationError(f"factorial is limited to n ≤ {MAX_FACTORIAL}")
    return Fraction(math.factorial(int(value)))


def _whole(fn: Callable[[Number], int]) -> Callable[[Number], Number]:
    return lambda x: Fraction(fn(x))


def _real(fn: Callable[[float], float]) -> Callable[[Number], Number]:
    return lambda x: fn(float(x))


def _sqrt(value: Number) -> Number:
    if value < 0:
        raise CalculationError("the square root of a negative number has no real value")
    if isinstance(value, Fraction):
        # Exact when numerator and denominator are perfect squares: sqrt(9/4) = 3/2, not 1.5000…
        num, den = math.isqrt(value.numerator), math.isqrt(value.denominator)
        if num * num == value.numerator and den * den == value.denominator:
            return Fraction(num, den)
    return math.sqrt(value)


FUNCTIONS: dict[str, Callable[[Number], Number]] = {
    "sqrt": _sqrt,
    "abs": lambda x: -x if x < 0 else x,
    "round": _whole(round),
    "floor": _whole(math.floor),
    "ceil": _whole(math.ceil),
    "exp": _real(math.exp),
    "ln": _real(math.log),
    "log10": _real(math.log10),
    "log2": _real(math.log2),
    "sin": _real(math.sin),
    "cos": _real(math.cos),
    "tan": _real(math.tan),
    "factorial": _factorial,
}
CONSTANTS: dict[str, float] = {"pi": math.pi, "e": math.e, "tau": math.tau}


def _power(base: Number, exponent: Number) -> Number:
    if isinstance(exponent, Fraction) and exponent.denominator == 1:
        n = int(exponent)
        if abs(n) > MAX_EXPONENT:
            raise CalculationError(f"exponents are limited to ±{MAX_EXPONENT}")
        if base == 0 and n < 0:
            raise CalculationError("zero cannot be raised to a negative power")
        if isinstance(base, Fraction):
            size = max(base.numerator.bit_length(), base.denominator.bit_length())
            if size * abs(n) > MAX_RESULT_BITS:
                raise CalculationError("the result would be too large to compute")
            return Fraction(base**n)
        return float(base**n)
    if base < 0:
        raise CalculationError("a negative number to a fractional power has no real value")
    if base == 0 and exponent < 0:
        raise CalculationError("zero cannot be raised to a negative power")
    return math.pow(float(base), float(exponent))


def _divide(op: type[ast.operator], left: Number, right: Number) -> Number:
    if right == 0:
        raise CalculationError("division by zero is undefined")
    if op is ast.Div:
        return left / right
    if op is ast.FloorDiv:
        quotient = left // right  # an int for two fractions
        return Fraction(quotient) if isinstance(quotient, int) else quotient
    return left % right


_BINARY: dict[type[ast.operator], Callable[[Number, Number], Number]] = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b,
    ast.Pow: _power,
    ast.Div: lambda a, b: _divide(ast.Div, a, b),
    ast.FloorDiv: lambda a, b: _divide(ast.FloorDiv, a, b),
    ast.Mod: lambda a, b: _divide(ast.Mod, a, b),
}


def _check_size(value: Number) -> Number:
    if isinstance(value, Fraction):
        if max(value.numerator.bit_length(), value.denominator.bit_length()) > MAX_RESULT_BITS:
            raise CalculationError("the result would be too large to compute")
        return value
    if not math.isfinite(value):
        raise CalculationError("the result is too large or undefined")
    return value


_ALLOWED_NODES = (
    ast.Expression,
    ast.Constant,
    ast.UnaryOp,
    ast.UAdd,
    ast.USub,
    ast.BinOp,
    ast.Name,
    ast.Load,
    ast.Call,
    *_BINARY,
)


def _evaluate(node: ast.AST) -> Number:
    # Only trees checked by parse_expression reach here.
    if isinstance(node, ast.Expression):
        return _evaluate(node.body)
    if isinstance(node, ast.Constant):
        # Through the literal's text, so 0.1 is exactly one tenth, not the nearest binary float.
        return Fraction(repr(node.value))
    if isinstance(node, ast.UnaryOp):
        operand = _evaluate(node.operand)
        return -operand if isinstance(node.op, ast.USub) else +operand
    if isinstance(node, ast.BinOp):
        left, right = _evaluate(node.left), _evaluate(node.right)
        try:
            return _check_size(_BINARY[type(node.op)](left, right))
        except OverflowError:
            raise CalculationError("the result is too large to compute") from None
        except ZeroDivisionError:
            raise CalculationError("division by zero is undefined") from None
    if isinstance(node, ast.Name):
        return CONSTANTS[node.id]
    assert isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
    name = node.func.id
    try:
        return _check_size(FUNCTIONS[name](_evaluate(node.args[0])))
    except CalculationError:
        raise
    except OverflowError:
        raise CalculationError(f"the result of {name} is too large to compute") from None
    except ValueError:
        raise CalculationError(f"{name} has no real result for this argument") from None


def _check_node(node: ast.AST) -> None:
    if not isinstance(node, _ALLOWED_NODES):
        raise NotArithmetic(f"{type(node).__name__} is not allowed in arithmetic")
    if isinstance(node, ast.Constant) and (
        isinstance(node.value, bool) or not isinstance(node.value, (int, float))
    ):
        raise NotArithmetic(f"{node.value!r} is not a number")
    if isinstance(node, ast.Call):
        if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS:
            raise NotArithmetic(f"{ast.unparse(node.func)!r} is not a function")
        if len(node.args) != 1 or node.keywords:
            raise NotArithmetic(f"{node.func.id} takes exactly one argument")
    elif isinstance(node, ast.Name) and node.id not in CONSTANTS and node.id not in FUNCTIONS:
        hint = " (use ln, log10 or log2)" if node.id == "log" else ""
        raise NotArithmetic(
            f"unknown name {node.id!r}{hint}; constants are {', '.join(CONSTANTS)}, "
            f"functions {', '.join(FUNCTIONS)}"
        )


def parse_expression(text: str) -> ast.Expression:
    """Parse arithmetic (Python syntax or everyday words) into a checked syntax tree; nothing runs.

    Raises:
        NotArithmetic: too long, not an expression, or it uses a name, function or construct
            outside the allowed set.

    Example:
        >>> ast.unparse(parse_expression("2 plus 3 times 4"))
        '2 + 3 * 4'
    """
    if len(text) > MAX_CHARS:
        raise NotArithmetic(f"the expression is {len(text)} characters; the limit is {MAX_CHARS}")
    expression = normalise(text)
    try:
        tree = ast.parse(expression, mode="eval")
    except SyntaxError:
        raise NotArithmetic(f"{text.strip()!r} is not an arithmetic expression") from None
    nodes = list(ast.walk(tree))
    if len(nodes) > MAX_NODES:
        raise NotArithmetic(f"the expression has more than {MAX_NODES} parts")
    for node in nodes:
        _check_node(node)
    return tree


def calculate(text: str) -> Calculation:
    """Evaluate an arithmetic expression written in Python syntax or everyday words.

    Raises:
        NotArithmetic: see ``parse_expression``.
        CalculationError: no finite real result (division by zero, a negative square root,
            a result too large to compute…).

    Example:
        >>> str(calculate("0.1 + 0.2"))
        '0.1 + 0.2 = 0.3'
        >>> str(calculate("2 to the power of 10 minus 15% of 200"))
        '2 ** 10 - 15 / 100 * 200 = 994'
    """
    tree = parse_expression(text)
    return Calculation(ast.unparse(tree), _evaluate(tree))


def format_number(value: Number) -> str:
    """An exact integer in full (up to 30 digits), anything else to 12 significant digits.

    Example:
        >>> format_number(Fraction(1, 3)), format_number(Fraction(84)), format_number(2 ** 0.5)
        ('0.333333333333', '84', '1.41421356237')
    """
    if isinstance(value, Fraction):
        if value.denominator == 1 and len(str(abs(value.numerator))) <= 30:
            return str(value.numerator)
        with localcontext() as ctx:
            ctx.prec = 40
            decimal = Decimal(value.numerator) / Decimal(value.denominator)
        return _strip_zeros(format(decimal, ".12g"))
    return _strip_zeros(format(value, ".12g"))


def _strip_zeros(text: str) -> str:
    mantissa, _, exponent = text.partition("e")
    if "." in mantissa:
        mantissa = mantissa.rstrip("0").rstrip(".")
    return f"{mantissa}e{exponent}" if exponent else mantissa
