"""Grounded decoding on a tiny model: the span constraint only ever lets passage quotes out."""

from __future__ import annotations

import math
import random
from dataclasses import replace

import pytest
import torch

from setpoint.adapters.model.generator import Generator, Passage
from setpoint.adapters.model.quoting import (
    ReaderAnswer,
    SpanConstraint,
    TokenTable,
    answer_question,
    locate_quote,
    reader_uncertainty,
    sampled_uncertainty,
)
from setpoint.errors import ConfigError

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
    confident = list(answer.tokens)
    # The same answer from a reader that gave each token a tenth of the probability.
    unsure = [replace(t, logprob=t.logprob - math.log(10)) for t in confident]
    value = reader_uncertainty(confident)
    assert 0.0 <= value < reader_uncertainty(unsure)
    assert reader_uncertainty(unsure) == pytest.approx(value + len(confident) * math.log(10))
    # Every extra token adds its surprisal: a longer answer is never more certain.
    assert reader_uncertainty(confident[:-1]) <= value
    assert reader_uncertainty([]) == float("inf")


def test_batched_samples_at_low_temperature_follow_the_greedy_answer(
    tiny_generator: Generator,
) -> None:
    """The batched decode path (repeated KV cache, one forward for all rows) matches ``stream``."""
    for question in QUESTIONS[:2]:
        ids = tiny_generator.prompt_ids(question, PASSAGES)
        greedy = [
            t.token_id
            for t in tiny_generator.stream(ids, max_new_tokens=6)
            if t.token_id not in tiny_generator.stop_ids
        ]
        samples = tiny_generator.sample(ids, 3, max_new_tokens=6, temperature=1e-4, seed=3)
        assert samples == [greedy] * 3


def test_samples_from_a_kept_prompt_equal_samples_from_a_fresh_prefill(
    tiny_generator: Generator,
) -> None:
    """``keep_prompt`` cuts the answer's KV entries off again: nothing of the answer leaks in."""
    ids = tiny_generator.prompt_ids(QUESTIONS[0], PASSAGES)
    fresh = tiny_generator.sample(ids, 4, max_new_tokens=5, seed=11)
    with_answer = list(tiny_generator.stream(ids, max_new_tokens=5, keep_prompt=True))
    assert with_answer
    kept = tiny_generator.sample(ids, 4, max_new_tokens=5, seed=11)
    assert kept == fresh
    assert len({tuple(s) for s in fresh}) > 1, "temperature 1 on a random model should scatter"


def test_grounded_samples_are_quotes_and_disagreement_reads_them(
    tiny_generator: Generator,
) -> None:
    texts = [normalised(p.text) for p in PASSAGES]
    for question in QUESTIONS:
        answer = answer_question(
            tiny_generator, question, PASSAGES, max_new_tokens=6, grounded=True, samples=5, seed=1
        )
        assert len(answer.samples) == 5
        for sample in answer.samples:
            assert any(normalised(sample) in t for t in texts), sample
        assert answer.disagreement is not None and 0.0 <= answer.disagreement <= 1.0
    plain = answer_question(tiny_generator, QUESTIONS[0], PASSAGES, max_new_tokens=4)
    assert plain.samples == [] and plain.disagreement is None


def test_samples_of_a_question_that_names_its_options_are_those_options(
    tiny_generator: Generator,
) -> None:
    from setpoint.adapters.model.quoting import sample_answers

    prompt = tiny_generator.prompt_ids("which city is older , paris or denver ?", PASSAGES)
    table, stops = TokenTable.of(tiny_generator.tokenizer), sorted(tiny_generator.stop_ids)
    drawn = sample_answers(
        tiny_generator,
        prompt,
        6,
        constraint=lambda: SpanConstraint([], table, stops, whole=["paris", "denver"]),
        seed=2,
    )
    assert len(drawn) == 6 and set(drawn) <= {"paris", "denver"}


def test_disagreement_and_its_surprisal_tie_break() -> None:
    same = ReaderAnswer(text="Denver Broncos", samples=["Denver Broncos", "denver broncos"])
    half = ReaderAnswer(text="Denver Broncos", samples=["Denver Broncos", "Carolina Panthers"])
    assert same.disagreement == 0.0
    assert half.disagreement == pytest.approx(0.5)
    # Surprisal orders equal disagreement and never jumps over a disagreement step.
    assert (
        sampled_uncertainty(0.0, 0.1)
        < sampled_uncertainty(0.0, 3.0)
        < sampled_uncertainty(0.05, 0.0)
    )
    assert sampled_uncertainty(0.0, float("inf")) == pytest.approx(0.01)


def test_sample_refuses_bad_arguments(tiny_generator: Generator) -> None:
    ids = tiny_generator.prompt_ids(QUESTIONS[0], PASSAGES)
    with pytest.raises(ConfigError):
        tiny_generator.sample(ids, 0)
    with pytest.raises(ConfigError):
        tiny_generator.sample(ids, 2, temperature=0.0)
    with pytest.raises(ConfigError):
        tiny_generator.sample(ids, 2, logits_processors=[lambda g, x: x])


def test_yes_and_no_may_answer_beside_the_quotes() -> None:
    from setpoint.adapters.lora.reader import unquoted_answers
    from tests.unit.conftest import make_tokenizer

    # The tiny model's vocabulary has no "yes": the same tokenizer with the four words added.
    tokenizer = make_tokenizer(extra_words=["yes", "no", "Yes", "No"])
    vocab = tokenizer.get_vocab()
    table, stops = TokenTable.of(tokenizer), [vocab["<|im_end|>"]]
    for word in ("yes", "No"):  # a constraint follows one answer: a fresh one per word
        polar = unquoted_answers("Did the broncos win the game ?")  # as generate passes them
        texts = [*(p.text for p in PASSAGES), *polar]
        with_words = SpanConstraint(texts, table, stops)
        quotes_only = SpanConstraint([p.text for p in PASSAGES], table, stops)
        assert vocab[word] in with_words.allowed([])
        assert vocab[word] not in quotes_only.allowed([])  # no passage says it
        assert stops[0] in with_words.allowed([vocab[word]])  # the answer may end there
        which = [*(p.text for p in PASSAGES), *unquoted_answers("Which team won the game ?")]
        assert vocab[word] not in SpanConstraint(which, table, stops).allowed([])


def test_whole_texts_are_said_entire_or_not_at_all() -> None:
    """An alternative question's options: no piece of one, no stop half-way, nothing else."""
    from tests.unit.conftest import make_tokenizer

    # The word-level vocabulary spells no space: " broncos" joins the words as BPE does.
    tokenizer = make_tokenizer(extra_words=[" broncos"])
    vocab = tokenizer.get_vocab()
    table, stops = TokenTable.of(tokenizer), [vocab["<|im_end|>"]]
    constraint = SpanConstraint([], table, stops, whole=["denver broncos", "paris france"])
    first = set(constraint.allowed([]))
    assert {vocab["denver"], vocab["paris"]} <= first
    assert vocab["broncos"] not in first and stops[0] not in first  # no piece, no empty answer
    half = SpanConstraint([], table, stops, whole=["denver broncos", "paris france"])
    assert stops[0] not in half.allowed([vocab["denver"]])  # "denver" alone is no option
    assert half.allowed([vocab["denver"]]) == [vocab[" broncos"]]
    done = SpanConstraint([], table, stops, whole=["denver broncos", "paris france"])
    assert done.allowed([vocab["denver"], vocab[" broncos"]]) == stops
    # quotes of passages beside them still start anywhere a word does
    mixed = SpanConstraint([PASSAGES[0].text], table, stops, whole=["paris france"])
    assert vocab["broncos"] in mixed.allowed([])


def test_a_barred_start_is_never_said_again_from_any_place(tiny_generator: Generator) -> None:
    """A re-read bars its first answer as a start (whole words), wherever the passage has it."""
    passage = [Passage("c1", "France", "capital of france is the capital of france")]
    table = TokenTable.of(tiny_generator.tokenizer)

    def first_words(constraint: SpanConstraint) -> set[str]:
        return {table.text_of[i].strip() for i in constraint.allowed([])} - {""}

    free = SpanConstraint.for_generator(tiny_generator, passage)
    barred = SpanConstraint.for_generator(tiny_generator, passage, barred_starts=("capital",))
    assert "capital" in first_words(free)
    assert first_words(barred) == first_words(free) - {"capital"}
    # a longer barred text bars only the places where all of it follows
    longer = SpanConstraint.for_generator(
        tiny_generator, passage, barred_starts=("the capital of france",)
    )
    assert first_words(longer) == first_words(free) - {"the"}
    # random walks through a barred constraint still only spell quotes, none of them barred
    rng = random.Random(0)
    for _ in range(50):
        walk = SpanConstraint.for_generator(tiny_generator, passage, barred_starts=("capital",))
        ids: list[int] = []
        while (options := walk.allowed(ids)) and len(ids) < 8:
            token = rng.choice(options)
            if token in walk.stop_ids:
                break
            ids.append(token)
        said = normalised(walk.answer)
        assert said in normalised(passage[0].text)
        assert not (said + " ").startswith("capital ")
