"""A read answer that only repeats the question's words is read again, barred from beginning as it did."""

from __future__ import annotations

import math
from typing import Any

from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from setpoint.adapters.domain.hops import restates_question
from setpoint.agents.resources import Resources
from setpoint.graphs.context import Context
from setpoint.graphs.graph import build_graph
from tests.unit.conftest import KeywordStore
from tests.unit.graphs.test_graph import with_store

QUESTION = "what is the capital of france ?"
# Every quote of this passage restates the question: the first read is an echo whatever
# the tiny random model picks, and so the re-read must happen.
# (The tiny models' tokenizer knows a few dozen words: these among them.)
ECHO_ONLY = {"id": "c1", "title": "france", "text": "capital of france is the capital of france"}


def read(res: Resources, question: str = QUESTION, **ctx: Any) -> dict[str, Any]:
    """Retrieve first, one retrieval: the answer given is the read's."""
    context = Context(
        max_new_tokens=6, probe_setpoint=0.0, setpoint=math.inf, max_retrievals=1, **ctx
    )
    return dict(build_graph(res).invoke({"question": question}, context=context))


def reads(spans: InMemorySpanExporter) -> list[dict[str, Any]]:
    return [
        dict(s.attributes or {})
        for s in spans.get_finished_spans()
        if s.name == "node generate" and "setpoint.reread" in (s.attributes or {})
    ]


def test_an_echoed_read_is_read_again_and_may_not_begin_the_same_way(
    resources: Resources, spans: InMemorySpanExporter
) -> None:
    res = with_store(resources, KeywordStore([ECHO_ONLY]))
    res.settings = res.settings.replace(trace_content=True)
    out = read(res)
    [attrs] = reads(spans)
    assert attrs["setpoint.reread"] is True
    echoed = str(attrs["setpoint.echoed_answer"])
    assert restates_question(echoed, QUESTION)
    # both passes are in the trace, the second as phase "reread", each from step 0
    phases = [(t["phase"], t["step"]) for t in out["signal_trace"]]
    assert ("reader", 0) in phases and ("reread", 0) in phases
    # the second read may not begin with the first answer's words
    answer = " ".join(out["answer"].split())
    assert answer and answer != echoed
    assert not (answer + " ").startswith(echoed + " ")
    # a re-read answer is doubtful: with the budget spent it is given as "not sure"
    assert out["status"] == "unsure"
    assert out["reason"] == f"unsure:the first read only repeated the question ({echoed!r})"


def test_switched_off_or_on_a_question_naming_its_answers_the_first_read_stands(
    resources: Resources, spans: InMemorySpanExporter
) -> None:
    res = with_store(resources, KeywordStore([ECHO_ONLY]))
    out = read(res, reread_echo=False)
    assert reads(spans)[0]["setpoint.reread"] is False
    assert {t["phase"] for t in out["signal_trace"]} == {"reader"}
    assert restates_question(out["answer"], QUESTION)
    # "X or Y?": naming one of the options is the answer, never an echo
    spans.clear()
    chosen = read(res, "which city is older , paris or denver ?")
    assert chosen["answer"] in ("paris", "denver")
    assert reads(spans)[0]["setpoint.reread"] is False


def test_restates_question_counts_content_words_only() -> None:
    assert restates_question("Steve McGarrett", "who played the original steve mcgarrett?")
    assert restates_question("the book", "what is the first book of percy jackson")
    assert not restates_question("Jack Lord", "who played the original steve mcgarrett?")
    assert not restates_question("the", "what is the first book?")  # no content word
    assert not restates_question("", "what is it?")
