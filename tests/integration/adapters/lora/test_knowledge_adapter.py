"""A knowledge adapter tuned on 20 SQuAD pairs answers one from its weights; an edit in Weaviate makes it retrieve."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from setpoint.adapters.domain.metrics import best_f1
from setpoint.adapters.lora.config import TuningConfig
from setpoint.adapters.lora.knowledge_training import train_knowledge
from setpoint.adapters.lora.qa_data import load_squad
from setpoint.adapters.model.generator import Generator
from setpoint.adapters.weaviate.corpus import PassageRecord
from setpoint.adapters.weaviate.store import WeaviateStore
from setpoint.agents.resources import Resources
from setpoint.graphs.context import Context
from setpoint.graphs.graph import build_graph
from setpoint.settings import Settings

pytestmark = pytest.mark.integration

SOURCE = "knowledge-adapter-test"


def test_tuned_pairs_are_answered_from_the_weights_until_their_passage_changes(
    tmp_path: Path, squad_dir: Path, weaviate_store: WeaviateStore, request: pytest.FixtureRequest
) -> None:
    dataset = load_squad(squad_dir)
    pairs = [q for q in dataset.questions if len(q.target.split()) <= 3][:20]
    settings = Settings.from_env().replace(threads=1)
    generator = Generator.from_pretrained(settings.generator_dir, threads=1)
    config = TuningConfig(
        task="qa", rank=16, alpha=32, dropout=0.0, learning_rate=2e-3, epochs=12,
        warmup_steps=2, group_size=10,
    )  # fmt: skip
    result = train_knowledge(generator, pairs, dataset.passages, config, tmp_path / "kb")
    assert result.report.mean_loss(False, 2) < 0.5 * result.report.mean_loss(True, 2)

    # A collection of its own on the session's server: other tests count TestPassages.
    assert weaviate_store.server is not None
    store = WeaviateStore(
        url=weaviate_store.server.url,
        grpc_port=weaviate_store.server.grpc_port,
        collection="KnowledgeAdapterPassages",
        embedder=weaviate_store.embedder,
    )

    def drop() -> None:
        store.connect().collections.delete("KnowledgeAdapterPassages")
        store.close()

    request.addfinalizer(drop)
    res = Resources(settings=settings, _generator=generator, _store=store)
    graph = build_graph(res)
    ctx = Context(adapter=str(result.directory), reader_adapter=None, max_new_tokens=12)
    answered = None
    for pair in pairs[:5]:
        state = graph.invoke({"question": pair.question}, context=ctx)
        if state["route"] == "answer" and best_f1(state["answer"], pair.answers) == 1.0:
            answered = (pair, state)
            break
    assert answered is not None, "no learned pair of the first five was answered from the weights"
    pair, state = answered
    assert state["retrieval_calls"] == 0
    assert state["decision"]["answer_entropy"] < ctx.setpoint

    # Index the passage unchanged: still fresh. Then change it: the weights are stale.
    passage = dataset.passages[pair.passage_id]
    store.ingest(
        [PassageRecord(passage.id, passage.title, passage.text)], source=SOURCE, progress=False
    )
    again = graph.invoke({"question": pair.question}, context=ctx)
    assert again["route"] == "answer"
    edited = passage.text.replace(pair.target, "Zanzibar")
    store.ingest([PassageRecord(passage.id, passage.title, edited)], source=SOURCE, progress=False)
    stale = graph.invoke({"question": pair.question}, context=ctx)
    assert stale["route"] == "retrieve" and stale["retrieval_calls"] == 1
    assert stale["reason"].startswith(f"stale adapter knowledge: passage {passage.id}")
    assert not math.isnan(stale["decision"]["probe_entropy"])
