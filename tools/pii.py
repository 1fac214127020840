"""PII detection and redaction: emails, phone numbers, payment cards (Luhn-checked) and IBANs (mod-97-checked).

Pure functions over text, plus a span exporter wrapper that redacts every string attribute
before a span leaves the process, and a LangChain tool for agents that want to call it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.trace import Status

if TYPE_CHECKING:
    from langchain_core.tools import BaseTool

__all__ = [
    "PII_KINDS",
    "PiiMatch",
    "RedactingSpanExporter",
    "find_pii",
    "iban_is_valid",
    "luhn_is_valid",
    "make_pii_tool",
    "redact_pii",
]

PII_KINDS = ("email", "card", "iban", "phone")

# The top-level domain is optional: a truncated address ("jo@example", as a reader that stops
# at a word boundary may quote it) still identifies a person.
_EMAIL = re.compile(
    r"(?<![\w.+-])[A-Za-z0-9][A-Za-z0-9._%+-]{0,63}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,62})"
    r"(?:\.[A-Za-z0-9-]{1,63})*(?![\w-])"
)
# 13-19 digits, optionally grouped by single spaces or dashes (how cards are written).
_CARD = re.compile(r"(?<![\w-])\d(?:[ -]?\d){12,18}(?![\w-])")
# Country code, check digits, then 11-30 letters/digits, optionally in space-separated groups.
_IBAN = re.compile(r"(?<![A-Za-z0-9])[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}(?![A-Za-z0-9])")
# A phone number: optional +country code, then digit groups joined by space, dot, dash or
# parentheses. Commas never join groups, so "1,000,000" is a number, not a phone.
_PHONE = re.compile(
    r"(?<![\w+])(?:\+\d{1,3}[ .-]?)?(?:\(\d{1,4}\)[ .-]?)?\d{1,5}(?:[ .-]\d{1,5}){1,5}(?![\w])"
    r"|(?<![\w+])\+\d{8,15}(?!\w)"
)
_YEAR_RANGE = re.compile(r"^(1[5-9]\d\d|20\d\d)\s*[-–]\s*(1[5-9]\d\d|20\d\d)$")

# IBAN lengths of the countries most often met; other countries are checked by mod-97 only.
_IBAN_LENGTHS = {
    "AT": 20, "BE": 16, "CH": 21, "CZ": 24, "DE": 22, "DK": 18, "ES": 24, "FI": 18, "FR": 27,
    "GB": 22, "GR": 27, "HR": 21, "HU": 28, "IE": 22, "IT": 27, "LU": 20, "NL": 18, "NO": 15,
    "PL": 28, "PT": 25, "RO": 24, "SE": 24, "SI": 19, "SK": 24,
}  # fmt: skip


@dataclass(frozen=True)
class PiiMatch:
    """One piece of PII found in a text: its kind and where it is."""

    kind: str
    start: int
    end: int
    text: str


def luhn_is_valid(digits: str) -> bool:
    """The Luhn checksum that every payment card number satisfies.

    Example:
        >>> luhn_is_valid("4111111111111111"), luhn_is_valid("4111111111111112")
        (True, False)
    """
    if not digits.isdigit():
        return False
    total = 0
    for i, ch in enumerate(reversed(digits)):
        n = int(ch)
        if i % 2 == 1:
            n = n * 2 - 9 if n > 4 else n * 2
        total += n
    return total % 10 == 0


def iban_is_valid(candidate: str) -> bool:
    """ISO 13616 check: move the first four characters to the end, letters to numbers, mod 97 == 1.

    Example:
        >>> iban_is_valid("GB82 WEST 1234 5698 7654 32"), iban_is_valid("GB82 WEST 1234 5698 7654 33")
        (True, False)
    """
    iban = candidate.replace(" ", "").upper()
    if not re.fullmatch(r"[A-Z]{2}\d{2}[A-Z0-9]{11,30}", iban):
        return False
    expected = _IBAN_LENGTHS.get(iban[:2])
    if expected is not None and len(iban) != expected:
        return False
    rearranged = iban[4:] + iban[:4]
    number = "".join(str(int(ch, 36)) for ch in rearranged)
    return int(number) % 97 == 1


def _is_phone(text: str) -> bool:
    digits = re.sub(r"\D", "", text)
    if not 9 <= len(digits) <= 15:
        return False
    # Year ranges and dotted version numbers are common in prose and are not phone numbers.
    if _YEAR_RANGE.match(text) or re.fullmatch(r"\d{1,3}(?:\.\d{1,3}){2,}", text):
        return False
    groups = re.findall(r"\d+", text)
    # A date like 2016-02-07 12:30 has short groups led by a year; a phone has >= 2 long groups
    # or starts with + / a parenthesised area code.
    if text.startswith(("+", "(")):
        return True
    # National formats with a trunk prefix: 06 12 34 56 78, 030 1234 5678.
    if text.startswith("0") and len(groups) >= 2 and len(digits) >= 10:
        return True
    return sum(len(g) >= 3 for g in groups) >= 2 and not re.fullmatch(
        r"(1[5-9]|20)\d\d[-./]\d{1,2}[-./]\d{1,2}", text
    )


def find_pii(text: str, kinds: Iterable[str] = PII_KINDS) -> list[PiiMatch]:
    """Every PII span in ``text`` of the requested ``kinds``, left to right, without overlaps.

    Checksums keep false positives down: a 16-digit number that fails Luhn is not a card, an
    IBAN-shaped string that fails mod-97 is not an IBAN.

    Example:
        >>> [m.kind for m in find_pii("Mail jo@example.org or call +1 415 555 0100.")]
        ['email', 'phone']
    """
    wanted = set(kinds)
    found: list[PiiMatch] = []
    taken: list[tuple[int, int]] = []

    def free(start: int, end: int) -> bool:
        return all(end <= s or start >= e for s, e in taken)

    def add(kind: str, match: re.Match[str]) -> None:
        found.append(PiiMatch(kind, match.start(), match.end(), match.group(0)))
        taken.append((match.start(), match.end()))

    # Most specific first: an IBAN or card contains digit runs the phone rule would also take.
    if "email" in wanted:
        for m in _EMAIL.finditer(text):
            add("email", m)
    if "iban" in wanted:
        for m in _IBAN.finditer(text):
            if free(m.start(), m.end()) and iban_is_valid(m.group(0)):
                add("iban", m)
    if "card" in wanted:
        for m in _CARD.finditer(text):
            digits = re.sub(r"\D", "", m.group(0))
            if free(m.start(), m.end()) and luhn_is_valid(digits):
                add("card", m)
    if "phone" in wanted:
        for m in _PHONE.finditer(text):
            if free(m.start(), m.end()) and _is_phone(m.group(0)):
                add("phone", m)
    return sorted(found, key=lambda m: m.start)


def redact_pii(
    text: str, kinds: Iterable[str] = PII_KINDS, template: str = "[{kind}]"
) -> tuple[str, list[PiiMatch]]:
    """``text`` with each PII span replaced by ``template`` (``{kind}`` upper-cased), and the spans.

    Example:
        >>> redact_pii("Card 4111 1111 1111 1111, thanks")[0]
        'Card [CARD], thanks'
    """
    matches = find_pii(text, kinds)
    if not matches:
        return text, []
    out: list[str] = []
    cursor = 0
    for m in matches:
        out.append(text[cursor : m.start])
        out.append(template.format(kind=m.kind.upper()))
        cursor = m.end
    out.append(text[cursor:])
    return "".join(out), matches


def _redact_value(value: Any, redact: Callable[[str], str]) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, (list, tuple)):
        return tuple(redact(v) if isinstance(v, str) else v for v in value)
    return value


class RedactingSpanExporter(SpanExporter):
    """Wraps a span exporter; span names, attributes and event attributes are redacted first.

    Redaction at export is the last line of defence: whatever a node or a library writes
    into a span, no raw email, phone, card or IBAN reaches the file, the console or OTLP.

    Example:
        >>> from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
        >>> exporter = RedactingSpanExporter(InMemorySpanExporter())
    """

    def __init__(
        self,
        inner: SpanExporter,
        redact: Callable[[str], str] | None = None,
    ) -> None:
        self.inner = inner
        self.redact = redact or (lambda text: redact_pii(text)[0])

    def _clean(self, span: ReadableSpan) -> ReadableSpan:
        attributes = {k: _redact_value(v, self.redact) for k, v in (span.attributes or {}).items()}
        events = [
            Event(
                self.redact(e.name),
                {k: _redact_value(v, self.redact) for k, v in (e.attributes or {}).items()},
                e.timestamp,
            )
            for e in span.events
        ]
        status = span.status
        if status.description:
            status = Status(status.status_code, self.redact(status.description))
        return ReadableSpan(
            name=self.redact(span.name),
            context=span.context,
            parent=span.parent,
            resource=span.resource,
            attributes=attributes,
            events=events,
            links=span.links,
            kind=span.kind,
            status=status,
            start_time=span.start_time,
            end_time=span.end_time,
            instrumentation_scope=span.instrumentation_scope,
        )

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return self.inner.export([self._clean(s) for s in spans])

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return bool(self.inner.force_flush(timeout_millis))


def make_pii_tool(kinds: Sequence[str] = PII_KINDS) -> BaseTool:
    """A ``pii_redact`` LangChain tool: text in, ``{"text", "found": [kinds]}`` out."""
    from langchain_core.tools import StructuredTool

    def pii_redact(text: str) -> dict[str, Any]:
        """Replace emails, phone numbers, card numbers and IBANs in the text with placeholders."""
        clean, matches = redact_pii(text, kinds)
        return {"allowed": True, "text": clean, "found": [m.kind for m in matches]}

    return StructuredTool.from_function(pii_redact)
