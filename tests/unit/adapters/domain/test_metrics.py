"""Metrics and the setpoint picker on fixed numbers."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from setpoint.adapters.domain.metrics import (
    auroc,
    best_exact_match,
    best_f1,
    exact_match,
    normalize_answer,
    pick_threshold,
    token_f1,
)
from setpoint.errors import InputError
from setpoint.jobs.eval_questions import build_stream, load_squad, split_titles


@pytest.mark.parametrize(
    ("text", "normal"),
    [
        ("The Denver Broncos.", "denver broncos"),
        ("  a  cat, an apple ", "cat apple"),
        ("Theatre", "theatre"),
        ("24–10", "24–10"),
    ],
)
def test_normalize_like_the_official_script(text: str, normal: str) -> None:
    assert normalize_answer(text) == normal


def test_em_and_f1() -> None:
    assert exact_match("the Broncos", "Broncos") == 1.0
    assert token_f1("Denver Broncos won", "the Denver Broncos") == pytest.approx(0.8)
    assert token_f1("", "") == 1.0 and token_f1("x", "") == 0.0
    assert token_f1("Panthers", "Broncos") == 0.0
    golds = ["Denver Broncos", "Broncos"]
    assert best_exact_match("broncos", golds) == 1.0
    assert best_f1("the denver", golds) == pytest.approx(2 / 3)


def test_auroc_fixed_values() -> None:
    assert auroc([0.9, 0.8, 0.1, 0.2], [True, True, False, False]) == 1.0
    assert auroc([0.1, 0.2, 0.9, 0.8], [True, True, False, False]) == 0.0
    assert auroc([0.5, 0.5, 0.5, 0.5], [True, False, True, False]) == 0.5  # ties count half
    assert auroc([0.1, 0.4, 0.35, 0.8], [False, False, True, True]) == 0.75
    assert math.isnan(auroc([0.1, 0.2], [True, True]))


def test_pick_threshold_for_retrieval_rate() -> None:
    scores = [0.1, 0.9, 0.5, 0.7]
    closed = [1, 0, 1, 0]
    opened = [1, 1, 0, 1]
    choice = pick_threshold(scores, closed, opened, target_retrieval_rate=0.5)
    assert (choice.threshold, choice.retrieval_rate, choice.accuracy) == (0.5, 0.5, 1.0)
    never = pick_threshold(scores, closed, opened, target_retrieval_rate=0.0)
    assert never.retrieval_rate == 0.0 and never.accuracy == 0.5


def test_pick_threshold_for_accuracy_prefers_fewest_retrievals() -> None:
    scores = [0.1, 0.9, 0.5, 0.7]
    choice = pick_threshold(scores, [1, 0, 1, 0], [1, 1, 0, 1], target_accuracy=0.75)
    assert choice.retrieval_rate == 0.25 and choice.threshold == 0.7
    unreachable = pick_threshold(scores, [0, 0, 0, 0], [0, 0, 0, 0], target_accuracy=1.0)
    assert unreachable.retrieval_rate == 1.0  # falls back to retrieving everything
    with pytest.raises(ValueError):
        pick_threshold(scores, [1] * 4, [1] * 4)


def test_title_split_and_stream_are_seeded_and_disjoint() -> None:
    titles = [f"T{i}" for i in range(10)]
    core, fringe = split_titles(titles, 0.3, seed=7)
    assert len(core) == 3 and core.isdisjoint(fringe) and core | fringe == set(titles)
    assert split_titles(titles, 0.3, seed=7) == (core, fringe)
    passages = [{"id": f"T{i}-0", "title": f"T{i}"} for i in range(10)]
    questions = [
        {"id": f"q{i}", "question": f"q{i}? ", "answers": ["a"], "passage_id": f"T{i}-0"}
        for i in range(10)
    ]
    stream = build_stream(questions, passages, core_titles=core, limit=None, seed=1)
    assert {q.part for q in stream if q.title in core} == {"core"}
    assert [q.id for q in stream] == [
        q.id for q in build_stream(questions, passages, core_titles=core, limit=None, seed=1)
    ]
    assert stream[0].question.endswith("?")


def test_eval_squad_folders_with_bad_files_fail_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`setpoint calibrate` / `eval` read SQuAD folders with the checks of `qa_data.load_squad`."""
    from setpoint.cli import main

    folder = tmp_path / "squad"
    folder.mkdir()
    (folder / "passages.jsonl").write_text(
        '{"id": "p1", "title": "T", "text": "It rained."}\n', encoding="utf-8"
    )
    (folder / "questions.jsonl").write_text(
        '{"id": "q1", "question": "Did it rain?", "answers": ["It rained"], "passage_id": "p1"}\n',
        encoding="utf-8",
    )
    passages, questions = load_squad(folder)
    assert passages == [{"id": "p1", "title": "T", "text": "It rained."}]
    assert questions == [
        {"id": "q1", "question": "Did it rain?", "answers": ["It rained"], "passage_id": "p1"}
    ]
    with (folder / "questions.jsonl").open("a", encoding="utf-8") as f:
        f.write('{"id": "q2", "question": "Where?", "answers": ["here"], "passage_id": "p9"}\n')
    with pytest.raises(InputError, match="unknown passage 'p9'"):
        load_squad(folder)
    (folder / "questions.jsonl").write_text(
        '{"id": "q3", "answers": ["x"], "passage_id": "p1"}\n', encoding="utf-8"
    )
    with pytest.raises(InputError, match=r"questions\.jsonl:1: no 'question'"):
        load_squad(folder)
    (folder / "questions.jsonl").write_text("{not json\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"questions\.jsonl:1: invalid JSON"):
        load_squad(folder)
    # The message names the flag of the command that was run.
    assert main(["calibrate", "--squad-dir", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "not found; point --squad-dir" in err
