"""The reader's data beyond SQuAD: multi-passage multi-hop contexts, unanswerable questions, and how the product reads "unanswerable"."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from conftest import make_tiny_generator

from setpoint.adapters.lora.config import TuningConfig
from setpoint.adapters.lora.examples import encode_group, multihop_groups, unanswerable_groups
from setpoint.adapters.lora.qa_data import (
    NO_ANSWER,
    SQUAD_V2_TRAIN_TITLES,
    TitleSplit,
    load_multihop,
    load_squad,
)
from setpoint.adapters.lora.reader import is_no_answer, shipped_reader_dir
from setpoint.adapters.lora.tune import reader_mix
from setpoint.agents.decide import after_generation, output_problem
from setpoint.errors import ConfigError, InputError
from setpoint.graphs.context import Context

ROOT = Path(__file__).resolve().parents[4]
SHARED = ROOT.parent / "shared" / "data"


def write_folder(directory: Path, passages: list[dict[str, Any]], questions: list[Any]) -> Path:
    directory.mkdir(parents=True)
    for name, rows in (("passages.jsonl", passages), ("questions.jsonl", questions)):
        (directory / name).write_text("".join(json.dumps(r) + "\n" for r in rows), "utf-8")
    return directory


@pytest.fixture
def multihop_dir(tmp_path: Path) -> Path:
    """Two 2-hop questions, six paragraphs each (two supporting), and one yes/no comparison."""
    passages = [
        {"id": f"p{i}", "title": f"t{i}", "text": text}
        for i, text in enumerate(
            [
                "the film was directed by anna smith .",
                "anna smith was born in paris .",
                "the city of lyon is in france .",
                "a river runs through the city .",
                "the museum has a large garden .",
                "nothing else is known here .",
                "the song was sung by bob stone .",
                "bob stone was born in 1970 .",
            ]
        )
    ]
    row = {"split": "train", "passage_ids": [f"p{i}" for i in range(6)]}
    questions = [
        {**row, "id": "a", "question": "where was the director of the film born ?",
         "answers": ["paris"], "supporting_ids": ["p0", "p1"]},
        {**row, "id": "b", "question": "when was the singer of the song born ?",
         "answers": ["1970"], "supporting_ids": ["p6", "p7"],
         "passage_ids": ["p6", "p7", "p2", "p3", "p4", "p5"]},
        {**row, "id": "c", "question": "is the film older than the song ?",
         "answers": ["no"], "supporting_ids": ["p0", "p6"]},
    ]  # fmt: skip
    return write_folder(tmp_path / "mh_train", passages, questions)


@pytest.fixture
def squad_v2_dir(tmp_path: Path) -> Path:
    passages = [
        {"id": "Warsaw-0", "title": "Warsaw", "text": "warsaw is the capital of poland ."},
        {"id": "Geology-0", "title": "Geology", "text": "rocks are studied in geology ."},
    ]
    questions = [
        {"id": "w1", "question": "what is the capital of poland ?", "answers": ["warsaw"],
         "passage_id": "Warsaw-0", "is_impossible": False},
        {"id": "w2", "question": "what is the capital of spain ?", "answers": [],
         "passage_id": "Warsaw-0", "is_impossible": True},
        {"id": "w3", "question": "who founded poland ?", "answers": [],
         "passage_id": "Warsaw-0", "is_impossible": True},
        {"id": "g1", "question": "who studies the moon ?", "answers": [],
         "passage_id": "Geology-0", "is_impossible": True},
    ]  # fmt: skip
    return write_folder(tmp_path / "squad_v2", passages, questions)


def test_a_multihop_context_holds_every_supporting_passage(multihop_dir: Path) -> None:
    data = load_multihop(multihop_dir)
    config = TuningConfig(multihop_distractors=2, seed=3)
    groups = multihop_groups(data, config)
    # The yes/no comparison cannot be quoted from a passage: left out.
    assert sorted(q.id for g in groups for q in g.items) == ["a", "b"]
    for group in groups:
        (question,) = group.items
        ids = [p.id for p in group.passages]
        assert set(question.supporting_ids) <= set(ids)
        assert len(ids) == 4 and set(ids) <= set(question.context_ids)
    assert multihop_groups(data, config) == groups
    assert len(multihop_groups(data, config, limit=1)) == 1


def test_trimming_a_long_multihop_context_keeps_the_supporting_passages(
    multihop_dir: Path,
) -> None:
    generator = make_tiny_generator(seed=0)
    data = load_multihop(multihop_dir)
    group = multihop_groups(data, TuningConfig(multihop_distractors=4))[0]
    supporting = [p for p in group.passages if p.id in group.items[0].supporting_ids]
    just_fits = len(generator.prompt_ids(group.items[0].question, supporting))
    full = len(generator.prompt_ids(group.items[0].question, list(group.passages)))
    assert full > just_fits
    ((prompt, _answer),) = encode_group(generator, group, max_context_tokens=just_fits)
    assert prompt == generator.prompt_ids(group.items[0].question, supporting)
    assert encode_group(generator, group, max_context_tokens=just_fits - 1) == []


def test_a_dev_split_is_never_learned_from(multihop_dir: Path) -> None:
    rows = (multihop_dir / "questions.jsonl").read_text("utf-8").replace('"train"', '"dev"')
    (multihop_dir / "questions.jsonl").write_text(rows, "utf-8")
    with pytest.raises(InputError, match="not 'train'"):
        load_multihop(multihop_dir)


def test_unanswerable_questions_get_the_fixed_target(squad_v2_dir: Path) -> None:
    with pytest.raises(InputError, match="no answers"):
        load_squad(squad_v2_dir)  # SQuAD v1 rules: every question has an answer
    data = load_squad(squad_v2_dir, unanswerable=True)
    groups = unanswerable_groups(data, ["Warsaw"], TuningConfig(group_size=8))
    assert [sorted(q.id for q in g.items) for g in groups] == [["w2", "w3"]]
    assert {q.target for g in groups for q in g.items} == {NO_ANSWER}
    assert [p.id for p in groups[0].passages] == ["Warsaw-0"]
    assert (
        sum(len(g.items) for g in unanswerable_groups(data, ["Warsaw"], TuningConfig(), limit=1))
        == 1
    )


def test_unanswerable_titles_must_be_training_titles(squad_v2_dir: Path) -> None:
    split = TitleSplit(train=("Geology",), eval=("Warsaw",))
    with pytest.raises(ConfigError, match="evaluation titles"):
        reader_mix(TuningConfig(), split, (), squad_v2_dir, ["Warsaw"])
    ((source, groups),) = reader_mix(
        TuningConfig(),
        TitleSplit(train=("Warsaw",), eval=("Geology",)),
        (),
        squad_v2_dir,
        ["Warsaw"],
    )
    assert source["titles"] == ["Warsaw"] and sum(len(g.items) for g in groups) == 2


def test_set_aside_titles_are_never_scored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    from generalization import read_questions
    from reader_setpoint import DEV_TITLES

    assert not set(SQUAD_V2_TRAIN_TITLES) & set(DEV_TITLES)
    if not (SHARED / "squad_v2" / "questions.jsonl").is_file():
        pytest.skip("../shared/data/squad_v2 is not on this machine")
    scored = {str(q["passage_id"]).rsplit("-", 1)[0] for q in read_questions("squad_v2")}
    assert scored and not scored & set(SQUAD_V2_TRAIN_TITLES)
    # Only the reader's evaluation titles are scored: no dev part, no training title.
    assert not scored & set(DEV_TITLES)
    assert scored <= set(TitleSplit.load(shipped_reader_dir() / "split.json").eval)


def test_nq_opens_dev_part_is_never_scored_and_shares_no_passage(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    from generalization import DEV_GUARD_LIMITS, dev_part, gold_passages, scored_sample

    if not (SHARED / "nq_open" / "questions.jsonl").is_file():
        pytest.skip("../shared/data/nq_open is not on this machine")
    dev = dev_part("nq_open")
    held = {str(q["id"]) for q in dev}
    dev_passages = {p for q in dev for p in gold_passages(q)}
    assert len(held) == len(dev) == 400
    for limit in DEV_GUARD_LIMITS:
        scored = scored_sample("nq_open", limit, 0)
        assert len(scored) == limit  # the guarded samples lose nothing
        assert not {str(q["id"]) for q in scored} & held
        assert not {p for q in scored for p in gold_passages(q)} & dev_passages
    # A larger sample draws some dev questions: they are dropped, and said so.
    big = scored_sample("nq_open", 500, 0)
    assert not {str(q["id"]) for q in big} & held and len(big) < 500
    assert "dev part" in capsys.readouterr().out


def test_the_product_reads_unanswerable_as_unsure_with_no_answer() -> None:
    assert is_no_answer("Unanswerable.") and not is_no_answer("an unanswerable riddle")
    common: dict[str, Any] = {
        "fired_at": None, "ema": 0.2, "read_passages": True, "reader_uncertainty": 0.1,
        "mean_entropy": 0.2, "tokens": 3, "answered": False, "no_answer": True,
    }  # fmt: skip
    hop = after_generation(Context(max_retrievals=2), retrievals_used=1, bridge="q x", **common)
    assert hop.next_node == "retrieve"
    last = after_generation(Context(max_retrievals=2), retrievals_used=2, bridge="q x", **common)
    assert (last.next_node, last.status) == ("check_output", "unsure")
    assert "no answer" in str(last.reason)
    checks: dict[str, Any] = {"answer_entropy": 0.2, "abstain_above": math.inf}
    checks.update(used_passages=True, budget_spent=True)
    assert output_problem("", unsure=True, **checks) is None
    assert output_problem("", **checks) == "empty_answer"
