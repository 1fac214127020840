"""Faults injected into real processes: setpoint killed mid-answer, Weaviate killed or hung, a full disk, orphans."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from setpoint.settings import Settings
from tests.integration.isolation import free_port

if TYPE_CHECKING:
    from langchain_core.embeddings import Embeddings

    from setpoint.api import Setpoint

pytestmark = pytest.mark.integration

QUESTION = "What is the capital of France?"


def _alive(pid: int) -> bool:
    """A process that exists and has a thread that is not a zombie."""
    for stat in Path(f"/proc/{pid}/task").glob("*/stat"):
        try:
            if stat.read_text().rsplit(")", 1)[1].split()[0] not in {"Z", "X"}:
                return True
        except (OSError, IndexError):
            continue
    return False


def _wait_dead(pid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.05)
    return False


def _weaviate_pids_on(data_dir: Path) -> list[int]:
    """Live weaviate-server processes whose working directory is ``data_dir``."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv0 = (proc / "cmdline").read_bytes().split(b"\0", 1)[0]
            cwd = os.readlink(proc / "cwd")
        except OSError:
            continue
        weaviate = os.path.basename(argv0).startswith(b"weaviate-server")
        if weaviate and Path(cwd) == data_dir and _alive(int(proc.name)):
            found.append(int(proc.name))
    return found


# -- a real PostgreSQL on loopback ------------------------------------------------------------


def _pg_bin(name: str) -> str | None:
    """A PostgreSQL server program from Debian's versioned directory (newest) or the PATH."""
    versions = sorted(
        Path("/usr/lib/postgresql").glob(f"*/bin/{name}"),
        key=lambda p: int(p.parts[-3]) if p.parts[-3].isdigit() else 0,
    )
    return str(versions[-1]) if versions else shutil.which(name)


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    """A throwaway PostgreSQL cluster on a free loopback port, as a ``postgresql://`` URL.

    initdb refuses to run as root, so under root the server runs as the ``postgres`` user
    that Debian's package creates.
    """
    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    if not (initdb and pg_ctl):
        pytest.fail("PostgreSQL is not installed (`make test` installs it: .ci/system-packages.sh)")
    base = Path(tempfile.mkdtemp(prefix="setpoint-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:
        owner = pwd.getpwnam("postgres")
        os.chown(base, owner.pw_uid, owner.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    data, port = base / "data", free_port()
    subprocess.run(
        [*as_user, initdb, "-D", str(data), "-A", "trust", "-U", "setpoint", "--no-sync"],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    options = f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off"
    subprocess.run(
        [*as_user, pg_ctl, "-D", str(data), "-l", str(base / "log"), "-w", "-t", "60", "-o", options, "start"],
        check=True, capture_output=True, timeout=90,
    )  # fmt: skip
    try:
        yield f"postgresql://setpoint@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            [*as_user, pg_ctl, "-D", str(data), "-m", "immediate", "stop"],
            capture_output=True, timeout=60,
        )  # fmt: skip
        shutil.rmtree(base, ignore_errors=True)


# -- setpoint killed mid-run resumes from its last durable checkpoint ---------------------------

# An answer that runs to the token limit (seconds of decoding), so the kill at its first
# token lands well before the run could finish.
RESUME_QUESTION = "Explain how photosynthesis works."

_RUNNER = textwrap.dedent(
    """
    import json, sys
    from setpoint.api import DURABILITY, Setpoint
    from setpoint.events import NodeEvent, ResultEvent, TokenEvent

    mode, thread, question = sys.argv[1], sys.argv[2], sys.argv[3]
    with Setpoint() as sp:
        ctx = sp.context(setpoint=float("inf"), max_new_tokens=48)  # never retrieves
        config = {"configurable": {"thread_id": thread}}
        if mode == "start":
            for event in sp.stream(question, context=ctx, thread_id=thread):
                if isinstance(event, TokenEvent):
                    print("TOKEN", flush=True)
            print("FINISHED", flush=True)
        else:
            # Each checkpoint names the nodes due after it: all but the newest one's have run.
            history = list(sp.graph.get_state_history(config))
            durable = [n for snap in reversed(history[1:]) for n in snap.next if n != "__start__"]
            waiting = list(history[0].next) if history else []
            resumed = [next(iter(c)) for c in sp.graph.stream(
                None, config, context=ctx, stream_mode="updates", durability=DURABILITY)]
            final = sp.graph.get_state(config).values
            fresh_nodes, fresh = [], None
            for event in sp.stream(question, context=ctx, thread_id=thread + "-fresh"):
                if isinstance(event, NodeEvent):
                    fresh_nodes.append(event.node)
                elif isinstance(event, ResultEvent):
                    fresh = event.result
            print(json.dumps({"durable": durable, "waiting": waiting, "resumed": resumed,
                              "answer": final.get("answer"), "status": final.get("status"),
                              "fresh_nodes": fresh_nodes, "fresh_answer": fresh.answer}))
    """
)


@pytest.fixture(scope="module")
def fault_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Environment of a setpoint child process with its own Weaviate data and trace file."""
    base = tmp_path_factory.mktemp("faults")
    return {
        **os.environ,
        "SETPOINT_WEAVIATE_URL": "",
        "SETPOINT_WEAVIATE_DATA": str(base / "weaviate"),
        "SETPOINT_TRACE_FILE": str(base / "spans.jsonl"),
        "SETPOINT_COLLECTION": "FaultPassages",
        "HF_HUB_OFFLINE": "1",
    }


def _kill_at_first_token(env: dict[str, str], thread: str) -> None:
    """Start a run on ``thread`` in a child process and SIGKILL it when its first token streams."""
    first = subprocess.Popen(
        [sys.executable, "-c", _RUNNER, "start", thread, RESUME_QUESTION],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert first.stdout is not None and first.stderr is not None
        line = first.stdout.readline()  # blocks until the first token is out
        if line.strip() != "TOKEN":
            first.wait(60)
            pytest.fail(f"runner said {line!r}: {first.stderr.read()[-3000:]}")
        first.send_signal(signal.SIGKILL)
        first.wait(30)
    finally:
        if first.poll() is None:
            first.kill()
    # 0 only when the run finished and the process exited before the signal arrived.
    assert first.returncode in (-signal.SIGKILL, 0)


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_killed_run_resumes_from_its_last_durable_checkpoint(
    backend: str, fault_env: dict[str, str], tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """SIGKILL while the answer streams; a new process finishes the thread with the answer of an uninterrupted run."""
    url = (
        f"sqlite:///{tmp_path / 'checkpoints.sqlite'}"
        if backend == "sqlite"
        else request.getfixturevalue("postgres_url")
    )
    env = {**fault_env, "SETPOINT_CHECKPOINT_URL": url}
    for attempt in range(3):
        thread = f"resume-{backend}-{attempt}"
        _kill_at_first_token(env, thread)
        resumed = subprocess.run(
            [sys.executable, "-c", _RUNNER, "resume", thread, RESUME_QUESTION],
            env=env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert resumed.returncode == 0, resumed.stderr[-3000:]
        outcome = json.loads(resumed.stdout.strip().splitlines()[-1])
        # Whatever step the checkpoint holds: what it holds is not run again, the rest runs
        # once, and together they are the uninterrupted run's nodes in its order.
        assert outcome["durable"] + outcome["resumed"] == outcome["fresh_nodes"]
        assert outcome["resumed"][:1] == outcome["waiting"][:1]
        # Durability "sync": a step's checkpoint is written before the next step starts, so
        # once `generate` streamed a token, `guard_input` and `probe` were on disk.
        assert outcome["durable"][:2] == ["guard_input", "probe"]
        # Greedy decoding: the resumed answer is the one an uninterrupted run gives.
        assert outcome["status"] == "answered" and outcome["answer"].strip()
        assert outcome["answer"] == outcome["fresh_answer"]
        if outcome["waiting"]:
            break  # killed mid-run: resumed from an intermediate checkpoint
        # The run had finished before the signal arrived (a loaded machine): nothing was
        # left to resume, so kill a new run.
        assert outcome["resumed"] == []
    else:
        pytest.fail("each of 3 runs finished before its SIGKILL arrived; none resumed mid-run")


def test_unreachable_postgres_is_one_clear_line(fault_env: dict[str, str]) -> None:
    env = {
        **fault_env,
        "SETPOINT_CHECKPOINT_URL": f"postgresql://setpoint@127.0.0.1:{free_port()}/x",
    }
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "setpoint.cli", "ask", QUESTION],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert time.monotonic() - started < 60
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert "127.0.0.1" in lines[0] or "checkpoint" in lines[0].lower()


# -- Weaviate killed or hung while a question runs --------------------------------------------

RETRIEVAL_QUESTION = "Who was the commissioner of the NFL in 2012?"


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setpoint]:
    """A Setpoint on its own embedded Weaviate holding five sample passages."""
    from setpoint.api import Setpoint

    base = tmp_path_factory.mktemp("killed")
    settings = Settings.from_env().replace(
        weaviate_url=None,
        weaviate_data_override=base / "weaviate",
        trace_file_override=base / "spans.jsonl",
        collection="KilledPassages",
    )
    corpus = base / "five.jsonl"
    sample = Path(__file__).resolve().parents[3] / "setpoint" / "data" / "squad_sample.jsonl"
    corpus.write_text("".join(sample.read_text(encoding="utf-8").splitlines(True)[:5]))
    with Setpoint(settings) as sp:
        assert sp.ingest(corpus, progress=False).added == 5
        yield sp


def test_weaviate_killed_mid_answer_finishes_from_weights_flagged(session: Setpoint) -> None:
    server = session.resources.store().server
    assert server is not None and server.is_running()
    # Setpoint 0: the thermostat fires a few tokens in, so the run needs Weaviate after the kill.
    ctx = session.context(setpoint=0.0, max_new_tokens=24)
    config = {"configurable": {"thread_id": "killed-mid-answer"}}
    started, final = time.monotonic(), {}
    for kind, chunk in session.graph.stream(
        {"question": RETRIEVAL_QUESTION}, config, context=ctx, stream_mode=["custom", "values"]
    ):
        if kind == "custom" and chunk.get("type") == "token" and server.is_running():
            os.kill(server.pid, signal.SIGKILL)  # type: ignore[arg-type]
        elif kind == "values":
            final = chunk
    assert time.monotonic() - started < 60
    assert not server.is_running()
    # Finished from the weights, or (the thermostat firing again with the budget spent)
    # abstained; either way flagged, never an exception or a hang.
    assert final["retrieval_unavailable"] is True
    assert final["status"] in {"answered", "abstained"} and final["answer"].strip()
    # The next question on the same session does not wait for the dead server either.
    started = time.monotonic()
    again = session.ask(RETRIEVAL_QUESTION, context=ctx)
    assert time.monotonic() - started < 30
    assert again.retrieval_unavailable and again.answer.strip()


def test_weaviate_dead_before_retrieval_fails_in_one_line(session: Setpoint) -> None:
    """When the probe sends the question straight to retrieval, a dead Weaviate is one clear error."""
    from setpoint.errors import RetrievalError

    server = session.resources.store().server
    if server is not None and server.is_running():
        os.kill(server.pid, signal.SIGKILL)  # type: ignore[arg-type]
        assert _wait_dead(server.pid, 10)  # type: ignore[arg-type]
    started = time.monotonic()
    try:
        result = session.ask(RETRIEVAL_QUESTION, context=session.context(probe_setpoint=0.0))
    except RetrievalError as exc:
        assert "\n" not in str(exc) and "Weaviate" in str(exc)
    else:
        assert result.retrieval_unavailable and result.answer.strip()
    assert time.monotonic() - started < 30


@pytest.fixture
def blackhole() -> Iterator[int]:
    """A loopback port that completes TCP handshakes and then never answers (a hung server)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    try:
        yield int(sock.getsockname()[1])
    finally:
        sock.close()


def test_hung_weaviate_times_out_instead_of_hanging(
    blackhole: int, fault_env: dict[str, str]
) -> None:
    env = {
        **fault_env,
        "SETPOINT_WEAVIATE_URL": f"http://127.0.0.1:{blackhole}",
        "SETPOINT_WEAVIATE_GRPC_PORT": str(blackhole),
        "SETPOINT_WEAVIATE_TIMEOUT": "2",
    }
    setpoint = str(Path(sys.executable).with_name("setpoint"))
    started = time.monotonic()
    done = subprocess.run(
        [setpoint, "ask", RETRIEVAL_QUESTION, "--setpoint", "0", "--max-new-tokens", "16", "--json"],
        env=env, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    elapsed = time.monotonic() - started
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    if done.returncode == 0:
        result = json.loads(done.stdout)
        assert result["retrieval_unavailable"] is True and result["answer"].strip()
    else:
        assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    # Model loading included; a missing timeout would sit here for minutes.
    assert elapsed < 90, f"took {elapsed:.0f} s"


# -- ingestion into a nearly full disk ---------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 64 MiB tmpfs (needs root, or CAP_SYS_ADMIN); skipped where mounting is not allowed."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mount)],
        capture_output=True, text=True,
    )  # fmt: skip
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip()}); run as root")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def _fill_to(mount: Path, fraction: float) -> Path:
    stat = os.statvfs(mount)
    used = (stat.f_blocks - stat.f_bavail) * stat.f_frsize
    ballast = mount / "ballast"
    with open(ballast, "wb") as fh:
        fh.write(b"\0" * max(int(stat.f_blocks * stat.f_frsize * fraction) - used, 0))
    return ballast


def test_ingest_into_nearly_full_disk_fails_clearly_and_stays_consistent(
    small_disk: Path, squad_dir: Path, hash_embedder: Embeddings
) -> None:
    from setpoint.adapters.domain.chunking import chunk_text
    from setpoint.adapters.weaviate.corpus import read_jsonl
    from setpoint.adapters.weaviate.ingestion import UnfinishedWrites
    from setpoint.adapters.weaviate.server import WeaviateServer
    from setpoint.adapters.weaviate.store import WeaviateStore
    from setpoint.errors import IngestError

    records, _ = read_jsonl(squad_dir / "passages.jsonl")
    by_id = {r.id: r for r in records}

    def paced() -> Iterator:
        # About the pace of the real embedder on a small CPU: Weaviate's disk monitor (every
        # 500 ms) sees 90% before the disk is full, as it would on any real disk.
        for record in records:
            time.sleep(0.002)
            yield record

    def whole(stored: dict) -> None:
        for pid, chunks in stored.items():
            assert [chunks[n].text for n in sorted(chunks)] == chunk_text(
                by_id[pid].text, store.chunking
            ), pid

    server = WeaviateServer(Settings.from_env().weaviate_binary, small_disk / "weaviate")
    store = WeaviateStore(server=server, collection="FullDisk", embedder=hash_embedder)
    ledger = UnfinishedWrites.of(store)
    with store:
        store.ensure_collection()
        ballast = _fill_to(small_disk, 0.86)
        with pytest.raises(IngestError) as info:
            # Large batches: the shard often turns read-only in the middle of one, which
            # leaves objects stored but only partly indexed (Weaviate 1.39).
            store.ingest(paced(), source="squad", progress=False, batch_size=256)
        message = str(info.value)
        assert "\n" not in message and "read-only" in message and "free space" in message
        # The batch in flight is on the ledger; every passage written before it is whole.
        unfinished = ledger.pending("squad")
        assert 0 < len(unfinished) <= 256
        stored = store.stored_chunks("squad", list(by_id))
        assert 0 < len(stored) < len(records)
        whole({pid: c for pid, c in stored.items() if pid not in unfinished})
        # Space freed: Weaviate leaves read-only by itself and the same ingest finishes the
        # job, rewriting the unfinished batch from scratch.
        ballast.unlink()
        deadline = time.monotonic() + 30
        while True:
            try:
                report = store.ingest(records, source="squad", progress=False)
                break
            except IngestError:
                assert time.monotonic() < deadline, (
                    "Weaviate stayed read-only after space was freed"
                )
                time.sleep(1)
        assert report.failed == [] and report.repaired >= len(unfinished)
        assert report.unchanged == len(set(stored) - set(unfinished))
        assert ledger.pending("squad") == {} and not ledger.path.exists()
        # Every index agrees: the passage filter, the chunk filter and the vector index.
        expected_chunks = sum(len(chunk_text(r.text, store.chunking)) for r in records)
        assert store.count() == len(records) and store.count_chunks() == expected_chunks
        whole(store.stored_chunks("squad", list(by_id)))
        for pid in unfinished:
            record = by_id[pid]
            first = chunk_text(record.text, store.chunking)[0]
            vector = hash_embedder.embed_query(f"{record.title}\n{first}")
            hits = store.search(first, k=1, mode="vector", query_vector=vector)
            assert [hit.id for hit in hits] == [pid]


# -- the embedded Weaviate never outlives setpoint ---------------------------------------------

_HOLDER = textwrap.dedent(
    """
    import time
    from setpoint.api import Setpoint
    sp = Setpoint()
    sp.resources.store().connect()  # starts the embedded server
    print(sp.resources.store().server.pid, flush=True)
    time.sleep(300)
    """
)


def test_sigkilled_setpoint_leaves_no_orphan_and_a_stale_server_is_cleaned(
    fault_env: dict[str, str], tmp_path: Path
) -> None:
    from setpoint.adapters.weaviate.server import PID_FILE, WeaviateServer

    data = tmp_path / "weaviate"
    env = {**fault_env, "SETPOINT_WEAVIATE_DATA": str(data)}
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER], env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None
        server_pid = int(holder.stdout.readline())
        assert _weaviate_pids_on(data) == [server_pid]
        holder.send_signal(signal.SIGKILL)
        holder.wait(30)
    finally:
        if holder.poll() is None:
            holder.kill()
    assert _wait_dead(server_pid, 15), "weaviate-server outlived the SIGKILLed setpoint"
    assert _weaviate_pids_on(data) == []

    # A server whose owner crashed without taking it along (as when PDEATHSIG cannot fire):
    # started here, then its pidfile names a dead owner.
    orphan = WeaviateServer(Settings.from_env().weaviate_binary, data).start()
    record = json.loads((data / PID_FILE).read_text())
    gone = subprocess.Popen(["true"])
    gone.wait()
    record.update(owner_pid=gone.pid, owner_start_ticks=None)
    (data / PID_FILE).write_text(json.dumps(record))
    # The next start is a folder sync, whose folder also links to a file outside it.
    folder = tmp_path / "corpus"
    folder.mkdir()
    (folder / "one.jsonl").write_text(
        json.dumps({"id": "p1", "title": "T", "text": "a passage"}) + "\n"
    )
    (tmp_path / "private.txt").write_text("not for the index")
    (folder / "link.txt").symlink_to(tmp_path / "private.txt")
    setpoint = str(Path(sys.executable).with_name("setpoint"))
    try:
        done = subprocess.run(
            [setpoint, "ingest", "--sync", str(folder), "--quiet"], env=env, capture_output=True, text=True, timeout=180
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-2000:]
        assert _wait_dead(orphan.pid, 5), "the stale server was not stopped"  # type: ignore[arg-type]
        assert "stale" in done.stderr
        assert "1 added" in done.stdout and "links outside" in done.stderr, done.stdout
        # The ingest's own server went with it.
        assert _weaviate_pids_on(data) == []
    finally:
        orphan.stop()


# -- a served graph's Weaviate takes its key only ---------------------------------------------


def test_server_deployment_weaviate_requires_the_key_and_never_logs_it(
    tmp_path: Path, hash_embedder: Embeddings
) -> None:
    import urllib.error
    import urllib.request

    from setpoint.adapters.weaviate.server import LOG_FILE, PID_FILE
    from setpoint.adapters.weaviate.store import WeaviateStore

    base = Settings.from_env().replace(
        weaviate_url=None,
        weaviate_api_key=None,
        weaviate_data_override=tmp_path,
        weaviate_auth=None,
    )
    assert base.for_server().weaviate_auth is True
    assert base.replace(weaviate_auth=False).for_server().weaviate_auth is False
    store = WeaviateStore.from_settings(base.for_server(), hash_embedder)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with store:
        store.ensure_collection()  # setpoint itself holds the key
        assert store.server is not None and store.api_key
        for headers in ({}, {"Authorization": "Bearer not-the-key"}):
            request = urllib.request.Request(f"{store.server.url}/v1/schema", headers=headers)
            with pytest.raises(urllib.error.HTTPError) as refused:
                opener.open(request, timeout=5)
            assert refused.value.code == 401
        key = store.api_key
        for name in (LOG_FILE, PID_FILE):
            assert key not in (tmp_path / name).read_text(errors="replace")
    assert key not in (tmp_path / LOG_FILE).read_text(errors="replace")
