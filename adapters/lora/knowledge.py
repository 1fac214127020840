"""Knowledge adapters as data: what each one learned (passages, hashes, questions), which fits a question, replay.

A knowledge adapter's training record (``training_record.json``) carries a ``learned``
section: the article titles and declared topics it covers, every passage it learned a fact
from (id, title, sha256 of the text, when it learned it) and the question/answer pairs it
was trained on. That section is what picks an adapter for a question (topic match), what
says its weights are stale (a learned passage changed in the index) and what ``tune
--update`` replays so an update does not forget. Everything here is pure or reads one JSON
file; the index lookups live in ``setpoint.tools.freshness``.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from setpoint.adapters.lora.qa_data import QARecord

__all__ = [
    "LEARNED_FORMAT",
    "AdapterCard",
    "LearnedPassage",
    "choose_by_signal",
    "learned_questions",
    "learned_section",
    "matching_question",
    "read_card",
    "replay_sample",
    "stale_ids",
    "text_sha256",
    "topic_matches",
]

LEARNED_FORMAT = "setpoint-learned/1"
_WORD = re.compile(r"\w+")


def text_sha256(text: str) -> str:
    """The content hash a record keeps per passage (whitespace-normalised, so re-wrapping is no edit).

    Example:
        >>> text_sha256("a  b") == text_sha256("a b\\n")
        True
    """
    return hashlib.sha256(" ".join(text.split()).encode()).hexdigest()


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower().replace("_", " "))


@dataclass(frozen=True)
class LearnedPassage:
    """One passage an adapter learned from: its content hash and when (Unix time) it was learned."""

    id: str
    title: str
    sha256: str | None
    learned_at: float
    #: Read from the index (a distilled pair): its absence later means it was deleted.
    indexed: bool = False


@dataclass(frozen=True)
class AdapterCard:
    """A knowledge adapter as the controller sees it: name, folder and what it learned."""

    name: str
    directory: str
    titles: tuple[str, ...] = ()
    topics: tuple[str, ...] = ()
    passages: Mapping[str, LearnedPassage] = field(default_factory=dict)
    questions: tuple[Mapping[str, str], ...] = ()

    @property
    def phrases(self) -> tuple[tuple[str, ...], ...]:
        """Declared topics and titles as word tuples (``Super_Bowl_50`` -> super, bowl, 50)."""
        seen = dict.fromkeys(tuple(_words(t)) for t in (*self.topics, *self.titles))
        return tuple(p for p in seen if p)


def _iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _unix(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def learned_section(
    questions: Sequence[QARecord],
    passages: Mapping[str, Any],
    *,
    topics: Sequence[str] = (),
    at: float | None = None,
    previous: Mapping[str, Any] | None = None,
    indexed: bool = False,
) -> dict[str, Any]:
    """The record's ``learned`` section after training on ``questions`` (merged into ``previous``).

    ``passages`` maps passage id to a passage (``.title``, ``.text``); a question whose
    passage is unknown is still recorded, its passage with no hash. Passages trained on
    again take the new time and hash; the others keep theirs, so an update does not make
    old knowledge look fresher than it is. ``indexed`` says the passages were read from the
    index (distillation), so their later absence from it is a deletion.

    Example:
        >>> from setpoint.adapters.model.generator import Passage
        >>> q = QARecord("q1", "Who won?", ("Denver",), "p1")
        >>> s = learned_section([q], {"p1": Passage("p1", "Bowl", "Denver won.")}, at=0.0)
        >>> s["titles"], sorted(s["passages"])
        (['Bowl'], ['p1'])
    """
    at = time.time() if at is None else at
    old = dict(previous or {})
    learned_passages: dict[str, Any] = dict(old.get("passages") or {})
    by_id: dict[str, dict[str, str]] = {q["id"]: dict(q) for q in old.get("questions") or []}
    for q in questions:
        by_id[q.id] = {
            "id": q.id,
            "question": q.question,
            "answer": q.target,
            "passage_id": q.passage_id,
        }
        passage = passages.get(q.passage_id)
        learned_passages[q.passage_id] = {
            "title": getattr(passage, "title", "") if passage is not None else "",
            "sha256": text_sha256(passage.text) if passage is not None else None,
            "learned_at": _iso(at),
            "indexed": indexed,
        }
    titles = sorted(
        {*old.get("titles", ()), *(p["title"] for p in learned_passages.values() if p["title"])}
    )
    return {
        "format": LEARNED_FORMAT,
        "titles": titles,
        "topics": sorted({*old.get("topics", ()), *topics}),
        "passages": dict(sorted(learned_passages.items())),
        "questions": list(by_id.values()),
    }


def learned_questions(learned: Mapping[str, Any]) -> list[QARecord]:
    """The question/answer pairs a ``learned`` section holds, as training records."""
    return [
        QARecord(str(q["id"]), str(q["question"]), (str(q["answer"]),), str(q["passage_id"]))
        for q in learned.get("questions") or []
        if q.get("answer")
    ]


def read_card(directory: str | Path, name: str | None = None) -> AdapterCard | None:
    """The card of the adapter in ``directory``, or None when it has no ``learned`` record."""
    folder = Path(directory).expanduser()
    try:
        record = json.loads((folder / "training_record.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    learned = record.get("learned") if isinstance(record, dict) else None
    if not isinstance(learned, dict):
        return None
    passages = {
        pid: LearnedPassage(
            pid,
            str(p.get("title") or ""),
            p.get("sha256"),
            _unix(str(p["learned_at"])),
            bool(p.get("indexed")),
        )
        for pid, p in (learned.get("passages") or {}).items()
    }
    return AdapterCard(
        name=name or folder.name,
        directory=str(folder),
        titles=tuple(learned.get("titles") or ()),
        topics=tuple(learned.get("topics") or ()),
        passages=passages,
        questions=tuple(learned.get("questions") or ()),
    )


# ---------------------------------------------------------------------------- choosing
def _contains(words: Sequence[str], phrase: Sequence[str]) -> bool:
    n = len(phrase)
    return any(tuple(words[i : i + n]) == tuple(phrase) for i in range(len(words) - n + 1))


def topic_matches(question: str, cards: Sequence[AdapterCard]) -> list[str]:
    """Names of the adapters whose declared topic or a learned title occurs in the question (whole words).

    Example:
        >>> topic_matches("Who won Super Bowl 50?", [AdapterCard("nfl", "/a", titles=("Super_Bowl_50",))])
        ['nfl']
    """
    words = _words(question)
    return [c.name for c in cards if any(_contains(words, p) for p in c.phrases)]


def choose_by_signal(signals: Mapping[str, float]) -> str:
    """The adapter with the lowest prefill signal (ties: the first given).

    Example:
        >>> choose_by_signal({"a": 2.0, "b": 0.5, "c": 0.5})
        'b'
    """
    if not signals:
        raise ValueError("choose_by_signal needs at least one adapter's signal")
    return min(signals, key=lambda name: signals[name])


def matching_question(
    question: str, learned: Iterable[Mapping[str, str]], *, min_overlap: float = 0.6
) -> Mapping[str, str] | None:
    """The learned question this one restates (word Jaccard >= ``min_overlap``), best first, or None."""
    words = set(_words(question))
    if not words:
        return None
    best, best_score = None, min_overlap
    for q in learned:
        other = set(_words(q.get("question", "")))
        score = len(words & other) / len(words | other) if other else 0.0
        if score >= best_score:
            best, best_score = q, score
    return best


def stale_ids(
    card: AdapterCard,
    changed: Mapping[str, Any],
    current_text: Mapping[str, str | None],
    seen_indexed: Iterable[str] = (),
) -> frozenset[str]:
    """Which learned passages no longer hold what the adapter learned from them.

    ``changed`` is ``changed_since``'s answer (id -> new edition, or None when absent);
    ``current_text`` the stored text of the changed ones that still exist. A re-written
    passage is stale unless its text hashes to what was learned (a re-ingest of the same
    content, e.g. into a fresh index, is no edit). An absent passage is stale only when it
    is known to have been indexed (``LearnedPassage.indexed``, or in ``seen_indexed``): a
    knowledge core tuned from files need not be in the index at all.

    Example:
        >>> card = AdapterCard("a", "/a", passages={"p": LearnedPassage("p", "", text_sha256("x"), 0.0)})
        >>> sorted(stale_ids(card, {"p": object()}, {"p": "y"})), sorted(stale_ids(card, {"p": object()}, {"p": "x"}))
        (['p'], [])
        >>> sorted(stale_ids(card, {"p": None}, {})), sorted(stale_ids(card, {"p": None}, {}, {"p"}))
        ([], ['p'])
    """
    seen = set(seen_indexed)
    stale = set()
    for pid, edition in changed.items():
        learned = card.passages.get(pid)
        if learned is None:
            continue
        if edition is None:
            if learned.indexed or pid in seen:
                stale.add(pid)
            continue
        text = current_text.get(pid)
        if text is None or learned.sha256 is None or text_sha256(text) != learned.sha256:
            stale.add(pid)
    return frozenset(stale)


# ---------------------------------------------------------------------------- updating
def replay_sample(
    old: Sequence[QARecord], fraction: float, *, exclude: Iterable[str] = (), seed: int = 0
) -> list[QARecord]:
    """A seeded sample of ``fraction`` of the old training pairs (ids in ``exclude`` left out).

    Example:
        >>> old = [QARecord(str(i), "?", ("a",), "p") for i in range(10)]
        >>> len(replay_sample(old, 0.3)), replay_sample(old, 0.0)
        (3, [])
    """
    if not 0 <= fraction <= 1:
        raise ValueError(f"replay fraction must be in [0, 1], got {fraction}")
    skip = set(exclude)
    pool = [q for q in old if q.id not in skip]
    random.Random(seed).shuffle(pool)
    return pool[: round(fraction * len(pool))]
