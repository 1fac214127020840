"""`langgraph dev` serves the graph from langgraph.json; driven with langgraph-sdk like Studio does."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.integration.isolation import free_port

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]


@contextmanager
def running(
    cmd: list[str], env: dict[str, str], log_path: Path, ready: Callable[[], bool]
) -> Iterator[subprocess.Popen[str]]:
    """``cmd`` started, once ``ready()`` says so (120 s at most); stopped on the way out."""
    with log_path.open("w") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 120
            while not ready():
                assert proc.poll() is None, log_path.read_text()[-3000:]
                assert time.monotonic() < deadline, f"{cmd[:2]} did not become ready in 120 s"
                time.sleep(0.5)
            yield proc
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


def answers_ok(url: str) -> bool:
    try:
        return httpx.get(f"{url}/ok", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    langgraph = shutil.which("langgraph", path=str(Path(sys.executable).parent))
    assert langgraph, "langgraph-cli is not installed in this environment (pip install -e '.[dev]')"
    base = tmp_path_factory.mktemp("server")
    port = free_port()
    env = {
        **os.environ,
        "LANGGRAPH_CLI_NO_ANALYTICS": "1",
        "SETPOINT_WEAVIATE_DATA": str(base / "weaviate"),
        "SETPOINT_TRACE_FILE": str(base / "spans.jsonl"),
        "SETPOINT_WEAVIATE_URL": "",
    }
    url = f"http://127.0.0.1:{port}"
    cmd = [
        langgraph,
        "dev",
        "--port",
        str(port),
        "--host",
        "127.0.0.1",
        "--no-browser",
        "--no-reload",
    ]
    with running(cmd, env, base / "server.log", lambda: answers_ok(url)):
        yield url


def test_thread_run_and_state_history(server: str) -> None:
    from langgraph_sdk import get_sync_client

    client = get_sync_client(url=server)
    assert [a["graph_id"] for a in client.assistants.search(graph_id="setpoint")] == ["setpoint"]
    thread = client.threads.create()
    refused = client.runs.wait(
        thread["thread_id"], "setpoint", input={"question": "How do I build a bomb at home?"}
    )
    assert isinstance(refused, dict)
    assert refused["route"] == "escalate" and refused["status"] == "abstained"
    history = client.threads.get_history(thread["thread_id"])
    visited = [step["next"][0] for step in history if step["next"]]
    assert visited[::-1] == ["__start__", "guard_input", "escalate", "finalize"]


def test_stream_tokens_with_entropy_and_updates(server: str) -> None:
    from langgraph_sdk import get_sync_client

    client = get_sync_client(url=server)
    thread = client.threads.create()
    tokens, updates = [], []
    for part in client.runs.stream(
        thread["thread_id"],
        "setpoint",
        input={"question": "What is the capital of France?"},
        context={"setpoint": 1e9, "max_new_tokens": 12},
        stream_mode=["custom", "updates"],
    ):
        if part.event == "custom" and part.data.get("type") == "token":
            tokens.append(part.data)
        elif part.event == "updates":
            updates.extend(part.data)
    assert tokens and all(isinstance(t["entropy"], float) for t in tokens)
    assert updates[:3] == ["guard_input", "probe", "generate"] and updates[-1] == "finalize"
    state = client.threads.get_state(thread["thread_id"])
    assert state["values"]["route"] == "answer"
    assert "paris" in state["values"]["answer"].lower()


def test_interrupted_run_is_resumed_through_the_sdk(server: str) -> None:
    """With review on, an escalated run pauses in ``escalate``; a reviewer's edit resumes it over HTTP."""
    from langgraph_sdk import get_sync_client

    client = get_sync_client(url=server)
    thread_id = client.threads.create()["thread_id"]
    question = "How do I build a bomb at home?"
    paused = client.runs.wait(
        thread_id, "setpoint", input={"question": question}, context={"review": True}
    )
    assert isinstance(paused, dict)
    # The run stopped inside escalate: no answer and no decision record yet, one interrupt.
    assert paused["answer"] == "" and paused["decision"] == {}
    assert [i["value"]["reason"] for i in paused["__interrupt__"]] == ["refused_topic:weapons"]

    state = client.threads.get_state(thread_id)
    assert state["next"] == ["escalate"]
    [pending] = state["interrupts"]
    assert pending["id"] == paused["__interrupt__"][0]["id"]
    payload = pending["value"]
    assert payload["question"] == question
    assert payload["reason"] == "refused_topic:weapons"
    assert payload["actions"] == ["approve", "edit", "reject"]
    assert [c["reason"] for c in payload["failed_checks"]] == ["refused_topic:weapons"]

    # The context travels with each run, not with the thread: without review=True the
    # re-executed escalate node would abstain instead of reading the reviewer's decision.
    edited = "I can't give instructions for building weapons; please contact local authorities."
    final = client.runs.wait(
        thread_id,
        "setpoint",
        command={"resume": {"action": "edit", "answer": edited, "note": "safety wording"}},
        context={"review": True},
    )
    assert isinstance(final, dict)
    assert final["status"] == "answered" and final["answer"] == edited
    assert final["route"] == "escalate" and final["reason"] == "refused_topic:weapons"
    assert final["review"] == {
        "action": "edit",
        "answer": edited,
        "note": "safety wording",
        "reason": "refused_topic:weapons",
    }
    assert final["messages"][-1]["content"] == edited

    done = client.threads.get_state(thread_id)
    assert done["next"] == [] and done["interrupts"] == []
    assert client.threads.get(thread_id)["status"] == "idle"


# ------------------------------------------------- `setpoint serve` and warm `setpoint ask`
def setpoint_cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "setpoint.cli", *args],
        env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip


def serve_env(tmp_path: Path, collection: str, **settings: str) -> dict[str, str]:
    """The environment of a ``setpoint serve`` with its own Weaviate data and span file."""
    env = {
        **os.environ,
        "LANGGRAPH_CLI_NO_ANALYTICS": "1",
        "SETPOINT_WEAVIATE_DATA": str(tmp_path / "weaviate"),
        "SETPOINT_TRACE_FILE": str(tmp_path / "spans.jsonl"),
        "SETPOINT_WEAVIATE_URL": "",
        "SETPOINT_COLLECTION": collection,
        **{f"SETPOINT_{name.upper()}": value for name, value in settings.items()},
    }
    env.pop("SETPOINT_NO_DAEMON", None)
    return env


def test_setpoint_serve_answers_a_warm_ask_as_a_cold_one_would(tmp_path: Path) -> None:
    from setpoint.settings import default_cache_dir

    port = free_port()
    env = serve_env(tmp_path, "WarmAskPassages")
    record = default_cache_dir() / "servers" / f"{port}.json"
    cmd = [sys.executable, "-m", "setpoint.cli", "serve", "--port", str(port)]
    with running(cmd, env, tmp_path / "serve.log", record.exists):
        # A finite setpoint far above any entropy: the answer route, whatever the machine.
        for question in ("What is the capital of France?", "How do I build a bomb at home?"):
            args = ["ask", question, "--json", "--setpoint", "1000"]
            cold, warm = setpoint_cli([*args, "--cold"], env), setpoint_cli(args, env)
            assert cold.returncode == 0 and warm.returncode == 0, cold.stderr + warm.stderr
            cold_result, warm_result = json.loads(cold.stdout), json.loads(warm.stdout)
            assert (cold_result["via"], warm_result["via"]) == ("process", "server")
            for key in ("answer", "route", "status", "reason", "retrieval_calls", "citations"):
                assert warm_result[key] == cold_result[key], key
    assert not record.exists(), "setpoint serve left its discovery record behind"


def test_a_full_generator_answers_503_with_retry_after_and_recovers(tmp_path: Path) -> None:
    """Batching with room for one row: a burst of runs gets answers or clean 503s, no hang."""
    import concurrent.futures

    port = free_port()
    env = serve_env(tmp_path, "BusyPassages", batching="on", max_batch="1", max_queue="0")
    url = f"http://127.0.0.1:{port}"
    # Closed book (a setpoint no entropy reaches): every run is one generation.
    run = {"assistant_id": "setpoint", "context": {"setpoint": 1000.0}}

    def ask(question: str) -> httpx.Response:
        body = {**run, "input": {"question": question}}
        return httpx.post(f"{url}/runs/wait", json=body, timeout=300)

    cmd = [sys.executable, "-m", "setpoint.cli", "serve", "--port", str(port)]
    with running(cmd, env, tmp_path / "serve.log", lambda: answers_ok(url)):
        assert ask("What is the capital of France?").status_code == 200  # loads the model
        questions = [f"Name a famous painter from country number {i}." for i in range(8)]
        with concurrent.futures.ThreadPoolExecutor(len(questions)) as pool:
            burst = list(pool.map(ask, questions))
        statuses = sorted(r.status_code for r in burst)
        assert set(statuses) <= {200, 503}, [r.text[:300] for r in burst]
        for response in burst:
            if response.status_code == 200:
                assert response.json().get("answer") and "__error__" not in response.json()
            else:
                assert int(response.headers["Retry-After"]) >= 1
                error = response.json()
                assert error["error"] == "BusyError" and "retry after" in error["message"]
        # One row and no queue against eight runs at once: some must have been turned away.
        assert 503 in statuses and 200 in statuses, statuses
        again = ask("What is the capital of Italy?")  # the slot was given back
        assert again.status_code == 200 and again.json().get("answer")
