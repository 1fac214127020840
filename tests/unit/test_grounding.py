"""Grounded decoding on a tiny model: the span constraint only ever lets passage quotes out."""

from __future__ import annotations

import random

import pytest
import torch

from setpoint.adapters.generator import Generator, Passage
from setpoint.adapters.grounding import (
    SpanConstraint,
    TokenTable,
    answer_question,
    locate_quote,
    reader_uncertainty,
)

PASSAGES = [
    Passage("p1", "Super Bowl", "the denver broncos won the super bowl game ."),
    Passage("p2", "France", "paris is the capital city of france ."),
]
QUESTIONS = [
    "who won the super bowl ?",
    "what is the capital of france ?",
    "where is the game ?",
    "which team won ?",
]


def normalised(text: str) -> str:
    return " ".join(text.split())


def test_random_walks_through_the_constraint_only_spell_quotes(tiny_generator: Generator) -> None:
    """Pick any allowed token at every step: whatever comes out is a word-aligned passage quote."""
    table = TokenTable.of(tiny_generator.tokenizer)
    stops = set(tiny_generator.stop_ids)
    rng = random.Random(0)
    texts = [normalised(p.text) for p in PASSAGES]
    for _ in range(200):
        constraint = SpanConstraint([p.text for p in PASSAGES], table, sorted(stops))
        generated: list[int] = []
        for _step in range(rng.randint(1, 12)):
            allowed = constraint.allowed(generated)
            assert allowed
            token = rng.choice(allowed)
            if token in stops:
                assert constraint.answer.strip(), "stop offered before any answer text"
                break
            generated.append(token)
        constraint.allowed(generated)
        answer = constraint.answer.strip()
        assert answer, "the first step must not offer the stop token"
        assert any(answer in t for t in texts), answer
        if token in stops:
            # Stopped answers end at a word boundary, never inside a word.
            assert any(
                t.startswith(answer, i)
                and (i + len(answer) == len(t) or not t[i + len(answer)].isalnum())
                for t in texts
                for i in range(len(t))
            ), answer


def test_grounded_greedy_answers_are_quotes(tiny_generator: Generator) -> None:
    free_quotes = []
    for question in QUESTIONS:
        free = answer_question(tiny_generator, question, PASSAGES, max_new_tokens=6)
        grounded = answer_question(
            tiny_generator, question, PASSAGES, max_new_tokens=6, grounded=True
        )
        assert grounded.text
        assert grounded.quote is not None and grounded.quote.text == grounded.text
        assert grounded.quote.passage_id in {"p1", "p2"}
        free_quotes.append(free.quote is not None and free.text != "")
    # The random tiny model does not quote on its own: the constraint is what makes it.
    assert not all(free_quotes)


def test_constraint_leaves_the_models_signals_alone(tiny_generator: Generator) -> None:
    ids = tiny_generator.prompt_ids("who won the super bowl ?", PASSAGES)
    free = next(iter(tiny_generator.stream(ids, max_new_tokens=1)))
    constraint = SpanConstraint.for_generator(tiny_generator, PASSAGES)
    grounded = next(iter(tiny_generator.stream(ids, max_new_tokens=1, logits_processor=constraint)))
    assert grounded.signals.entropy == pytest.approx(free.signals.entropy, abs=1e-5)
    assert grounded.logprob <= free.logprob + 1e-6  # greedy over a subset is never more likely
    assert free.logprob == pytest.approx(
        float(torch.log(torch.tensor(free.signals.top_prob))), abs=1e-4
    )


def test_locate_quote_is_whitespace_insensitive() -> None:
    passages = [Passage("a", "", "Nothing here."), Passage("b", "", "The Denver\nBroncos  won.")]
    quote = locate_quote("Denver Broncos", passages)
    assert quote is not None
    assert (quote.passage_id, passages[1].text[quote.start : quote.end]) == ("b", "Denver\nBroncos")
    assert locate_quote("Carolina", passages) is None
    assert locate_quote("  ", passages) is None


def test_reader_uncertainty_orders_confident_below_unsure(tiny_generator: Generator) -> None:
    answer = answer_question(tiny_generator, QUESTIONS[0], PASSAGES, max_new_tokens=4)
    value = reader_uncertainty(answer.tokens)
    assert value >= 0.0
    assert reader_uncertainty([]) == float("inf")
