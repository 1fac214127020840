"""Knowledge adapters: the registry picks one per question, stale weights route to retrieval, updates replay, distillation."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import PASSAGES, KeywordStore, make_tiny_generator, unit_policy
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from setpoint.adapters.lora.config import TuningConfig
from setpoint.adapters.lora.knowledge import (
    AdapterCard,
    LearnedPassage,
    learned_section,
    read_card,
    replay_sample,
    text_sha256,
    topic_matches,
)
from setpoint.adapters.lora.knowledge_training import train_knowledge
from setpoint.adapters.lora.qa_data import QARecord
from setpoint.adapters.lora.record import RECORD_FILE
from setpoint.adapters.model.generator import Passage
from setpoint.adapters.weaviate.store import PassageVersion, SearchHit
from setpoint.agents.resources import Resources
from setpoint.graphs.context import Context
from setpoint.graphs.graph import build_graph
from setpoint.jobs.distill import Observation, read_observations, select_pairs
from setpoint.settings import Settings
from setpoint.tracing import configure_tracing

FRANCE = Passage("p2", "France", "Paris is the capital city of France .")
BOWL = Passage("p1", "Super Bowl", "The Denver Broncos won the Super Bowl game .")


def save_random_adapter(directory: Path, seed: int, learned: dict[str, Any] | None) -> Path:
    """A non-zero random LoRA adapter for the tiny model, with a training record."""
    from peft import LoraConfig, get_peft_model

    from setpoint.adapters.model.peft_init import quiet_peft_init

    gen = make_tiny_generator(seed=0)
    torch.manual_seed(seed)
    with quiet_peft_init():
        peft_model = get_peft_model(
            gen.model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
        )
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_" in name:
                param.mul_(20)  # big enough to move the tiny model's logits visibly
    peft_model.save_pretrained(str(directory))
    record = {"format": "setpoint-training-record/1"}
    if learned is not None:
        record["learned"] = learned
    (directory / RECORD_FILE).write_text(json.dumps(record), encoding="utf-8")
    return directory


def learned_from(passage: Passage, question: str, answer: str, at: float) -> dict[str, Any]:
    q = QARecord(f"q-{passage.id}", question, (answer,), passage.id)
    return learned_section([q], {passage.id: passage}, at=at)


@dataclass
class VersionedStore(KeywordStore):
    """The keyword store with passage editions, like ``WeaviateStore`` (edit/delete change them)."""

    written: dict[str, float] = field(default_factory=dict)
    version_reads: int = 0

    def __post_init__(self) -> None:
        self.written = {p["id"]: 0.0 for p in self.passages}

    def edit(self, pid: str, text: str, at: float) -> None:
        from setpoint.adapters.weaviate.passages import note_index_write

        self.passages = [{**p, "text": text} if p["id"] == pid else p for p in self.passages]
        self.written[pid] = at
        note_index_write()

    def remove(self, pid: str) -> None:
        from setpoint.adapters.weaviate.passages import note_index_write

        self.passages = [p for p in self.passages if p["id"] != pid]
        note_index_write()

    def changed_since(self, ids: list[str], since: float) -> dict[str, PassageVersion | None]:
        self.version_reads += 1
        stored = {p["id"] for p in self.passages}
        out: dict[str, PassageVersion | None] = {}
        for pid in ids:
            if pid not in stored:
                out[pid] = None
            elif self.written[pid] > since:
                at = datetime.fromtimestamp(self.written[pid], UTC)
                out[pid] = PassageVersion(pid, "unit", "v2", at)
        return out

    def get(self, pid: str, source: str) -> SearchHit | None:
        for p in self.passages:
            if p["id"] == pid:
                return SearchHit(p["id"], p["title"], p["text"], source, 0.0)
        return None


def make_resources(tmp_path: Path, spans: InMemorySpanExporter, store: Any = None) -> Resources:
    return Resources(
        settings=Settings.from_env().replace(cache_dir=tmp_path, policy_file=unit_policy(tmp_path)),
        tracer_provider=configure_tracing(exporters=[spans]),
        _generator=make_tiny_generator(seed=0),
        _store=store if store is not None else KeywordStore(list(PASSAGES)),
    )


def probe_span(spans: InMemorySpanExporter) -> Any:
    return next(s for s in spans.get_finished_spans() if s.name == "node probe")


# ---------------------------------------------------------------------------- registry
def test_topic_match_needs_whole_words_of_a_title_or_topic() -> None:
    cards = [
        AdapterCard("nfl", "/a", titles=("Super_Bowl_50",)),
        AdapterCard("geo", "/b", topics=("france",)),
    ]
    assert topic_matches("Who won Super Bowl 50?", cards) == ["nfl"]
    assert topic_matches("What is the capital of France?", cards) == ["geo"]
    assert topic_matches("Who won the super bowl?", cards) == []  # "50" missing
    assert topic_matches("Is it frances?", cards) == []


def test_switching_adapters_changes_the_answer_distribution(tmp_path: Path) -> None:
    gen = make_tiny_generator(seed=0)
    a = gen.load_adapter(save_random_adapter(tmp_path / "a", 1, None))
    b = gen.load_adapter(save_random_adapter(tmp_path / "b", 2, None))
    prompt = gen.prompt_ids("what is the capital of france ?")
    signals = {}
    for name in (a, b, None):
        gen.set_adapter(name)
        signals[name] = gen.probe(prompt).entropy
    assert len({round(v, 4) for v in signals.values()}) == 3
    gen.set_adapter(a)  # the cached prefill of adapter a, not b's
    assert gen.probe(prompt).entropy == pytest.approx(signals[a])


def test_an_adapter_loaded_after_switching_to_the_base_model_is_live(tmp_path: Path) -> None:
    # Regression: set_adapter(None) disables PEFT's adapter layers, and load_adapter used to
    # activate the new adapter without enabling them again, so it silently ran the base model.
    alone = make_tiny_generator(seed=0)
    b_dir = save_random_adapter(tmp_path / "b", 2, None)
    prompt = alone.prompt_ids("what is the capital of france ?")
    alone.load_adapter(b_dir)
    expected = alone.probe(prompt).entropy

    gen = make_tiny_generator(seed=0)
    gen.load_adapter(save_random_adapter(tmp_path / "a", 1, None))
    gen.set_adapter(None)
    base = gen.probe(prompt).entropy
    b = gen.load_adapter(b_dir)
    assert gen.active_adapter == b
    got = gen.probe(prompt).entropy
    assert got != pytest.approx(base, abs=1e-6)
    assert got == pytest.approx(expected, abs=1e-5)


def test_registry_picks_by_topic_then_by_lowest_signal(
    tmp_path: Path, spans: InMemorySpanExporter
) -> None:
    geo = save_random_adapter(
        tmp_path / "geo", 1, learned_from(FRANCE, "what is the capital of france ?", "paris", 0)
    )
    nfl = save_random_adapter(
        tmp_path / "nfl", 2, learned_from(BOWL, "who won the super bowl ?", "denver", 0)
    )
    res = make_resources(tmp_path, spans)
    graph = build_graph(res)
    ctx = Context(setpoint=math.inf, max_new_tokens=3, adapters=(str(geo), str(nfl)))

    state = graph.invoke({"question": "what is the capital city of france ?"}, context=ctx)
    probe = probe_span(spans)
    assert probe.attributes["setpoint.adapter_selection"] == "topic"
    assert probe.attributes["setpoint.adapter"] == "geo"
    assert state["route"] == "answer" and state["decision"]["adapter"] == "geo"
    chats = [s for s in spans.get_finished_spans() if s.name.startswith("chat ")]
    assert [c.attributes["setpoint.adapter"] for c in chats] == ["geo"]
    spans.clear()

    graph.invoke({"question": "who is the team ?"}, context=ctx)  # names no title
    probe = probe_span(spans)
    signals = json.loads(str(probe.attributes["setpoint.adapter_signals"]))
    assert probe.attributes["setpoint.adapter_selection"] == "signal"
    assert set(signals) == {"geo", "nfl"} and signals["geo"] != signals["nfl"]
    assert probe.attributes["setpoint.adapter"] == min(signals, key=signals.get)
    assert probe.attributes["setpoint.entropy"] == pytest.approx(min(signals.values()))
    # Loaded once each on the one base model.
    assert set(res.generator().adapters) == {"geo", "nfl"}


def test_a_single_adapter_still_works_without_a_registry(
    tmp_path: Path, spans: InMemorySpanExporter
) -> None:
    only = save_random_adapter(tmp_path / "only", 1, None)
    graph = build_graph(make_resources(tmp_path, spans))
    state = graph.invoke(
        {"question": "who won the super bowl ?"},
        context=Context(setpoint=math.inf, max_new_tokens=3, adapter=str(only)),
    )
    assert state["decision"]["adapter"] == "only"
    assert "setpoint.adapter_selection" not in probe_span(spans).attributes


# ---------------------------------------------------------------------------- staleness
def test_an_edited_learned_passage_routes_its_questions_to_retrieval(
    tmp_path: Path, spans: InMemorySpanExporter
) -> None:
    store = VersionedStore(list(PASSAGES))
    geo = save_random_adapter(
        tmp_path / "geo", 1, learned_from(FRANCE, "what is the capital of france ?", "paris", 10)
    )
    res = make_resources(tmp_path, spans, store)
    graph = build_graph(res)
    # (reread_echo off: the tiny model's read of "capital" would earn a second read and hop)
    ctx = Context(setpoint=math.inf, max_new_tokens=3, adapter=str(geo), reread_echo=False)

    fresh = graph.invoke({"question": "what is the capital of france ?"}, context=ctx)
    assert fresh["route"] == "answer" and fresh["retrieval_calls"] == 0
    reads = store.version_reads
    graph.invoke({"question": "what is the capital of france ?"}, context=ctx)
    assert store.version_reads == reads  # cached until the index changes

    store.edit("p2", "Lyon is the capital city of France .", at=20)
    spans.clear()
    stale = graph.invoke({"question": "what is the capital of france ?"}, context=ctx)
    assert stale["route"] == "retrieve" and stale["retrieval_calls"] == 1
    assert stale["reason"].startswith("stale adapter knowledge: passage p2")
    assert store.version_reads == reads + 1
    probe = probe_span(spans)
    assert probe.attributes["setpoint.stale_passage_id"] == "p2"
    assert probe.attributes["setpoint.route"] == "retrieve"
    spans.clear()
    # A question on other knowledge is still answered from the weights.
    other = graph.invoke({"question": "who won the super bowl game ?"}, context=ctx)
    assert other["route"] == "answer"


def test_a_deleted_passage_is_stale_once_known_indexed_and_same_text_is_not() -> None:
    from setpoint.tools.freshness import StaleKnowledge

    store = VersionedStore(list(PASSAGES))
    card = AdapterCard(
        "geo",
        "/geo",
        passages={"p2": LearnedPassage("p2", "France", text_sha256(FRANCE.text), 10.0)},
    )
    cache = StaleKnowledge()
    assert cache.stale(card, store) == frozenset()
    store.edit("p2", FRANCE.text, at=20)  # re-ingested, same content: no edit
    assert cache.stale(card, store) == frozenset()
    store.remove("p2")  # seen in the index before, gone now
    assert cache.stale(card, store) == {"p2"}
    never_seen = StaleKnowledge()  # a new process: absence alone proves nothing ...
    assert never_seen.stale(card, store) == frozenset()
    indexed = AdapterCard(  # ... unless the passage was read from the index (distillation)
        "d", "/d", passages={"p2": LearnedPassage("p2", "France", None, 10.0, indexed=True)}
    )
    assert never_seen.stale(indexed, store) == {"p2"}


# ---------------------------------------------------------------------------- update + replay
PAIRS = [
    QARecord("a1", "what is the capital of france ?", ("paris",), "p2"),
    QARecord("a2", "who won the super bowl ?", ("denver broncos",), "p1"),
    QARecord("a3", "what game did the broncos win ?", ("super bowl",), "p1"),
    QARecord("a4", "which team won the afc game ?", ("denver",), "p1"),
]
NEW = [
    QARecord("b1", "where is paris ?", ("france",), "p2"),
    QARecord("b2", "what is the capital city ?", ("paris",), "p2"),
]


def test_replay_sample_is_a_seeded_fraction() -> None:
    assert len(replay_sample(PAIRS, 0.5)) == 2
    assert replay_sample(PAIRS, 0.5, seed=3) == replay_sample(PAIRS, 0.5, seed=3)
    assert {q.id for q in replay_sample(PAIRS, 1.0, exclude={"a1"})} == {"a2", "a3", "a4"}
    with pytest.raises(ValueError, match="replay fraction"):
        replay_sample(PAIRS, 1.5)


@pytest.mark.parametrize("fraction", [0.0, 0.5, 1.0])
def test_update_trains_new_pairs_with_a_replay_of_old_ones_and_keeps_history(
    tmp_path: Path, fraction: float
) -> None:
    passages = {p.id: p for p in (FRANCE, BOWL)}
    config = TuningConfig(task="qa", rank=4, alpha=8, dropout=0.0, epochs=1, group_size=2)
    first = train_knowledge(
        make_tiny_generator(), PAIRS, passages, config, tmp_path / "kb", progress=False
    )
    assert first.replayed_questions == []
    update = train_knowledge(
        make_tiny_generator(),
        [*NEW, PAIRS[0]],  # a1 was learned already: not new, and not replayed twice
        passages,
        TuningConfig(task="qa", rank=8, epochs=1, group_size=2),  # rank comes from the adapter
        tmp_path / "kb",
        update=tmp_path / "kb",
        replay_fraction=fraction,
        progress=False,
    )
    assert [q.id for q in update.new_questions] == ["b1", "b2"]
    replayed = {q.id for q in update.replayed_questions}
    assert len(replayed) == round(fraction * 4) and replayed <= {"a1", "a2", "a3", "a4"}
    assert update.report.examples_seen == 2 + len(replayed)
    record = json.loads((tmp_path / "kb" / RECORD_FILE).read_text())
    assert record["config"]["rank"] == 4
    assert [h["kind"] for h in record["history"]] == ["tune", "tune"]
    assert record["history"][1]["replayed_questions"] == len(replayed)
    assert record["history"][1]["replay_fraction"] == fraction
    assert record["continued_from"]["training"]["steps"] == first.report.steps
    card = read_card(tmp_path / "kb")
    assert card is not None
    assert {q["id"] for q in card.questions} == {"a1", "a2", "a3", "a4", "b1", "b2"}
    assert set(card.titles) == {"France", "Super Bowl"}
    assert card.passages["p2"].sha256 == text_sha256(FRANCE.text)
    assert card.passages["p2"].learned_at > card.passages["p1"].learned_at - 1e-6


# ---------------------------------------------------------------------------- distillation
def finalize_span(trace: str, question: str, answer: str, **attrs: Any) -> dict[str, Any]:
    cited = attrs.pop("cited", [{"id": "p2", "title": "France", "text": FRANCE.text}])
    return {
        "name": "node finalize",
        "context": {"trace_id": trace, "span_id": trace[:16]},
        "start_time": "2026-01-01T00:00:00Z",
        "end_time": "2026-01-01T00:00:01Z",
        "attributes": {
            "setpoint.route": attrs.pop("route", "retrieve"),
            "setpoint.status": attrs.pop("status", "answered"),
            "gen_ai.input.messages": json.dumps([{"role": "user", "content": question}]),
            "gen_ai.output.messages": json.dumps([{"role": "assistant", "content": answer}]),
            "setpoint.cited_passages": json.dumps(cited),
        },
    }


def test_distill_selects_repeated_retrieved_questions_with_passing_answers(
    tmp_path: Path,
) -> None:
    rows = [
        finalize_span("a" * 32, "What is the capital of France?", "Paris"),
        finalize_span("b" * 32, "what is the capital of france", "Paris"),
        finalize_span("c" * 32, "What is the capital of France ?", "Lyon"),  # not in passage
        finalize_span(
            "d" * 32,
            "Who won the Super Bowl?",
            "Denver Broncos",
            cited=[{"id": "p1", "title": "Super Bowl", "text": BOWL.text}],
        ),  # once only
        finalize_span("e" * 32, "Where is Paris?", "France", status="abstained"),
        finalize_span("f" * 32, "Where is Paris?", "France", route="answer"),
        finalize_span("g" * 32, "Where is Paris?", "France"),
        {"name": "node probe", "context": {"trace_id": "h" * 32}, "attributes": {}},
    ]
    path = tmp_path / "spans.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    pairs = select_pairs(read_observations(path), min_count=2)
    assert [(p.question, p.answer, p.passage_id, p.count) for p in pairs] == [
        ("What is the capital of France?", "Paris", "p2", 2)
    ]
    assert pairs[0].passage_text == FRANCE.text
    assert select_pairs(read_observations(path), min_count=1)[-1].answer in {
        "Denver Broncos",
        "France",
    }
    assert len(select_pairs(read_observations(path), min_count=1)) == 3


def test_distill_reads_a_run_log_of_ask_json(tmp_path: Path) -> None:
    result = {
        "question": "Who won the Super Bowl?",
        "answer": "Denver Broncos",
        "route": "retrieve",
        "status": "answered",
        "citations": [{"index": 1, "id": "p1", "title": "Super Bowl"}],
    }
    path = tmp_path / "runs.log"
    path.write_text(json.dumps(result, indent=2) + "\n" + json.dumps(result, indent=2))
    found = read_observations(path)
    assert len(found) == 2 and found[0] == Observation(
        "Who won the Super Bowl?",
        "Denver Broncos",
        "retrieve",
        "answered",
        (("p1", "Super Bowl", None),),
    )
    (pair,) = select_pairs(found, min_count=2)
    assert pair.passage_id == "p1" and pair.passage_text is None
