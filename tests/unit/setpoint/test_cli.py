"""The CLI's promises that need no model: light import, help everywhere, one-line errors, warm asks."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest

from setpoint.cli import main
from setpoint.cli.daemon import find_server, settings_fingerprint, write_record
from setpoint.cli.parser import build_parser
from setpoint.settings import Settings

VERBS = {
    "setup": ["weaviate-server"],
    "ingest": ["--collection", "exit codes:", "3    done, but some input lines were skipped"],
    "ask": ["--collection", "--cold", "setpoint serve", "--top-k"],
    "review": ["--approve", "--edit", "--reject", "--collection"],
    "tune": ["--task", "--rank", "--collection"],
    "distill": ["--min-count", "--rank"],
    "demo": ["--collection", "three questions"],
    "serve": ["--collection", "--port", "instead of starting cold"],
    "trace": ["--trace-id", "--png"],
    "calibrate": ["--collection", "--layer", "--reader"],
    "eval": ["--collection", "--strategies", "--skip"],
}


def test_import_setpoint_is_light() -> None:
    code = (
        "import sys, setpoint, setpoint.cli, setpoint.cli.parser, setpoint.graphs.graph\n"
        "heavy = [m for m in ('torch', 'transformers', 'weaviate', 'sentence_transformers') if m in sys.modules]\n"
        "print(heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_every_verb_is_covered() -> None:
    parser = build_parser()
    [sub] = [a for a in parser._actions if a.dest == "verb"]
    assert set(sub.choices or ()) == set(VERBS)


@pytest.mark.parametrize(("verb", "says"), sorted(VERBS.items()))
def test_help_on_every_verb(verb: str, says: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args([verb, "--help"])
    assert exit_info.value.code == 0
    out = " ".join(capsys.readouterr().out.split())  # argparse wraps lines at the terminal width
    assert "usage: setpoint " + verb in out
    for text in says:
        assert " ".join(text.split()) in out, text


@pytest.mark.parametrize(
    ("question", "message"),
    [
        ("", "the question is empty"),
        ("   ", "the question is empty"),
        ("x" * 3000, "over the limit of 2000"),
    ],
)
def test_bad_question_one_line_nonzero(
    question: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["ask", question, "--cold"]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_bad_env_setting_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SETPOINT_SETPOINT", "warm")
    assert main(["ask", "Who wrote Hamlet?"]) == 2
    assert "SETPOINT_SETPOINT='warm' is not a number" in capsys.readouterr().err


@pytest.mark.parametrize("verb", ["ask", "ingest", "eval", "calibrate", "demo", "serve", "review"])
def test_bad_collection_name_one_line(verb: str, capsys: pytest.CaptureFixture[str]) -> None:
    args = [verb, "Who wrote Hamlet?"] if verb == "ask" else [verb]
    assert main([*args, "--collection", "my-docs"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "collection name 'my-docs' must start with a capital letter" in err[0]


# ---------------------------------------------------------------- warm start through a server
STATE = {
    "question": "What is the capital of France?",
    "answer": "Paris",
    "status": "answered",
    "route": "answer",
    "reason": "entropy below setpoint",
    "retrieval_calls": 0,
    "retrieval_unavailable": False,
    "citations": [],
    "dropped_passages": [],
    "decision": {"probe_entropy": 0.5, "answer_entropy": 0.25, "adapter": None},
}

# What the server's graph gives for a read answer above the reader setpoint: a best guess.
UNSURE = {
    **STATE,
    "question": "Who wrote Pride and Prejudice?",
    "answer": "West Francia",
    "status": "unsure",
    "route": "retrieve",
    "reason": "unsure:reader uncertainty 0.91 > reader setpoint 0.5",
    "retrieval_calls": 2,
    "citations": [{"index": 1, "id": "Normans-3", "title": "Normans", "source": "s", "score": 0.4}],
}


class FakeServe(BaseHTTPRequestHandler):
    """The two routes of the LangGraph API that a warm ask uses; records what it was sent."""

    runs: ClassVar[list[dict[str, Any]]] = []

    def do_GET(self) -> None:
        self._reply({"ok": True} if self.path == "/ok" else {}, 200 if self.path == "/ok" else 404)

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.runs.append(body)
        if body["input"]["question"].startswith("bomb"):
            self._reply({"__error__": {"error": "InputError", "message": "no such question"}})
        elif body["input"]["question"].startswith("busy"):  # what served_http.BusyAs503 sends
            busy = {"error": "BusyError", "message": "generator busy; retry after 4 s"}
            self._reply(busy, 503, {"Retry-After": "4"})
        elif body["input"]["question"].startswith("Who wrote"):
            self._reply(UNSURE)
        else:
            self._reply(STATE)

    def _reply(
        self, data: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None
    ) -> None:
        payload = json.dumps(data).encode()
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Settings]:
    monkeypatch.setenv("SETPOINT_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("SETPOINT_NO_DAEMON", raising=False)
    monkeypatch.delenv("SETPOINT_COLLECTION", raising=False)
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeServe)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    FakeServe.runs = []
    settings = Settings.from_env()
    port = server.server_address[1]
    write_record(settings, f"http://127.0.0.1:{port}", int(port))
    try:
        yield settings
    finally:
        server.shutdown()
        server.server_close()


def test_ask_goes_to_a_running_server(served: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ask", "What is the capital of France?", "--json", "--top-k", "3"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["via"] == "server"
    assert (result["answer"], result["route"], result["probe_entropy"]) == ("Paris", "answer", 0.5)
    # The run context the in-process ask would use: the settings' setpoint and the flags.
    [run] = FakeServe.runs
    assert run["assistant_id"] == "setpoint" and run["input"] == {"question": STATE["question"]}
    assert run["context"] == {"setpoint": served.thermostat_setpoint, "top_k": 3}


def test_a_run_error_on_the_server_is_the_same_one_line_error(
    served: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["ask", "bomb?"]) == 2
    assert capsys.readouterr().err.strip() == "setpoint: error: no such question"


def test_a_busy_server_is_a_one_line_busy_error_not_a_cold_start(
    served: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    # Loading a second model beside a saturated server would only slow it down further.
    assert main(["ask", "busy?"]) == 2
    assert capsys.readouterr().err.strip() == "setpoint: error: generator busy; retry after 4 s"
    assert len(FakeServe.runs) == 1


def test_server_with_other_settings_or_dead_is_not_used(served: Settings, tmp_path: Path) -> None:
    assert find_server(served) is not None
    assert find_server(served.replace(collection="Other")) is None
    assert settings_fingerprint(served) == settings_fingerprint(served.replace(setpoint=3.0))
    # The server batches by default and the asking CLI does not: answers are the same.
    assert settings_fingerprint(served) == settings_fingerprint(served.replace(batching=True))
    # A record left by a server that died: skipped and removed, not waited on.
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    stale = tmp_path / "servers" / "1.json"
    record = json.loads(next((tmp_path / "servers").glob("*.json")).read_text())
    stale.write_text(json.dumps({**record, "pid": int(dead.stdout)}))
    assert find_server(served) is not None and not stale.exists()


def test_ask_json_shows_an_unsure_answer_with_its_citations(
    served: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    question = "Who wrote Pride and Prejudice?"
    assert main(["ask", question, "--json", "--reader-setpoint", "0.5"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert (result["status"], result["answer"]) == ("unsure", "West Francia")
    assert [c["id"] for c in result["citations"]] == ["Normans-3"]
    assert FakeServe.runs[-1]["context"]["reader_setpoint"] == 0.5
    assert main(["ask", question]) == 0
    text = capsys.readouterr().out
    assert "status=unsure" in text and "not sure: this is the best guess" in text
    assert "[1] Normans-3 (Normans)" in text


def test_an_unsure_result_without_text_says_the_passages_do_not_answer(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from setpoint.cli.output import print_result
    from setpoint.events import AskResult

    state = {"answer": "", "status": "unsure", "route": "retrieve", "reason": "unsure:no answer"}
    print_result(AskResult.from_state(state, question="Who?", setpoint=1.6))
    text = capsys.readouterr().out
    assert "A: (not sure: the passages found do not answer this)" in text
    assert "best guess" not in text


@pytest.mark.parametrize(
    ("flag", "field"),
    [
        ("--no-nested-hops", "nested_hops"),
        ("--no-compare-dates", "compare_dates"),
        ("--no-reread-echo", "reread_echo"),
    ],
)
def test_off_switches_override_only_when_given(flag: str, field: str) -> None:
    from setpoint.cli.options import context_overrides

    off = build_parser().parse_args(["ask", "Who was born first, X or Y?", flag])
    assert context_overrides(off) == {field: False}
    assert field not in context_overrides(build_parser().parse_args(["ask", "q?"]))
