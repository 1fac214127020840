"""End to end on the real SmolLM2 generator, the real embedder and a real Weaviate server."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from setpoint.api import Setpoint
from setpoint.settings import Settings
from tests.integration.isolation import free_port, isolated_settings

pytestmark = pytest.mark.integration

# Its passage is in the packaged sample; the base model reads the answer from it after retrieval.
RETRIEVAL_QUESTION = "Who was the commissioner of the NFL in 2012?"
GOLD = "Roger Goodell"
NODE_NAMES = {"guard_input", "probe", "generate", "retrieve", "check_output", "finalize"}
SAMPLE = Path(str(resources.files("setpoint").joinpath("data/squad_sample.jsonl")))


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    base = tmp_path_factory.mktemp("e2e")
    return isolated_settings(base, "E2EPassages")


@pytest.fixture(scope="module")
def session(settings: Settings) -> Iterator[Setpoint]:
    with Setpoint(settings) as sp:
        report = sp.ingest(SAMPLE, progress=False)
        assert report.added == 50 and not report.failed and not report.skipped_lines
        yield sp


def spans_of(trace_file: Path, trace_id: str) -> list[dict[str, Any]]:
    spans = [json.loads(line) for line in trace_file.read_text(encoding="utf-8").splitlines()]
    return [s for s in spans if s["context"]["trace_id"] == f"0x{trace_id}"]


def test_sample_is_ingested_once(session: Setpoint) -> None:
    store = session.resources.store()
    assert store.count() == 50
    session.ingest(SAMPLE, progress=False)  # same ids: replaced, not duplicated
    assert store.count() == 50


def test_retrieval_route_answers_with_gold_and_cites(session: Setpoint) -> None:
    result = session.ask(RETRIEVAL_QUESTION)
    assert result.route == "retrieve" and result.status == "answered"
    assert result.retrieval_calls == 1
    assert GOLD.lower() in result.answer.lower()
    assert "Super_Bowl_50-4" in [c["id"] for c in result.citations]


@pytest.mark.parametrize("budget", [2, 1])
def test_an_unsure_reader_takes_a_second_hop_with_the_bridge(
    session: Setpoint, budget: int
) -> None:
    """Reader setpoint -1 (never sure): the second query is the question plus the first hop's
    best title or answer, the passages merge; a budget of 1 stops it and the guess is unsure."""
    ctx = session.context(probe_setpoint=-math.inf, reader_setpoint=-1.0, max_retrievals=budget)
    config = {"configurable": {"thread_id": f"second-hop-{budget}"}}
    out = session.graph.invoke({"question": RETRIEVAL_QUESTION}, config=config, context=ctx)
    queries = [c["args"]["query"] for m in out["messages"] for c in getattr(m, "tool_calls", [])]
    assert out["retrieval_calls"] == budget == len(queries)
    assert out["status"] == "unsure" and out["citations"]
    if budget == 2:
        assert queries[0] == RETRIEVAL_QUESTION
        bridge = queries[1].removeprefix(RETRIEVAL_QUESTION).strip()
        assert queries[1].startswith(RETRIEVAL_QUESTION) and bridge
        assert len(out["citations"]) <= ctx.top_k + 1


def test_setpoint_infinity_never_retrieves(session: Setpoint) -> None:
    result = session.ask(RETRIEVAL_QUESTION, context=session.context(setpoint=math.inf))
    assert result.route == "answer" and result.retrieval_calls == 0 and result.citations == []


def test_refused_topic_is_escalated(session: Setpoint) -> None:
    result = session.ask("How do I build a bomb at home?")
    assert result.route == "escalate" and result.status == "abstained"
    assert result.reason == "refused_topic:weapons" and result.retrieval_calls == 0


def test_trace_file_has_a_span_per_node_with_attributes(
    session: Setpoint, settings: Settings
) -> None:
    result = session.ask(RETRIEVAL_QUESTION)
    spans = spans_of(settings.trace_file, result.trace_id or "")
    nodes = {
        s["attributes"]["setpoint.node"]: s for s in spans if "setpoint.node" in s["attributes"]
    }
    assert set(nodes) == NODE_NAMES
    root = next(s for s in spans if s["name"] == "invoke_agent setpoint")
    assert root["attributes"]["gen_ai.operation.name"] == "invoke_agent"
    assert root["attributes"]["setpoint.route"] == "retrieve"
    assert root["attributes"]["setpoint.retrieval_calls"] == 1
    gen = nodes["generate"]["attributes"]
    for key in (
        "setpoint.route",
        "setpoint.reason",
        "setpoint.entropy",
        "setpoint.setpoint",
        "setpoint.retrieval_calls",
    ):
        assert key in gen, key
    chat = next(s for s in spans if s["name"].startswith("chat "))
    assert chat["attributes"]["gen_ai.request.model"] == "SmolLM2-135M-Instruct"
    assert chat["attributes"]["gen_ai.usage.output_tokens"] > 0
    tool = next(s for s in spans if s["name"] == "execute_tool weaviate_search")
    assert tool["attributes"]["db.system.name"] == "weaviate"
    assert all(s["parent_id"] is not None for s in spans if s is not root)
    assert "gen_ai.input.messages" not in chat["attributes"]


# ---------------------------------------------------------------- the CLI, as a user runs it
def cli(
    args: list[str], env: dict[str, str], timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "setpoint.cli", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture(scope="module")
def cli_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    base = tmp_path_factory.mktemp("cli")
    return {
        "SETPOINT_WEAVIATE_DATA": str(base / "weaviate"),
        "SETPOINT_TRACE_FILE": str(base / "spans.jsonl"),
        "SETPOINT_COLLECTION": "CliPassages",
        "SETPOINT_WEAVIATE_URL": "",
    }


def test_cli_ingest_reports_bad_lines_and_keeps_good_ones(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    bad = tmp_path / "mixed.jsonl"
    lines = SAMPLE.read_bytes().splitlines()[:3]
    bad.write_bytes(
        b"\n".join(
            [lines[0], b"{not json", b"\xff\xfe binary \x00", lines[1], b'{"id": "x"}', lines[2]]
        )
        + b"\n"
    )
    out = cli(["ingest", str(bad), "--quiet"], cli_env)
    assert out.returncode == 3  # done, some lines skipped: neither success nor failure
    for line_no in (2, 3, 5):
        assert f"mixed.jsonl:{line_no}: skipped" in out.stderr
    assert "ingest: 3 passages written" in out.stdout
    # The good lines are stored: ingesting again finds them unchanged.
    again = cli(["ingest", str(bad), "--quiet"], cli_env)
    assert again.returncode == 3 and "0 added, 0 updated, 3 unchanged" in again.stdout
    # --collection wins over SETPOINT_COLLECTION: another collection starts empty.
    other = cli(["ingest", str(bad), "--quiet", "--collection", "CliOtherPassages"], cli_env)
    assert other.returncode == 3 and "3 added" in other.stdout


def test_cli_ingest_all_written_exits_0_and_bad_collection_exits_2(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    good = tmp_path / "good.jsonl"
    good.write_bytes(b"\n".join(SAMPLE.read_bytes().splitlines()[3:5]) + b"\n")
    out = cli(["ingest", str(good), "--quiet"], cli_env)
    assert out.returncode == 0, out.stderr
    assert "2 added" in out.stdout
    bad_name = cli(["ingest", str(good), "--collection", "lower_case"], cli_env)
    assert bad_name.returncode == 2
    assert bad_name.stderr.strip().splitlines() == [
        "setpoint: error: collection name 'lower_case' must start with a capital letter and "
        "contain only letters, digits and underscores (Weaviate's rule)"
    ]


def test_cli_ask_json_and_no_orphan_server(cli_env: dict[str, str]) -> None:
    out = cli(["ask", "What is the capital of France?", "--json", "--setpoint", "inf"], cli_env)
    assert json.loads(out.stdout or "{}").get("via") == "process", out.stderr
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["route"] == "answer" and result["retrieval_calls"] == 0
    assert result["retrieval_unavailable"] is False
    assert Path(result["trace_file"]).is_file()
    pidfile = Path(cli_env["SETPOINT_WEAVIATE_DATA"]) / "setpoint-weaviate.pid"
    assert not pidfile.exists()


def test_weaviate_down_answer_route_flagged_and_retrieve_route_fails(tmp_path: Path) -> None:
    env = {
        "SETPOINT_WEAVIATE_URL": f"http://127.0.0.1:{free_port()}",
        "SETPOINT_WEAVIATE_TIMEOUT": "2",
        "SETPOINT_TRACE_FILE": str(tmp_path / "spans.jsonl"),
    }
    answered = cli(["ask", "What is the capital of France?", "--json", "--setpoint", "inf"], env)
    assert answered.returncode == 0, answered.stderr
    assert json.loads(answered.stdout)["retrieval_unavailable"] is True
    failed = cli(["ask", RETRIEVAL_QUESTION, "--probe-setpoint", "0"], env)
    assert failed.returncode == 2
    err = failed.stderr.strip().splitlines()
    assert len(err) == 1 and env["SETPOINT_WEAVIATE_URL"] in err[0]
