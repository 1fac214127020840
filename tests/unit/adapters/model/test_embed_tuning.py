"""Tuning the embedder: a tiny random sentence-transformers model learns a small fixture; splits and folders behave."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("datasets")

from sentence_transformers import SentenceTransformer
from sentence_transformers.sentence_transformer.modules import Pooling, Transformer
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

from setpoint.adapters.lora.qa_data import load_multihop, load_squad, split_titles
from setpoint.adapters.lora.record import RECORD_FILE, SPLIT_FILE
from setpoint.adapters.model.embed_eval import (
    load_sentence_transformer,
    passage_text,
    retrieval_scores,
)
from setpoint.adapters.model.embed_tuning import (
    EmbedTuningConfig,
    mine_examples,
    multihop_examples,
    train_embedder,
    tune_embedder,
)
from setpoint.errors import ConfigError, InputError

NAMES = [f"person{n}" for n in range(48)]
CITIES = ["oslo", "rome", "lima", "cairo", "quito", "perth"]
JOBS = ["baker", "pilot", "nurse", "judge", "miner", "chef"]


@pytest.fixture
def qa_dir(tmp_path: Path) -> Path:
    """Twelve titles of four people each; each question names its person, nothing else does."""
    passages, questions = [], []
    for n, name in enumerate(NAMES):
        title = f"Town{n // 4}"
        pid = f"{title}-{n % 4}"
        city, job = CITIES[n % len(CITIES)], JOBS[(n * 5) % len(JOBS)]
        text = f"{name} lives in {city} and works as a {job} ."
        passages.append({"id": pid, "title": title, "text": text})
        questions.append(
            {
                "id": f"q{n}a",
                "question": f"where does {name} live ?" if n % 2 else f"what job does {name} do ?",
                "answers": [city if n % 2 else job],
                "passage_id": pid,
            }
        )
    for name, rows in (("passages.jsonl", passages), ("questions.jsonl", questions)):
        (tmp_path / name).write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return tmp_path


@pytest.fixture
def tiny_embedder(tmp_path: Path) -> Path:
    """A randomly initialised 2-layer BERT with mean pooling, saved as a sentence-transformers folder."""
    import torch

    words = sorted(
        {
            *NAMES,
            *CITIES,
            *JOBS,
            *[
                "lives",
                "in",
                "and",
                "works",
                "as",
                "a",
                "where",
                "does",
                "live",
                "what",
                "job",
                "do",
                "?",
                ".",
                "town",
            ],
        }
    )
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words, *(f"{d}" for d in range(10))]
    raw = tmp_path / "raw"
    raw.mkdir()
    word_level = Tokenizer(models.WordLevel({w: i for i, w in enumerate(vocab)}, unk_token="[UNK]"))
    word_level.normalizer = normalizers.Lowercase()
    word_level.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    PreTrainedTokenizerFast(
        tokenizer_object=word_level,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    ).save_pretrained(raw)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        initializer_range=0.3,  # spread-out random vectors; 0.02 makes every text look alike
    )
    BertModel(config).save_pretrained(raw)
    transformer = Transformer(str(raw), max_seq_length=32)
    model = SentenceTransformer(modules=[transformer, Pooling(32, "mean")], device="cpu")
    out = tmp_path / "tiny-embedder"
    model.save(str(out))
    return out


CONFIG = EmbedTuningConfig(learning_rate=3e-3, epochs=30, batch_size=8, hard_negatives=1)


def test_training_lowers_the_contrastive_loss_and_raises_recall(
    qa_dir: Path, tiny_embedder: Path
) -> None:
    model = load_sentence_transformer(tiny_embedder, device="cpu")
    dataset = load_squad(qa_dir)
    titles = sorted(dataset.question_counts())
    examples = mine_examples(dataset, titles, CONFIG)
    passages = list(dataset.passages.values())
    before = retrieval_scores(model, dataset.questions, passages)
    training = train_embedder(model, examples, CONFIG, progress=False)
    after = retrieval_scores(model, dataset.questions, passages)
    assert training["loss_after"] < training["loss_before"]
    assert after["R@1"] > before["R@1"]
    assert training["hard_negatives_per_row"] == 1


def test_mined_negatives_are_never_the_gold_passage_nor_hold_the_answer(qa_dir: Path) -> None:
    dataset = load_squad(qa_dir)
    titles = sorted(dataset.question_counts())
    config = EmbedTuningConfig(hard_negatives=2)
    by_question = {q.question: q for q in dataset.questions}
    for row in mine_examples(dataset, titles, config):
        gold = by_question[row.anchor]
        assert row.negatives and row.positive not in row.negatives
        assert not any(a in n for n in row.negatives for a in gold.answers)


def test_tune_saves_a_versioned_folder_whose_split_keeps_titles_apart(
    qa_dir: Path, tiny_embedder: Path, tmp_path: Path
) -> None:
    out = tmp_path / "embedders"
    config = EmbedTuningConfig(learning_rate=1e-3, batch_size=4, max_steps=2)
    first = tune_embedder(
        config,
        data_dir=qa_dir,
        out_dir=out,
        base_dir=tiny_embedder,
        eval_fraction=0.25,
        progress=False,
        command="setpoint tune --task embed",
        device="cpu",
    )
    second = tune_embedder(
        config,
        data_dir=qa_dir,
        out_dir=out,
        base_dir=first.directory,
        eval_fraction=0.25,
        progress=False,
        device="cpu",
    )
    assert [first.directory.name, second.directory.name] == ["embedder-v1", "embedder-v2"]
    record = json.loads((first.directory / RECORD_FILE).read_text())
    split = json.loads((first.directory / SPLIT_FILE).read_text())
    assert not set(split["train"]) & set(split["eval"])
    dataset = load_squad(qa_dir)
    expected = split_titles(dataset.question_counts(), eval_fraction=0.25)
    assert split["eval"] == list(expected.eval)
    assert record["data"]["sha256"] == dataset.fingerprint
    assert record["config"]["max_steps"] == 2 and record["training"]["steps"] == 2
    assert record["command"] == "setpoint tune --task embed"
    assert record["evaluation"]["questions"] == 12  # the three evaluation titles' questions
    assert (
        record["vector_name"]
        != json.loads((second.directory / RECORD_FILE).read_text())["vector_name"]
    )
    # The saved folder loads and embeds like any sentence-transformers model.
    assert load_sentence_transformer(first.directory, device="cpu").encode(["alba"]).shape == (
        1,
        32,
    )


def test_one_question_whose_answer_is_everywhere_keeps_the_others_hard_negatives(
    qa_dir: Path,
) -> None:
    rows = [json.loads(line) for line in (qa_dir / "questions.jsonl").read_text().splitlines()]
    rows[0]["answers"] = ["."]  # in every passage: no passage is a safe negative for it
    (qa_dir / "questions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    dataset = load_squad(qa_dir)
    examples = mine_examples(dataset, sorted(dataset.question_counts()), CONFIG)
    assert len(examples) == len(rows) - 1
    assert all(len(row.negatives) == 1 for row in examples)


def test_training_rows_never_come_from_evaluation_titles(qa_dir: Path) -> None:
    dataset = load_squad(qa_dir)
    split = split_titles(dataset.question_counts(), eval_fraction=0.25)
    eval_text = {p.text for p in dataset.passages.values() if p.title in split.eval}
    for row in mine_examples(dataset, split.train, EmbedTuningConfig(hard_negatives=2)):
        assert not any(t in text for text in (row.positive, *row.negatives) for t in eval_text)


@pytest.mark.parametrize("make", ["missing", "empty", "broken"])
def test_a_bad_embedder_folder_is_one_clear_line(tmp_path: Path, qa_dir: Path, make: str) -> None:
    folder = tmp_path / "bad"
    if make != "missing":
        folder.mkdir()
    if make == "broken":
        (folder / "modules.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        tune_embedder(
            CONFIG, data_dir=qa_dir, out_dir=tmp_path / "out", base_dir=folder, progress=False
        )
    message = str(caught.value)
    assert "\n" not in message and str(folder) in message
    assert not (tmp_path / "out").exists()


def _multihop_dir(root: Path, split: str) -> Path:
    """Two questions of two and three supporting paragraphs, each with two distractors of its own."""
    folder = root / f"hops-{split}"
    folder.mkdir()
    passages, questions = [], []
    for n, hops in enumerate((2, 3)):
        ids = [f"q{n}-p{k}" for k in range(hops + 2)]
        passages += [
            {"id": i, "title": i, "text": f"{NAMES[n * 5 + k]} ."} for k, i in enumerate(ids)
        ]
        questions.append(
            {
                "id": f"m{n}",
                "question": f"who follows {NAMES[n * 5]} ?",
                "answers": ["zzz"],
                "passage_ids": ids,
                "supporting_ids": ids[:hops],
                "split": split,
            }
        )
    for name, rows in (("passages.jsonl", passages), ("questions.jsonl", questions)):
        (folder / name).write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return folder


def test_multihop_rows_are_one_per_supporting_passage_with_own_distractors(
    tmp_path: Path,
) -> None:
    dataset = load_multihop(_multihop_dir(tmp_path, "train"))
    rows = multihop_examples([dataset], EmbedTuningConfig(hard_negatives=1))
    text = {p.id: passage_text(p) for p in dataset.passages.values()}
    for q in dataset.questions:
        mine = [r for r in rows if r.anchor == q.question]
        assert sorted(r.positive for r in mine) == sorted(text[i] for i in q.supporting_ids)
        distractors = {text[i] for i in q.context_ids if i not in q.supporting_ids}
        assert all(len(r.negatives) == 1 and r.negatives[0] in distractors for r in mine)
    assert len(rows) == 5


def test_tuning_on_a_multihop_dev_split_is_refused(
    qa_dir: Path, tiny_embedder: Path, tmp_path: Path
) -> None:
    with pytest.raises(InputError, match="not 'train'"):
        tune_embedder(
            CONFIG,
            data_dir=qa_dir,
            out_dir=tmp_path / "out",
            base_dir=tiny_embedder,
            progress=False,
            device="cpu",
            multihop=[_multihop_dir(tmp_path, "dev")],
        )
    assert not (tmp_path / "out").exists()
