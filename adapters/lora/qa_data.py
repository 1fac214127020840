"""Question/answer data in SQuAD format: loading, the title split that keeps evaluation articles unseen, fingerprints."""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from setpoint.adapters.domain.json_file import hash_file
from setpoint.errors import ConfigError, InputError

__all__ = [
    "NO_ANSWER",
    "SQUAD_V2_TRAIN_TITLES",
    "QADataset",
    "QARecord",
    "TitleSplit",
    "default_squad_dir",
    "file_sha256",
    "load_multihop",
    "load_squad",
    "sample_questions",
    "split_titles",
]

#: What the reader is trained to say when its passages do not answer the question (one
#: word, so grounded decoding admits it whole and no shorter piece of it).
NO_ANSWER = "unanswerable"

#: The set-aside dev part of SQuAD v2 whose unanswerable questions the reader learns from.
#: Training titles of the reader's SQuAD split (so no evaluation title is spent), and
#: disjoint from ``benchmarks/reader_setpoint.py``'s ``DEV_TITLES``; the benchmarks that
#: score SQuAD v2 leave these titles out.
SQUAD_V2_TRAIN_TITLES = ("Packet_switching", "Steam_engine", "Warsaw")


@dataclass(frozen=True)
class QARecord:
    """One question with its gold answers and the passage they come from."""

    id: str
    question: str
    answers: tuple[str, ...]
    passage_id: str
    #: Every passage the answer needs (multi-hop: all supporting ones); empty: ``passage_id``.
    supporting_ids: tuple[str, ...] = ()
    #: The question's own context in multi-hop sets: supporting and distractor paragraphs.
    context_ids: tuple[str, ...] = ()
    #: No answer is in the passage (SQuAD v2 ``is_impossible``): the target is ``NO_ANSWER``.
    impossible: bool = False

    @property
    def needed_ids(self) -> tuple[str, ...]:
        """The passages a context must keep for the question to be answerable from it."""
        return self.supporting_ids or (self.passage_id,)

    @property
    def target(self) -> str:
        """The answer to train on: the one most annotators gave, the shortest among ties.

        Example:
            >>> QARecord("q", "?", ("Denver Broncos", "the Broncos", "Denver Broncos"), "p").target
            'Denver Broncos'
            >>> QARecord("q", "?", (), "p", impossible=True).target
            'unanswerable'
        """
        if self.impossible:
            return NO_ANSWER
        counts = Counter(a.strip() for a in self.answers if a.strip())
        if not counts:
            return ""
        return min(counts, key=lambda a: (-counts[a], len(a), a))


@dataclass(frozen=True)
class QADataset:
    """Passages by id, questions, and where they were read from (with content hashes)."""

    passages: dict[str, Any]  # id -> setpoint.adapters.model.generator.Passage
    questions: list[QARecord]
    directory: Path
    fingerprint: dict[str, str] = field(default_factory=dict)

    def title_of(self, question: QARecord) -> str:
        return str(self.passages[question.passage_id].title)

    def question_counts(self) -> Counter[str]:
        """Questions per article title."""
        return Counter(self.title_of(q) for q in self.questions)

    def in_titles(self, titles: Iterable[str]) -> list[QARecord]:
        """The questions whose passage belongs to one of ``titles``, in file order."""
        keep = set(titles)
        return [q for q in self.questions if self.title_of(q) in keep]


def default_squad_dir() -> Path:
    """``SETPOINT_SQUAD_DIR``, else ``../shared/data/squad`` beside the working directory's repo."""
    explicit = os.environ.get("SETPOINT_SQUAD_DIR")
    if explicit:
        return Path(explicit).expanduser()
    return (Path.cwd() / ".." / "shared" / "data" / "squad").resolve()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    hash_file(digest, path)
    return digest.hexdigest()


def _read_lines(path: Path, option: str, required: tuple[str, ...]) -> list[dict[str, Any]]:
    if not path.is_file():
        raise InputError(
            f"{path} not found; point {option} (or SETPOINT_SQUAD_DIR) at a folder with "
            "passages.jsonl and questions.jsonl"
        )
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}:{number}: invalid JSON ({exc.msg})") from None
        if not isinstance(row, dict):
            raise InputError(f"{path}:{number}: expected a JSON object")
        missing = [key for key in required if row.get(key) in (None, "")]
        if missing:
            raise InputError(f"{path}:{number}: no {' or '.join(repr(k) for k in missing)}")
        rows.append(row)
    return rows


def load_squad(directory: Path, *, option: str = "--data", unanswerable: bool = False) -> QADataset:
    """Read ``passages.jsonl`` ({id, title, text}) and ``questions.jsonl`` ({id, question, answers, passage_id}).

    ``option`` is the command-line flag that names the folder, for the error messages.
    ``unanswerable`` also keeps SQuAD v2's ``is_impossible`` questions (no answers).

    Raises:
        InputError: a file is missing or malformed, or a question names an unknown passage.
    """
    passages, rows, directory, fingerprint = _read_folder(directory, option)
    questions = []
    for row in rows:
        pid = str(row.get("passage_id", ""))
        if pid not in passages:
            raise InputError(f"question {row.get('id')!r} names unknown passage {pid!r}")
        answers = tuple(str(a) for a in row.get("answers") or ())
        impossible = unanswerable and bool(row.get("is_impossible"))
        if not answers and not impossible:
            raise InputError(f"question {row.get('id')!r} has no answers")
        questions.append(
            QARecord(str(row["id"]), str(row["question"]), answers, pid, impossible=impossible)
        )
    return QADataset(passages, questions, directory, fingerprint)


def load_multihop(directory: Path, *, option: str = "--multihop") -> QADataset:
    """A multi-hop training split: questions with ``supporting_ids`` and their own ``passage_ids``.

    Only rows marked ``"split": "train"`` are accepted: a dev set's questions are scored,
    never learned from.

    Raises:
        InputError: a file is missing or malformed, a question names an unknown passage or
            has no supporting passage, or a row is not from a training split.
    """
    passages, rows, directory, fingerprint = _read_folder(directory, option)
    questions = []
    for row in rows:
        qid = row.get("id")
        if row.get("split") != "train":
            raise InputError(
                f"{directory}: question {qid!r} is from split {row.get('split')!r}, not 'train'; "
                "only training splits are learned from"
            )
        supporting = tuple(str(p) for p in row.get("supporting_ids") or ())
        context = tuple(str(p) for p in row.get("passage_ids") or supporting)
        unknown = [p for p in (*supporting, *context) if p not in passages]
        if not supporting or unknown:
            raise InputError(f"question {qid!r}: no supporting passage, or unknown {unknown[:3]}")
        answers = tuple(str(a) for a in row.get("answers") or ())
        if not answers:
            raise InputError(f"question {qid!r} has no answers")
        questions.append(
            QARecord(str(qid), str(row["question"]), answers, supporting[0], supporting, context)
        )
    return QADataset(passages, questions, directory, fingerprint)


def _read_folder(
    directory: Path, option: str
) -> tuple[dict[str, Any], list[dict[str, Any]], Path, dict[str, str]]:
    """(passages by id, question rows, the folder, content hashes) of a data folder."""
    from setpoint.adapters.model.generator import Passage

    directory = Path(directory).expanduser()
    passages_file, questions_file = directory / "passages.jsonl", directory / "questions.jsonl"
    passages = {
        str(row["id"]): Passage(str(row["id"]), str(row.get("title") or ""), str(row["text"]))
        for row in _read_lines(passages_file, option, ("id", "text"))
    }
    rows = _read_lines(questions_file, option, ("id", "question"))
    fingerprint = {
        "passages.jsonl": file_sha256(passages_file),
        "questions.jsonl": file_sha256(questions_file),
    }
    return passages, rows, directory, fingerprint


@dataclass(frozen=True)
class TitleSplit:
    """Article titles for training and for evaluation; no title is in both.

    Example:
        >>> TitleSplit(train=("A",), eval=("B",)).is_eval("B")
        True
    """

    train: tuple[str, ...]
    eval: tuple[str, ...]
    seed: int = 0
    eval_fraction: float = 0.2
    rule: str = (
        "titles ordered by sha256('<seed>:<title>'); evaluation takes titles in that order "
        "until it holds at least eval_fraction of the questions; training gets the rest"
    )

    def __post_init__(self) -> None:
        overlap = set(self.train) & set(self.eval)
        if overlap:
            raise ConfigError(
                f"titles in both training and evaluation: {sorted(overlap)[:5]}; a split must keep them apart"
            )
        if not self.train or not self.eval:
            raise ConfigError("a title split needs at least one training and one evaluation title")

    def is_eval(self, title: str) -> bool:
        return title in set(self.eval)

    def to_dict(self) -> dict[str, Any]:
        return {
            "train": list(self.train),
            "eval": list(self.eval),
            "seed": self.seed,
            "eval_fraction": self.eval_fraction,
            "rule": self.rule,
        }

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> TitleSplit:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"cannot read the title split at {path}: {exc}") from None
        return cls(
            train=tuple(data["train"]),
            eval=tuple(data["eval"]),
            seed=int(data.get("seed", 0)),
            eval_fraction=float(data.get("eval_fraction", 0.2)),
        )


def split_titles(
    counts: Mapping[str, int], *, eval_fraction: float = 0.2, seed: int = 0
) -> TitleSplit:
    """Split article titles so that evaluation holds at least ``eval_fraction`` of the questions.

    Deterministic for a seed and independent of file order: titles are ranked by a hash, so
    adding an article elsewhere in the file does not reshuffle the others.

    Example:
        >>> s = split_titles({"A": 10, "B": 10, "C": 10, "D": 10}, eval_fraction=0.25)
        >>> len(s.eval), len(s.train)
        (1, 3)
    """
    if not 0 < eval_fraction < 1:
        raise ConfigError(f"eval_fraction must be between 0 and 1, got {eval_fraction}")
    if len(counts) < 2:
        raise ConfigError("a title split needs at least two article titles")
    ranked = sorted(counts, key=lambda t: hashlib.sha256(f"{seed}:{t}".encode()).hexdigest())
    total = sum(counts.values())
    eval_titles: list[str] = []
    held = 0
    for title in ranked[:-1]:  # always leave one title for training
        if held >= eval_fraction * total:
            break
        eval_titles.append(title)
        held += counts[title]
    train = tuple(sorted(t for t in counts if t not in set(eval_titles)))
    return TitleSplit(
        train=train, eval=tuple(sorted(eval_titles)), seed=seed, eval_fraction=eval_fraction
    )


def sample_questions(questions: Sequence[QARecord], n: int, *, seed: int = 0) -> list[QARecord]:
    """``n`` questions drawn without replacement, reproducibly (all of them when ``n`` is larger)."""
    import random

    picked = list(questions)
    random.Random(seed).shuffle(picked)
    return picked[:n]
