"""Escalation on the tiny model: abstain, or pause for review and resume; screening and redaction as a user sees them."""

from __future__ import annotations

import json
import math
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import ToolMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.runtime import Runtime
from langgraph.types import Command
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from setpoint.agents.check_output import make_check_output
from setpoint.agents.resources import Resources
from setpoint.api import Setpoint
from setpoint.cli import main
from setpoint.errors import ConfigError, InputError
from setpoint.graphs.context import Context
from setpoint.graphs.graph import build_graph

QUESTION = "who won the super bowl ?"
# No retrieval budget and an abstain threshold of 0: the closed-book answer is drafted, then
# escalated as still uncertain with the budget spent.
UNSURE = {"max_new_tokens": 6, "setpoint": math.inf, "max_retrievals": 0, "abstain_above": 0.0}


def config(thread: str) -> Any:
    return {"configurable": {"thread_id": thread}}


def test_escalation_abstains_politely_by_default(resources: Resources) -> None:
    out = build_graph(resources).invoke({"question": QUESTION}, context=Context(**UNSURE))
    assert out["status"] == "abstained" and out["reason"] == "uncertain_after_retrieval"
    assert out["answer"].startswith("I couldn't find a reliable answer")
    assert "(reason: uncertain_after_retrieval)" in out["answer"]


def test_review_pauses_with_a_json_payload_and_resumes(resources: Resources) -> None:
    graph = build_graph(resources, checkpointer=InMemorySaver())
    ctx = Context(review=True, **UNSURE)
    paused = graph.invoke({"question": QUESTION}, config=config("t1"), context=ctx)
    (pending,) = paused["__interrupt__"]
    payload = pending.value
    json.dumps(payload, allow_nan=False)  # strict JSON: no NaN or infinity
    assert payload["question"] == QUESTION and payload["reason"] == "uncertain_after_retrieval"
    assert payload["draft_answer"]
    assert payload["signals"]["max_retrievals"] == 0 and payload["signals"]["setpoint"] is None
    assert [c["reason"] for c in payload["failed_checks"]] == ["uncertain_after_retrieval"]
    assert payload["actions"] == ["approve", "edit", "reject"]
    assert graph.get_state(config("t1")).next == ("escalate",)

    approved = graph.invoke(Command(resume="approve"), config=config("t1"), context=ctx)
    assert approved["status"] == "answered" and approved["answer"] == payload["draft_answer"]
    assert approved["review"]["action"] == "approve"

    graph.invoke({"question": QUESTION}, config=config("t2"), context=ctx)
    edited = graph.invoke(
        Command(resume={"action": "edit", "answer": "The Broncos. Mail a@b.io"}),
        config=config("t2"),
        context=ctx,
    )
    assert edited["status"] == "answered" and edited["answer"] == "The Broncos. Mail [EMAIL]"

    graph.invoke({"question": QUESTION}, config=config("t3"), context=ctx)
    rejected = graph.invoke(
        Command(resume={"action": "reject", "note": "off topic"}), config=config("t3"), context=ctx
    )
    assert rejected["status"] == "abstained"
    assert (
        "(reason: rejected_by_reviewer)" in rejected["answer"] and "off topic" in rejected["answer"]
    )


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("maybe", "review action must be one of approve, edit, reject"),
        ({"action": "edit"}, "needs the edited 'answer'"),
        (42, "must be 'approve', 'reject' or a mapping"),
    ],
)
def test_bad_review_decisions_are_refused(resources: Resources, value: Any, message: str) -> None:
    graph = build_graph(resources, checkpointer=InMemorySaver())
    ctx = Context(review=True, **UNSURE)
    graph.invoke({"question": QUESTION}, config=config("t"), context=ctx)
    with pytest.raises(InputError, match=message):
        graph.invoke(Command(resume=value), config=config("t"), context=ctx)
    assert graph.get_state(config("t")).interrupts  # still waiting for a valid decision


def test_a_paused_run_survives_a_new_graph_on_the_same_sqlite_file(
    resources: Resources, tmp_path: Path
) -> None:
    db = tmp_path / "runs.sqlite"
    ctx = Context(review=True, **UNSURE)
    with sqlite3.connect(db, check_same_thread=False) as conn:
        build_graph(resources, checkpointer=SqliteSaver(conn)).invoke(
            {"question": QUESTION}, config=config("kept"), context=ctx
        )
    with sqlite3.connect(db, check_same_thread=False) as conn:
        graph = build_graph(resources, checkpointer=SqliteSaver(conn))
        assert graph.get_state(config("kept")).interrupts
        out = graph.invoke(Command(resume="approve"), config=config("kept"), context=ctx)
    assert out["status"] == "answered" and out["answer"]


def test_session_lists_and_resumes_paused_runs_and_the_cli_too(
    resources: Resources,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    db = tmp_path / "checkpoints.sqlite"
    settings = resources.settings.replace(review=True, checkpoint_url=str(db))
    with Setpoint(settings, tracer_provider=resources.tracer_provider, resources=resources) as sp:
        paused = sp.ask(QUESTION, context=sp.context(**UNSURE))
        assert paused.status == "pending_review" and paused.thread_id and paused.review
        assert paused.answer == ""
        second = sp.ask(QUESTION, context=sp.context(**UNSURE))
        listed = {run["thread_id"]: run for run in sp.pending_reviews()}
        assert set(listed) == {paused.thread_id, second.thread_id}
        assert listed[paused.thread_id]["reason"] == "uncertain_after_retrieval"
        done = sp.resume(paused.thread_id, {"action": "edit", "answer": "Denver."})
        assert done.status == "answered" and done.answer == "Denver." and done.review
        with pytest.raises(InputError, match="no run is waiting for review"):
            sp.resume(paused.thread_id, "approve")

    # A new process would see the same file: the CLI lists and resumes what is left.
    monkeypatch.setenv("SETPOINT_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("SETPOINT_CHECKPOINT_URL", str(db))
    monkeypatch.setenv("SETPOINT_TRACE_FILE", str(tmp_path / "spans.jsonl"))
    assert main(["review"]) == 0
    listing = capsys.readouterr().out
    assert second.thread_id in listing and paused.thread_id not in listing
    assert "reason=uncertain_after_retrieval" in listing
    assert main(["review", str(second.thread_id), "--reject", "--note", "no", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["status"] == "abstained" and result["review"]["action"] == "reject"
    assert main(["review", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []
    assert main(["review", "nope", "--approve"]) == 2
    assert "no run is waiting for review on thread 'nope'" in capsys.readouterr().err


def test_review_without_checkpointer_is_a_config_error(resources: Resources) -> None:
    sp = Setpoint(
        resources.settings, tracer_provider=resources.tracer_provider, resources=resources
    )
    with sp, pytest.raises(ConfigError, match="review needs a checkpointer"):
        sp.ask(QUESTION, context=sp.context(review=True))


def test_poisoned_passage_is_withheld_from_prompt_messages_and_recorded(
    resources: Resources, spans: InMemorySpanExporter
) -> None:
    out = build_graph(resources).invoke(
        {"question": "what did the question write ?"},
        context=Context(max_new_tokens=4, probe_setpoint=0.0, setpoint=math.inf),
    )
    assert [d["id"] for d in out["dropped_passages"]] == ["p3"]
    assert out["dropped_passages"][0]["check"] == "prompt_injection"
    tool_messages = [m for m in out["messages"] if isinstance(m, ToolMessage)]
    assert tool_messages and all("Ignore all previous" not in str(m.content) for m in tool_messages)
    assert all(p["id"] != "p3" for m in tool_messages for p in m.artifact)
    node = next(s for s in spans.get_finished_spans() if s.name == "node retrieve")
    assert node.attributes["setpoint.dropped_passages"] == ("p3",)
    (event,) = [e for e in node.events if e.name == "passage_dropped"]
    assert event.attributes["setpoint.passage_id"] == "p3"
    assert event.attributes["setpoint.reason"] == "prompt_injection"


def test_check_output_redacts_pii_and_fails_ungrounded_answers(resources: Resources) -> None:
    node = make_check_output(resources)
    packaged = str(Path(__file__).parents[3] / "setpoint" / "policy.yaml")
    passages = [
        {
            "id": "p1",
            "title": "Super Bowl",
            "text": "The Denver Broncos won. Fans write to fan@example.com .",
        }
    ]
    state = {
        "answer": "The Denver Broncos won; write to fan@example.com",
        "passages": passages,
        "retrieval_calls": 1,
    }
    out = node(state, Runtime(context=Context(policy_file=packaged)))
    assert out["answer"] == "The Denver Broncos won; write to [EMAIL]"
    assert "route" not in out  # grounded, so it passes
    assert {
        "check": "pii",
        "allowed": True,
        "reason": "",
        "matched": "email",
        "target": "answer",
    } in out["verdicts"]
    wrong = node(
        {**state, "answer": "The Chicago Bears"}, Runtime(context=Context(policy_file=packaged))
    )
    assert wrong["route"] == "escalate" and wrong["reason"] == "ungrounded_answer"


def test_pii_escalates_when_the_policy_says_so(resources: Resources, tmp_path: Path) -> None:
    policy = tmp_path / "pii.yaml"
    policy.write_text(
        "version: 2\npii: {action: escalate}\noutput: {grounding: false}\n", encoding="utf-8"
    )
    node = make_check_output(resources)
    out = node(
        {"answer": "Call +1 415 555 0100"}, Runtime(context=Context(policy_file=str(policy)))
    )
    assert out["route"] == "escalate" and out["reason"] == "pii"
    assert out["answer"] == "Call [PHONE]"


def test_session_traces_never_carry_raw_pii(resources: Resources, tmp_path: Path) -> None:
    trace = tmp_path / "spans.jsonl"
    settings = resources.settings.replace(trace_file_override=trace, trace_content=True)
    res = Resources(settings=settings, _generator=resources.generator(), _store=resources.store())
    with Setpoint(settings, resources=res) as sp:
        res.tracer_provider = sp.tracer_provider
        sp.ask(
            "who won the super bowl ? mail me at jo@example.org",
            context=sp.context(setpoint=math.inf, max_new_tokens=4),
        )
    text = trace.read_text(encoding="utf-8")
    assert "jo@example.org" not in text
    assert "[EMAIL]" in text  # the question reached the chat span, redacted


def test_uncertainty_after_the_budget_escalates_when_configured(resources: Resources) -> None:
    # setpoint 0: every token is "uncertain"; the one retrieval is spent mid-answer and the
    # reader pass trips the thermostat again with no budget left.
    ctx = {"max_new_tokens": 6, "setpoint": 0.0, "consecutive_steps": 1}
    graph = build_graph(resources)
    answered = graph.invoke({"question": QUESTION}, context=Context(**ctx))
    assert answered["status"] == "answered" and answered["retrieval_calls"] == 1
    escalated = graph.invoke(
        {"question": QUESTION}, context=Context(escalate_after_budget=True, **ctx)
    )
    assert escalated["status"] == "abstained" and escalated["reason"] == "uncertain_after_budget"
    assert escalated["decision"]["uncertain_after_budget"] is True
