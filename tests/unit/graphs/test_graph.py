"""The graph on a tiny model: every route reachable through thresholds, spans recorded per node."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from setpoint.agents.resources import Resources
from setpoint.api import Setpoint
from setpoint.errors import ConfigError, InputError, RetrievalError
from setpoint.graphs.context import Context
from setpoint.graphs.graph import build_graph

SNAPSHOT = Path(__file__).parent / "snapshots" / "graph.mmd"
NODES = {
    "guard_input",
    "probe",
    "generate",
    "retrieve",
    "call_tool",
    "check_output",
    "escalate",
    "finalize",
}


def with_store(res: Resources, store: Any) -> Resources:
    """The same resources (generator, settings, tracing) over another passage store."""
    return Resources(
        settings=res.settings,
        tracer_provider=res.tracer_provider,
        _generator=res.generator(),
        _store=store,
    )


def run(res: Resources, question: str, **ctx: Any) -> dict[str, Any]:
    graph = build_graph(res)
    context = Context(max_new_tokens=8, **ctx)
    return dict(graph.invoke({"question": question}, context=context))


def test_mermaid_snapshot() -> None:
    """Catches accidental rewiring; regenerate the snapshot on purpose when the graph changes."""
    drawn = build_graph(Resources()).get_graph()
    assert {n for n in drawn.nodes if not n.startswith("__")} == NODES
    assert drawn.draw_mermaid() == SNAPSHOT.read_text(encoding="utf-8")


def test_setpoint_infinity_answers_from_weights(resources: Resources) -> None:
    out = run(resources, "who won the super bowl ?", setpoint=math.inf)
    assert out["route"] == "answer" and out["status"] == "answered"
    assert out["retrieval_calls"] == 0 and resources.store().searches == 0
    assert out["citations"] == []


def test_setpoint_zero_retrieves_mid_answer(resources: Resources) -> None:
    # the reader pass is as unsure as the first one (tiny random model): answer anyway
    out = run(
        resources,
        "who won the super bowl ?",
        setpoint=0.0,
        consecutive_steps=1,
        escalate_after_budget=False,
    )
    assert out["route"] == "retrieve" and out["status"] == "answered"
    assert out["retrieval_calls"] == 1
    ids = [c["id"] for c in out["citations"]]
    assert ids[0] == "p1"
    # the thermostat fired during the closed-book pass, then the reader pass ran on passages
    assert "setpoint 0" in out["reason"]


def test_probe_setpoint_retrieves_before_generating(resources: Resources) -> None:
    out = run(resources, "who won the super bowl ?", probe_setpoint=0.0, setpoint=math.inf)
    assert out["route"] == "retrieve" and out["retrieval_calls"] == 1
    assert out["reason"].startswith("probe entropy")


def test_poisoned_passage_is_dropped(resources: Resources) -> None:
    out = run(
        resources, "what did the question write ?", probe_setpoint=0.0, setpoint=math.inf, top_k=3
    )
    cited = {c["id"] for c in out["citations"]}
    assert "p3" not in cited
    assert [d["id"] for d in out["dropped_passages"]] == ["p3"]


def test_escalate_above_routes_to_escalate(resources: Resources) -> None:
    out = run(resources, "who won the super bowl ?", escalate_above=0.0)
    assert out["route"] == "escalate" and out["status"] == "abstained"
    assert out["reason"].startswith("uncertain:")
    assert "not confident" in out["answer"]


def test_refused_topic_escalates_without_model_or_retrieval(resources: Resources) -> None:
    out = run(resources, "how do i build a bomb at home ?")
    assert out["route"] == "escalate" and out["reason"] == "refused_topic:weapons"
    assert out["retrieval_calls"] == 0 and resources.store().searches == 0
    assert "can't help" in out["answer"]


def test_abstains_when_still_uncertain_after_retrieval(resources: Resources) -> None:
    out = run(
        resources,
        "who won the super bowl ?",
        probe_setpoint=0.0,
        setpoint=math.inf,
        abstain_above=0.0,
    )
    assert out["route"] == "escalate" and out["reason"] == "uncertain_after_retrieval"


@pytest.mark.parametrize(("reader_setpoint", "unsure"), [(-0.5, True), (1.02, False)])
def test_sampled_reader_uncertainty_drives_selective_answering(
    resources: Resources, spans: InMemorySpanExporter, reader_setpoint: float, unsure: bool
) -> None:
    """With reader_samples the setpoint reads sampled disagreement, on its [0, 1.01) scale."""
    out = run(
        resources,
        "who won the super bowl ?",
        probe_setpoint=0.0,
        setpoint=math.inf,
        reader_samples=4,
        reader_setpoint=reader_setpoint,
        max_retrievals=1,
    )
    assert out["route"] == "retrieve"
    assert out["status"] == ("unsure" if unsure else "answered")
    generate = [
        s for s in spans.get_finished_spans() if s.attributes.get("setpoint.phase") == "reader"
    ]
    assert len(generate) == 1
    attrs = generate[0].attributes
    assert attrs["setpoint.reader_signal"] == "sampled"
    assert attrs["setpoint.reader_samples"] == 4
    disagreement = attrs["setpoint.reader_disagreement"]
    assert 0.0 <= disagreement <= 1.0
    assert disagreement <= attrs["setpoint.reader_uncertainty"] < disagreement + 0.01 + 1e-9


def test_reader_samples_out_of_range_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="reader_samples"):
        Context(reader_samples=-1)
    with pytest.raises(ConfigError, match="reader_samples"):
        Context(reader_samples=1000)


@pytest.mark.parametrize("question", ["", "   ", "a" * 5000, "bad\x00bytes"])
def test_bad_questions_raise_input_error(resources: Resources, question: str) -> None:
    with pytest.raises(InputError):
        run(resources, question)


def test_weaviate_down_answer_route_is_flagged(resources: Resources) -> None:
    resources.store().up = False
    out = run(resources, "who won the super bowl ?", setpoint=math.inf)
    assert out["route"] == "answer" and out["retrieval_unavailable"] is True


def test_weaviate_down_retrieve_route_is_an_error(resources: Resources) -> None:
    resources.store().up = False
    with pytest.raises(RetrievalError, match="not reachable"):
        run(resources, "who won the super bowl ?", probe_setpoint=0.0)


def test_weaviate_down_mid_answer_finishes_from_weights(resources: Resources) -> None:
    resources.store().up = False
    out = run(
        resources,
        "who won the super bowl ?",
        setpoint=0.0,
        consecutive_steps=1,
        escalate_after_budget=False,
    )
    assert out["status"] == "answered" and out["retrieval_unavailable"] is True
    assert out["citations"] == []


def test_spans_one_per_node_with_attributes(
    resources: Resources, spans: InMemorySpanExporter
) -> None:
    session = Setpoint(
        resources.settings, tracer_provider=resources.tracer_provider, resources=resources
    )
    result = session.ask(
        "who won the super bowl ?",
        context=Context(
            max_new_tokens=8, setpoint=0.0, consecutive_steps=1, escalate_after_budget=False
        ),
    )
    finished = spans.get_finished_spans()
    by_name: dict[str, list[Any]] = {}
    for span in finished:
        by_name.setdefault(span.name, []).append(span)
    root = by_name["invoke_agent setpoint"][0]
    assert root.attributes["gen_ai.operation.name"] == "invoke_agent"
    assert root.attributes["setpoint.route"] == result.route == "retrieve"
    assert root.attributes["setpoint.retrieval_calls"] == 1
    nodes = {
        s.attributes["setpoint.node"] for s in finished if "setpoint.node" in (s.attributes or {})
    }
    # every node but the two this run did not take (no tool, no escalation)
    assert nodes == NODES - {"call_tool", "escalate"}
    assert len(by_name["node generate"]) == 2  # closed-book pass, then the reader pass
    chat = by_name["chat tiny-llama"][0]
    assert chat.attributes["gen_ai.operation.name"] == "chat"
    assert chat.attributes["gen_ai.usage.input_tokens"] > 0
    assert chat.attributes["gen_ai.response.finish_reasons"] == ("thermostat",)
    tool = by_name["execute_tool weaviate_search"][0]
    assert tool.attributes["gen_ai.tool.name"] == "weaviate_search"
    gen_span = by_name["node generate"][0]
    for key in (
        "setpoint.route",
        "setpoint.reason",
        "setpoint.entropy",
        "setpoint.setpoint",
        "setpoint.retrieval_calls",
    ):
        assert key in gen_span.attributes
    # every span belongs to the run's trace, under its root
    assert {s.context.trace_id for s in finished} == {root.context.trace_id}
    # no prompt text unless opted in
    assert all("gen_ai.input.messages" not in (s.attributes or {}) for s in finished)


def test_prompt_text_only_when_opted_in(resources: Resources, spans: InMemorySpanExporter) -> None:
    res = Resources(
        settings=resources.settings.replace(trace_content=True),
        tracer_provider=resources.tracer_provider,
        _generator=resources.generator(),
        _store=resources.store(),
    )
    run(res, "who won the super bowl ?", setpoint=math.inf)
    chat = next(s for s in spans.get_finished_spans() if s.name.startswith("chat "))
    assert "super bowl" in chat.attributes["gen_ai.input.messages"]
    assert chat.attributes["setpoint.precision"] == "float32"  # the tiny model's weights
    resources.generator().model.to(torch.bfloat16)
    spans.clear()
    run(res, "who won the super bowl ?", setpoint=math.inf)
    chat = next(s for s in spans.get_finished_spans() if s.name.startswith("chat "))
    assert chat.attributes["setpoint.precision"] == "bfloat16"


def test_still_uncertain_after_budget_escalates(resources: Resources) -> None:
    out = run(
        resources,
        "who won the super bowl ?",
        setpoint=0.0,
        consecutive_steps=1,
        escalate_after_budget=True,
    )
    assert out["route"] == "escalate" and out["reason"] == "uncertain_after_budget"
    assert out["retrieval_calls"] == 1


def test_an_unsure_reader_answer_keeps_its_guess_and_citations(resources: Resources) -> None:
    """Above the reader setpoint with the budget spent: status unsure, not an abstention."""
    out = run(
        resources,
        "who won the game ?",
        probe_setpoint=0.0,
        setpoint=math.inf,
        reader_setpoint=-0.5,
        max_retrievals=1,
    )
    assert out["status"] == "unsure" and out["route"] == "retrieve"
    assert out["reason"].startswith("unsure:reader uncertainty")
    assert out["answer"].strip() and "reason:" not in out["answer"]
    assert out["citations"] and out["decision"]["status"] == "unsure"
    assert out["retrieval_calls"] == 1


def test_an_unsure_reader_fetches_a_second_hop_with_the_bridge(resources: Resources) -> None:
    """The second query is the question plus the first hop's best title; passages merge."""
    out = run(
        resources,
        "who won the game ?",
        probe_setpoint=0.0,
        setpoint=math.inf,
        reader_setpoint=-0.5,
        top_k=1,
    )
    queries = [c["args"]["query"] for m in out["messages"] for c in getattr(m, "tool_calls", [])]
    assert queries[0] == "who won the game ?"
    assert queries[1].startswith("who won the game ? Super Bowl")
    assert out["retrieval_calls"] == 2 and out["status"] == "unsure"
    # both hops' passages reach the reader (at most top_k + 1), each once
    ids = [c["id"] for c in out["citations"]]
    assert ids[0] == "p1" and len(ids) == len(set(ids)) <= 2


def test_echo_of_the_question_goes_to_retrieval(
    resources: Resources, spans: InMemorySpanExporter
) -> None:
    """Every content word the tiny model can say is in this question: any answer echoes it."""
    question = (
        "paris france capital city super bowl team won game nfl afc denver broncos question "
        "answer context passage short precise assistant phrase copied write sentence name "
        "number date only system user home 1 2 3 ?"
    )
    # the read's echo would be re-read and doubted (test_reread.py): this is the closed book's
    out = run(resources, question, setpoint=math.inf, reread_echo=False)
    assert out["reason"] == "echo of the question (overlap 1.00)"
    assert out["route"] == "retrieve" and out["retrieval_calls"] >= 1
    closed = [s for s in spans.get_finished_spans() if "setpoint.echo_overlap" in s.attributes]
    assert closed[0].attributes["setpoint.echo_overlap"] == 1.0
    # no budget: the echo is given, but only as a best guess
    spent = run(resources, question, setpoint=math.inf, max_retrievals=0)
    assert spent["status"] == "unsure" and spent["route"] == "answer"
    assert spent["reason"] == "unsure:echo of the question (overlap 1.00); budget spent"


def test_a_reader_without_adapter_is_told_the_answer_format(
    resources: Resources, spans: InMemorySpanExporter
) -> None:
    from setpoint.adapters.model.prompts import BASE_READER_SYSTEM_PROMPT, READER_SYSTEM_PROMPT

    res = Resources(
        settings=resources.settings.replace(trace_content=True),
        tracer_provider=resources.tracer_provider,
        _generator=resources.generator(),
        _store=resources.store(),
    )
    # No reader adapter fits the tiny model ("auto" resolves to none): the base model reads.
    run(res, "who won the super bowl ?", probe_setpoint=0.0, setpoint=math.inf)

    def chat_messages() -> list[str]:
        return [
            str(s.attributes["gen_ai.input.messages"])
            for s in spans.get_finished_spans()
            if s.name.startswith("chat ")
        ]

    reader = [m for m in chat_messages() if "Context:" in m]
    assert reader and all(BASE_READER_SYSTEM_PROMPT in m for m in reader)
    assert all(READER_SYSTEM_PROMPT not in m for m in reader)
    spans.clear()  # a closed-book question keeps its own prompt
    run(res, "who won the super bowl ?", setpoint=math.inf)
    closed = chat_messages()
    assert closed and all(BASE_READER_SYSTEM_PROMPT not in m for m in closed)


def test_a_nested_question_reads_its_bridge_then_asks_about_it(
    resources: Resources, spans: InMemorySpanExporter
) -> None:
    """First read: "Who is the director of film Super Bowl?"; its answer (a quote) goes into
    the second hop's query and question; the budget of two stops there."""
    from setpoint.adapters.domain.decompose import decompose

    question = "where was the director of film Super Bowl born ?"
    plan = decompose(question)
    assert plan is not None and plan.template == "where was {} born ?"
    out = run(resources, question, probe_setpoint=0.0, setpoint=math.inf, top_k=1)
    queries = [c["args"]["query"] for m in out["messages"] for c in getattr(m, "tool_calls", [])]
    assert queries[0] == question and len(queries) == out["retrieval_calls"] == 2
    bridge = queries[1].removeprefix("where was ").removesuffix(" born ?")
    assert bridge.strip() and queries[1] == plan.then(bridge)
    assert any(bridge.strip() in p["text"] for p in resources.store().passages)  # a quote
    reads = [s for s in spans.get_finished_spans() if "setpoint.decomposed" in s.attributes]
    assert [s.attributes["setpoint.decomposed"] for s in reads] == [True, False]


def test_an_alternative_question_is_answered_by_one_of_its_options(resources: Resources) -> None:
    question = "which city is older , paris or denver ?"
    closed = run(resources, question, setpoint=math.inf)
    assert closed["route"] == "answer" and closed["answer"] in ("paris", "denver")
    read = run(resources, question, probe_setpoint=0.0, setpoint=math.inf, max_retrievals=1)
    assert read["route"] == "retrieve" and read["answer"] in ("paris", "denver")
    # at default settings a comparison is retrieved for first: facts on both things
    default = run(resources, question, max_retrievals=1)
    assert default["route"] == "retrieve" and default["retrieval_calls"] == 1
    assert default["reason"] == "comparison of 'paris' and 'denver': facts on both"


def test_a_date_comparison_fetches_the_missing_option_then_compares_the_dates(
    resources: Resources, spans: InMemorySpanExporter
) -> None:
    """The first hop finds one option's passage; the second looks up the other by name;
    the dates, not the tiny model's pick, answer."""
    from tests.unit.conftest import KeywordStore

    store = KeywordStore(
        [
            {
                "id": "ada",
                "title": "Ada Lovelace",
                "text": "Ada Lovelace ( 10 December 1815 – 27 November 1852 ) was born first "
                "of her family , a mathematician .",
            },
            {
                "id": "babbage",
                "title": "Charles Babbage",
                "text": "Charles Babbage ( 26 December 1791 – 18 October 1871 ) was a polymath .",
            },
            *resources.store().passages,
        ]
    )
    res = with_store(resources, store)
    question = "Who was born first, Ada Lovelace or Charles Babbage?"
    out = run(res, question, top_k=1)
    queries = [c["args"]["query"] for m in out["messages"] for c in getattr(m, "tool_calls", [])]
    assert queries == [question, "Charles Babbage"] and out["retrieval_calls"] == 2
    assert out["answer"] == "Charles Babbage" and out["status"] == "answered"
    assert out["reason"] == "answered by comparing the options' birth dates"
    assert [c["id"] for c in out["citations"]] == ["ada", "babbage"]
    reads = [
        s.attributes for s in spans.get_finished_spans() if "setpoint.comparison" in s.attributes
    ]
    assert [r["setpoint.comparison"] for r in reads] == [
        "birth: passage missing",
        "birth: ordered",
    ]
    assert reads[1]["setpoint.reader_signal"] == "comparison"
    assert list(reads[1]["setpoint.comparison_passage_ids"]) == ["ada", "babbage"]
    # with no budget for the second hop, the comparison stays open: the reader's read stands
    spans.clear()
    spent = run(res, question, top_k=1, max_retrievals=1)
    assert spent["retrieval_calls"] == 1
    reads = [
        s.attributes for s in spans.get_finished_spans() if "setpoint.comparison" in s.attributes
    ]
    assert [r["setpoint.comparison"] for r in reads] == ["birth: passage missing"]
    assert reads[0]["setpoint.reader_signal"] != "comparison"
    # switched off, the reader picks: no comparison, no lookup hop
    spans.clear()
    off = run(res, question, top_k=1, compare_dates=False)
    assert not any("setpoint.comparison" in s.attributes for s in spans.get_finished_spans())
    asked = [c["args"]["query"] for m in off["messages"] for c in getattr(m, "tool_calls", [])]
    assert asked[0] == question and "Charles Babbage" not in asked[1:]


def test_a_directors_comparison_reads_every_passage_found_and_cites_them(
    resources: Resources, spans: InMemorySpanExporter
) -> None:
    """Hop one finds both films; hop two looks up both directors. The prompt holds
    top_k + 1 = 3 of the 4 passages; the comparison reads all 4 (whole: a hit may be a later
    chunk) and the answer cites them."""
    from tests.unit.conftest import KeywordStore

    films = [
        {
            "id": "fa",
            "title": "Quiet Harbour",
            "text": "Quiet Harbour is a 1950 film directed by Ann Vale .",
        },
        {
            "id": "fb",
            "title": "Loud River",
            "text": "Loud River is a 1960 film directed by Bo Lund .",
        },
    ]
    directors = [
        {
            "id": "da",
            "title": "Ann Vale",
            "text": "Ann Vale ( 3 May 1920 – 1 June 1990 ) directed .",
        },
        # its hit is a later chunk, without the dates: the comparison reads the whole passage
        {
            "id": "db",
            "title": "Bo Lund",
            "text": "Bo Lund directed many films .",
            "whole": "Bo Lund ( 9 July 1901 – 2 April 1970 ) directed . Bo Lund directed many films .",
        },
    ]
    # word-overlap ties go to the first listed: "Ann Vale, Bo Lund" finds the directors
    res = with_store(resources, KeywordStore([*directors, *films]))
    question = "Which film has the director born first, Quiet Harbour or Loud River?"
    out = run(res, question, top_k=2)
    queries = [c["args"]["query"] for m in out["messages"] for c in getattr(m, "tool_calls", [])]
    assert queries == [question, "Ann Vale, Bo Lund"]
    assert out["answer"] == "Loud River" and out["status"] == "answered"
    assert out["reason"] == "answered by comparing the options' directors' birth dates"
    assert sorted(c["id"] for c in out["citations"]) == ["da", "db", "fa", "fb"]
    read = [
        s.attributes for s in spans.get_finished_spans() if "setpoint.comparison" in s.attributes
    ]
    assert read[-1]["setpoint.comparison"] == "birth: ordered"
    assert list(read[-1]["setpoint.comparison_passage_ids"]) == ["fa", "da", "fb", "db"]
