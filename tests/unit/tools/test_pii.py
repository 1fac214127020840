"""PII detection and redaction on fixed inputs, and redaction of spans before export."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from setpoint.tools.pii import (
    RedactingSpanExporter,
    find_pii,
    iban_is_valid,
    luhn_is_valid,
    redact_pii,
)
from setpoint.tracing import configure_tracing, tracer_from


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Mail jo.smith+news@example.co.uk today", "Mail [EMAIL] today"),
        ("Quoted without its domain: contact@pharos-society", "Quoted without its domain: [EMAIL]"),
        ("Call +1 (415) 555-0100 now", "Call [PHONE] now"),
        ("Tel 020 7946 0958 or 06 12 34 56 78", "Tel [PHONE] or [PHONE]"),
        ("Card 4111 1111 1111 1111, exp 12/29", "Card [CARD], exp 12/29"),
        ("Card 5500-0000-0000-0004 please", "Card [CARD] please"),
        ("IBAN DE89 3704 0044 0532 0130 00 ok", "IBAN [IBAN] ok"),
        ("Pay GB82WEST12345698765432.", "Pay [IBAN]."),
    ],
)
def test_pii_is_redacted(text: str, expected: str) -> None:
    assert redact_pii(text)[0] == expected


@pytest.mark.parametrize(
    "text",
    [
        "The Broncos won 24–10 on 2016-02-07 at 18:30.",
        "Between 1990-1995 the population grew to 1,234,567 people.",
        "Version 3.10.2 was released; ISBN 978-3-16-148410-0.",
        "Card 4111 1111 1111 1112 fails the Luhn check.",  # not a card: bad checksum
        "He was born on 12.03.1985 in Paris.",
    ],
)
def test_numbers_that_are_not_pii_are_kept(text: str) -> None:
    assert redact_pii(text)[0] == text


def test_checksums() -> None:
    assert luhn_is_valid("4111111111111111") and not luhn_is_valid("4111111111111112")
    assert iban_is_valid("FR14 2004 1010 0505 0001 3M02 606")
    assert not iban_is_valid("FR14 2004 1010 0505 0001 3M02 60")  # France has 27 characters
    assert not iban_is_valid("GB82 WEST 1234 5698 7654 33")  # mod 97 fails
    assert find_pii("GB82WEST12345698765433", kinds=["iban"]) == []


def test_find_pii_kinds_and_positions() -> None:
    text = "a@b.io 4111111111111111"
    found = find_pii(text)
    assert [(m.kind, text[m.start : m.end]) for m in found] == [
        ("email", "a@b.io"),
        ("card", "4111111111111111"),
    ]
    assert [m.kind for m in find_pii(text, kinds=["card"])] == ["card"]


def test_span_exporter_wrapper_removes_pii_from_names_attributes_and_events() -> None:
    memory = InMemorySpanExporter()
    provider = configure_tracing(exporters=[memory], wrap=RedactingSpanExporter)
    tracer = tracer_from(provider)
    with tracer.start_as_current_span("ask jane@example.com") as span:
        span.set_attribute("gen_ai.output.messages", "Reach me at jane@example.com")
        span.set_attribute("setpoint.ids", ["x", "4111 1111 1111 1111"])
        span.set_attribute("setpoint.retrieval_calls", 2)
        span.add_event("note", {"text": "IBAN DE89370400440532013000"})
    (exported,) = memory.get_finished_spans()
    dumped = exported.to_json()
    assert "jane@example.com" not in dumped and "4111" not in dumped and "DE89" not in dumped
    assert exported.name == "ask [EMAIL]"
    assert exported.attributes["gen_ai.output.messages"] == "Reach me at [EMAIL]"
    assert exported.attributes["setpoint.ids"] == ("x", "[CARD]")
    assert exported.attributes["setpoint.retrieval_calls"] == 2
    assert exported.events[0].attributes["text"] == "IBAN [IBAN]"
