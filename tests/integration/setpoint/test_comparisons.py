"""Date comparisons end to end: the real generator, embedder and Weaviate server.

Two films and their directors are ingested. "Which film has the director who was born
first, X or Y?" needs the films (the first hop), then the directors (a lookup hop by
name); the answer is the comparison's, whatever the reader would have picked.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from setpoint.api import Setpoint
from tests.integration.isolation import isolated_settings

pytestmark = pytest.mark.integration

PASSAGES = [
    {
        "id": "harbour",
        "title": "Quiet Harbour",
        "text": "Quiet Harbour is a 1950 Norwegian drama film directed by Ann Velde and "
        "starring Odd Berg. It was shot in Bergen.",
    },
    {
        "id": "river",
        "title": "Loud River",
        "text": "Loud River is a 1961 Swedish comedy film directed by Bo Lundqvist. It was "
        "a success in Stockholm.",
    },
    {
        "id": "velde",
        "title": "Ann Velde",
        "text": "Ann Velde( 3 May 1920 – 1 June 1990) was a Norwegian film director and "
        "screenwriter.",
    },
    {
        "id": "lundqvist",
        "title": "Bo Lundqvist",
        "text": "Bo Lundqvist( 9 July 1901 – 2 April 1970) was a Swedish film director.",
    },
    {
        "id": "bergen",
        "title": "Bergen",
        "text": "Bergen is a city on the west coast of Norway, known for its film festival.",
    },
]
QUESTION = "Which film has the director who was born first, Quiet Harbour or Loud River?"


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setpoint]:
    base = tmp_path_factory.mktemp("comparisons")
    source = base / "films.jsonl"
    source.write_text("".join(json.dumps(p) + "\n" for p in PASSAGES), encoding="utf-8")
    with Setpoint(isolated_settings(base, "ComparisonPassages")) as sp:
        report = sp.ingest(Path(source), progress=False)
        assert report.added == len(PASSAGES) and not report.failed
        yield sp


def test_the_directors_dates_answer_after_a_lookup_hop(session: Setpoint) -> None:
    out = session.graph.invoke(
        {"question": QUESTION},
        config={"configurable": {"thread_id": "directors"}},
        context=session.context(top_k=2),
    )
    queries = [c["args"]["query"] for m in out["messages"] for c in getattr(m, "tool_calls", [])]
    assert queries == [QUESTION, "Ann Velde, Bo Lundqvist"]
    assert out["answer"] == "Loud River" and out["status"] == "answered"
    assert out["reason"] == "answered by comparing the options' directors' birth dates"
    assert {"harbour", "river", "velde", "lundqvist"} <= {c["id"] for c in out["citations"]}


def test_switched_off_the_reader_picks_without_a_lookup(session: Setpoint) -> None:
    result = session.ask(QUESTION, context=session.context(top_k=2, compare_dates=False))
    assert result.retrieval_calls >= 1
    assert "answered by comparing" not in (result.reason or "")
