"""The reader probe fitted on answers the product itself gave: read through its own retrieval.

``setpoint calibrate --reader`` used to fit the probe on SQuAD reads made outside the graph
(the gold passage alone, or BM25's top 3). What a user sees is another distribution: the
product's hybrid retrieval and reranker, questions that name their answers, nested questions
read in two hops, passages that do not hold the answer at all. ``read_rows`` asks each
question through ``Setpoint.ask`` (retrieval first, no uncertainty-driven hop, so the answer
given is the one the probe scores) and keeps the probe's features of the read that produced
the answer, labelled by its F1 against the gold answers. An unanswerable question (SQuAD v2's
``is_impossible``) is right only when no answer is claimed. Rows from several sources (each
its own collection) are then fitted together by ``reader_probe.fit_reader_probe``.

The features are recorded by ``RecordingProbe``, which scores exactly as the probe it copies,
so the graph behaves as it does for any user while the rows are kept.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from setpoint.adapters.domain.reader_probe import ReaderProbe
from setpoint.errors import ConfigError, InputError

if TYPE_CHECKING:
    from setpoint.api import Setpoint
    from setpoint.graphs.context import Context

__all__ = [
    "CalibrationQuestion",
    "RecordingProbe",
    "calibrate_reader",
    "load_rows",
    "read_questions",
    "read_rows",
    "reading_context",
    "save_rows",
]


@dataclass(frozen=True)
class CalibrationQuestion:
    """One question to read through the product, with what makes its answer right."""

    id: str
    question: str
    answers: tuple[str, ...]
    #: Questions of one group are held out together when the probe is validated: an article
    #: title (SQuAD), or the question itself (a multi-hop question's own passages).
    group: str
    #: Where the question came from (a data folder's name); the record reports each source.
    source: str
    #: The passages hold no answer (SQuAD v2 ``is_impossible``): right only when none is claimed.
    impossible: bool = False


@dataclass(frozen=True)
class RecordingProbe(ReaderProbe):
    """A ``ReaderProbe`` that also keeps the feature vector of every answer it scores."""

    rows: list[list[float]] = field(default_factory=list, compare=False, repr=False)

    def score_features(self, x: list[float]) -> float:
        self.rows.append(x)
        return super().score_features(x)


def read_questions(
    folder: Path,
    *,
    limit: int | None = None,
    seed: int = 0,
    groups: Sequence[str] | None = None,
    source: str | None = None,
    by_passage: bool = False,
) -> list[CalibrationQuestion]:
    """Questions of a data folder (``questions.jsonl``, with ``passages.jsonl`` for titles).

    A question with one passage is grouped by that passage's title (``by_passage``: by the
    passage itself), any other by its own id. ``groups`` keeps only the questions of those
    titles; ``limit`` draws that many (seeded) after that.

    Raises:
        InputError: a missing file or a malformed line, in one line.
    """
    path = folder / "questions.jsonl"
    titles: dict[str, str] = {}
    try:
        if (folder / "passages.jsonl").is_file():
            with (folder / "passages.jsonl").open(encoding="utf-8") as handle:
                for line in handle:
                    if line.strip():
                        row = json.loads(line)
                        titles[str(row["id"])] = str(row.get("title") or "")
        with path.open(encoding="utf-8") as handle:
            rows = [json.loads(line) for line in handle if line.strip()]
        out = []
        for row in rows:
            needed = row.get("supporting_ids") or [row.get("passage_id")]
            single = len(needed) == 1 and needed[0] is not None
            title = titles.get(str(needed[0]), "") if single else ""
            group = str(needed[0]) if single and by_passage else title
            impossible = bool(row.get("is_impossible"))
            answers = tuple(str(a) for a in row.get("answers") or ())
            if not answers and not impossible:
                raise InputError(f"{path}: question {row.get('id')!r} has no answers")
            out.append(
                (
                    title,
                    CalibrationQuestion(
                        id=str(row["id"]),
                        question=str(row["question"]).strip(),
                        answers=answers,
                        group=group or str(row["id"]),
                        source=source or folder.name,
                        impossible=impossible,
                    ),
                )
            )
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise InputError(
            f"{path} is not the questions schema ({{id, question, answers, passage_id}}): {exc}"
        ) from None
    keep = set(groups) if groups is not None else None
    return sample_questions(
        [q for title, q in out if keep is None or title in keep], limit, f"{seed}:{folder.name}"
    )


def sample_questions(
    questions: Sequence[CalibrationQuestion], limit: int | None, seed: int | str
) -> list[CalibrationQuestion]:
    """``limit`` of ``questions`` drawn with ``seed``, in their order (all of them for None).

    Example:
        >>> qs = [CalibrationQuestion(str(i), "q", ("a",), "g", "s") for i in range(5)]
        >>> [q.id for q in sample_questions(qs, 2, 0)], len(sample_questions(qs, None, 0))
        (['3', '4'], 5)
    """
    if limit is None or not 0 < limit < len(questions):
        return list(questions)
    picked = random.Random(seed).sample(range(len(questions)), limit)
    return [questions[i] for i in sorted(picked)]


def _reader_directory(session: Setpoint, context: Context) -> str:
    """The loaded reader adapter's directory (loading it), or a ConfigError when there is none."""
    from setpoint.adapters.lora.reader import resolve_reader
    from setpoint.agents.probe import select_adapter

    generator = session.resources.generator()
    requested = resolve_reader(generator.model.config, context.reader_adapter)
    name = select_adapter(session.resources, requested)
    directory = generator.adapters.get(name) if name is not None else None
    if directory is None:
        raise ConfigError(
            "the reader probe belongs to a reader adapter, and this model reads without one; "
            "train one with `setpoint tune --task read`"
        )
    return str(directory)


def reading_context(session: Setpoint, reader: str | None = None) -> Context:
    """The session's context, reading first with no second hop on doubt (``reader``: its adapter)."""
    return session.context(
        setpoint=math.inf,
        probe_setpoint=-math.inf,
        reader_setpoint=math.inf,
        hop_setpoint=math.inf,
        **({"reader_adapter": reader} if reader else {}),
    )


def read_rows(
    session: Setpoint,
    questions: Sequence[CalibrationQuestion],
    probe: ReaderProbe,
    *,
    context: Context | None = None,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Ask each question through the product and keep the probe features of its answer's read.

    The run context reads first (thermostat and probe off), at most ``max_retrievals``,
    with no second hop on doubt (``hop_setpoint`` inf): the answer given is the read scored.
    Nested questions still read in two hops; the features are those of the last read.
    Rows: ``id``, ``title`` (the group), ``context`` (the source), ``f1``, ``x``, ``answer``,
    ``impossible``. A question answered without a scored read (none of its reads found
    passages) gives no row.
    """
    from tqdm import tqdm

    from setpoint.adapters.domain.metrics import best_f1

    ctx = context or reading_context(session)
    directory = _reader_directory(session, ctx)
    recorder = RecordingProbe(features=probe.features, linear=probe.linear)
    session.resources.set_reader_probe(directory, recorder)
    rows: list[dict[str, Any]] = []
    try:
        for q in tqdm(questions, desc="reads", unit="question", disable=not progress):
            recorder.rows.clear()
            result = session.ask(q.question, context=ctx)
            if not recorder.rows:
                continue
            answer = (result.answer or "").strip() if result.status != "abstained" else ""
            f1 = (0.0 if answer else 1.0) if q.impossible else best_f1(answer, q.answers)
            rows.append(
                {
                    "id": q.id,
                    "title": f"{q.source}/{q.group}",
                    "context": q.source,
                    "f1": f1,
                    "x": recorder.rows[-1],
                    "answer": answer,
                    "impossible": q.impossible,
                }
            )
    finally:
        session.resources.set_reader_probe(directory, None)
    return rows


def save_rows(rows: Sequence[dict[str, Any]], path: Path) -> Path:
    """Write ``read_rows`` output as JSON lines (features rounded to float32 precision)."""
    from setpoint.adapters.domain.json_file import write_json_lines

    return write_json_lines(
        path, ({**row, "x": [float(f"{v:.7g}") for v in row["x"]]} for row in rows)
    )


def load_rows(path: Path) -> list[dict[str, Any]]:
    """Rows written by ``save_rows``; a missing or malformed file is one ``InputError`` line."""
    try:
        with path.open(encoding="utf-8") as handle:
            rows = [json.loads(line) for line in handle if line.strip()]
        for row in rows:
            if not isinstance(row, dict) or not {"id", "title", "context", "f1", "x"} <= row.keys():
                raise KeyError("id, title, context, f1 and x")
    except OSError as exc:
        raise InputError(f"cannot read the probe rows {path}: {exc.strerror or exc}") from None
    except (ValueError, KeyError) as exc:
        what = f"each line an object with {exc.args[0]}" if isinstance(exc, KeyError) else exc
        raise InputError(
            f"{path} is not a file of reader probe rows ({what}); "
            "write it with `setpoint calibrate --reader --data … --save-rows`"
        ) from None
    return rows


def calibrate_reader(
    session: Setpoint,
    folders: Sequence[Path],
    *,
    rows_files: Sequence[Path] = (),
    limit: int | None = None,
    seed: int = 0,
    save_to: Path | None = None,
    reader: str | None = None,
    progress: bool = True,
) -> ReaderProbe:
    """``setpoint calibrate --reader --data``: read each folder's questions, fit the probe on the rows.

    Each folder's ``passages.jsonl`` (when present) is ingested into the session's
    collection first (unchanged passages are skipped), so its questions are answered from
    the user's own index. ``rows_files`` are rows saved earlier (``save_to`` writes this
    run's rows), for a probe fitted on several collections. ``reader`` is the reader adapter
    (a folder; default the context's); the features are those of its current probe, or
    ``default_features`` at the model's depth for a reader without one.

    Raises:
        ConfigError: too few rows.
    """
    from setpoint.adapters.domain.reader_probe import fit_reader_probe, probe_to_read_with

    earlier = [row for path in rows_files for row in load_rows(path)]
    ctx = reading_context(session, reader)
    directory = _reader_directory(session, ctx)
    generator = session.resources.generator()
    config = generator.model.config
    current = probe_to_read_with(directory, int(config.num_hidden_layers), int(config.hidden_size))
    rows: list[dict[str, Any]] = []
    for folder in folders:
        if (folder / "passages.jsonl").is_file():
            report = session.ingest(folder / "passages.jsonl", progress=progress)
            if not report.ok:
                raise InputError(f"{folder}: {report.summary()}")
        questions = read_questions(folder, limit=limit, seed=seed)
        rows += read_rows(session, questions, current, context=ctx, progress=progress)
    if save_to is not None:
        save_rows(rows, save_to)
    rows += earlier
    if not rows:
        raise ConfigError("no rows to fit the reader probe on; give --data or --rows")
    probe = fit_reader_probe(
        rows,
        current.features,
        int(config.hidden_size),
        model=generator.name,
        adapter=current.linear.adapter or Path(directory).name,
        seed=seed,
    )
    sources = sorted({str(r["context"]) for r in rows})
    record = {
        **probe.record,
        "sources": {s: sum(r["context"] == s for r in rows) for s in sources},
        "read_through": "Setpoint.ask, retrieval first, no second hop on doubt",
    }
    return replace(probe, record=record)
