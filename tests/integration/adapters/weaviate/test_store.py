"""The passage store against a real weaviate-server: ingest, search, failures, server lifecycle."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from langchain_core.embeddings import Embeddings
from langchain_core.messages import ToolMessage

from setpoint.adapters.model.embedder import Embedder
from setpoint.adapters.weaviate.corpus import PassageRecord, read_jsonl
from setpoint.adapters.weaviate.server import PID_FILE, WeaviateServer
from setpoint.adapters.weaviate.store import IngestReport, SearchHit, WeaviateStore
from setpoint.errors import RetrievalError
from setpoint.settings import Settings
from setpoint.tools.search import make_search_tool
from tests.integration.isolation import free_port

pytestmark = pytest.mark.integration

SOURCE = "squad-test"


def _binary() -> Path:
    binary = Settings.from_env().weaviate_binary
    if not binary.is_file():
        pytest.skip(f"weaviate-server binary not found at {binary}; run `setpoint setup`")
    return binary


def _dead_pid() -> int:
    """The pid of a process that has exited and been reaped."""
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def _running_threads(pid: int) -> int:
    """Threads of ``pid`` that have not exited (a zombie, or no process at all, has none)."""
    running = 0
    for stat in Path(f"/proc/{pid}/task").glob("*/stat"):
        try:
            state = stat.read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        running += state not in {"Z", "X"}
    return running


def _wait_dead(pid: int, timeout_s: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if _running_threads(pid) == 0:
            return True
        time.sleep(0.05)
    return False


def _squad_dir() -> Path:
    # Same resolution as the squad_passages fixture in conftest.py.
    explicit = os.environ.get("SETPOINT_SQUAD_DIR")
    if explicit:
        return Path(explicit).expanduser()
    return Path(__file__).resolve().parents[5] / "shared" / "data" / "squad"


@pytest.fixture(scope="module")
def first_ingest(
    weaviate_store: WeaviateStore, squad_passages: list[PassageRecord]
) -> IngestReport:
    return weaviate_store.ingest(squad_passages, source=SOURCE, progress=False)


# -- ingest and search ----------------------------------------------------------------------


def test_ingest_adds_every_passage(
    weaviate_store: WeaviateStore, first_ingest: IngestReport
) -> None:
    assert first_ingest.failed == []
    assert first_ingest.added == 50
    assert first_ingest.seconds > 0
    assert weaviate_store.count() == 50


def test_reingest_does_not_duplicate(
    weaviate_store: WeaviateStore, squad_passages: list[PassageRecord], first_ingest: IngestReport
) -> None:
    again = weaviate_store.ingest(squad_passages, source=SOURCE, progress=False)
    assert again.failed == []
    # Nothing changed, so nothing is embedded or written again.
    assert (again.added, again.updated, again.unchanged, again.chunks_written) == (0, 0, 50, 0)
    assert weaviate_store.count() == 50
    stored = weaviate_store.get(squad_passages[3].id, SOURCE)
    assert stored is not None
    assert (stored.id, stored.text, stored.source) == (
        squad_passages[3].id,
        squad_passages[3].text,
        SOURCE,
    )
    assert weaviate_store.get(squad_passages[3].id, "another-source") is None


def test_gold_passage_in_hybrid_top3(
    weaviate_store: WeaviateStore, squad_passages: list[PassageRecord], first_ingest: IngestReport
) -> None:
    # The first question of passages spread over the 50 where the gold passage ranks first
    # (measured), so top-3 membership has a margin and does not flip between runs.
    wanted = {f"Super_Bowl_50-{n}" for n in (0, 3, 7, 12, 21, 28, 35, 42, 47)}
    assert wanted <= {p.id for p in squad_passages}
    questions: dict[str, str] = {}
    with open(_squad_dir() / "questions.jsonl", encoding="utf-8") as fh:
        for line in fh:
            q = json.loads(line)
            if q["passage_id"] in wanted:
                questions.setdefault(q["passage_id"], q["question"])
    assert len(questions) == len(wanted)
    misses = {}
    for passage_id, question in questions.items():
        hits = weaviate_store.hybrid_search(question, k=3, alpha=0.5)
        assert len(hits) == 3
        assert hits[0].score >= hits[-1].score
        if passage_id not in [h.id for h in hits]:
            misses[question] = [h.id for h in hits]
    assert not misses, f"gold passage not in top 3: {misses}"


def test_search_tool_returns_text_and_hits(
    weaviate_store: WeaviateStore, first_ingest: IngestReport
) -> None:
    tool = make_search_tool(weaviate_store, k=3)
    assert tool.name == "weaviate_search"
    message = tool.invoke(
        {
            "name": tool.name,
            "args": {"query": "Who was the Super Bowl 50 MVP?", "k": 2, "alpha": 0.5},
            "id": "call_1",
            "type": "tool_call",
        }
    )
    assert isinstance(message, ToolMessage)
    assert len(message.artifact) == 2
    hit = message.artifact[0]
    assert {"id", "title", "text", "source", "score"} <= set(hit)
    # Freshness travels with every hit: which edition of the passage this is, and when.
    assert len(hit["version"]) == 20 and hit["ingested_at"].startswith("20")
    assert isinstance(message.content, str) and message.content.startswith("[1] ")


def _first_question(passage_id: str) -> str:
    with open(_squad_dir() / "questions.jsonl", encoding="utf-8") as fh:
        for line in fh:
            q = json.loads(line)
            if q["passage_id"] == passage_id:
                return str(q["question"])
    raise AssertionError(f"no question for {passage_id}")


@pytest.mark.parametrize("mode", ["hybrid", "bm25", "vector"])
def test_every_mode_finds_the_gold_passage(
    weaviate_store: WeaviateStore, first_ingest: IngestReport, mode: str
) -> None:
    question = _first_question("Super_Bowl_50-0")  # ranks first in every mode (measured)
    hits = weaviate_store.search(question, k=5, mode=mode, rerank=False)  # type: ignore[arg-type]
    assert len(hits) == 5
    assert hits[0].id == "Super_Bowl_50-0"
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert len({(h.source, h.id) for h in hits}) == 5, "one hit per passage"


def test_rerank_keeps_a_ranked_list_of_the_same_pool(
    weaviate_store: WeaviateStore, first_ingest: IngestReport
) -> None:
    question = _first_question("Super_Bowl_50-3")
    plain = weaviate_store.search(question, k=30, rerank=False)
    reranked = weaviate_store.search(question, k=30, rerank=True)
    assert {h.id for h in reranked} == {h.id for h in plain}
    assert [h.score for h in reranked] == sorted((h.score for h in reranked), reverse=True)
    assert "Super_Bowl_50-3" in [h.id for h in reranked[:3]]


def test_filters_by_source_and_title(
    weaviate_store: WeaviateStore, squad_passages: list[PassageRecord], first_ingest: IngestReport
) -> None:
    other = [
        PassageRecord("Denver-fact", "Denver", "Denver hosts the Broncos, a Super Bowl 50 team.")
    ]
    assert weaviate_store.ingest(other, source="other-source", progress=False).added == 1
    question = "Which team from Denver played in Super Bowl 50?"
    everywhere = weaviate_store.search(question, k=50)
    assert {h.source for h in everywhere} == {SOURCE, "other-source"}
    only_other = weaviate_store.search(question, k=5, source="other-source")
    assert [h.id for h in only_other] == ["Denver-fact"]
    assert {h.source for h in weaviate_store.search(question, k=5, source=[SOURCE])} == {SOURCE}
    titled = weaviate_store.search(question, k=5, mode="bm25", title="Denver")
    assert [h.title for h in titled] == ["Denver"]
    assert weaviate_store.search(question, k=5, title="No Such Title") == []
    assert weaviate_store.delete(["Denver-fact"]) == [("other-source", "Denver-fact")]
    assert weaviate_store.search(question, k=5, source="other-source") == []


def test_tool_passes_mode_and_filters(
    weaviate_store: WeaviateStore, first_ingest: IngestReport
) -> None:
    tool = make_search_tool(weaviate_store, k=3)
    message = tool.invoke(
        {
            "name": tool.name,
            "args": {"query": "Super Bowl 50 MVP", "mode": "bm25", "source": SOURCE, "k": 4},
            "id": "call_2",
            "type": "tool_call",
        }
    )
    assert len(message.artifact) == 4
    assert {h["source"] for h in message.artifact} == {SOURCE}


class _HybridOnly:
    """A store with nothing but ``hybrid_search`` (like the unit tests' keyword store)."""

    def hybrid_search(self, query: str, *, k: int = 3, alpha: float = 0.5) -> list[SearchHit]:
        return [SearchHit("h1", "T", f"about {query}", "mem", 1.0)][:k]


def test_tool_works_with_a_hybrid_only_store() -> None:
    from setpoint.errors import InputError
    from setpoint.tools.search import search_passages

    tool = make_search_tool(_HybridOnly())
    message = tool.invoke(
        {"name": tool.name, "args": {"query": "cats"}, "id": "c", "type": "tool_call"}
    )
    assert [h["id"] for h in message.artifact] == ["h1"]
    with pytest.raises(InputError, match="hybrid search only"):
        search_passages(_HybridOnly(), "cats", mode="bm25")


# -- bad input --------------------------------------------------------------------------------


def test_read_jsonl_reports_bad_lines(tmp_path: Path) -> None:
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(
        b'{"id": "a", "title": "A", "text": "first good passage"}\n'  # 1
        b'{"id": "b", "text": broken json}\n'  # 2
        b'{"id": "c", "text": "caf\xe9 au lait"}\n'  # 3: Latin-1, not UTF-8
        b"\n"  # 4: blank, skipped silently
        b'{"id": "d", "title": "no text"}\n'  # 5
        b'{"id": "e", "text": "second good passage", "lang": "en"}\r\n'  # 6
        b"[1, 2, 3]\n"  # 7
        b'{"id": 8, "text": "numeric id"}\n'  # 8
        b'{"id": "a", "text": "same id again"}\n'  # 9
    )
    records, bad = read_jsonl(path)
    assert [r.id for r in records] == ["a", "e"]
    assert records[1].metadata == {"lang": "en"}
    assert [n for n, _ in bad] == [2, 3, 5, 7, 8, 9]
    reasons = dict(bad)
    assert "UTF-8" in reasons[3]
    assert "text" in reasons[5]
    assert "duplicate" in reasons[9]


def test_read_jsonl_missing_file(tmp_path: Path) -> None:
    from setpoint.errors import IngestError

    with pytest.raises(IngestError, match="does not exist"):
        read_jsonl(tmp_path / "nope.jsonl")


class _FixedEmbeddings(Embeddings):
    """Every text gets the same unit vector; texts containing "WRONG" get a 5-dim one."""

    def __init__(self, dim: int) -> None:
        self.dim = dim

    def _vector(self, text: str) -> list[float]:
        dim = 5 if "WRONG" in text else self.dim
        return [1.0] + [0.0] * (dim - 1)

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [self._vector(t) for t in texts]

    def embed_query(self, text: str) -> list[float]:
        return self._vector(text)


def test_failing_object_is_reported(weaviate_store: WeaviateStore, embedder: Embedder) -> None:
    assert weaviate_store.server is not None
    store = WeaviateStore(
        url=weaviate_store.url,
        grpc_port=weaviate_store.server.grpc_port,
        collection="TestFailures",
        embedder=_FixedEmbeddings(embedder.dimension),
    )
    with store:
        # The first insert fixes the collection's vector length; the wrong one comes after.
        first = store.ingest([PassageRecord("ok-1", "t", "fine")], source="f", progress=False)
        assert (first.added, first.failed) == (1, [])
        report = store.ingest(
            [PassageRecord("ok-2", "t", "fine too"), PassageRecord("bad-1", "t", "WRONG length")],
            source="f",
            progress=False,
        )
        assert report.added == 1
        assert [pid for pid, _ in report.failed] == ["bad-1"]
        assert "length" in report.failed[0][1] or "dimension" in report.failed[0][1]
        assert store.count() == 2


# -- server lifecycle -------------------------------------------------------------------------


def test_stop_removes_pidfile_and_process(tmp_path: Path) -> None:
    server = WeaviateServer(_binary(), tmp_path)
    server.start()
    pid = server.pid
    assert pid is not None
    record = json.loads((tmp_path / PID_FILE).read_text())
    assert record["server_pid"] == pid and record["owner_pid"] == os.getpid()
    server.stop()
    server.stop()  # idempotent
    assert not (tmp_path / PID_FILE).exists()
    assert _wait_dead(pid, timeout_s=1.0)
    assert not server.is_running()


def test_stale_server_is_cleaned_at_next_start(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    binary = _binary()
    orphan = WeaviateServer(binary, tmp_path)
    orphan.start()
    orphan_pid = orphan.pid
    assert orphan_pid is not None
    # Pretend the process that started it was killed: its owner pid no longer exists.
    pidfile = tmp_path / PID_FILE
    record = json.loads(pidfile.read_text())
    record["owner_pid"] = _dead_pid()
    pidfile.write_text(json.dumps(record))

    successor = WeaviateServer(binary, tmp_path)
    try:
        with caplog.at_level(logging.WARNING, logger="setpoint.adapters.weaviate.server"):
            successor.start()
        assert successor.stale_pid_cleaned == orphan_pid
        assert "stale" in caplog.text
        assert _wait_dead(orphan_pid, timeout_s=1.0)
        assert successor.is_running()
        assert json.loads(pidfile.read_text())["server_pid"] == successor.pid
        orphan.stop()  # must not remove the successor's pidfile
        assert pidfile.exists()
    finally:
        successor.stop()
        orphan.stop()
    assert not pidfile.exists()


def test_live_owner_is_refused_and_child_dies_with_it(tmp_path: Path) -> None:
    """A server another live process owns is not touched; killing that process kills its server."""
    binary = _binary()
    script = textwrap.dedent(
        f"""
        import sys, threading, time
        from pathlib import Path
        from setpoint.adapters.weaviate.server import WeaviateServer
        server = WeaviateServer(Path({str(binary)!r}), Path({str(tmp_path)!r}))
        # Start from a short-lived thread: the server must outlive it.
        t = threading.Thread(target=server.start)
        t.start()
        t.join()
        print(server.pid, flush=True)
        time.sleep(120)
        """
    )
    owner = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert owner.stdout is not None
        line = owner.stdout.readline()
        assert line.strip().isdigit(), f"owner process failed: {owner.poll()}"
        server_pid = int(line)
        with pytest.raises(RetrievalError, match=rf"pid {owner.pid}.*SETPOINT_WEAVIATE_DATA"):
            WeaviateServer(binary, tmp_path).start()
        assert not _wait_dead(server_pid, timeout_s=0.2)
    finally:
        owner.send_signal(signal.SIGKILL)
        owner.wait()
    assert _wait_dead(server_pid), "PR_SET_PDEATHSIG did not stop the orphaned server"


def test_dead_embedded_server_fails_fast(tmp_path: Path) -> None:
    """No minute of gRPC retries: a search on a dead server answers at once."""
    settings = Settings.from_env().replace(
        weaviate_url=None, weaviate_data_override=tmp_path, collection="Dead"
    )
    _binary()
    store = WeaviateStore.from_settings(settings, _FixedEmbeddings(3))
    with store:
        store.ingest([PassageRecord("a", "t", "hello world")], source="s", progress=False)
        assert [h.id for h in store.hybrid_search("hello")] == ["a"]
        assert store.server is not None and store.server.pid is not None
        os.kill(store.server.pid, signal.SIGKILL)
        started = time.monotonic()
        with pytest.raises(RetrievalError, match=r"exited|not reachable"):
            store.hybrid_search("hello")
        assert time.monotonic() - started < 5.0
        assert not store.is_available()


@contextlib.contextmanager
def _connected_store(
    tmp_path: Path, collection: str, timeout_s: float
) -> Iterator[tuple[WeaviateStore, int]]:
    """A store connected to its own embedded server, and that server's pid (to freeze it)."""
    _binary()
    settings = Settings.from_env().replace(
        weaviate_url=None,
        weaviate_data_override=tmp_path,
        collection=collection,
        weaviate_timeout_s=timeout_s,
    )
    with WeaviateStore.from_settings(settings, _FixedEmbeddings(3)) as store:
        store.connect()
        assert store.server is not None and store.server.pid is not None
        yield store, store.server.pid


def test_schema_timeout_is_retried_while_the_server_stalls(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A stalled server (as a cluster node is during a leader election) costs a retry, not an error."""
    with _connected_store(tmp_path, "Stalled", 2.0) as (store, pid):
        os.kill(pid, signal.SIGSTOP)
        resume = threading.Timer(3.0, os.kill, (pid, signal.SIGCONT))
        resume.start()
        try:
            with caplog.at_level(logging.WARNING, logger="setpoint.adapters.weaviate.store"):
                store.ensure_collection()
        finally:
            resume.cancel()
            os.kill(pid, signal.SIGCONT)
        assert "creating collection Stalled timed out (attempt 1 of 3)" in caplog.text
        passage = PassageRecord("a", "t", "hello world")
        assert store.ingest([passage], source="s", progress=False).added == 1
        assert store.count() == 1


def test_schema_timeout_gives_up_in_one_line(tmp_path: Path) -> None:
    with _connected_store(tmp_path, "Frozen", 1.0) as (store, pid):
        os.kill(pid, signal.SIGSTOP)
        started = time.monotonic()
        try:
            with pytest.raises(RetrievalError, match="creating collection Frozen") as info:
                store.ensure_collection()
        finally:
            os.kill(pid, signal.SIGCONT)
        assert time.monotonic() - started < 3 * 2 * 1.0 + 10.0
        assert "\n" not in str(info.value)
        # Nothing is left half-made: once the server runs again, the same call succeeds.
        store.ensure_collection()
        assert store.count() == 0


# -- authentication and reachability ----------------------------------------------------------


def test_api_key_auth(tmp_path: Path, embedder: Embedder) -> None:
    with WeaviateServer(_binary(), tmp_path, api_keys={"right-key": "tester"}) as server:
        base = Settings.from_env().replace(
            weaviate_url=server.url, weaviate_grpc_port=server.grpc_port, collection="AuthCheck"
        )
        with WeaviateStore.from_settings(
            base.replace(weaviate_api_key="right-key"), embedder
        ) as good:
            assert good.is_available()
            assert good.count() == 0
            passage = PassageRecord("k1", "Keys", "An API key opens this collection.")
            assert good.ingest([passage], source="auth", progress=False).added == 1
            assert [h.id for h in good.search("Which key opens it?", k=1)] == ["k1"]
        bad = WeaviateStore.from_settings(base.replace(weaviate_api_key="wrong-key"), embedder)
        with pytest.raises(RetrievalError, match="rejected the API key") as info:
            bad.connect()
        assert server.url in str(info.value)
        assert "\n" not in str(info.value)
        assert not bad.is_available()


def test_unreachable_url(embedder: Embedder) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    store = WeaviateStore.from_settings(Settings.from_env().replace(weaviate_url=url), embedder)
    with pytest.raises(RetrievalError) as info:
        store.connect()
    message = str(info.value)
    assert url in message and "SETPOINT_WEAVIATE_URL" in message
    assert "\n" not in message
    assert not store.is_available()
    with pytest.raises(RetrievalError):
        store.hybrid_search("anything")
    from setpoint.errors import IngestError

    with pytest.raises(IngestError) as ingest_info:
        store.ingest([PassageRecord("a", "t", "text")], source="s", progress=False)
    assert url in str(ingest_info.value) and "\n" not in str(ingest_info.value)


def test_missing_binary_is_explained(tmp_path: Path, embedder: Embedder) -> None:
    settings = Settings.from_env().replace(
        weaviate_url=None, weaviate_binary_override=tmp_path / "no-such-binary"
    )
    with pytest.raises(RetrievalError, match="setpoint setup"):
        WeaviateStore.from_settings(settings, embedder)


def _fake_binary(tmp_path: Path, body: str) -> Path:
    binary = tmp_path / "bin" / "weaviate-server-fake"
    binary.parent.mkdir()
    binary.write_text(f"#!/bin/sh\n{body}\n")
    binary.chmod(0o755)
    return binary


def test_server_crash_at_start_is_reported_with_its_log(tmp_path: Path) -> None:
    binary = _fake_binary(
        tmp_path, """echo '{"level":"fatal","msg":"boom: disk on fire"}'; exit 3"""
    )
    server = WeaviateServer(binary, tmp_path / "data")
    with pytest.raises(RetrievalError, match=r"exited with code 3.*boom: disk on fire"):
        server.start()
    assert not (tmp_path / "data" / PID_FILE).exists()


def test_server_not_ready_in_time_is_stopped(tmp_path: Path) -> None:
    binary = _fake_binary(tmp_path, "exec sleep 60")
    server = WeaviateServer(binary, tmp_path / "data", startup_timeout_s=1.0)
    with pytest.raises(RetrievalError, match="not ready after 1 s"):
        server.start()
    assert not server.is_running()
    assert not (tmp_path / "data" / PID_FILE).exists()
