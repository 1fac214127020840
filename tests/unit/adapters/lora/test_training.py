"""LoRA tuning on a tiny model: config validation, the title split, RAFT groups, the shared-prefix loss, training, saving."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from conftest import PASSAGES as STORE_PASSAGES
from conftest import KeywordStore, make_tiny_generator
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from setpoint.adapters.domain.lexical import Bm25Index
from setpoint.adapters.lora.config import TuningConfig
from setpoint.adapters.lora.examples import (
    TrainingGroup,
    encode_group,
    knowledge_groups,
    reader_groups,
)
from setpoint.adapters.lora.qa_data import TitleSplit, load_squad, split_titles
from setpoint.adapters.lora.reader import AUTO, adapter_fits, resolve_reader, shipped_reader_dir
from setpoint.adapters.lora.record import RECORD_FILE, SPLIT_FILE
from setpoint.adapters.lora.training import group_loss, lora_model, save_adapter, train_lora
from setpoint.adapters.model.generator import Generator
from setpoint.agents.resources import Resources
from setpoint.errors import ConfigError
from setpoint.graphs.context import Context
from setpoint.graphs.graph import build_graph
from setpoint.settings import Settings
from setpoint.tracing import configure_tracing

# A SQuAD-format corpus in the tiny tokenizer's vocabulary: three "articles".
PASSAGES = [
    {"id": "bowl-0", "title": "bowl", "text": "the denver broncos won the super bowl game ."},
    {"id": "bowl-1", "title": "bowl", "text": "the nfl team denver won the afc game ."},
    {"id": "france-0", "title": "france", "text": "paris is the capital city of france ."},
    {"id": "france-1", "title": "france", "text": "the city of paris is in france ."},
    {"id": "home-0", "title": "home", "text": "a short passage of a home with a name ."},
]
QUESTIONS = [
    ("q1", "who won the super bowl ?", ["denver broncos"], "bowl-0"),
    ("q2", "what game did the broncos win ?", ["super bowl", "the super bowl"], "bowl-0"),
    ("q3", "which team won the afc game ?", ["denver"], "bowl-1"),
    ("q4", "what is the capital of france ?", ["paris"], "france-0"),
    ("q5", "where is paris ?", ["france", "in france"], "france-1"),
    ("q6", "what is the capital city ?", ["paris"], "france-0"),
    ("q7", "what is a passage of ?", ["a home"], "home-0"),
]


def learnable_tiny_generator() -> Generator:
    """The conftest tiny Llama with larger embeddings.

    Its default init (std 0.02, tied head, RMS-normed hidden states) bounds every logit to
    about +-0.6, so no adapter could make it confident; scaled embeddings let the loss fall.
    """
    gen = make_tiny_generator(seed=0)
    with torch.no_grad():
        gen.model.get_input_embeddings().weight.mul_(8)
    return gen


@pytest.fixture
def squad_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "squad"
    directory.mkdir()
    (directory / "passages.jsonl").write_text(
        "".join(json.dumps(p) + "\n" for p in PASSAGES), encoding="utf-8"
    )
    (directory / "questions.jsonl").write_text(
        "".join(
            json.dumps({"id": i, "question": q, "answers": a, "passage_id": p}) + "\n"
            for i, q, a, p in QUESTIONS
        ),
        encoding="utf-8",
    )
    return directory


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"rank": 0}, "rank must be a positive integer"),
        ({"task": "summarise"}, "task must be 'read' or 'qa'"),
        ({"dropout": 1.0}, "dropout must be in"),
        ({"target_modules": ()}, "target_modules must name"),
        ({"learning_rate": 0.0}, "learning_rate must be in"),
        ({"gold_only_fraction": 1.5}, "gold_only_fraction"),
        ({"max_steps": 0}, "max_steps must be at least 1"),
    ],
)
def test_config_rejects_bad_values(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        TuningConfig(**changes)  # type: ignore[arg-type]


def test_title_split_keeps_titles_apart_and_is_deterministic(squad_dir: Path) -> None:
    data = load_squad(squad_dir)
    counts = data.question_counts()
    split = split_titles(counts, eval_fraction=0.3, seed=3)
    assert set(split.train).isdisjoint(split.eval)
    assert set(split.train) | set(split.eval) == set(counts)
    assert sum(counts[t] for t in split.eval) >= 0.3 * sum(counts.values())
    assert split == split_titles(dict(reversed(list(counts.items()))), eval_fraction=0.3, seed=3)
    with pytest.raises(ConfigError, match="in both training and evaluation"):
        TitleSplit(train=("bowl", "home"), eval=("home",))


def test_split_round_trips_through_its_file(tmp_path: Path) -> None:
    split = split_titles({"a": 5, "b": 5, "c": 5}, eval_fraction=0.3)
    split.save(tmp_path / SPLIT_FILE)
    assert TitleSplit.load(tmp_path / SPLIT_FILE) == split


def test_reader_groups_never_show_evaluation_articles(squad_dir: Path) -> None:
    data = load_squad(squad_dir)
    split = TitleSplit(train=("bowl", "home"), eval=("france",))
    train_passages = [p for p in data.passages.values() if p.title in split.train]
    config = TuningConfig(distractors=2, gold_only_fraction=0.0, group_size=2)
    groups = reader_groups(data, split.train, config, Bm25Index(train_passages))
    questions = [q for g in groups for q in g.items]
    assert sorted(q.id for q in questions) == ["q1", "q2", "q3", "q7"]
    for group in groups:
        assert all(p.title in split.train for p in group.passages)
        gold = {q.passage_id for q in group.items}
        assert len(gold) == 1 and gold <= {p.id for p in group.passages}
        assert len(group.passages) == 3  # gold + 2 retrieved distractors
    assert reader_groups(data, split.train, config, Bm25Index(train_passages)) == groups


def test_max_examples_caps_questions(squad_dir: Path) -> None:
    data = load_squad(squad_dir)
    groups = knowledge_groups(
        data, ["bowl", "france", "home"], TuningConfig(max_examples=5, group_size=2)
    )
    assert sum(len(g.items) for g in groups) == 5
    assert all(g.passages == () for g in groups)


def test_shared_prefix_loss_equals_separate_losses(squad_dir: Path) -> None:
    data = load_squad(squad_dir)
    gen = make_tiny_generator(seed=2)
    group = TrainingGroup(
        (data.passages["bowl-0"], data.passages["bowl-1"]),
        tuple(q for q in data.questions if q.passage_id in {"bowl-0", "bowl-1"}),
    )
    sequences = encode_group(gen, group)
    with torch.no_grad():
        shared, tokens, answer_tokens = group_loss(gen.model, sequences)
        separate = [group_loss(gen.model, [s]) for s in sequences]
    weighted = sum(float(loss) * n for loss, _, n in separate) / sum(n for _, _, n in separate)
    assert answer_tokens == sum(n for _, _, n in separate)
    assert float(shared) == pytest.approx(weighted, rel=1e-4)
    # The shared context ran once, not once per question.
    assert tokens < sum(t for _, t, _ in separate)


def mean_answer_loss(
    causal_lm: torch.nn.Module, gen: Generator, groups: list[TrainingGroup]
) -> float:
    with torch.no_grad():
        losses = [group_loss(causal_lm, encode_group(gen, g)) for g in groups]
    return sum(float(loss) * n for loss, _, n in losses) / sum(n for _, _, n in losses)


def test_training_on_a_few_examples_lowers_the_loss_deterministically(squad_dir: Path) -> None:
    data = load_squad(squad_dir)
    config = TuningConfig(
        rank=4, alpha=8, dropout=0.0, learning_rate=2e-2, epochs=6, warmup_steps=2, group_size=4
    )
    groups = reader_groups(data, ["bowl", "france", "home"], config, None)
    runs = []
    for _ in range(2):
        gen = learnable_tiny_generator()
        before = mean_answer_loss(gen.model, gen, groups)
        model, report = train_lora(gen, groups, config, progress=False)
        runs.append((before, mean_answer_loss(model.get_base_model(), gen, groups), report))
    (before, after, first), (_, _, second) = runs
    assert first.steps == len(groups) * 6
    assert first.examples_seen == 7 * 6
    assert after < 0.5 * before
    assert first.losses == second.losses
    assert first.tokens_per_s > 0


def test_saved_adapter_reloads_with_its_record(squad_dir: Path, tmp_path: Path) -> None:
    data = load_squad(squad_dir)
    config = TuningConfig(
        rank=4, alpha=8, dropout=0.0, learning_rate=5e-3, epochs=3, warmup_steps=0
    )
    gen = make_tiny_generator(seed=0)
    model, report = train_lora(
        gen, knowledge_groups(data, ["bowl"], config), config, progress=False
    )
    prompt = gen.prompt_ids("who won the super bowl ?")
    with torch.no_grad():
        trained = model(input_ids=torch.tensor([prompt])).logits[0, -1]
    split = TitleSplit(train=("bowl",), eval=("france", "home"))
    out = save_adapter(
        model,
        tmp_path / "knowledge",
        config=config,
        record={"training": report.to_dict()},
        split=split,
    )
    record = json.loads((out / RECORD_FILE).read_text())
    assert record["config"]["rank"] == 4 and record["training"]["steps"] == report.steps
    assert TitleSplit.load(out / SPLIT_FILE) == split
    from safetensors import safe_open

    with safe_open(str(out / "adapter_model.safetensors"), "pt") as fh:
        assert {fh.get_tensor(k).dtype for k in fh.keys()} == {torch.float16}  # noqa: SIM118

    fresh = make_tiny_generator(seed=0)  # same base weights, no adapter
    fresh.load_adapter(out, "knowledge")
    with torch.no_grad():
        reloaded = fresh.model(input_ids=torch.tensor([prompt])).logits[0, -1]
    assert torch.allclose(trained, reloaded, atol=1e-2)
    fresh.set_adapter(None)
    with torch.no_grad():
        base = fresh.model(input_ids=torch.tensor([prompt])).logits[0, -1]
    assert not torch.allclose(trained, base, atol=1e-2)


def test_a_saved_adapter_continues_training_on_new_questions(
    squad_dir: Path, tmp_path: Path
) -> None:
    data = load_squad(squad_dir)
    titles = ["bowl", "france", "home"]
    first = TuningConfig(rank=4, alpha=8, dropout=0.0, learning_rate=2e-2, epochs=4, group_size=1)
    gen = learnable_tiny_generator()
    groups = knowledge_groups(data, titles, replace(first, max_examples=4))
    model, _ = train_lora(gen, groups, first, progress=False)
    save_adapter(model, tmp_path / "stage1", config=first, record={})

    second = replace(first, init_adapter=str(tmp_path / "stage1"), skip_examples=4)
    later = knowledge_groups(data, titles, second)
    assert {q.id for g in later for q in g.items}.isdisjoint(
        {q.id for g in groups for q in g.items}
    )
    # Loaded from stage 1, not a fresh LoRA (whose B matrices start at zero), and trainable.
    loaded = lora_model(learnable_tiny_generator(), second)
    lora_b = [p for n, p in loaded.named_parameters() if "lora_B" in n]
    assert lora_b and all(p.requires_grad for p in lora_b)
    assert all(p.abs().sum() > 0 for p in lora_b)
    _, report = train_lora(learnable_tiny_generator(), later, second, progress=False)
    assert report.steps == len(later) * 4
    with pytest.raises(ConfigError, match="same --rank"):
        train_lora(learnable_tiny_generator(), later, replace(second, rank=8), progress=False)


@pytest.fixture
def two_adapters(tmp_path: Path) -> tuple[Generator, Path, Path]:
    """A tiny generator and two random (non-zero) LoRA adapters saved beside it."""
    from peft import LoraConfig, get_peft_model

    from setpoint.adapters.model.peft_init import quiet_peft_init

    gen = make_tiny_generator(seed=0)
    dirs = []
    for seed, name in ((1, "knowledge"), (2, "reader")):
        torch.manual_seed(seed)
        with quiet_peft_init():
            peft_model = get_peft_model(
                gen.model,
                LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False),
            )
        peft_model.save_pretrained(str(tmp_path / name))
        gen.model = peft_model.unload()
        dirs.append(tmp_path / name)
    return make_tiny_generator(seed=0), dirs[0], dirs[1]


def test_each_route_generates_with_its_own_adapter(
    two_adapters: tuple[Generator, Path, Path], spans: InMemorySpanExporter, tmp_path: Path
) -> None:
    gen, knowledge, reader = two_adapters
    res = Resources(
        settings=Settings.from_env().replace(cache_dir=tmp_path),
        tracer_provider=configure_tracing(exporters=[spans]),
        _generator=gen,
        _store=KeywordStore(list(STORE_PASSAGES)),
    )
    graph = build_graph(res)
    common = {"max_new_tokens": 4, "adapter": str(knowledge), "reader_adapter": str(reader)}

    answered = graph.invoke(
        {"question": "what is the capital of france ?"},
        context=Context(setpoint=math.inf, **common),  # type: ignore[arg-type]
    )
    assert answered["route"] == "answer"
    answer_chats = [s for s in spans.get_finished_spans() if s.name.startswith("chat ")]
    assert [s.attributes["setpoint.adapter"] for s in answer_chats] == ["knowledge"]
    spans.clear()

    retrieved = graph.invoke(
        {"question": "who won the super bowl ?"},
        context=Context(probe_setpoint=0.0, setpoint=math.inf, **common),  # type: ignore[arg-type]
    )
    assert retrieved["retrieval_calls"] == 1
    finished = spans.get_finished_spans()
    probe = next(s for s in finished if s.name == "node probe")
    chats = [s for s in finished if s.name.startswith("chat ")]
    assert probe.attributes["setpoint.adapter"] == "knowledge"
    assert [s.attributes["setpoint.adapter"] for s in chats] == ["reader"]
    # Both adapters stay loaded on the one base model; switching reloads nothing.
    assert set(gen.adapters) == {"knowledge", "reader"}


def test_auto_reader_falls_back_to_the_base_model_when_it_does_not_fit() -> None:
    gen = make_tiny_generator()
    assert resolve_reader(gen.model.config, None) is None
    assert resolve_reader(gen.model.config, "/some/dir") == "/some/dir"
    shipped = shipped_reader_dir()
    if (shipped / "adapter_config.json").is_file():
        assert "hidden_size=576" in (adapter_fits(gen.model.config, shipped) or "")
    assert resolve_reader(gen.model.config, AUTO) is None
