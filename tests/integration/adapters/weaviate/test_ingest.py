"""Ingestion against a real weaviate-server: re-ingest, edits, deletes, sync, failures, interruption."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from langchain_core.embeddings import Embeddings

from setpoint.adapters.domain.chunking import ChunkPolicy, chunk_text
from setpoint.adapters.model.embedder import Embedder
from setpoint.adapters.weaviate.corpus import PassageRecord
from setpoint.adapters.weaviate.ingestion import ingest_path
from setpoint.adapters.weaviate.store import WeaviateStore

pytestmark = pytest.mark.integration

SMALL_CHUNKS = ChunkPolicy(max_words=40, overlap_words=10)


class HashEmbeddings(Embeddings):
    """Deterministic 16-dim unit vectors from a hash; texts containing "WRONG" get 5 dims.

    For tests about what gets written, not about meaning: it is instant and never varies.
    """

    def _vector(self, text: str) -> list[float]:
        digest = hashlib.sha256(text.encode("utf-8")).digest()
        values = [b / 255 - 0.5 for b in digest[: 5 if "WRONG" in text else 16]]
        norm = sum(v * v for v in values) ** 0.5
        return [v / norm for v in values]

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [self._vector(t) for t in texts]

    def embed_query(self, text: str) -> list[float]:
        return self._vector(text)


StoreFactory = Callable[..., WeaviateStore]


@pytest.fixture
def make_store(
    weaviate_store: WeaviateStore, request: pytest.FixtureRequest
) -> Iterator[StoreFactory]:
    """Stores on the session's server, each test in collections of its own, removed afterwards."""
    assert weaviate_store.server is not None
    server = weaviate_store.server
    made: list[WeaviateStore] = []
    base = "".join(part.capitalize() for part in request.node.name.split("_") if part.isalnum())

    def make(
        embedder: Embeddings | None = None, suffix: str = "", **options: object
    ) -> WeaviateStore:
        store = WeaviateStore(
            url=server.url,
            grpc_port=server.grpc_port,
            collection=f"Ingest{base[:40]}{suffix}",
            embedder=embedder or HashEmbeddings(),
            **options,  # type: ignore[arg-type]
        )
        made.append(store)
        return store

    yield make
    for store in made:
        client = store.connect()
        client.collections.delete(store.collection_name)
        store.close()


def _records(n: int, *, words: int = 30, prefix: str = "p") -> list[PassageRecord]:
    """``n`` passages; every third one is long enough for several small chunks."""
    out = []
    for i in range(n):
        length = words * 4 if i % 3 == 0 else words
        sentences = [f"Fact {j} about item {i} is recorded here." for j in range(length // 7)]
        out.append(PassageRecord(f"{prefix}{i}", f"Item {i % 5}", " ".join(sentences)))
    return out


def _expected_chunks(records: list[PassageRecord], policy: ChunkPolicy) -> int:
    return sum(len(chunk_text(r.text, policy)) for r in records)


# -- re-ingest, edits, freshness --------------------------------------------------------------


def test_reingest_of_unchanged_passages_writes_nothing(
    make_store: StoreFactory, embedder: Embedder, squad_passages: list[PassageRecord]
) -> None:
    store = make_store(embedder)
    records = squad_passages[:12]
    first = store.ingest(records, source="squad", progress=False)
    assert (first.added, first.updated, first.unchanged, first.failed) == (12, 0, 0, [])
    written_at = {v.id: v.ingested_at for v in store.versions([r.id for r in records]).values()}
    again = store.ingest(records, source="squad", progress=False)
    assert (again.added, again.updated, again.unchanged, again.chunks_written) == (0, 0, 12, 0)
    assert again.embed_seconds == 0.0
    # No write at all: the stored editions keep the time they were first written.
    assert {
        v.id: v.ingested_at for v in store.versions([r.id for r in records]).values()
    } == written_at
    assert store.count() == 12


def test_edited_passage_replaces_its_old_version(make_store: StoreFactory) -> None:
    store = make_store(chunking=SMALL_CHUNKS)
    records = _records(9)
    store.ingest(records, source="docs", progress=False)
    long_id = records[0].id
    assert len(store.stored_chunks("docs", [long_id])[long_id]) > 1
    before_edit = time.time()
    time.sleep(0.01)

    edited = list(records)
    edited[0] = PassageRecord(long_id, records[0].title, "Now a single short sentence.")
    edited[4] = PassageRecord(records[4].id, "A new title", records[4].text)
    report = store.ingest(edited, source="docs", progress=False)
    assert (report.added, report.updated, report.unchanged) == (0, 2, 7)

    stored = store.get(long_id, "docs")
    assert stored is not None and stored.text == "Now a single short sentence."
    # The chunks the longer edition had are gone, not left behind to be found by search.
    assert list(store.stored_chunks("docs", [long_id])[long_id]) == [0]
    assert store.count() == 9
    assert store.count_chunks() == _expected_chunks(edited, SMALL_CHUNKS)
    hits = store.search("Fact 3 about item 0", k=9, mode="bm25")
    assert all("Fact 3 about item 0" not in h.text for h in hits)

    changed = store.changed_since([r.id for r in records] + ["never-stored"], before_edit)
    assert set(changed) == {long_id, records[4].id, "never-stored"}
    assert changed["never-stored"] is None
    assert changed[long_id] is not None and changed[long_id].ingested_at.timestamp() > before_edit
    assert store.changed_since([records[1].id], before_edit) == {}


def test_same_id_in_two_sources_are_two_passages(make_store: StoreFactory) -> None:
    store = make_store()
    passage = [PassageRecord("shared-id", "T", "The same id, from two files.")]
    store.ingest(passage, source="a.jsonl", progress=False)
    store.ingest(passage, source="b.jsonl", progress=False)
    assert store.count() == 2
    assert store.delete(["shared-id"], source="a.jsonl") == [("a.jsonl", "shared-id")]
    assert store.sources() == {"b.jsonl": 1}
    assert store.delete(["shared-id", "unknown"]) == [("b.jsonl", "shared-id")]
    assert store.count() == 0


# -- failures ----------------------------------------------------------------------------------


def test_refused_passage_is_reported_and_written_on_the_next_run(make_store: StoreFactory) -> None:
    store = make_store()
    good = _records(6)
    assert store.ingest(good, source="f", progress=False).added == 6  # fixes 16 dimensions
    batch = [*_records(3, prefix="new"), PassageRecord("bad", "T", "WRONG vector length")]
    report = store.ingest(batch, source="f", progress=False, batch_size=2)
    assert report.added == 3
    assert [pid for pid, _ in report.failed] == ["bad"]
    assert "length" in report.failed[0][1] or "dimension" in report.failed[0][1]
    assert "bad" not in {h.id for h in store.search("vector length", k=20, mode="bm25")}

    fixed = [*batch[:3], PassageRecord("bad", "T", "right vector length now")]
    again = store.ingest(fixed, source="f", progress=False)
    assert (again.added, again.unchanged, again.failed) == (1, 3, [])
    assert store.count() == 10


def test_invalid_records_are_reported_not_written(make_store: StoreFactory) -> None:
    store = make_store()
    records = [
        PassageRecord("ok", "T", "fine"),
        PassageRecord("", "T", "no id"),
        PassageRecord("blank", "T", "   "),
        PassageRecord("ok", "T", "same id twice"),
    ]
    report = store.ingest(records, source="s", progress=False)
    assert report.added == 1
    assert [pid for pid, _ in report.failed] == ["", "blank", "ok"]
    assert not report.ok


# -- folders and sync --------------------------------------------------------------------------


def _write_folder(root: Path) -> None:
    (root / "guides").mkdir(parents=True, exist_ok=True)
    (root / "facts.jsonl").write_text(
        '{"id": "f1", "title": "Rivers", "text": "The Rhine flows through Basel."}\n'
        '{"id": "f2", "title": "Rivers", "text": "The Danube flows through Vienna."}\n',
        encoding="utf-8",
    )
    (root / "guides" / "setup.md").write_text(
        "# Setup\n\nInstall the package first.\n\n## Linux\n\nUse apt on Debian.\n",
        encoding="utf-8",
    )
    (root / "notes.txt").write_text("Basel lies on the Rhine knee.\n", encoding="utf-8")


def test_sync_mirrors_a_folder(make_store: StoreFactory, tmp_path: Path) -> None:
    store = make_store()
    root = tmp_path / "kb"
    _write_folder(root)
    first = ingest_path(store, root, sync=True, progress=False)
    assert (first.added, first.deleted) == (5, [])
    assert store.sources() == {"kb/facts.jsonl": 2, "kb/guides/setup.md": 2, "kb/notes.txt": 1}
    linux = store.search("apt Debian", k=1, title="Setup › Linux")
    assert [(h.id, h.source) for h in linux] == [("setup/linux", "kb/guides/setup.md")]

    # A line removed, a file removed, a file added; a passage of another source untouched.
    store.ingest([PassageRecord("x", "T", "not in the folder")], source="elsewhere", progress=False)
    (root / "facts.jsonl").write_text(
        '{"id": "f1", "title": "Rivers", "text": "The Rhine flows through Basel."}\n',
        encoding="utf-8",
    )
    (root / "guides" / "setup.md").unlink()
    (root / "more.md").write_text("# More\n\nA new section.\n", encoding="utf-8")
    second = ingest_path(store, root, sync=True, progress=False)
    assert (second.added, second.updated, second.unchanged) == (1, 0, 2)
    assert sorted(second.deleted) == [
        ("kb/facts.jsonl", "f2"),
        ("kb/guides/setup.md", "setup"),
        ("kb/guides/setup.md", "setup/linux"),
    ]
    assert store.sources() == {
        "kb/facts.jsonl": 1,
        "kb/more.md": 1,
        "kb/notes.txt": 1,
        "elsewhere": 1,
    }
    # Without sync, a folder ingest only adds and updates.
    (root / "notes.txt").unlink()
    plain = ingest_path(store, root, progress=False)
    assert plain.deleted == [] and "kb/notes.txt" in store.sources()


def _cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "setpoint.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )


def test_cli_sync_and_delete(
    weaviate_store: WeaviateStore, tmp_path: Path, make_store: StoreFactory
) -> None:
    assert weaviate_store.server is not None
    store = make_store(suffix="Cli")  # names the collection and removes it afterwards
    env = {
        **os.environ,
        "SETPOINT_WEAVIATE_URL": weaviate_store.server.url,
        "SETPOINT_WEAVIATE_GRPC_PORT": str(weaviate_store.server.grpc_port),
        "SETPOINT_COLLECTION": store.collection_name,
        "HF_HUB_OFFLINE": "1",
    }
    env.pop("SETPOINT_WEAVIATE_API_KEY", None)
    root = tmp_path / "kb"
    _write_folder(root)
    out = _cli(["ingest", "--sync", str(root), "--quiet"], env)
    assert out.returncode == 0, out.stderr
    assert "5 added, 0 updated, 0 unchanged, 0 deleted, 0 failed" in out.stdout

    (root / "notes.txt").unlink()
    out = _cli(["ingest", "--sync", str(root), "--quiet"], env)
    assert out.returncode == 0, out.stderr
    assert "deleted notes (kb/notes.txt)" in out.stdout
    assert "0 added, 0 updated, 4 unchanged, 1 deleted, 0 failed" in out.stdout

    out = _cli(["ingest", "--delete", "f1", "nope", "--source", "kb/facts.jsonl"], env)
    assert out.returncode == 0, out.stderr
    assert "deleted 1 passages, 1 ids not found" in out.stdout
    assert store.sources() == {"kb/facts.jsonl": 1, "kb/guides/setup.md": 2}

    out = _cli(["ingest", str(root / "facts.jsonl"), "--sync", str(root)], env)
    assert out.returncode == 2 and out.stderr.startswith("setpoint: error:")


# -- interruption --------------------------------------------------------------------------------

_CHILD = textwrap.dedent(
    """
    import hashlib, signal, sys, time
    # A terminal's Ctrl-C: Python leaves SIGINT ignored when the parent passed it down
    # ignored (seen only inside the full suite), and then the ingest never hears it.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    from langchain_core.embeddings import Embeddings
    from setpoint.adapters.domain.chunking import ChunkPolicy
    from setpoint.adapters.weaviate.corpus import PassageRecord
    from setpoint.adapters.weaviate.store import WeaviateStore

    class HashEmbeddings(Embeddings):
        # The test's HashEmbeddings (same name, same vectors, so the same passage versions),
        # a little slower, so that the kill lands mid-run.
        def embed_documents(self, texts):
            time.sleep(0.05)
            out = []
            for t in texts:
                d = hashlib.sha256(t.encode("utf-8")).digest()
                v = [b / 255 - 0.5 for b in d[:16]]
                n = sum(x * x for x in v) ** 0.5
                out.append([x / n for x in v])
            return out
        def embed_query(self, text):
            return self.embed_documents([text])[0]

    url, grpc, collection, total = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    store = WeaviateStore(url=url, grpc_port=grpc, collection=collection, embedder=HashEmbeddings(),
                          chunking=ChunkPolicy(max_words=40, overlap_words=10))

    def records():
        for i in range(total):
            if i == 40:
                print("two batches written", flush=True)
            length = 120 if i % 3 == 0 else 30
            text = " ".join(f"Fact {j} about item {i} is recorded here." for j in range(length // 7))
            yield PassageRecord(f"p{i}", f"Item {i % 5}", text)

    store.ingest(records(), source="resume", batch_size=20, progress=False)
    print("finished", flush=True)
    time.sleep(60)
    """
)


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGINT], ids=["kill-9", "ctrl-c"])
def test_interrupted_ingest_resumes_with_nothing_lost_or_doubled(
    make_store: StoreFactory, weaviate_store: WeaviateStore, how: signal.Signals
) -> None:
    total = 150
    store = make_store(chunking=SMALL_CHUNKS, suffix=how.name.title().replace("Sig", ""))
    store.ensure_collection()
    server = weaviate_store.server
    assert server is not None
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            _CHILD,
            server.url,
            str(server.grpc_port),
            store.collection_name,
            str(total),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "two batches written"
        child.send_signal(how)
        child.wait(timeout=120)  # generous: a loaded 2-core machine is slow to unwind a gRPC call
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        if child.stdout is not None:
            child.stdout.close()
    partial = store.count()
    # At least the first batch: the second may still be in flight when the child prints
    # (the next batch is embedded while the previous one is written).
    assert 20 <= partial < total, "the kill should land part-way through"

    records = _records(total)
    report = store.ingest(records, source="resume", batch_size=20, progress=False)
    assert report.failed == []
    assert report.unchanged >= 20
    assert report.added + report.updated + report.unchanged == total
    assert store.count() == total
    # No chunk twice, none missing: exactly the chunks of the data, once each.
    assert store.count_chunks() == _expected_chunks(records, SMALL_CHUNKS)
