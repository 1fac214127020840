"""Writing one batch while the next is embedded: order kept, errors surface, nothing left in flight."""

from __future__ import annotations

import threading

import pytest

from setpoint.adapters.weaviate.batches import WritePipeline
from setpoint.errors import IngestError


@pytest.mark.parametrize("overlap", [True, False])
def test_results_come_back_in_order_in_the_callers_thread(overlap: bool) -> None:
    caller = threading.current_thread()
    seen: list[tuple[int, bool]] = []
    with WritePipeline[int](overlap) as pipeline:
        for n in range(5):
            pipeline.submit(
                lambda n=n: n, lambda r: seen.append((r, threading.current_thread() is caller))
            )
    assert seen == [(n, True) for n in range(5)]


def test_a_failed_write_stops_the_next_submit() -> None:
    def refuse() -> int:
        raise IngestError("Weaviate refused the write: store is read-only")

    with pytest.raises(IngestError, match="read-only"), WritePipeline[int]() as pipeline:
        pipeline.submit(refuse, print)
        pipeline.submit(lambda: 1, print)


def test_the_write_in_flight_finishes_when_the_caller_stops() -> None:
    release = threading.Event()
    finished: list[str] = []

    def slow() -> str:
        release.wait(5)
        finished.append("written")
        return "written"

    with pytest.raises(KeyboardInterrupt), WritePipeline[str]() as pipeline:
        pipeline.submit(slow, print)
        threading.Timer(0.05, release.set).start()  # the write is still waiting when we stop
        raise KeyboardInterrupt
    assert finished == ["written"]
