"""Which per-object write failures ``ingest`` retries (transient ones only), and the ledger of cut-short writes."""

from __future__ import annotations

from pathlib import Path

import pytest

from setpoint.adapters.weaviate.batches import is_transient
from setpoint.adapters.weaviate.ledger import UnfinishedWrites
from setpoint.errors import IngestError


@pytest.mark.parametrize(
    "reason",
    [
        # Seen in the cluster test when the Raft leader was killed mid-ingest.
        "failed to execute query: rpc error: code = Canceled desc = grpc: the client connection is closing",
        "context deadline exceeded",
        "rpc error: code = Unavailable desc = connection reset by peer",
        "broadcast: cannot reach enough replicas: timeout",
        # Seen in the cluster test (CI rehearsal, 2026-11-26) when the leader was SIGKILLed.
        "Query call with protocol GRPC batch failed with message Received RST_STREAM with error code 8.",
    ],
)
def test_transient_failures_are_retried(reason: str) -> None:
    assert is_transient(reason)


@pytest.mark.parametrize(
    "reason",
    [
        "invalid text property 'title': not a string",
        "store is read-only",
        "vector lengths don't match: 384 vs 768",
        "id already exists with another class",
    ],
)
def test_permanent_failures_are_not(reason: str) -> None:
    assert not is_transient(reason)


# -- the ledger of cut-short writes --------------------------------------------------------


def test_unfinished_writes_are_kept_until_settled(tmp_path: Path) -> None:
    ledger = UnfinishedWrites(tmp_path / "ledger.json")
    assert ledger.pending("a.jsonl") == {} and not ledger.path.exists()
    ledger.record("a.jsonl", {"p1": 2, "p2": 1})
    ledger.record("b.jsonl", {"p1": 1})
    # A second cut-short write with fewer chunks still remembers the most that were sent.
    ledger.record("a.jsonl", {"p1": 1, "p3": 4})
    again = UnfinishedWrites(ledger.path)  # another process reads the same file
    assert again.pending("a.jsonl") == {"p1": 2, "p2": 1, "p3": 4}
    again.settle("a.jsonl", ["p1", "p3", "never-recorded"])
    assert ledger.pending("a.jsonl") == {"p2": 1} and ledger.pending("b.jsonl") == {"p1": 1}
    ledger.settle("a.jsonl", ["p2"])
    ledger.settle("b.jsonl", ["p1"])
    assert not ledger.path.exists()  # nothing pending, no file
    ledger.record("a.jsonl", {"p1": 1})
    ledger.clear()
    assert ledger.pending("a.jsonl") == {}


def test_unfinished_writes_are_kept_per_collection(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from langchain_core.embeddings import FakeEmbeddings

    from setpoint.adapters.weaviate.store import WeaviateStore

    monkeypatch.setenv("SETPOINT_CACHE_DIR", str(tmp_path))
    embedder = FakeEmbeddings(size=4)

    def ledger(url: str, collection: str) -> Path:
        store = WeaviateStore(url=url, collection=collection, embedder=embedder)
        return UnfinishedWrites.of(store).path

    one = ledger("http://localhost:8080", "Passages")
    assert one.parent == tmp_path / "unfinished-writes"
    assert one == ledger("http://localhost:8080/", "Passages")
    assert (
        len({one, ledger("http://localhost:8080", "Other"), ledger("http://db:8080", "Passages")})
        == 3
    )


@pytest.mark.parametrize(
    "content", [b"\x00\xff not json", b"[1, 2]", b'{"a.jsonl": {"p1": "two"}}', b'{"a.jsonl": 3}']
)
def test_an_unreadable_ledger_is_one_clear_line(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "ledger.json"
    path.write_bytes(content)
    with pytest.raises(IngestError) as info:
        UnfinishedWrites(path).pending("a.jsonl")
    message = str(info.value)
    assert "\n" not in message and str(path) in message and "--recreate" in message
    assert path.read_bytes() == content  # left for the user to look at
