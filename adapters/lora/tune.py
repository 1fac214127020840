"""One ``setpoint tune`` run end to end: split the data, build examples, train, save with its record, score held-out questions."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from setpoint.adapters.lora.config import TuningConfig
from setpoint.adapters.lora.examples import (
    DistractorRetriever,
    StoreDistractors,
    TrainingGroup,
    knowledge_groups,
    multihop_groups,
    reader_groups,
    unanswerable_groups,
)
from setpoint.adapters.lora.knowledge_training import train_knowledge
from setpoint.adapters.lora.qa_data import SQUAD_V2_TRAIN_TITLES, QADataset, QARecord, TitleSplit
from setpoint.adapters.lora.record import (
    RECORD_FILE,
    SPLIT_FILE,
    base_model_card,
    earlier_stage,
    training_record,
)
from setpoint.adapters.lora.training import TrainingReport, save_adapter, train_lora
from setpoint.errors import ConfigError

if TYPE_CHECKING:
    from setpoint.adapters.model.generator import Generator, Passage

__all__ = ["TuneResult", "evaluate_reader", "passages_digest", "reader_mix", "tune"]


@dataclass
class TuneResult:
    """Where ``tune`` saved the adapter, what training did and how the adapter read held-out questions."""

    directory: Path
    report: TrainingReport
    split: TitleSplit
    evaluation: dict[str, Any]


def tune(
    config: TuningConfig,
    *,
    data_dir: Path,
    out_dir: Path,
    generator_dir: Path,
    eval_fraction: float = 0.2,
    split_seed: int = 0,
    retriever: Literal["bm25", "weaviate"] = "bm25",
    store: Any = None,
    threads: int | None = None,
    eval_questions: int = 50,
    max_seconds: float | None = None,
    progress: bool = True,
    command: str = "",
    update: Path | None = None,
    replay_fraction: float = 0.5,
    topics: Sequence[str] = (),
    multihop: Sequence[Path] = (),
    unanswerable: Path | None = None,
    unanswerable_titles: Sequence[str] = SQUAD_V2_TRAIN_TITLES,
) -> TuneResult:
    """Train and save an adapter from SQuAD-format data; what ``setpoint tune`` runs.

    The title split is computed from the data (``split_seed``, ``eval_fraction``) and saved
    with the adapter; training reads only training titles, distractors included. After
    training, ``eval_questions`` evaluation-title questions are answered (with their gold
    passage for ``read``, closed book for ``qa``) and the scores go into the record.

    ``update`` (``qa`` only) extends that adapter instead of training a fresh one: the
    selected questions it has not learned yet, plus a ``replay_fraction`` sample of those it
    has (see ``train_knowledge``). ``topics`` are declared in the record for adapter
    selection.

    ``read`` can mix in more than SQuAD (``reader_mix``): the ``multihop`` training splits
    (multi-passage contexts, ``config.multihop_examples``) and the unanswerable questions
    of ``unanswerable_titles`` in the SQuAD v2 folder ``unanswerable``
    (``config.unanswerable_examples``, target ``NO_ANSWER``).

    Raises:
        InputError: the data folder is missing or malformed.
        ConfigError: a bad hyper-parameter or split.
        ModelError: the generator could not be loaded.
    """
    from setpoint.adapters.domain.lexical import Bm25Index
    from setpoint.adapters.lora.knowledge import learned_section
    from setpoint.adapters.lora.qa_data import load_squad, split_titles
    from setpoint.adapters.model.generator import Generator

    started = time.time()
    # Read before training: ``out_dir`` may be the adapter being continued.
    previous = earlier_stage(Path(config.init_adapter)) if config.init_adapter else None
    dataset = load_squad(data_dir)
    split = split_titles(dataset.question_counts(), eval_fraction=eval_fraction, seed=split_seed)
    train_passages = [p for p in dataset.passages.values() if p.title in set(split.train)]
    distractors: DistractorRetriever | None = None
    if config.task == "read" and config.distractors:
        if retriever == "weaviate":
            if store is None:
                raise ConfigError("retriever 'weaviate' needs a store")
            distractors = StoreDistractors(store, split.train)
        else:
            distractors = Bm25Index(train_passages)
    mix: list[dict[str, Any]] = []
    if config.task == "read":
        groups = reader_groups(dataset, split.train, config, distractors)
        mix = [{"source": "squad", "first_group": 0}]
        for source, extra in reader_mix(config, split, multihop, unanswerable, unanswerable_titles):
            mix.append({**source, "first_group": len(groups)})
            groups += extra
    elif multihop or unanswerable is not None:
        raise ConfigError(
            "--multihop and --unanswerable add reader data; use them with --task read"
        )
    else:
        groups = knowledge_groups(dataset, split.train, config)
    if update is not None and config.task != "qa":
        raise ConfigError("--update extends a knowledge adapter; use it with --task qa")
    generator = Generator.from_pretrained(generator_dir, threads=threads)
    if config.task == "qa":
        knowledge = train_knowledge(
            generator,
            [q for g in groups for q in g.items],
            dataset.passages,
            config,
            out_dir,
            update=update,
            replay_fraction=replay_fraction,
            topics=topics,
            kind="update" if update is not None else "tune",
            command=command,
            extra={
                "data": {
                    "directory": str(dataset.directory),
                    "sha256": dataset.fingerprint,
                    "training_questions": None,  # set below, once training chose them
                    "training_questions_available": sum(len(g.items) for g in groups),
                },
                "split": {
                    "file": SPLIT_FILE,
                    **{k: v for k, v in split.to_dict().items() if k != "rule"},
                },
            },
            progress=progress,
            max_seconds=max_seconds,
        )
        split.save(knowledge.directory / SPLIT_FILE)
        data = {**knowledge.record["data"], "training_questions": len(knowledge.new_questions)}
        _patch_record(knowledge.directory, {"data": data})
        return _evaluate_tuned(
            generator,
            knowledge.directory,
            dataset,
            split,
            config,
            eval_questions,
            knowledge.report,
            split_seed,
        )
    model, report = train_lora(
        generator, groups, config, progress=progress, max_seconds=max_seconds
    )
    trained = [groups[i] for i in dict.fromkeys(report.trained_groups)]
    seen_passages = sorted(
        {p.id: p for g in trained for p in g.passages}.values(), key=lambda p: p.id
    )
    record: dict[str, Any] = {
        "task": config.task,
        "command": command,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "base_model": base_model_card(generator),
        "data": {
            "directory": str(dataset.directory),
            "sha256": dataset.fingerprint,
            "training_questions": sum(len(g.items) for g in trained),
            "training_questions_available": sum(len(g.items) for g in groups),
            "training_passages": len(seen_passages) if config.task == "read" else 0,
            "training_passages_sha256": passages_digest(seen_passages) if seen_passages else None,
        },
        "split": {"file": SPLIT_FILE, **{k: v for k, v in split.to_dict().items() if k != "rule"}},
        "mix": _mix_counts(mix, groups, report.trained_groups),
        "distractors": (
            None
            if distractors is None
            else "BM25 (k1 1.2, b 0.75) over training-title passages, queried with the group's questions"
            if retriever == "bm25"
            else "Weaviate hybrid search (alpha 0.5), hits from evaluation titles dropped"
        ),
        "training": report.to_dict(),
        "continued_from": previous,
        "learned": learned_section(
            [q for g in trained for q in g.items],
            {p.id: p for p in seen_passages},
            topics=topics,
            at=started,
        ),
    }
    directory = save_adapter(model, out_dir, config=config, record=record, split=split)
    generator.model = model.unload()
    return _evaluate_tuned(
        generator, directory, dataset, split, config, eval_questions, report, split_seed
    )


def reader_mix(
    config: TuningConfig,
    split: TitleSplit,
    multihop: Sequence[Path],
    unanswerable: Path | None,
    unanswerable_titles: Sequence[str],
) -> list[tuple[dict[str, Any], list[TrainingGroup]]]:
    """The reader's data beyond SQuAD: (record entry, groups) per source.

    Raises:
        ConfigError: an unanswerable title is one of the split's evaluation titles.
        InputError: a folder is missing or malformed, or not a training split.
    """
    import random

    from setpoint.adapters.lora.qa_data import load_multihop, load_squad

    out: list[tuple[dict[str, Any], list[TrainingGroup]]] = []
    if multihop:
        sets = [load_multihop(Path(d)) for d in multihop]
        pooled = [g for d in sets for g in multihop_groups(d, config)]
        # Pooled, then capped: each folder contributes in proportion to its size.
        random.Random(config.seed).shuffle(pooled)
        kept = pooled[: config.multihop_examples]
        out.append((_source("multihop", sets, len(pooled)), kept))
    if unanswerable is not None:
        spent = sorted(set(unanswerable_titles) & set(split.eval))
        if spent:
            raise ConfigError(
                f"unanswerable titles {spent} are evaluation titles of the split; "
                "a set-aside dev part must be training titles"
            )
        v2 = load_squad(Path(unanswerable), option="--unanswerable", unanswerable=True)
        groups = unanswerable_groups(
            v2, unanswerable_titles, config, limit=config.unanswerable_examples
        )
        titled = v2.in_titles(unanswerable_titles)
        entry = _source("unanswerable", [v2], sum(q.impossible for q in titled))
        out.append(({**entry, "titles": list(unanswerable_titles)}, groups))
    return out


def _source(name: str, sets: Sequence[QADataset], available: int) -> dict[str, Any]:
    return {
        "source": name,
        "directories": [str(d.directory) for d in sets],
        "sha256": [d.fingerprint for d in sets],
        "questions_available": available,
    }


def _mix_counts(
    mix: Sequence[dict[str, Any]], groups: Sequence[TrainingGroup], trained: Sequence[int]
) -> list[dict[str, Any]]:
    """Each source of the reader's data with how many of its questions training reached."""
    seen = set(trained)
    out = []
    for i, source in enumerate(mix):
        end = mix[i + 1]["first_group"] if i + 1 < len(mix) else len(groups)
        span = range(source["first_group"], end)
        entry = {k: v for k, v in source.items() if k != "first_group"}
        entry["questions_built"] = sum(len(groups[g].items) for g in span)
        entry["training_questions"] = sum(len(groups[g].items) for g in span if g in seen)
        out.append(entry)
    return out


def passages_digest(passages: Sequence[Passage]) -> str:
    """A version stamp of the passages a run read: sha256 over sorted ``id\\ttext`` lines."""
    digest = hashlib.sha256()
    for p in sorted(passages, key=lambda p: p.id):
        digest.update(f"{p.id}\t{p.text}\n".encode())
    return digest.hexdigest()


def _patch_record(directory: Path, changes: dict[str, Any]) -> None:
    record = training_record(directory)
    record.update(changes)
    (directory / RECORD_FILE).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")


def _evaluate_tuned(
    generator: Generator,
    directory: Path,
    dataset: QADataset,
    split: TitleSplit,
    config: TuningConfig,
    eval_questions: int,
    report: TrainingReport,
    split_seed: int,
) -> TuneResult:
    """Answer ``eval_questions`` evaluation-title questions with the saved adapter; record the scores."""
    from setpoint.adapters.lora.qa_data import sample_questions

    evaluation: dict[str, Any] = {}
    if eval_questions > 0:
        generator.load_adapter(directory)
        picked = sample_questions(dataset.in_titles(split.eval), eval_questions, seed=split_seed)
        evaluation = evaluate_reader(generator, dataset, picked, closed_book=config.task == "qa")
        _patch_record(directory, {"evaluation": evaluation})
    return TuneResult(directory, report, split, evaluation)


def evaluate_reader(
    generator: Generator,
    dataset: QADataset,
    questions: Sequence[QARecord],
    *,
    closed_book: bool = False,
    max_new_tokens: int = 24,
) -> dict[str, Any]:
    """EM and F1 of greedy answers (gold passage in the prompt unless ``closed_book``)."""
    from setpoint.adapters.domain.metrics import best_exact_match, best_f1
    from setpoint.adapters.model.quoting import answer_question

    em = f1 = 0.0
    for q in questions:
        passages = () if closed_book else (dataset.passages[q.passage_id],)
        answer = answer_question(generator, q.question, passages, max_new_tokens=max_new_tokens)
        em += best_exact_match(answer.text, q.answers)
        f1 += best_f1(answer.text, q.answers)
    n = max(len(questions), 1)
    return {
        "questions": len(questions),
        "context": "closed book" if closed_book else "gold passage",
        "exact_match": round(em / n, 4),
        "f1": round(f1 / n, 4),
    }
