"""The reader probe fitted on the product's own answers: questions read through the graph, rows kept, fitted, saved."""

from __future__ import annotations

import json
import math
import random
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from conftest import TINY_READER_FEATURES, tiny_reader_with_probe
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from setpoint.adapters.domain.metrics import best_f1
from setpoint.adapters.domain.reader_probe import (
    ReaderProbe,
    feature_vector,
    load_reader_probe,
    probe_layers,
)
from setpoint.adapters.model.generator import Generator, Passage
from setpoint.adapters.model.quoting import answer_question
from setpoint.agents.resources import Resources
from setpoint.api import Setpoint
from setpoint.errors import InputError
from setpoint.jobs.reader_calibration import (
    RecordingProbe,
    calibrate_reader,
    load_rows,
    read_questions,
    read_rows,
    reading_context,
    save_rows,
)

WIDTH = 32 + 32 + len(TINY_READER_FEATURES) - 2
QUESTIONS = [
    {"id": "q1", "question": "who won the super bowl ?", "answers": ["Denver Broncos"], "passage_id": "p1"},
    {"id": "q2", "question": "what is the capital of france ?", "answers": ["Paris"], "passage_id": "p2"},
    {"id": "q3", "question": "who painted the super bowl ?", "answers": [], "passage_id": "p1", "is_impossible": True},
]  # fmt: skip


def write_folder(directory: Path, questions: list[dict[str, Any]], titles: bool = False) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "questions.jsonl").write_text(
        "".join(json.dumps(q) + "\n" for q in questions), encoding="utf-8"
    )
    if titles:
        (directory / "passages.jsonl").write_text(
            json.dumps({"id": "p1", "title": "Super Bowl", "text": "The Broncos won."}) + "\n"
            + json.dumps({"id": "p2", "title": "France", "text": "Paris is the capital."}) + "\n",
            encoding="utf-8",
        )  # fmt: skip
    return directory


def test_recording_probe_scores_as_its_probe_and_keeps_the_features(
    tiny_generator: Generator, tmp_path: Path
) -> None:
    probe = load_reader_probe(tiny_reader_with_probe(tmp_path / "reader"))
    assert probe is not None
    passage = Passage("p1", "Super Bowl", "the denver broncos won the super bowl game .")
    answer = answer_question(
        tiny_generator, "who won ?", [passage], grounded=True, capture_layers=probe_layers(probe.features)
    )  # fmt: skip
    recorder = RecordingProbe(features=probe.features, linear=probe.linear)
    kw: dict[str, Any] = {"question": "who won ?", "passages": [passage], "answer": answer.text}
    assert recorder.score(answer.tokens, **kw) == probe.score(answer.tokens, **kw)
    assert recorder.rows == [feature_vector(answer.tokens, probe.features, **kw)]
    assert recorder.score([], **kw) == 1.0 and len(recorder.rows) == 1


def test_questions_are_grouped_by_title_or_passage_and_keep_unanswerable(tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "set", QUESTIONS, titles=True)
    by_title = read_questions(folder)
    assert [q.group for q in by_title] == ["Super Bowl", "France", "Super Bowl"]
    assert [q.impossible for q in by_title] == [False, False, True]
    assert {q.source for q in by_title} == {"set"}
    assert [q.group for q in read_questions(folder, by_passage=True)] == ["p1", "p2", "p1"]
    assert [q.id for q in read_questions(folder, groups=["France"])] == ["q2"]
    two = read_questions(folder, limit=2, seed=1)
    assert len(two) == 2 and two == read_questions(folder, limit=2, seed=1)
    # Without passages.jsonl, or with several supporting passages: the question is its own group.
    hops = [{**QUESTIONS[0], "supporting_ids": ["p1", "p2"]}]
    assert read_questions(write_folder(tmp_path / "hops", hops))[0].group == "q1"


@pytest.mark.parametrize(
    ("rows", "match"),
    [
        ('{"id": "q1", "question": "x?", "passage_id": "p1"}\n', "has no answers"),
        ("{not json\n", "not the questions schema"),
    ],
)
def test_a_bad_questions_file_is_one_line(tmp_path: Path, rows: str, match: str) -> None:
    (tmp_path / "questions.jsonl").write_text(rows, encoding="utf-8")
    with pytest.raises(InputError, match=match) as caught:
        read_questions(tmp_path)
    assert "\n" not in str(caught.value)
    with pytest.raises(InputError, match="cannot read"):
        read_questions(tmp_path / "missing")


def test_rows_are_the_reads_of_the_answers_given(
    resources: Resources, spans: InMemorySpanExporter, tmp_path: Path
) -> None:
    """Each row's features are the ones the graph's probe scored for the answer it gave."""
    reader = tiny_reader_with_probe(tmp_path / "reader")
    probe = load_reader_probe(reader)
    assert probe is not None
    with Setpoint(
        resources.settings, tracer_provider=resources.tracer_provider, resources=resources
    ) as sp:
        ctx = replace(reading_context(sp, str(reader)), max_new_tokens=6)
        questions = read_questions(write_folder(tmp_path / "set", QUESTIONS))
        rows = read_rows(sp, questions, probe, context=ctx, progress=False)
        scored = [
            float(s.attributes["setpoint.reader_uncertainty"])
            for s in sorted(spans.get_finished_spans(), key=lambda s: s.start_time or 0)
            if s.attributes.get("setpoint.phase") == "reader"
        ]
        # The recording probe is gone afterwards: the adapter's own file scores again.
        assert type(sp.resources.reader_probe("reader")) is ReaderProbe
    assert [r["id"] for r in rows] == ["q1", "q2", "q3"]
    assert [probe.linear.score(r["x"]) for r in rows] == pytest.approx(scored)
    assert all(len(r["x"]) == WIDTH for r in rows)
    for row, q in zip(rows, QUESTIONS, strict=True):
        if q.get("is_impossible"):
            assert row["impossible"] and row["f1"] == (0.0 if row["answer"] else 1.0)
        else:
            assert row["f1"] == best_f1(row["answer"], q["answers"])
        assert row["context"] == "set" and row["title"] == f"set/{q['id']}"


def synthetic_rows(n: int) -> list[dict[str, Any]]:
    rng = random.Random(0)
    out = []
    for i in range(n):
        wrong = i % 3 == 0
        x = [rng.gauss(1.5 if wrong else 0.0, 1.0)] + [rng.gauss(0, 1) for _ in range(WIDTH - 1)]
        out.append(
            {
                "id": f"s{i}",
                "title": f"saved/T{i % 8}",
                "context": "saved",
                "f1": float(not wrong),
                "x": x,
            }
        )
    return out  # fmt: skip


def test_calibrate_reader_fits_read_and_saved_rows(resources: Resources, tmp_path: Path) -> None:
    reader = tiny_reader_with_probe(tmp_path / "reader")
    saved = save_rows(synthetic_rows(80), tmp_path / "saved.jsonl")
    assert load_rows(saved)[0]["x"] == pytest.approx(synthetic_rows(1)[0]["x"], rel=1e-6)
    folder = write_folder(tmp_path / "set", QUESTIONS)
    with Setpoint(
        resources.settings, tracer_provider=resources.tracer_provider, resources=resources
    ) as sp:
        probe = calibrate_reader(
            sp, [folder], rows_files=[saved], save_to=tmp_path / "new.jsonl",
            reader=str(reader), progress=False,
        )  # fmt: skip
    assert probe.features == TINY_READER_FEATURES and len(probe.linear.weights) == WIDTH
    assert probe.record["sources"] == {"saved": 80, "set": 3}
    assert [r["id"] for r in load_rows(tmp_path / "new.jsonl")] == ["q1", "q2", "q3"]
    assert not math.isnan(probe.record["validation_auroc_wrong"]["saved"])


def test_a_reader_without_a_probe_gets_one_at_its_models_depth(
    resources: Resources, tmp_path: Path
) -> None:
    """A new family's reader has no probe yet: the default features at its depth are read."""
    from setpoint.adapters.domain.reader_probe import PROBE_FILE, default_features

    reader = tiny_reader_with_probe(tmp_path / "reader")
    (reader / PROBE_FILE).unlink()
    config = resources.generator().model.config
    features = default_features(int(config.num_hidden_layers))
    width = 2 * int(config.hidden_size) + len(features) - 2
    saved = save_rows(
        [{**r, "x": r["x"][:1] + [0.0] * (width - 1)} for r in synthetic_rows(80)],
        tmp_path / "saved.jsonl",
    )
    with Setpoint(
        resources.settings, tracer_provider=resources.tracer_provider, resources=resources
    ) as sp:
        probe = calibrate_reader(
            sp, [write_folder(tmp_path / "set", QUESTIONS)], rows_files=[saved],
            reader=str(reader), progress=False,
        )  # fmt: skip
    assert probe.features == features and len(probe.linear.weights) == width
    assert probe.linear.adapter == "reader" and probe.record["sources"]["set"] == 3
    assert probe.record["validation_auroc_wrong"]["saved"] > 0.8


def test_bad_rows_file_is_one_line_before_any_model_loads(tmp_path: Path) -> None:
    (tmp_path / "rows.jsonl").write_text('{"id": "q1"}\n', encoding="utf-8")
    with pytest.raises(InputError, match="not a file of reader probe rows") as caught:
        load_rows(tmp_path / "rows.jsonl")
    assert "\n" not in str(caught.value)
    with pytest.raises(InputError, match="cannot read the probe rows"):
        load_rows(tmp_path / "none.jsonl")


def test_cli_names_a_bad_rows_file_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from setpoint.cli import main

    (tmp_path / "rows.jsonl").write_text("[1, 2]\n", encoding="utf-8")
    assert main(["calibrate", "--reader", "--rows", str(tmp_path / "rows.jsonl")]) == 2
    err = capsys.readouterr().err.strip()
    assert "not a file of reader probe rows" in err and "\n" not in err
    assert main(["calibrate", "--data", str(tmp_path)]) == 2
    assert "add --reader" in capsys.readouterr().err
