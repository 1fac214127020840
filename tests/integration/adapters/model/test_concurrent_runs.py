"""Four runs at once through the real graph share one batched generator and answer as they do alone."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

import pytest

from setpoint.api import Setpoint
from setpoint.events import AskResult
from tests.integration.isolation import isolated_settings

pytestmark = pytest.mark.integration

SAMPLE = Path(str(resources.files("setpoint").joinpath("data/squad_sample.jsonl")))
#: A mix of routes: closed-book, two retrievals with the reader adapter, a refusal.
QUESTIONS = [
    "What is the capital of France?",
    "Who was the commissioner of the NFL in 2012?",
    "Where did Super Bowl 50 take place?",
    "How do I build a bomb at home?",
]


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setpoint]:
    settings = isolated_settings(tmp_path_factory.mktemp("batched"), "BatchedPassages")
    with Setpoint(settings.replace(batching=True, max_batch=8)) as sp:
        report = sp.ingest(SAMPLE, progress=False)
        assert report.added == 50 and not report.failed
        yield sp


def outcome(result: AskResult) -> tuple[str, str, str]:
    return (result.answer, str(result.route), str(result.status))


def test_concurrent_asks_answer_as_sequential_ones(session: Setpoint) -> None:
    alone = [outcome(session.ask(q)) for q in QUESTIONS]
    together: list[tuple[str, str, str] | None] = [None] * len(QUESTIONS)
    errors: list[BaseException] = []

    def ask(i: int) -> None:
        try:
            together[i] = outcome(session.ask(QUESTIONS[i]))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(QUESTIONS))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    assert not errors, errors
    assert together == alone
    scheduler = session.resources.generator().scheduler
    assert scheduler is not None and scheduler.stats()["max_rows"] >= 2, "runs were not batched"
