"""The evaluation's question stream: SQuAD rows, a reproducible core/fringe title split, one seeded stream."""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from setpoint.errors import ConfigError

__all__ = ["EvalQuestion", "build_stream", "load_squad", "split_titles"]


@dataclass(frozen=True)
class EvalQuestion:
    id: str
    question: str
    answers: list[str]
    passage_id: str
    title: str
    part: str  # "core" or "fringe"


def load_squad(squad_dir: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Passages and questions from a SQuAD JSONL folder (``passages.jsonl``, ``questions.jsonl``).

    Read and checked by ``qa_data.load_squad`` (a missing file, a malformed line or a question
    naming an unknown passage is a one-line ``InputError``), as plain rows.
    """
    from setpoint.adapters.lora.qa_data import load_squad as read_squad

    data = read_squad(squad_dir, option="--squad-dir")
    passages = [{"id": p.id, "title": p.title, "text": p.text} for p in data.passages.values()]
    questions = [
        {"id": q.id, "question": q.question, "answers": list(q.answers), "passage_id": q.passage_id}
        for q in data.questions
    ]
    return passages, questions


def split_titles(
    titles: Iterable[str], core_fraction: float, seed: int
) -> tuple[set[str], set[str]]:
    """Split article titles into core and fringe sets, reproducibly.

    Example:
        >>> core, fringe = split_titles(["a", "b", "c", "d"], 0.5, seed=1)
        >>> len(core), len(fringe), core.isdisjoint(fringe)
        (2, 2, True)
    """
    if not 0.0 <= core_fraction <= 1.0:
        raise ConfigError(f"core fraction must be in [0, 1], got {core_fraction}")
    ordered = sorted(set(titles))
    random.Random(seed).shuffle(ordered)
    cut = round(len(ordered) * core_fraction)
    return set(ordered[:cut]), set(ordered[cut:])


def build_stream(
    questions: Sequence[dict[str, Any]],
    passages: Sequence[dict[str, Any]],
    *,
    core_titles: set[str],
    limit: int | None,
    seed: int,
    skip: int = 0,
) -> list[EvalQuestion]:
    """Core and fringe questions mixed into one seeded stream (``limit`` of it after the first ``skip``).

    ``setpoint calibrate`` reads the head of a stream and ``setpoint eval --skip`` the rest,
    so the probe and the setpoints are never chosen on the questions they are scored on.
    """
    title_of = {p["id"]: p["title"] for p in passages}
    stream = [
        EvalQuestion(
            q["id"],
            q["question"].strip(),
            list(q["answers"]),
            q["passage_id"],
            title_of[q["passage_id"]],
            "core" if title_of[q["passage_id"]] in core_titles else "fringe",
        )
        for q in questions
    ]
    random.Random(seed).shuffle(stream)
    stream = stream[skip:]
    return stream[:limit] if limit else stream
