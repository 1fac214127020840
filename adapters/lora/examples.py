"""Training examples: questions grouped by shared context (RAFT reader contexts, closed-book pairs), encoded as prompts.

Questions that share a context (the same passages, or just the system prompt) are trained in
one step on a shared prefix (``training.group_loss``), so a group is the unit of training.
"""

from __future__ import annotations

import random
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from setpoint.adapters.lora.config import TuningConfig
from setpoint.adapters.lora.qa_data import QADataset, QARecord
from setpoint.adapters.model.prompts import Passage
from setpoint.errors import ModelError

if TYPE_CHECKING:
    from setpoint.adapters.model.generator import Generator

__all__ = [
    "DistractorRetriever",
    "StoreDistractors",
    "TrainingGroup",
    "encode_group",
    "knowledge_groups",
    "multihop_groups",
    "pair_groups",
    "reader_groups",
    "unanswerable_groups",
]


@dataclass(frozen=True)
class TrainingGroup:
    """Questions trained in one step because they share a context (``passages`` may be empty)."""

    passages: tuple[Passage, ...]
    items: tuple[QARecord, ...]


class DistractorRetriever(Protocol):
    """What picks distractors: ``Bm25Index`` or a wrapper around the Weaviate store."""

    def search(self, query: str, *, k: int = 3, exclude: Sequence[str] = ()) -> list[Any]: ...


class StoreDistractors:
    """Distractors from a passage store's hybrid search, limited to the training titles.

    Example:
        >>> StoreDistractors(store, titles=["Super_Bowl_50"]).search("Who won?", k=2)  # doctest: +SKIP
    """

    def __init__(self, store: Any, titles: Sequence[str], *, alpha: float = 0.5) -> None:
        self.store, self.titles, self.alpha = store, frozenset(titles), alpha

    def search(self, query: str, *, k: int = 3, exclude: Sequence[str] = ()) -> list[Any]:
        # Over-fetch: evaluation-title and excluded hits are dropped after the search.
        hits = self.store.hybrid_search(query, k=k + len(exclude) + 10, alpha=self.alpha)
        kept = [
            Passage(h.id, h.title, h.text)
            for h in hits
            if h.id not in set(exclude) and h.title in self.titles
        ]
        return kept[:k]


def reader_groups(
    dataset: QADataset,
    titles: Sequence[str],
    config: TuningConfig,
    retriever: DistractorRetriever | None,
) -> list[TrainingGroup]:
    """RAFT training contexts: each passage's questions with the gold passage and retrieved distractors.

    The retriever is queried with the group's questions and must only know training-title
    passages (the caller builds it so), so evaluation articles never reach the prompt. The
    gold passage's position is drawn at random, and ``gold_only_fraction`` of the contexts
    hold the gold passage alone (the "with the gold passage" setting).
    """
    rng = random.Random(config.seed)
    by_passage: dict[str, list[QARecord]] = defaultdict(list)
    for q in dataset.in_titles(titles):
        if q.target and q.target in dataset.passages[q.passage_id].text:
            by_passage[q.passage_id].append(q)
    chunks: list[tuple[QARecord, ...]] = []
    for pid in sorted(by_passage):
        questions = by_passage[pid]
        rng.shuffle(questions)
        chunks.extend(
            tuple(questions[i : i + config.group_size])
            for i in range(0, len(questions), config.group_size)
        )
    rng.shuffle(chunks)
    groups: list[TrainingGroup] = []
    # Distractors are retrieved only for the groups kept under max_examples.
    for group in _cap_examples(
        [TrainingGroup((), c) for c in chunks], config.max_examples, config.skip_examples
    ):
        gold = dataset.passages[group.items[0].passage_id]
        context: list[Passage] = [gold]
        if (
            config.distractors
            and retriever is not None
            and rng.random() >= config.gold_only_fraction
        ):
            query = " ".join(q.question for q in group.items)
            context = list(retriever.search(query, k=config.distractors, exclude=[gold.id]))
            context.insert(rng.randrange(len(context) + 1), gold)
        groups.append(TrainingGroup(tuple(context), group.items))
    return groups


def multihop_groups(
    dataset: QADataset, config: TuningConfig, *, limit: int | None = None
) -> list[TrainingGroup]:
    """Multi-passage reader contexts: every supporting passage of a question and its own distractors.

    One question per group (each has a context of its own): all of ``needed_ids`` plus up
    to ``config.multihop_distractors`` of the question's other paragraphs, in a seeded
    random order, so the answer (an attribute of the bridge entity) must be found past the
    passage that names the entity. Questions whose answer is no quote of a supporting
    passage (yes/no comparisons) are left out: the grounded reader can only quote.
    """
    rng = random.Random(config.seed)
    kept = [
        q
        for q in dataset.questions
        if q.target.lower() not in ("", "yes", "no")
        and any(_quotes(q.target, dataset.passages[p].text) for p in q.needed_ids)
    ]
    rng.shuffle(kept)
    groups = []
    for q in kept[:limit]:
        needed = set(q.needed_ids)
        others = [p for p in q.context_ids if p not in needed]
        rng.shuffle(others)
        ids = [*q.needed_ids, *others[: config.multihop_distractors]]
        rng.shuffle(ids)
        groups.append(TrainingGroup(tuple(dataset.passages[i] for i in ids), (q,)))
    return groups


def _quotes(answer: str, text: str) -> bool:
    """Whether ``answer`` occurs in ``text`` as whole words ("no" is not in "not").

    Example:
        >>> _quotes("no", "It is not known."), _quotes("Paris", "in Paris, France")
        (False, True)
    """
    return re.search(rf"(?<!\w){re.escape(answer)}(?!\w)", text) is not None


def unanswerable_groups(
    dataset: QADataset, titles: Sequence[str], config: TuningConfig, *, limit: int | None = None
) -> list[TrainingGroup]:
    """Contexts that do not answer their questions: SQuAD v2 ``is_impossible`` questions of ``titles``.

    Grouped by passage (``group_size``), the passage alone: a retrieved neighbour might hold
    the answer the question's own paragraph lacks. Every target is ``NO_ANSWER``.
    """
    rng = random.Random(config.seed)
    by_passage: dict[str, list[QARecord]] = defaultdict(list)
    for q in dataset.in_titles(titles):
        if q.impossible:
            by_passage[q.passage_id].append(q)
    chunks = [
        TrainingGroup((dataset.passages[pid],), tuple(qs[i : i + config.group_size]))
        for pid, qs in sorted(by_passage.items())
        for i in range(0, len(qs), config.group_size)
    ]
    rng.shuffle(chunks)
    return _cap_examples(chunks, limit)


def knowledge_groups(
    dataset: QADataset, titles: Sequence[str], config: TuningConfig
) -> list[TrainingGroup]:
    """Closed-book question/answer groups (the knowledge adapter of the answer route)."""
    groups = pair_groups(dataset.in_titles(titles), config)
    return _cap_examples(groups, config.max_examples, config.skip_examples)


def pair_groups(questions: Sequence[QARecord], config: TuningConfig) -> list[TrainingGroup]:
    """Closed-book groups of ``group_size`` from explicit pairs, in a seeded order (no caps)."""
    rng = random.Random(config.seed)
    kept = [q for q in questions if q.target]
    rng.shuffle(kept)
    return [
        TrainingGroup((), tuple(kept[i : i + config.group_size]))
        for i in range(0, len(kept), config.group_size)
    ]


def _cap_examples(
    groups: list[TrainingGroup], limit: int | None, skip: int = 0
) -> list[TrainingGroup]:
    if skip:
        # Whole groups only: a group's questions share one context and one step.
        skipped = 0
        while groups and skipped < skip:
            skipped += len(groups[0].items)
            groups = groups[1:]
    if limit is None:
        return groups
    kept, seen = [], 0
    for g in groups:
        if seen >= limit:
            break
        kept.append(
            g
            if seen + len(g.items) <= limit
            else TrainingGroup(g.passages, g.items[: limit - seen])
        )
        seen += len(kept[-1].items)
    return kept


def _end_token(tokenizer: Any) -> int:
    end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    if isinstance(end, int) and end != tokenizer.unk_token_id:
        return end
    if isinstance(tokenizer.eos_token_id, int):
        return int(tokenizer.eos_token_id)
    raise ModelError("the tokenizer has neither <|im_end|> nor an eos token to end answers with")


def encode_group(
    generator: Generator, group: TrainingGroup, *, max_context_tokens: int | None = None
) -> list[tuple[list[int], list[int]]]:
    """``(prompt ids, answer ids + end token)`` per question, prompts as the generator builds them.

    With ``max_context_tokens``, distractors are dropped (longest first) until the longest
    prompt fits; returns ``[]`` when even the gold (or supporting) passages alone are too long.
    """
    passages = list(group.passages)
    end = _end_token(generator.tokenizer)
    while True:
        prompts = [generator.prompt_ids(q.question, passages) for q in group.items]
        if max_context_tokens is None or max(len(p) for p in prompts) <= max_context_tokens:
            break
        gold_ids = {p for q in group.items for p in q.needed_ids}
        droppable = [p for p in passages if p.id not in gold_ids]
        if not droppable:
            return []
        passages.remove(max(droppable, key=lambda p: len(p.text)))
    return [
        (prompt, [*generator.tokenizer.encode(q.target, add_special_tokens=False), end])
        for prompt, q in zip(prompts, group.items, strict=True)
    ]
