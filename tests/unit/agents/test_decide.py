"""Every routing decision on tables: signals, thresholds and check results in, next node, route and reason out."""

from __future__ import annotations

import math
from typing import Any

import pytest

from setpoint.adapters.domain.hops import (
    bridge_query,
    echo_overlap,
    merge_passages,
    named_entities,
)
from setpoint.agents.decide import (
    ROUTES,
    Decision,
    after_check,
    after_generation,
    after_guard,
    after_probe,
    after_retrieval,
    after_tool,
    choose_route,
    final_route,
    on_retrieval_error,
    output_problem,
    read_again,
)
from setpoint.errors import SetpointError
from setpoint.graphs.context import DEFAULT_READER_SETPOINT, Context
from setpoint.graphs.edges import after_check as edge_after_check
from setpoint.graphs.edges import after_probe as edge_after_probe


def triple(decision: Decision[Any]) -> tuple[str, str | None, str | None]:
    return decision.next_node, decision.route, decision.reason


@pytest.mark.parametrize(
    ("allowed", "refusal", "tool", "expected"),
    [
        (True, "", None, ("probe", None, None)),
        (True, "", "calculator", ("call_tool", "tool", None)),
        (False, "refused_topic:weapons", None, ("escalate", "escalate", "refused_topic:weapons")),
        # a refused question never reaches a tool, even one that would handle it
        (False, "prompt_injection", "calculator", ("escalate", "escalate", "prompt_injection")),
    ],
)
def test_after_guard(
    allowed: bool, refusal: str, tool: str | None, expected: tuple[Any, ...]
) -> None:
    assert triple(after_guard(allowed, refusal, tool)) == expected


@pytest.mark.parametrize(
    ("signal", "ctx", "used", "route"),
    [
        (0.5, Context(probe_setpoint=1.0), 0, "answer"),
        (1.0, Context(probe_setpoint=1.0), 0, "answer"),  # at the setpoint: not above
        (1.5, Context(probe_setpoint=1.0), 0, "retrieve"),
        (1.5, Context(probe_setpoint=1.0, max_retrievals=1), 1, "escalate"),  # budget spent
        (1.5, Context(probe_setpoint=1.0, max_retrievals=0), 0, "escalate"),
        (9.0, Context(probe_setpoint=1.0, escalate_above=8.0), 0, "escalate"),
        (9.0, Context(), 0, "answer"),  # default probe setpoint is inf
        (math.nan, Context(), 0, "escalate"),
    ],
)
def test_choose_route(signal: float, ctx: Context, used: int, route: str) -> None:
    assert choose_route(signal, ctx, retrievals_used=used) == route


@pytest.mark.parametrize(
    ("signal", "kw", "ctx", "expected"),
    [
        (
            0.5,
            {},
            Context(probe_setpoint=1.0),
            ("generate", "answer", "probe entropy 0.50 <= probe setpoint 1"),
        ),
        (
            1.5,
            {},
            Context(probe_setpoint=1.0),
            ("retrieve", "retrieve", "probe entropy 1.50 > probe setpoint 1"),
        ),
        (
            0.8,
            {"calibrated": True},
            Context(probe_setpoint=0.5),
            ("retrieve", "retrieve", "probe P(wrong) 0.80 > probe setpoint 0.5"),
        ),
        (
            9.0,
            {},
            Context(escalate_above=8.0),
            ("escalate", "escalate", "uncertain:probe entropy 9.00 > escalate_above 8"),
        ),
        (
            1.5,
            {},
            Context(probe_setpoint=1.0, max_retrievals=0),
            ("escalate", "escalate", "uncertain:retrieval needed but the retrieval budget is 0"),
        ),
        # superseded weights: the index answers instead, or nobody when it may not be asked
        (
            0.1,
            {"stale": "stale adapter knowledge: p2"},
            Context(),
            ("retrieve", "retrieve", "stale adapter knowledge: p2"),
        ),
        (
            0.1,
            {"stale": "stale adapter knowledge: p2"},
            Context(max_retrievals=0),
            ("escalate", "escalate", "uncertain:stale adapter knowledge: p2"),
        ),
        # staleness only overrides an answer from the weights
        (
            1.5,
            {"stale": "stale adapter knowledge: p2"},
            Context(probe_setpoint=1.0),
            ("retrieve", "retrieve", "probe entropy 1.50 > probe setpoint 1"),
        ),
    ],
)
def test_after_probe(
    signal: float, kw: dict[str, Any], ctx: Context, expected: tuple[Any, ...]
) -> None:
    assert triple(after_probe(signal, ctx, **kw)) == expected


def test_after_retrieval_reads_the_passages() -> None:
    assert triple(after_retrieval()) == ("generate", "retrieve", None)


@pytest.mark.parametrize(
    ("mid_answer", "transient", "attempts_left", "falls_back"),
    [
        (False, False, False, False),  # retrieve route: nothing to finish, the error stands
        (False, True, True, False),
        (True, False, True, True),  # mid-answer, store down: finish from the weights
        (True, True, True, False),  # transient with attempts left: let the retry run
        (True, True, False, True),  # retries used up: finish from the weights
    ],
)
def test_on_retrieval_error(
    mid_answer: bool, transient: bool, attempts_left: bool, falls_back: bool
) -> None:
    decision = on_retrieval_error(
        "connection refused",
        mid_answer=mid_answer,
        transient=transient,
        attempts_left=attempts_left,
    )
    if not falls_back:
        assert decision is None
        return
    assert decision is not None
    assert triple(decision) == (
        "generate",
        "answer",
        "retrieval unavailable (connection refused); answered from the weights",
    )


@pytest.mark.parametrize(("transient", "attempts_left"), [(False, True), (True, False)])
def test_a_failed_second_hop_reads_the_first_hops_passages(
    transient: bool, attempts_left: bool
) -> None:
    decision = on_retrieval_error(
        "down", mid_answer=False, transient=transient, attempts_left=attempts_left, hop=True
    )
    assert decision is not None
    assert triple(decision) == (
        "generate",
        "retrieve",
        "second hop unavailable (down); read the first hop's passages",
    )


@pytest.mark.parametrize(
    ("failed", "expected"),
    [
        (False, ("check_output", "tool", "answered by tool calculator")),
        (True, ("escalate", "escalate", "tool_error:calculator")),
    ],
)
def test_after_tool(failed: bool, expected: tuple[Any, ...]) -> None:
    assert triple(after_tool("calculator", failed)) == expected


def generation(**kw: Any) -> Decision[Any]:
    args: dict[str, Any] = dict(
        fired_at=None,
        ema=0.5,
        read_passages=False,
        reader_uncertainty=math.nan,
        mean_entropy=0.5,
        tokens=4,
    )
    ctx = kw.pop("ctx", Context())
    return after_generation(ctx, **{**args, **kw})


@pytest.mark.parametrize(
    ("kw", "expected"),
    [
        (
            {"fired_at": 3, "ema": 2.345},
            ("retrieve", "retrieve", "entropy EMA 2.35 above setpoint 1.6 for 2 steps at token 3"),
        ),
        (
            {"fired_at": 1, "ema": 0.9, "ctx": Context(setpoint=0.0, consecutive_steps=1)},
            ("retrieve", "retrieve", "entropy EMA 0.90 above setpoint 0 for 1 steps at token 1"),
        ),
        (
            {},
            (
                "check_output",
                "answer",
                "entropy EMA stayed under setpoint 1.6 (mean 0.50 over 4 tokens)",
            ),
        ),
        # a reader answer keeps the reason that sent it to retrieval
        ({"read_passages": True, "reader_uncertainty": 0.3}, ("check_output", "retrieve", None)),
        ({"read_passages": True}, ("check_output", "retrieve", None)),  # NaN: not measured
        # above the reader setpoint, budget spent (or no bridge): the best guess, unsure
        (
            {"read_passages": True, "reader_uncertainty": 0.7, "ctx": Context(reader_setpoint=0.5)},
            (
                "check_output",
                "retrieve",
                "unsure:reader uncertainty 0.70 > reader setpoint 0.5",
            ),
        ),
        # ... with budget left and a bridge: a second hop with the bridge query
        (
            {
                "read_passages": True,
                "reader_uncertainty": 0.7,
                "ctx": Context(reader_setpoint=0.5),
                "retrievals_used": 1,
                "bridge": "q? Strasbourg",
            },
            (
                "retrieve",
                "retrieve",
                "second hop: reader uncertainty 0.70 > reader setpoint 0.5; query 'q? Strasbourg'",
            ),
        ),
        # the budget stops the hop
        (
            {
                "read_passages": True,
                "reader_uncertainty": 0.7,
                "ctx": Context(reader_setpoint=0.5, max_retrievals=2),
                "retrievals_used": 2,
                "bridge": "q? Strasbourg",
            },
            ("check_output", "retrieve", "unsure:reader uncertainty 0.70 > reader setpoint 0.5"),
        ),
        # no answer in the first hop's passages: a second hop too
        (
            {"read_passages": True, "reader_uncertainty": 0.1, "answered": False, "bridge": "q x"},
            ("retrieve", "retrieve", "second hop: no answer in the passages; query 'q x'"),
        ),
        # default reader setpoint: the dev-chosen one on the probe's scale, never on surprisal
        (
            {"read_passages": True, "reader_uncertainty": DEFAULT_READER_SETPOINT + 0.01},
            (
                "check_output",
                "retrieve",
                f"unsure:reader uncertainty {DEFAULT_READER_SETPOINT + 0.01:.2f} "
                f"> reader setpoint {DEFAULT_READER_SETPOINT:g}",
            ),
        ),
        (
            {"read_passages": True, "reader_uncertainty": 50.0, "reader_signal": "surprisal"},
            ("check_output", "retrieve", None),
        ),
        # echo trap: a closed-book answer restating the question goes to retrieval ...
        (
            {"echo": 0.82},
            ("retrieve", "retrieve", "echo of the question (overlap 0.82)"),
        ),
        # ... unless the budget is spent: then the echo is only a best guess
        (
            {"echo": 0.82, "ctx": Context(max_retrievals=0)},
            ("check_output", "answer", "unsure:echo of the question (overlap 0.82); budget spent"),
        ),
        # under the echo threshold: an answer
        (
            {"echo": 0.74},
            (
                "check_output",
                "answer",
                "entropy EMA stayed under setpoint 1.6 (mean 0.50 over 4 tokens)",
            ),
        ),
        # the first half of a nested question read surely: the second half still hops ...
        (
            {
                "read_passages": True,
                "reader_uncertainty": 0.1,
                "decomposed": True,
                "retrievals_used": 1,
                "bridge": "Where was Pál Gábor born?",
            },
            (
                "retrieve",
                "retrieve",
                "second hop: nested question; query 'Where was Pál Gábor born?'",
            ),
        ),
        # ... but not past the budget: the reader's uncertainty decides as for any read
        (
            {
                "read_passages": True,
                "reader_uncertainty": 0.1,
                "decomposed": True,
                "ctx": Context(max_retrievals=1),
                "retrievals_used": 1,
                "bridge": "Where was Pál Gábor born?",
            },
            ("check_output", "retrieve", None),
        ),
        # a comparison missing a passage looks it up, however sure the reader ...
        (
            {
                "read_passages": True,
                "reader_uncertainty": 0.1,
                "lookup": True,
                "retrievals_used": 1,
                "bridge": "Charles Babbage",
            },
            ("retrieve", "retrieve", "second hop: no passage on 'Charles Babbage'"),
        ),
        # ... within the budget only
        (
            {
                "read_passages": True,
                "reader_uncertainty": 0.1,
                "lookup": True,
                "ctx": Context(max_retrievals=1),
                "retrievals_used": 1,
                "bridge": "Charles Babbage",
            },
            ("check_output", "retrieve", None),
        ),
        # a date comparison's P(wrong) meets the same default setpoint as the probe's
        (
            {"read_passages": True, "reader_uncertainty": 0.95, "reader_signal": "comparison"},
            ("check_output", "retrieve", "unsure:reader uncertainty 0.95 > reader setpoint 0.82"),
        ),
        # at the reader setpoint: not above
        (
            {"read_passages": True, "reader_uncertainty": 0.5, "ctx": Context(reader_setpoint=0.5)},
            ("check_output", "retrieve", None),
        ),
        # a re-read after an echo is doubtful however sure the reader: a hop, then unsure
        (
            {
                "read_passages": True,
                "reader_uncertainty": 0.1,
                "reread": "Calpurnia",
                "bridge": "q Zeebo",
            },
            (
                "retrieve",
                "retrieve",
                "second hop: the first read only repeated the question ('Calpurnia'); "
                "query 'q Zeebo'",
            ),
        ),
        (
            {
                "read_passages": True,
                "reader_uncertainty": 0.1,
                "reread": "Calpurnia",
                "retrievals_used": 2,
                "bridge": "q Zeebo",
            },
            (
                "check_output",
                "retrieve",
                "unsure:the first read only repeated the question ('Calpurnia')",
            ),
        ),
        # ... under the reader's own knobs: inf hop and reader setpoints turn both off
        (
            {
                "read_passages": True,
                "reader_uncertainty": 0.1,
                "reread": "Calpurnia",
                "bridge": "q Zeebo",
                "ctx": Context(reader_setpoint=math.inf, hop_setpoint=math.inf),
            },
            ("check_output", "retrieve", None),
        ),
    ],
)
def test_after_generation(kw: dict[str, Any], expected: tuple[Any, ...]) -> None:
    assert triple(generation(**kw)) == expected


@pytest.mark.parametrize(
    ("kw", "status"),
    [
        ({}, "answered"),
        ({"read_passages": True, "reader_uncertainty": 0.3}, "answered"),
        ({"read_passages": True, "reader_uncertainty": 0.99}, "unsure"),
        ({"echo": 0.9, "ctx": Context(max_retrievals=0)}, "unsure"),
        ({"fired_at": 2, "ema": 3.0}, None),  # not an answer yet
    ],
)
def test_after_generation_status(kw: dict[str, Any], status: str | None) -> None:
    """An answer leaves generation answered or unsure; the status reaches the state."""
    decision = generation(**kw)
    assert decision.status == status
    assert decision.update().get("status") == status


@pytest.mark.parametrize(
    ("answer", "question", "echo"),
    [
        (
            "the vcu rams men basketball team led by",
            "who led the vcu rams men basketball team ?",
            1.0,
        ),
        ("denver broncos", "who won super bowl 50 ?", 0.0),  # short: never an echo
        ("the denver broncos beat carolina", "who won super bowl 50 ?", 0.0),
        # a sentence that restates the question around its answer is an answer
        (
            "The commissioner of the NFL in 2012 was Roger Goodell",
            "Who was the commissioner of the NFL in 2012?",
            0.6,
        ),
    ],
)
def test_echo_overlap_table(answer: str, question: str, echo: float) -> None:
    assert echo_overlap(answer, question) == echo


def test_the_hop_setpoint_triggers_the_second_hop_and_not_unsure() -> None:
    read = {"read_passages": True, "bridge": "q Gábor", "retrievals_used": 1}
    sure = {**read, "reader_uncertainty": 0.3}
    # By default the reader setpoint decides both: a sure read is answered, no hop.
    assert triple(generation(**sure)) == ("check_output", "retrieve", None)
    always = Context(hop_setpoint=-math.inf)
    decision = generation(**sure, ctx=always)
    assert (decision.next_node, decision.reason) == (
        "retrieve",
        "second hop: reader uncertainty 0.30 > hop setpoint -inf; query 'q Gábor'",
    )
    # Unmeasured uncertainty (NaN) still hops at -inf; the budget still stops it, and the
    # answer after it is "unsure" only by the reader setpoint.
    assert (
        generation(**{**read, "reader_uncertainty": math.nan}, ctx=always).next_node == "retrieve"
    )
    spent = generation(**{**sure, "retrievals_used": 2}, ctx=always)
    assert (spent.next_node, spent.status) == ("check_output", "answered")
    late = Context(hop_setpoint=0.95)
    assert generation(**{**read, "reader_uncertainty": 0.93}, ctx=late).status == "unsure"
    with pytest.raises(SetpointError, match="hop_setpoint cannot be NaN"):
        Context(hop_setpoint=math.nan)


def test_second_hop_query_and_merge() -> None:
    first = [{"id": "a", "title": "Strasbourg"}, {"id": "b", "title": "Alsace"}]
    query = bridge_query("What is the population of the city where she was born?", first, "")
    assert query == "What is the population of the city where she was born? Strasbourg"
    # nothing new found: no second query (it would fetch the same passages)
    assert bridge_query("Who founded Strasbourg?", first, "Strasbourg") is None
    merged = merge_passages(first, [{"id": "c"}, {"id": "a"}, {"id": "d"}], 3)
    assert [p["id"] for p in merged] == ["a", "c", "b"]


def test_the_second_hop_names_the_bridge_entity_of_the_first() -> None:
    """2WikiMultihopQA's shape: the first hop finds the film; its director is the bridge."""
    question = "Who is the child of the director of film Cochin Express?"
    film = {
        "id": "f",
        "title": "Cochin Express",
        "text": "Cochin Express is a 1967 Indian Malayalam film, directed by M. Krishnan Nair "
        "and produced by T. E. Vasudevan. The film stars Prem Nazir and Sheela.",
    }
    query = bridge_query(question, [film], "Prem Nazir")
    assert query is not None and query.startswith(question)
    added = query.removeprefix(question)
    # The reader's guess, then the passage's names in order, at most BRIDGE_ENTITIES of them;
    # the film's own name (already asked) is not repeated.
    assert added == " Prem Nazir Indian Malayalam M. Krishnan Nair T. E. Vasudevan"
    assert "Cochin Express" not in added
    assert bridge_query(question, [film], "Prem Nazir", entities=0) == f"{question} Prem Nazir"
    assert named_entities("Isabella of France married Edward II of England in 1308.") == [
        "Isabella of France",
        "Edward II of England",
    ]


@pytest.mark.parametrize(
    ("answer", "kw", "problem"),
    [
        ("  ", {}, "empty_answer"),
        ("Paris", {}, None),
        (
            "Paris",
            {"answer_entropy": 3.0, "abstain_above": 2.0},
            None,
        ),  # from the weights, budget left
        (
            "Paris",
            {"answer_entropy": 3.0, "abstain_above": 2.0, "used_passages": True},
            "uncertain_after_retrieval",
        ),
        (
            "Paris",
            {"answer_entropy": 3.0, "abstain_above": 2.0, "budget_spent": True},
            "uncertain_after_retrieval",
        ),
        ("Paris", {"uncertain_after_budget": True}, None),  # off unless asked for
        (
            "Paris",
            {"uncertain_after_budget": True, "escalate_after_budget": True},
            "uncertain_after_budget",
        ),
    ],
)
def test_output_problem(answer: str, kw: dict[str, Any], problem: str | None) -> None:
    args: dict[str, Any] = dict(
        answer_entropy=0.1, abstain_above=math.inf, used_passages=False, budget_spent=False
    )
    assert output_problem(answer, **{**args, **kw}) == problem


@pytest.mark.parametrize(
    ("failed", "route", "expected"),
    [
        ([], "answer", ("finalize", None, None)),
        ([], "retrieve", ("finalize", None, None)),
        ([], "tool", ("finalize", None, None)),
        ([], "escalate", ("escalate", None, None)),  # marked by generation; keeps its reason
        (
            ["uncertain_after_retrieval", "pii"],
            "retrieve",
            ("escalate", "escalate", "uncertain_after_retrieval"),
        ),
        (["pii"], "escalate", ("escalate", "escalate", "pii")),
    ],
)
def test_after_check(failed: list[str], route: str, expected: tuple[Any, ...]) -> None:
    assert triple(after_check(failed, route)) == expected


@pytest.mark.parametrize("route", ROUTES)
def test_final_route_keeps_every_known_route(route: str) -> None:
    assert final_route(route) == route


@pytest.mark.parametrize("route", [None, "", "probe", "Answer"])
def test_final_route_refuses_anything_else(route: object) -> None:
    with pytest.raises(SetpointError, match="finalize"):
        final_route(route)


def test_decision_update_leaves_unchanged_fields_out() -> None:
    assert Decision("finalize").update() == {"next_node": "finalize"}
    assert Decision("escalate", "escalate", "pii").update() == {
        "next_node": "escalate",
        "route": "escalate",
        "reason": "pii",
    }


def test_edges_read_the_stored_decision_and_refuse_a_foreign_one() -> None:
    assert edge_after_probe(after_probe(0.1, Context()).update()) == "generate"
    assert edge_after_check(after_check([], "escalate").update()) == "escalate"
    with pytest.raises(SetpointError, match="probe stored next_node 'finalize'"):
        edge_after_probe({"next_node": "finalize"})
    with pytest.raises(SetpointError, match="check_output"):
        edge_after_check({})


def test_a_question_of_two_facts_is_retrieved_for_unless_closed_book_is_asked() -> None:
    why = "nested question: first 'Who is the director of film Ivanhoe?'"
    sure = after_probe(0.1, Context(), multi_fact=why)
    assert (sure.route, sure.reason) == ("retrieve", why)
    assert after_probe(0.1, Context()).route == "answer"
    closed_book = Context(probe_setpoint=math.inf, setpoint=math.inf)
    assert after_probe(0.1, closed_book, multi_fact=why).route == "answer"
    assert after_probe(0.1, Context(max_retrievals=0), multi_fact=why).route == "answer"


@pytest.mark.parametrize(
    ("answer", "question", "options", "ctx", "again"),
    [
        ("Steve McGarrett", "Who played Steve McGarrett?", (), Context(), True),
        ("Jack Lord", "Who played Steve McGarrett?", (), Context(), False),
        # naming one of the question's options answers it
        ("Paris", "Paris or Denver?", ("Paris", "Denver"), Context(), False),
        ("Steve McGarrett", "Who played Steve McGarrett?", (), Context(reread_echo=False), False),
    ],
)
def test_read_again(
    answer: str, question: str, options: tuple[str, ...], ctx: Context, again: bool
) -> None:
    assert read_again(ctx, answer=answer, question=question, options=options) is again
