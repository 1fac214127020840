"""Distillation: questions the graph keeps answering by retrieval become a knowledge adapter's pairs.

Reads what runs left behind, either a JSON-lines span file (``SETPOINT_TRACE_FILE``,
written with ``SETPOINT_TRACE_CONTENT=1`` so the finalize span carries the question, the
answer and the cited passages) or a run log (one ``setpoint ask --json`` object per line:
``question``, ``answer``, ``route``, ``status``, ``citations``, optionally ``passages``
with ``id``/``title``/``text``). A question answered through retrieval at least
``min_count`` times, whose answers passed the output checks (status ``answered``, cited,
and quoted from a cited passage), becomes one question/answer pair; ``tune`` (or its
``--update``) then teaches it to a knowledge adapter, so the next time it is asked the
answer comes from the weights.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from setpoint.errors import InputError

__all__ = ["DistillPair", "Observation", "observations", "read_observations", "select_pairs"]


@dataclass(frozen=True)
class Observation:
    """One answered run: the question, the answer, and the passages it cited (text may be unknown)."""

    question: str
    answer: str
    route: str
    status: str
    passages: tuple[tuple[str, str, str | None], ...]  # (id, title, text)


@dataclass(frozen=True)
class DistillPair:
    """A question to teach: its answer, the passage it came from, and how often it was retrieved."""

    id: str
    question: str
    answer: str
    passage_id: str
    passage_title: str
    passage_text: str | None
    count: int


def _norm(text: str) -> str:
    return " ".join(re.findall(r"\w+", text.lower()))


def _messages_text(value: Any) -> str:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return str(value)
    if isinstance(value, list) and value and isinstance(value[-1], dict):
        return str(value[-1].get("content") or "")
    return ""


def observations(spans: Sequence[Mapping[str, Any]]) -> list[Observation]:
    """One observation per run whose finalize span carries content (``SETPOINT_TRACE_CONTENT=1``)."""
    found = []
    for span in spans:
        attrs = span.get("attributes") or {}
        if span.get("name") != "node finalize" or "gen_ai.input.messages" not in attrs:
            continue
        raw = attrs.get("setpoint.cited_passages") or "[]"
        cited = json.loads(raw) if isinstance(raw, str) else raw
        found.append(
            Observation(
                question=_messages_text(attrs["gen_ai.input.messages"]),
                answer=_messages_text(attrs.get("gen_ai.output.messages")),
                route=str(attrs.get("setpoint.route") or ""),
                status=str(attrs.get("setpoint.status") or ""),
                passages=tuple(
                    (str(p["id"]), str(p.get("title") or ""), p.get("text")) for p in cited
                ),
            )
        )
    return found


def _from_log(row: Mapping[str, Any]) -> Observation:
    passages = row.get("passages") or row.get("citations") or []
    return Observation(
        question=str(row.get("question") or ""),
        answer=str(row.get("answer") or ""),
        route=str(row.get("route") or ""),
        status=str(row.get("status") or ""),
        passages=tuple((str(p["id"]), str(p.get("title") or ""), p.get("text")) for p in passages),
    )


def read_observations(path: Path) -> list[Observation]:
    """Observations from a span file or a run log (told apart by their first line)."""
    from setpoint.jobs.trace_reader import read_spans

    try:
        content = Path(path).read_text(encoding="utf-8")
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read {path}: {exc}") from None
    # A stream of JSON objects: JSON lines, or `setpoint ask --json` outputs one after another.
    decoder, rows, at = json.JSONDecoder(), [], 0
    while True:
        while at < len(content) and content[at].isspace():
            at += 1
        if at >= len(content):
            break
        try:
            row, at = decoder.raw_decode(content, at)
        except ValueError:
            line = content.count("\n", 0, at) + 1
            raise InputError(f"{path}:{line} is not JSON; give a span file or a run log") from None
        rows.append(row)
    if rows and isinstance(rows[0], dict) and "context" in rows[0]:
        found = observations(read_spans(Path(path)))
        if not found:
            raise InputError(
                f"{path} has no finalize spans with content; record runs with "
                "SETPOINT_TRACE_CONTENT=1 (or give a run log of `setpoint ask --json`)"
            )
        return found
    for number, row in enumerate(rows, start=1):
        if not isinstance(row, dict) or "question" not in row:
            raise InputError(
                f"{path}: object {number} has no question; expected `setpoint ask --json`"
            )
    return [_from_log(row) for row in rows]


def _passed(obs: Observation) -> bool:
    """Retrieved, answered (the output checks passed), cited, and quoted from a cited passage."""
    if obs.route != "retrieve" or obs.status != "answered" or not obs.passages:
        return False
    answer = _norm(obs.answer)
    if not answer:
        return False
    texts = [t for _, _, t in obs.passages if t]
    return not texts or any(answer in _norm(t) for t in texts)


def select_pairs(found: Iterable[Observation], *, min_count: int = 2) -> list[DistillPair]:
    """The questions answered through retrieval at least ``min_count`` times with passing answers.

    Questions are grouped by their words (case and punctuation ignored); the pair takes the
    most frequent answer and the cited passage that holds it most often.

    Example:
        >>> ob = Observation("Who won?", "Denver", "retrieve", "answered", (("p1", "Bowl", "Denver won."),))
        >>> [(p.question, p.answer, p.count) for p in select_pairs([ob, ob], min_count=2)]
        [('Who won?', 'Denver', 2)]
    """
    groups: dict[str, list[Observation]] = defaultdict(list)
    for obs in found:
        if _passed(obs):
            groups[_norm(obs.question)].append(obs)
    pairs = []
    for key, runs in groups.items():
        if len(runs) < min_count:
            continue
        answer = Counter(r.answer.strip() for r in runs).most_common(1)[0][0]
        sources: Counter[tuple[str, str, str | None]] = Counter()
        for r in runs:
            if r.answer.strip() != answer:
                continue
            holding = [p for p in r.passages if p[2] and _norm(answer) in _norm(p[2])]
            sources.update(holding[:1] or r.passages[:1])
        pid, title, text = sources.most_common(1)[0][0]
        digest = hashlib.sha256(key.encode()).hexdigest()[:12]
        pairs.append(
            DistillPair(f"distill-{digest}", runs[0].question, answer, pid, title, text, len(runs))
        )
    pairs.sort(key=lambda p: (-p.count, p.question))
    return pairs


def distill(
    path: Path,
    out_dir: Path,
    *,
    generator_dir: Path,
    config: Any,
    min_count: int = 2,
    update: Path | None = None,
    replay_fraction: float = 0.5,
    threads: int | None = None,
    progress: bool = True,
    command: str = "",
) -> tuple[list[DistillPair], Any]:
    """Select pairs from ``path`` and train (or ``update``) the knowledge adapter at ``out_dir``.

    Returns the pairs and ``train_knowledge``'s result (None when no pair qualified).
    """
    from setpoint.adapters.lora.knowledge_training import train_knowledge
    from setpoint.adapters.lora.qa_data import QARecord
    from setpoint.adapters.model.generator import Generator, Passage

    pairs = select_pairs(read_observations(path), min_count=min_count)
    if not pairs:
        return pairs, None
    questions = [QARecord(p.id, p.question, (p.answer,), p.passage_id) for p in pairs]
    passages = {
        p.passage_id: Passage(p.passage_id, p.passage_title, p.passage_text)
        for p in pairs
        if p.passage_text is not None
    }
    generator = Generator.from_pretrained(generator_dir, threads=threads)
    result = train_knowledge(
        generator,
        questions,
        passages,
        config,
        out_dir,
        update=update,
        replay_fraction=replay_fraction,
        kind="distill",
        indexed=True,
        command=command,
        extra={"distilled_from": {"file": str(path), "min_count": min_count, "pairs": len(pairs)}},
        progress=progress,
    )
    return pairs, result
