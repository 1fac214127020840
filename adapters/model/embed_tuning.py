"""Fine-tuning the sentence embedder on question -> passage pairs: in-batch and mined hard negatives, saved with its record."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from setpoint.adapters.model.embed_eval import (
    load_sentence_transformer,
    passage_text,
    retrieval_scores,
)
from setpoint.errors import ConfigError

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

    from setpoint.adapters.lora.qa_data import QADataset, QARecord, TitleSplit

__all__ = [
    "EmbedExample",
    "EmbedTuneResult",
    "EmbedTuningConfig",
    "contrastive_loss",
    "mine_examples",
    "multihop_examples",
    "train_embedder",
    "tune_embedder",
]

Miner = Literal["bm25", "vectors"]


@dataclass(frozen=True)
class EmbedTuningConfig:
    """Hyper-parameters of one embedder tuning run; saved in the embedder's training record.

    Example:
        >>> EmbedTuningConfig(batch_size=1)
        Traceback (most recent call last):
        ...
        setpoint.errors.ConfigError: batch_size must be at least 2 (in-batch negatives), got 1
    """

    learning_rate: float = 3e-5
    epochs: int = 1
    #: Questions per step; every other question's passage in the step is a negative.
    batch_size: int = 32
    #: Mined passages per question that look relevant but are not the gold one.
    hard_negatives: int = 1
    miner: Miner = "bm25"
    warmup_ratio: float = 0.1
    max_examples: int | None = None
    max_steps: int | None = None
    max_seq_length: int = 256
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0 < self.learning_rate < 1:
            raise ConfigError(f"learning_rate must be in (0, 1), got {self.learning_rate}")
        if self.batch_size < 2:
            raise ConfigError(
                f"batch_size must be at least 2 (in-batch negatives), got {self.batch_size}"
            )
        if self.epochs < 1 or self.hard_negatives < 0 or self.max_seq_length < 8:
            raise ConfigError("epochs >= 1, hard_negatives >= 0 and max_seq_length >= 8 please")
        if self.miner not in ("bm25", "vectors"):
            raise ConfigError(f"miner must be 'bm25' or 'vectors', got {self.miner!r}")
        if not 0 <= self.warmup_ratio < 1:
            raise ConfigError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        for name in ("max_examples", "max_steps"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"{name} must be at least 1 (or None for no limit), got {value}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class EmbedExample:
    """One training row: a question, its gold passage, and passages that are not it."""

    anchor: str
    positive: str
    negatives: tuple[str, ...] = ()


@dataclass
class EmbedTuneResult:
    """Where the tuned embedder went, and what training and evaluation measured."""

    directory: Path
    record: dict[str, Any]
    split: TitleSplit
    losses: list[float] = field(default_factory=list)


def _false_negative(passage: Any, gold: Any, question: QARecord) -> bool:
    # A passage that holds the answer is another right passage, not a negative.
    text = str(passage.text).lower()
    return passage.id == gold.id or any(a.strip() and a.lower() in text for a in question.answers)


def mine_examples(
    dataset: QADataset,
    titles: Sequence[str],
    config: EmbedTuningConfig,
    *,
    model: SentenceTransformer | None = None,
) -> list[EmbedExample]:
    """Training rows from the questions of ``titles``; negatives come from those titles only.

    Hard negatives are the best-ranked passages that are neither the gold passage nor
    hold one of the gold answers: by BM25 (``miner="bm25"``) or by ``model``'s vectors
    (``"vectors"``, the embedder before tuning). Deterministic for a config.
    """
    import random

    from setpoint.adapters.domain.lexical import Bm25Index

    keep = set(titles)
    passages = [p for p in dataset.passages.values() if p.title in keep]
    questions = dataset.in_titles(titles)
    random.Random(config.seed).shuffle(questions)
    if config.max_examples is not None:
        questions = questions[: config.max_examples]
    if not questions:
        raise ConfigError("no training questions in the training titles")
    depth = config.hard_negatives + 8
    ranked: list[list[Any]]
    if config.hard_negatives == 0:
        ranked = [[] for _ in questions]
    elif config.miner == "bm25":
        index = Bm25Index(passages)
        ranked = [index.search(q.question, k=depth) for q in questions]
    else:
        if model is None:
            raise ConfigError("the 'vectors' miner needs the embedder to mine with")
        ranked = _nearest(model, [q.question for q in questions], passages, depth)
    rows = []
    filler = random.Random(config.seed)
    for q, hits in zip(questions, ranked, strict=True):
        gold = dataset.passages[q.passage_id]
        negatives = [p for p in hits if not _false_negative(p, gold, q)][: config.hard_negatives]
        if len(negatives) < config.hard_negatives:
            # The ranking ran dry (short answers such as a year are in many passages): fill
            # with random training passages, or the width cut below would strip every row.
            negatives += _random_negatives(
                passages, negatives, gold, q, config.hard_negatives - len(negatives), filler
            )
        rows.append(
            EmbedExample(q.question, passage_text(gold), tuple(passage_text(p) for p in negatives))
        )
    return _even_width(rows, config.hard_negatives)


def _even_width(rows: list[EmbedExample], wanted: int) -> list[EmbedExample]:
    # A row short of negatives cannot share a table with full ones. Only a question whose
    # answer is in nearly every passage (a one-character answer) stays short: leave such
    # rows out rather than cut every row's negatives down to theirs.
    full = [r for r in rows if len(r.negatives) == wanted]
    if full:
        return full
    width = min(len(r.negatives) for r in rows)
    return [EmbedExample(r.anchor, r.positive, r.negatives[:width]) for r in rows]


def multihop_examples(
    datasets: Sequence[QADataset], config: EmbedTuningConfig
) -> list[EmbedExample]:
    """Training rows from multi-hop training splits: one per (question, supporting passage).

    Every supporting passage is a right answer to the question, so each is a positive of
    its own row (the no-duplicates batch sampler keeps a question's rows out of each
    other's batch). Hard negatives are the question's own non-supporting paragraphs,
    distractors by construction, drawn with ``config.seed``; a passage holding a gold
    answer is never one. ``config.max_examples`` caps questions, not rows.
    """
    import random

    rng = random.Random(config.seed)
    questions = [(d, q) for d in datasets for q in d.questions]
    rng.shuffle(questions)
    if config.max_examples is not None:
        questions = questions[: config.max_examples]
    if not questions:
        raise ConfigError("no questions in the multi-hop training splits")
    rows = []
    for dataset, q in questions:
        pool = list(dataset.passages.values())
        for pid in q.needed_ids:
            gold = dataset.passages[pid]
            distractors = [
                dataset.passages[c]
                for c in q.context_ids
                if c not in q.needed_ids and not _false_negative(dataset.passages[c], gold, q)
            ]
            negatives = rng.sample(distractors, min(config.hard_negatives, len(distractors)))
            if len(negatives) < config.hard_negatives:
                # Too few distractors of its own: top up from the split's other paragraphs.
                negatives += _random_negatives(
                    [p for p in pool if p.id not in q.needed_ids],
                    negatives,
                    gold,
                    q,
                    config.hard_negatives - len(negatives),
                    rng,
                )
            rows.append(
                EmbedExample(
                    q.question, passage_text(gold), tuple(passage_text(p) for p in negatives)
                )
            )
    return _even_width(rows, config.hard_negatives)


def _random_negatives(
    passages: list[Any], taken: list[Any], gold: Any, question: QARecord, n: int, rng: Any
) -> list[Any]:
    chosen = {p.id for p in taken}
    out: list[Any] = []
    for p in rng.sample(passages, len(passages)):
        if len(out) == n:
            break
        if p.id not in chosen and not _false_negative(p, gold, question):
            out.append(p)
    return out


def _nearest(
    model: SentenceTransformer, queries: list[str], passages: list[Any], k: int
) -> list[list[Any]]:
    import numpy as np

    def encode(texts: list[str]) -> Any:
        return model.encode(texts, batch_size=32, normalize_embeddings=True, convert_to_numpy=True)

    vectors = encode([passage_text(p) for p in passages])
    scores = encode(queries) @ vectors.T
    order = np.argsort(-scores, axis=1)[:, :k]
    return [[passages[int(i)] for i in row] for row in order]


def train_embedder(
    model: SentenceTransformer,
    examples: Sequence[EmbedExample],
    config: EmbedTuningConfig,
    *,
    progress: bool = True,
) -> dict[str, Any]:
    """Fine-tune ``model`` in place with MultipleNegativesRankingLoss (sentence-transformers' trainer).

    Every other passage of a batch is a negative for a question, and so are its mined
    hard negatives; batches never hold one text twice (a duplicate would be a false
    negative). Returns the training section of the record: steps, seconds, per-step
    losses, and the contrastive loss on the training rows before and after.
    """
    from datasets import Dataset
    from sentence_transformers import (
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
    )
    from sentence_transformers.sentence_transformer.losses import (
        MultipleNegativesRankingLoss,
    )
    from sentence_transformers.sentence_transformer.training_args import BatchSamplers

    columns: dict[str, list[str]] = {
        "anchor": [e.anchor for e in examples],
        "positive": [e.positive for e in examples],
    }
    for n in range(len(examples[0].negatives) if examples else 0):
        columns[f"negative_{n + 1}"] = [e.negatives[n] for e in examples]
    data = Dataset.from_dict(columns)
    model.max_seq_length = config.max_seq_length
    with tempfile.TemporaryDirectory(prefix="setpoint-embed-") as scratch:
        args = SentenceTransformerTrainingArguments(
            output_dir=scratch,
            num_train_epochs=config.epochs,
            max_steps=config.max_steps or -1,
            per_device_train_batch_size=config.batch_size,
            per_device_eval_batch_size=config.batch_size,
            learning_rate=config.learning_rate,
            warmup_steps=config.warmup_ratio,  # a float below 1: a share of the steps
            seed=config.seed,
            batch_sampler=BatchSamplers.NO_DUPLICATES,
            logging_steps=1,
            save_strategy="no",
            report_to="none",
            # Pinned memory only helps a copy to an accelerator; on CPU torch warns about it.
            dataloader_pin_memory=False,
            disable_tqdm=not progress,
        )
        trainer = SentenceTransformerTrainer(
            model=model,
            args=args,
            train_dataset=data,
            loss=MultipleNegativesRankingLoss(model),
        )
        before = contrastive_loss(model, trainer.loss, examples, config.batch_size)
        started = time.perf_counter()
        output = trainer.train()
        seconds = time.perf_counter() - started
        after = contrastive_loss(model, trainer.loss, examples, config.batch_size)
        losses = [float(e["loss"]) for e in trainer.state.log_history if "loss" in e]
    return {
        "loss": "MultipleNegativesRankingLoss (in-batch + mined hard negatives, cosine x 20)",
        "rows": len(examples),
        "hard_negatives_per_row": len(examples[0].negatives) if examples else 0,
        "steps": int(output.global_step),
        "seconds": round(seconds, 1),
        "rows_per_s": round(len(examples) * config.epochs / seconds, 1) if seconds else None,
        "loss_before": round(before, 4),
        "loss_after": round(after, 4),
        "losses": [round(v, 4) for v in losses],
    }


def contrastive_loss(
    model: SentenceTransformer, loss: Any, examples: Sequence[EmbedExample], batch_size: int
) -> float:
    """Mean training loss over ``examples`` in file order, without dropout or updates."""
    import torch

    model.eval()
    total, seen = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(examples) - 1, batch_size):
            batch = examples[start : start + batch_size]
            columns = [[e.anchor for e in batch], [e.positive for e in batch]]
            columns += [[e.negatives[n] for e in batch] for n in range(len(batch[0].negatives))]
            features = [
                {
                    k: v.to(model.device) if isinstance(v, torch.Tensor) else v
                    for k, v in model.tokenize(texts).items()
                }
                for texts in columns
            ]
            total += float(loss(features, None)) * len(batch)
            seen += len(batch)
    return total / max(seen, 1)


def vector_name_for(folder_name: str, digest: str) -> str:
    """A Weaviate named-vector name for one embedder version (letters, digits, underscores).

    Example:
        >>> vector_name_for("minilm-embed-v2", "0123456789abcdef")
        'minilm_embed_v2_01234567'
    """
    stem = re.sub(r"[^0-9A-Za-z_]", "_", folder_name).strip("_") or "embedder"
    if not stem[0].isalpha():
        stem = f"e_{stem}"
    return f"{stem[:60]}_{digest[:8]}"


def _next_version(out_dir: Path, stem: str) -> Path:
    taken = {p.name for p in out_dir.glob(f"{stem}-v*")} if out_dir.is_dir() else set()
    n = 1
    while f"{stem}-v{n}" in taken:
        n += 1
    return out_dir / f"{stem}-v{n}"


def tune_embedder(
    config: EmbedTuningConfig,
    *,
    data_dir: Path,
    out_dir: Path,
    base_dir: Path,
    eval_fraction: float = 0.2,
    split_seed: int = 0,
    eval_questions: int = 500,
    progress: bool = True,
    command: str = "",
    device: str | None = None,
    multihop: Sequence[Path] = (),
) -> EmbedTuneResult:
    """What ``setpoint tune --task embed`` runs: split, mine, train, save a new version, score.

    The title split comes from the data (``split_seed``, ``eval_fraction``); training and
    mining read training titles only. Recall is measured on up to ``eval_questions``
    evaluation-title questions against every evaluation-title passage, before and after.
    The model goes to ``out_dir/<stem>-v<N>`` (the next free N), with ``split.json`` and
    ``training_record.json`` beside sentence-transformers' files. With ``multihop``
    (training splits only; a dev split is refused), the rows come from those splits
    instead of SQuAD's training titles (``multihop_examples``), and the SQuAD evaluation
    titles still score before and after: whether the other domain got worse.

    Raises:
        ConfigError: the base folder is not a sentence-transformers model, or a bad setting.
        InputError: the data folder is missing or malformed.
    """
    from setpoint.adapters.lora.qa_data import (
        load_multihop,
        load_squad,
        sample_questions,
        split_titles,
    )
    from setpoint.adapters.lora.record import RECORD_FILE, SPLIT_FILE

    started = time.time()
    model = load_sentence_transformer(base_dir, device=device)
    dataset = load_squad(data_dir)
    split = split_titles(dataset.question_counts(), eval_fraction=eval_fraction, seed=split_seed)
    hops = [load_multihop(d) for d in multihop]
    if hops:
        examples = multihop_examples(hops, config)
    else:
        examples = mine_examples(dataset, split.train, config, model=model)
    eval_set = sample_questions(dataset.in_titles(split.eval), eval_questions, seed=split_seed)
    eval_passages = [p for p in dataset.passages.values() if p.title in set(split.eval)]
    before = retrieval_scores(model, eval_set, eval_passages) if eval_set else {}
    training = train_embedder(model, examples, config, progress=progress)
    after = retrieval_scores(model, eval_set, eval_passages) if eval_set else {}
    out_dir = Path(out_dir).expanduser()
    target = _next_version(out_dir, "embedder")
    digest = hashlib.sha256(
        json.dumps([dataset.fingerprint, config.to_dict(), started], sort_keys=True).encode()
    ).hexdigest()
    record: dict[str, Any] = {
        "task": "embed",
        "command": command,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "vector_name": vector_name_for(target.name, digest),
        "base_model": {
            "directory": str(base_dir),
            # sentence-transformers 6 renamed the getter (the old one warns); 5.x has only it.
            "dimension": getattr(
                model, "get_embedding_dimension", model.get_sentence_embedding_dimension
            )(),
        },
        "data": {
            "directory": str(dataset.directory),
            "sha256": dataset.fingerprint,
            "training_questions": len({e.anchor for e in examples}) if hops else len(examples),
            "hard_negatives_from": (
                "BM25 (k1 1.2, b 0.75) over training-title passages"
                if config.miner == "bm25"
                else "the base embedder's nearest training-title passages"
            )
            + "; the gold passage and passages holding a gold answer left out",
            **(
                {
                    "trained_on": "multi-hop training splits (one row per supporting passage); "
                    "SQuAD only scores",
                    "multihop": [
                        {"directory": str(d.directory.resolve()), "sha256": d.fingerprint}
                        for d in hops
                    ],
                    "hard_negatives_from": "the question's own non-supporting paragraphs "
                    "(topped up from the split's others); passages holding a gold answer left out",
                }
                if hops
                else {}
            ),
        },
        "split": {"file": SPLIT_FILE, **{k: v for k, v in split.to_dict().items() if k != "rule"}},
        "config": config.to_dict(),
        "training": training,
        "evaluation": {
            "questions": len(eval_set),
            "passages": len(eval_passages),
            "titles": "evaluation titles only (never seen in training or mining)",
            "before": before,
            "after": after,
        },
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=out_dir))
    try:
        model.save(str(tmp))
        split.save(tmp / SPLIT_FILE)
        (tmp / RECORD_FILE).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        tmp.rename(target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return EmbedTuneResult(target, record, split, training["losses"])
