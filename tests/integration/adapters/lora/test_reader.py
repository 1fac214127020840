"""The shipped reader adapter on the real SmolLM2 and a real Weaviate: it loads, reads a held-out article, and is traced."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from setpoint.adapters.lora.qa_data import TitleSplit, default_squad_dir, load_squad
from setpoint.adapters.lora.reader import adapter_fits, shipped_reader_dir, training_record
from setpoint.adapters.lora.record import SPLIT_FILE
from setpoint.api import Setpoint
from setpoint.settings import Settings
from tests.integration.isolation import isolated_settings

pytestmark = pytest.mark.integration

# From an evaluation title (the adapter never saw the article); the base model answers it
# with a sentence, the reader with the gold span.
QUESTION_ID = "57377083c3c5551400e51ee3"  # Force: "Who expounded the Three Laws of Motion?"


def squad_dir() -> Path:
    # Same rule as the other integration tests: SETPOINT_SQUAD_DIR or ../shared beside the repo.
    explicit = default_squad_dir()
    beside = Path(__file__).resolve().parents[5] / "shared" / "data" / "squad"
    return explicit if (explicit / "questions.jsonl").is_file() else beside


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    base = tmp_path_factory.mktemp("reader")
    return isolated_settings(base, "ReaderPassages")


@pytest.fixture(scope="module")
def case() -> dict[str, Any]:
    data = load_squad(squad_dir())
    question = next(q for q in data.questions if q.id == QUESTION_ID)
    passage = data.passages[question.passage_id]
    # Other passages of the same article compete with the gold one in the index.
    others = [p for p in data.passages.values() if p.title == passage.title and p != passage]
    return {"question": question, "passage": passage, "passages": [passage, *others[:7]]}


@pytest.fixture(scope="module")
def session(
    settings: Settings, case: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Setpoint]:
    corpus = tmp_path_factory.mktemp("corpus") / "passages.jsonl"
    corpus.write_text(
        "".join(
            json.dumps({"id": p.id, "title": p.title, "text": p.text}) + "\n"
            for p in case["passages"]
        ),
        encoding="utf-8",
    )
    with Setpoint(settings) as sp:
        report = sp.ingest(corpus, progress=False)
        assert not report.failed
        yield sp


def test_shipped_adapter_is_small_recorded_and_fits_smollm2(session: Setpoint) -> None:
    directory = shipped_reader_dir()
    weights = directory / "adapter_model.safetensors"
    assert weights.is_file() and weights.stat().st_size < 8_000_000
    record = training_record(directory)
    for key in ("command", "data", "split", "config", "training", "base_model"):
        assert key in record, key
    assert record["data"]["sha256"]["questions.jsonl"]
    assert adapter_fits(session.resources.generator().model.config, directory) is None


def test_question_comes_from_a_held_out_title(case: dict[str, Any]) -> None:
    split = TitleSplit.load(shipped_reader_dir() / SPLIT_FILE)
    assert split.is_eval(case["passage"].title)
    assert case["passage"].title not in split.train


def test_reader_answers_a_retrieved_passage_with_the_gold_span(
    session: Setpoint, settings: Settings, case: dict[str, Any]
) -> None:
    question = case["question"]
    # probe setpoint 0: retrieve before generating, so the answer is the reader's.
    result = session.ask(question.question, context=session.context(probe_setpoint=0.0))
    assert result.route == "retrieve" and result.status == "answered", result.reason
    assert result.answer in question.answers
    assert case["passage"].id in [c["id"] for c in result.citations]
    assert result.adapter == "reader"

    spans = [
        json.loads(line) for line in settings.trace_file.read_text(encoding="utf-8").splitlines()
    ]
    mine = [s for s in spans if s["context"]["trace_id"] == f"0x{result.trace_id}"]
    chat = next(s for s in mine if s["name"].startswith("chat "))
    assert chat["attributes"]["setpoint.adapter"] == "reader"
    generate = next(s for s in mine if s["name"] == "node generate")
    assert generate["attributes"]["setpoint.grounded"] is True
    assert generate["attributes"]["setpoint.quote_passage_id"] == case["passage"].id
    # The shipped reader's probe scores the answer: a P(wrong), low for this gold-span answer.
    assert generate["attributes"]["setpoint.reader_signal"] == "probe"
    assert 0.0 <= generate["attributes"]["setpoint.reader_uncertainty"] < 0.5


def test_calibrate_reader_trains_a_probe_on_questions_the_adapter_never_saw(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`setpoint calibrate --reader` end to end on a few questions: answers, fits, writes probe.json."""
    from setpoint.adapters.domain.reader_probe import DEFAULT_FEATURES, load_reader_probe
    from setpoint.cli import main

    code = main(
        [
            "calibrate",
            "--reader",
            "--limit",
            "16",
            "--squad-dir",
            str(squad_dir()),
            "--out",
            str(tmp_path),
        ]
    )
    assert code == 0, capsys.readouterr().err
    probe = load_reader_probe(tmp_path)
    assert probe is not None and probe.features == DEFAULT_FEATURES
    assert probe.record["questions"] == 16 and probe.record["answers"] == 32
    split = TitleSplit.load(shipped_reader_dir() / SPLIT_FILE)
    assert set(probe.record["validation_titles"]) <= set(split.train)
    assert len(probe.linear.weights) == 2 * 576 + len(DEFAULT_FEATURES) - 2
    assert "reader probe written to" in capsys.readouterr().out
