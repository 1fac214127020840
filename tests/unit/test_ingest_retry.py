"""Which per-object write failures ``ingest`` retries: transient ones only."""

from __future__ import annotations

import pytest

from setpoint.adapters.ingestion import _is_transient


@pytest.mark.parametrize(
    "reason",
    [
        # Seen in the cluster test when the Raft leader was killed mid-ingest.
        "failed to execute query: rpc error: code = Canceled desc = grpc: the client connection is closing",
        "context deadline exceeded",
        "rpc error: code = Unavailable desc = connection reset by peer",
        "broadcast: cannot reach enough replicas: timeout",
    ],
)
def test_transient_failures_are_retried(reason: str) -> None:
    assert _is_transient(reason)


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
    assert not _is_transient(reason)
