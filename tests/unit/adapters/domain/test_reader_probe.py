"""The reader probe on a tiny model: hidden states captured where it reads them, fitting, storage, and the graph's use of it."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import TINY_READER_FEATURES, tiny_reader_with_probe
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from setpoint.adapters.domain.linear_probe import LinearProbe
from setpoint.adapters.domain.reader_probe import (
    PROBE_FILE,
    SUPPORT,
    ReaderProbe,
    feature_vector,
    fit_reader_probe,
    load_reader_probe,
    probe_layers,
    support_features,
)
from setpoint.adapters.lora.reader import shipped_readers
from setpoint.adapters.model.generator import Generator, Passage
from setpoint.adapters.model.quoting import answer_question
from setpoint.agents.resources import Resources
from setpoint.errors import ConfigError
from setpoint.graphs.context import Context
from setpoint.graphs.graph import build_graph

BOWL = Passage("p1", "Super Bowl", "the denver broncos won the super bowl game .")
FEATURES = TINY_READER_FEATURES


def test_stream_keeps_the_hidden_state_of_the_position_that_chose_each_token(
    tiny_generator: Generator,
) -> None:
    """Token k's hidden states are those of position len(prompt)-1+k in one full forward pass."""
    gen = tiny_generator
    prompt = gen.prompt_ids("who won the super bowl ?", [BOWL])
    tokens = list(gen.stream(prompt, max_new_tokens=6, capture_layers=(2, 4)))
    ids = prompt + [t.token_id for t in tokens[:-1]]
    with torch.inference_mode():
        states = gen.model(input_ids=torch.tensor([ids]), output_hidden_states=True).hidden_states
    for k, token in enumerate(tokens):
        assert token.hidden is not None and set(token.hidden) == {2, 4}
        for layer in (2, 4):
            assert torch.allclose(
                token.hidden[layer], states[layer][0, len(prompt) - 1 + k], atol=1e-4
            )
    assert all(t.hidden is None for t in gen.stream(prompt, max_new_tokens=3))


def test_capture_prefills_again_after_a_kept_prompt(tiny_generator: Generator) -> None:
    """A kept prompt cache has no hidden states; the first token must still get its own."""
    gen = tiny_generator
    prompt = gen.prompt_ids("where is the game ?", [BOWL])
    list(gen.stream(prompt, max_new_tokens=3, keep_prompt=True))
    tokens = list(gen.stream(prompt, max_new_tokens=3, capture_layers=(1,)))
    fresh = list(make_generator_copy(gen).stream(prompt, max_new_tokens=3, capture_layers=(1,)))
    assert tokens[0].hidden is not None
    assert torch.allclose(tokens[0].hidden[1], fresh[0].hidden[1], atol=1e-5)  # type: ignore[index]


def make_generator_copy(gen: Generator) -> Generator:
    return Generator(gen.model, gen.tokenizer, name="copy")


def test_capture_layers_out_of_range_is_a_config_error(tiny_generator: Generator) -> None:
    prompt = tiny_generator.prompt_ids("who won ?")
    with pytest.raises(ConfigError, match=r"outside 0\.\.4"):
        list(tiny_generator.stream(prompt, capture_layers=(9,)))


def test_feature_vector_reads_positions_and_scalars(tiny_generator: Generator) -> None:
    answer = answer_question(
        tiny_generator,
        "who won the super bowl ?",
        [BOWL],
        grounded=True,
        max_new_tokens=5,
        capture_layers=probe_layers(FEATURES),
    )
    tokens = answer.tokens
    vector = feature_vector(tokens, FEATURES)
    assert len(vector) == 32 + 32 + 2
    assert vector[:32] == pytest.approx(tokens[-1].hidden[2].tolist())  # type: ignore[index]
    assert vector[32:64] == pytest.approx(tokens[0].hidden[4].tolist())  # type: ignore[index]
    assert vector[64] == pytest.approx(math.log1p(-sum(t.logprob for t in tokens)))
    assert vector[65] == pytest.approx(max(t.signals.entropy for t in tokens))
    plain = answer_question(tiny_generator, "who won the super bowl ?", [BOWL], max_new_tokens=5)
    with pytest.raises(ConfigError, match="capture_layers"):
        feature_vector(plain.tokens, FEATURES)


MOON = Passage(
    "p9",
    "Moon",
    "Apollo 11 landed on the Moon in 1969 with Armstrong. Apollo 13 launched in 1970 but never landed.",
)
MOON_QUESTION = (
    "In what year did Apollo 11 land on the Moon?"  # content words: year apollo 11 land moon
)


def test_support_features_tell_the_described_sentence_from_a_distractor() -> None:
    right = support_features(MOON_QUESTION, [MOON], "1969")
    assert right == {
        "question_overlap_answer_sentence": pytest.approx(3 / 5),  # apollo 11 moon
        "question_overlap_best_sentence": pytest.approx(3 / 5),
        "question_overlap_answer_window": pytest.approx(3 / 5),
        "answer_sentence_rank": 0.0,
    }
    # A date of the right kind, from the sentence the question does not describe.
    wrong = support_features(MOON_QUESTION, [MOON], "1970")
    assert wrong == {
        "question_overlap_answer_sentence": pytest.approx(1 / 5),  # apollo
        "question_overlap_best_sentence": pytest.approx(3 / 5),
        "question_overlap_answer_window": pytest.approx(
            2 / 5
        ),  # moon, apollo in the 12 words before
        "answer_sentence_rank": 1.0,
    }
    # Case and punctuation do not matter; a multi-word answer is found as a phrase.
    assert support_features(MOON_QUESTION, [MOON], "APOLLO 11,")[
        "question_overlap_answer_sentence"
    ] == pytest.approx(3 / 5)
    # An answer the passages do not hold has no support; both sentences outrank it.
    missing = support_features(MOON_QUESTION, [MOON], "Gagarin")
    assert (
        missing["question_overlap_answer_sentence"]
        == missing["question_overlap_answer_window"]
        == 0.0
    )
    assert missing["answer_sentence_rank"] == 2.0
    # Several passages are read as one; a question of stop words only has no overlap to measure.
    both = support_features(MOON_QUESTION, [BOWL, MOON], "1969")
    assert both["answer_sentence_rank"] == 0.0 and both[
        "question_overlap_best_sentence"
    ] == pytest.approx(3 / 5)
    assert set(support_features("what was it?", [MOON], "1969").values()) == {0.0}
    assert support_features(MOON_QUESTION, [], "1969") == dict.fromkeys(SUPPORT, 0.0)


def test_support_features_need_the_reading(tiny_generator: Generator) -> None:
    answer = answer_question(
        tiny_generator, "who won the super bowl ?", [BOWL], grounded=True, max_new_tokens=5
    )
    with pytest.raises(ConfigError, match="need the question, the passages and the answer"):
        feature_vector(answer.tokens, ("max_entropy", *SUPPORT))
    vector = feature_vector(
        answer.tokens,
        ("max_entropy", *SUPPORT),
        question="who won the super bowl ?",
        passages=[BOWL],
        answer=answer.text,
    )
    assert vector[1:] == list(
        support_features("who won the super bowl ?", [BOWL], answer.text).values()
    )


def test_unknown_features_are_refused() -> None:
    linear = LinearProbe(layer=-1, mean=[0.0], scale=[1.0], weights=[1.0], bias=0.0)
    with pytest.raises(ConfigError, match="unknown reader probe feature"):
        ReaderProbe(features=("answer_middle@3",), linear=linear)
    assert probe_layers(("answer_end@20", "prompt_end@26", "answer_end@20", "max_entropy")) == (
        20,
        26,
    )


def synthetic_rows(n: int, seed: int = 0) -> list[dict[str, Any]]:
    """Rows whose wrong answers sit higher on the first hidden dimension and the scalar."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        wrong = rng.random() < 0.4
        hidden = [rng.gauss(1.5 if wrong else 0.0, 1.0)] + [rng.gauss(0, 1) for _ in range(3)]
        rows.append(
            {
                "id": f"q{i // 2}",
                "title": f"T{i % 10}",
                "context": "gold" if i % 2 == 0 else "top3",
                "f1": 0.0 if wrong else 1.0,
                "x": [*hidden, rng.gauss(1.0 if wrong else 0.0, 1.0)],
            }
        )
    return rows


def test_fit_validates_on_held_out_titles_and_stores_setpoints(tmp_path: Path) -> None:
    rows = synthetic_rows(600)
    probe = fit_reader_probe(rows, ("answer_end@1", "log_total_surprisal"), hidden_size=4, c=1.0)
    held_out = set(probe.record["validation_titles"])
    assert held_out and held_out < {f"T{i}" for i in range(10)}
    assert probe.record["validation_auroc_wrong"]["all"] > 0.8
    assert (
        probe.record["validation_auroc_wrong"]["all"]
        > probe.record["validation_surprisal_auroc_wrong"]["all"]
    )
    setpoints = [probe.setpoints[k] for k in ("0.5", "0.7", "0.8", "0.9")]
    assert setpoints == sorted(setpoints) and 0 < setpoints[0] < setpoints[-1] < 1
    # About 80 % of unseen rows score at or under the 80 % setpoint.
    fresh = synthetic_rows(2000, seed=1)
    kept = sum(probe.linear.score(r["x"]) <= probe.setpoints["0.8"] for r in fresh) / len(fresh)
    assert 0.7 < kept < 0.9

    path = probe.save(tmp_path / PROBE_FILE)
    again = load_reader_probe(tmp_path)
    assert again is not None and again.features == probe.features
    assert again.linear.score(rows[0]["x"]) == pytest.approx(probe.linear.score(rows[0]["x"]))
    path.write_text("{not json", encoding="utf-8")
    with pytest.raises(ConfigError, match="setpoint calibrate --reader"):
        load_reader_probe(tmp_path)
    assert load_reader_probe(tmp_path / "elsewhere") is None


def test_fit_refuses_one_sided_labels() -> None:
    rows = [{**r, "f1": 1.0} for r in synthetic_rows(100)]
    with pytest.raises(ConfigError, match="equally right or wrong"):
        fit_reader_probe(rows, ("answer_end@1", "log_total_surprisal"), hidden_size=4)


# ------------------------------------------------------------------ the graph
def reader_span(spans: InMemorySpanExporter) -> dict[str, Any]:
    found = [
        s for s in spans.get_finished_spans() if s.attributes.get("setpoint.phase") == "reader"
    ]
    assert len(found) == 1
    return dict(found[0].attributes)


@pytest.mark.parametrize(("reader_setpoint", "unsure"), [(-0.5, True), (1.0, False)])
def test_graph_reads_the_reader_adapters_probe(
    resources: Resources,
    spans: InMemorySpanExporter,
    tmp_path: Path,
    reader_setpoint: float,
    unsure: bool,
) -> None:
    reader = tiny_reader_with_probe(tmp_path / "reader")
    context = Context(
        max_new_tokens=8,
        probe_setpoint=0.0,
        setpoint=math.inf,
        reader_adapter=str(reader),
        reader_setpoint=reader_setpoint,
        max_retrievals=1,
    )
    out = build_graph(resources).invoke({"question": "who won the super bowl ?"}, context=context)
    assert out["status"] == ("unsure" if unsure else "answered")
    attrs = reader_span(spans)
    assert attrs["setpoint.adapter"] == "reader"
    assert attrs["setpoint.reader_signal"] == "probe"
    assert 0.0 < attrs["setpoint.reader_uncertainty"] < 1.0


@pytest.mark.parametrize(("stored", "unsure"), [(0.0, True), (1.0, False), (None, None)])
def test_the_probes_own_setpoint_decides_unsure_when_the_context_leaves_it_unset(
    resources: Resources,
    spans: InMemorySpanExporter,
    tmp_path: Path,
    stored: float | None,
    unsure: bool | None,
) -> None:
    """A second family's probe carries its dev-chosen setpoint (``default_setpoint``)."""
    from dataclasses import replace

    from setpoint.graphs.context import DEFAULT_READER_SETPOINT

    reader = tiny_reader_with_probe(tmp_path / "reader")
    probe = load_reader_probe(reader)
    assert probe is not None
    replace(probe, default_setpoint=stored).save(reader / "probe.json")
    loaded = load_reader_probe(reader)
    assert loaded is not None and loaded.default_setpoint == stored
    context = Context(
        max_new_tokens=8,
        probe_setpoint=0.0,
        setpoint=math.inf,
        reader_adapter=str(reader),
        max_retrievals=1,
    )
    out = build_graph(resources).invoke({"question": "who won the super bowl ?"}, context=context)
    attrs = reader_span(spans)
    if stored is None:
        # No stored value: the default generator's constant.
        assert attrs["setpoint.reader_setpoint"] == DEFAULT_READER_SETPOINT
        return
    assert attrs["setpoint.reader_setpoint"] == stored
    assert out["status"] == ("unsure" if unsure else "answered")


def test_probe_weights_move_the_reader_uncertainty(
    resources: Resources, spans: InMemorySpanExporter, tmp_path: Path
) -> None:
    """The span's uncertainty is the stored probe's output: a large negative weight on max entropy drives it to 0."""
    width = 32 + 32 + 2
    sure = tiny_reader_with_probe(tmp_path / "sure", [0.0] * (width - 1) + [-50.0])
    graph = build_graph(resources)
    question = {"question": "who won the super bowl ?"}
    graph.invoke(
        question, context=Context(max_new_tokens=8, probe_setpoint=0.0, reader_adapter=str(sure))
    )
    assert reader_span(spans)["setpoint.reader_uncertainty"] < 1e-6
    spans.clear()
    graph.invoke(
        question,
        context=Context(
            max_new_tokens=8, probe_setpoint=0.0, reader_adapter=str(sure), reader_probe=False
        ),
    )
    attrs = reader_span(spans)
    assert attrs["setpoint.reader_signal"] == "surprisal"
    assert attrs["setpoint.reader_uncertainty"] > 0.0


def test_graph_gives_the_probe_the_question_and_passages_it_read(
    resources: Resources, spans: InMemorySpanExporter, tmp_path: Path
) -> None:
    """A support feature is computed on the question and retrieved passages: the question's
    words all sit in the Super Bowl passage, so a large negative weight on that overlap
    drives P(wrong) to 0, and a large positive one to 1."""
    features = (*FEATURES, "question_overlap_best_sentence")
    width = 32 + 32 + 3
    graph = build_graph(resources)
    for sign, check in ((-1, lambda u: u < 1e-6), (1, lambda u: u > 1 - 1e-6)):
        spans.clear()
        reader = tiny_reader_with_probe(
            tmp_path / f"r{sign}", [0.0] * (width - 1) + [50.0 * sign], features
        )
        graph.invoke(
            {"question": "who won the super bowl ?"},
            # one retrieval: a P(wrong) of 1 would otherwise earn a second hop (two reader spans)
            context=Context(
                max_new_tokens=8, probe_setpoint=0.0, reader_adapter=str(reader), max_retrievals=1
            ),
        )
        attrs = reader_span(spans)
        assert attrs["setpoint.reader_signal"] == "probe"
        assert check(attrs["setpoint.reader_uncertainty"]), attrs["setpoint.reader_uncertainty"]


@pytest.mark.parametrize("reader", shipped_readers(), ids=lambda d: d.name)
def test_shipped_probe_matches_the_shipped_reader(reader: Path) -> None:
    from setpoint.adapters.lora.reader import training_record

    probe = load_reader_probe(reader)
    assert probe is not None
    card = training_record(reader)["base_model"]
    hidden = sum(1 for f in probe.features if "@" in f)
    assert len(probe.linear.weights) == hidden * card["hidden_size"] + len(probe.features) - hidden
    assert all(0 <= layer <= card["num_hidden_layers"] for layer in probe.layers)
    assert (
        probe.record["validation_auroc_wrong"]["all"]
        > probe.record["validation_surprisal_auroc_wrong"]["all"]
    )
    assert set(probe.setpoints) == {"0.5", "0.7", "0.8", "0.9"}
    # Fitted on the product's own answers to more than SQuAD: unanswerable and multi-hop too.
    sources = probe.record["sources"]
    assert sources["squad_v2"]["impossible"] > 0 and "2wikimultihopqa_train" in sources
    json.dumps(probe.record)  # the record stays plain JSON
