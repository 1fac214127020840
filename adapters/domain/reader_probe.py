"""The reader's uncertainty probe: P(this answer is wrong) from the reader's own hidden states and signals.

A logistic regression over a few hidden states of the answer's decoding pass (the prompt's
last position, the answer's last token), the answer's surprisal and entropy signals, and how
well the passage text around the answer matches the question (``support_features``). It
is trained on training-title questions the reader adapter never saw (``collect_probe_rows`` and
``fit_reader_probe``, run by ``setpoint calibrate --reader``) and stored as ``probe.json`` next to the adapter, so the
selective-answering setpoint has a scale that means something: the probe's P(wrong).

The model features come from the forward passes that decode the answer anyway
(``Generator.stream(capture_layers=...)``) and the support features from a word count over
the passages, so scoring costs well under a millisecond.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from setpoint.adapters.domain.json_file import write_json
from setpoint.adapters.domain.linear_probe import LinearProbe
from setpoint.adapters.domain.support import support_features
from setpoint.errors import ConfigError

if TYPE_CHECKING:
    from setpoint.adapters.lora.qa_data import QADataset, QARecord
    from setpoint.adapters.model.generator import GeneratedToken, Generator, Passage

__all__ = [
    "DEFAULT_FEATURES",
    "PROBE_FILE",
    "ReaderProbe",
    "collect_probe_rows",
    "default_features",
    "feature_vector",
    "fit_reader_probe",
    "load_reader_probe",
    "probe_to_read_with",
    "support_features",
    "unseen_training_questions",
]

#: File name of a reader adapter's probe, next to its ``adapter_config.json``.
PROBE_FILE = "probe.json"

#: Scalar features of an answer's token signals (stop token included).
SCALARS = (
    "log_total_surprisal",
    "log_mean_surprisal",
    "first_entropy",
    "mean_entropy",
    "max_entropy",
    "min_margin",
    "log_answer_tokens",
)
#: How the passages support the answer, against the question (``support_features``). A
#: confident reader is most often wrong by quoting another name, date or number of the
#: right kind from the passage, one that sits in a sentence the question does not describe.
SUPPORT = (
    "question_overlap_answer_sentence",
    "question_overlap_best_sentence",
    "question_overlap_answer_window",
    "answer_sentence_rank",
)
#: Hidden-state features are ``<position>@<layer>``: the prompt's last position or the
#: answer's last token (the position that chose the stop token).
POSITIONS = ("prompt_end", "answer_end")
_HIDDEN = re.compile(rf"^({'|'.join(POSITIONS)})@(\d+)$")

#: What ``setpoint calibrate --reader`` trains on by default (chosen by title-grouped
#: cross-validation on training titles; BENCHMARKS.md, "Reader adapter").
#: Every one-number feature (the rest are ``<position>@<layer>`` hidden states).
ONE_NUMBER = (*SCALARS, *SUPPORT)
DEFAULT_FEATURES: tuple[str, ...] = ("answer_end@20", "prompt_end@26", *ONE_NUMBER)
#: The depth ``DEFAULT_FEATURES`` was chosen at (SmolLM2-135M's decoder layers).
_DEFAULT_DEPTH = 30


def default_features(num_hidden_layers: int) -> tuple[str, ...]:
    """``DEFAULT_FEATURES`` for a model of another depth: the same relative layers.

    Example:
        >>> default_features(30) == DEFAULT_FEATURES
        True
        >>> default_features(24)[:2]
        ('answer_end@16', 'prompt_end@21')
    """
    if num_hidden_layers < 1:
        raise ConfigError(f"a model needs at least one layer, not {num_hidden_layers}")
    out = []
    for name in DEFAULT_FEATURES:
        match = _HIDDEN.match(name)
        if match is None:
            out.append(name)
            continue
        layer = round(int(match.group(2)) * num_hidden_layers / _DEFAULT_DEPTH)
        out.append(f"{match.group(1)}@{max(1, min(num_hidden_layers, layer))}")
    return tuple(out)


#: Under one L2 penalty the eleven scalars would drown among 1,152 hidden dimensions; each
#: standardised scalar (``SCALARS`` and ``SUPPORT``) is scaled up by this factor (its
#: penalty divided by its square).
SCALAR_WEIGHT = 3.0


def _check_features(features: Sequence[str]) -> None:
    if not features:
        raise ConfigError("a reader probe needs at least one feature")
    for name in features:
        if name not in ONE_NUMBER and not _HIDDEN.match(name):
            raise ConfigError(
                f"unknown reader probe feature {name!r}; use <prompt_end|answer_end>@<layer> "
                f"or one of {', '.join(ONE_NUMBER)}"
            )


def probe_layers(features: Sequence[str]) -> tuple[int, ...]:
    """The decoder layers whose hidden states ``features`` read (for ``stream(capture_layers=)``)."""
    return tuple(sorted({int(m.group(2)) for f in features if (m := _HIDDEN.match(f))}))


def feature_vector(
    tokens: Sequence[GeneratedToken],
    features: Sequence[str],
    *,
    question: str | None = None,
    passages: Sequence[Passage] = (),
    answer: str | None = None,
) -> list[float]:
    """The values of ``features`` for one decoded answer (its tokens, stop token included).

    Hidden-state features need the tokens of a ``stream(capture_layers=probe_layers(...))``;
    ``SUPPORT`` features need the ``question``, the ``passages`` read and the ``answer`` text.

    Example:
        >>> from setpoint.adapters.model.generator import GeneratedToken
        >>> from setpoint.adapters.domain.signals import StepSignals
        >>> s = StepSignals(entropy=0.5, margin=0.9, lens_entropy={}, top_prob=0.95)
        >>> toks = [GeneratedToken(0, 7, "Paris", s, -0.1), GeneratedToken(1, 2, "", s, -0.05)]
        >>> [round(v, 3) for v in feature_vector(toks, ["log_total_surprisal", "log_answer_tokens"])]
        [0.14, 1.099]
    """
    if not tokens:
        raise ConfigError("no decoded tokens to read probe features from")
    surprisal = [-t.logprob for t in tokens]
    entropy = [t.signals.entropy for t in tokens]
    scalars = {
        "log_total_surprisal": math.log1p(sum(surprisal)),
        "log_mean_surprisal": math.log1p(sum(surprisal) / len(surprisal)),
        "first_entropy": entropy[0],
        "mean_entropy": sum(entropy) / len(entropy),
        "max_entropy": max(entropy),
        "min_margin": min(t.signals.margin for t in tokens),
        # Decoded tokens, the stop token included.
        "log_answer_tokens": math.log1p(len(tokens)),
    }
    if any(name in SUPPORT for name in features):
        if question is None or answer is None:
            raise ConfigError(
                f"the features {', '.join(n for n in features if n in SUPPORT)} need the "
                "question, the passages and the answer text"
            )
        scalars.update(support_features(question, passages, answer))
    out: list[float] = []
    for name in features:
        if name in scalars:
            out.append(scalars[name])
            continue
        match = _HIDDEN.match(name)
        if match is None:
            raise ConfigError(f"unknown reader probe feature {name!r}")
        token = tokens[0] if match.group(1) == "prompt_end" else tokens[-1]
        layer = int(match.group(2))
        if token.hidden is None or layer not in token.hidden:
            raise ConfigError(
                f"feature {name} needs the hidden state of layer {layer}; "
                "decode with stream(capture_layers=probe_layers(features))"
            )
        out.extend(token.hidden[layer].float().tolist())
    return out


@dataclass(frozen=True)
class ReaderProbe:
    """``P(wrong)`` of a reader answer: a ``LinearProbe`` over ``feature_vector(tokens, features)``.

    ``setpoints`` maps a coverage (share of answers kept) to the P(wrong) that keeps it on
    the validation titles, e.g. ``{"0.8": 0.41}``: a ``Context(reader_setpoint=0.41)``
    answers about 80 % of questions and escalates the rest. ``default_setpoint`` is the
    reader setpoint chosen for this probe on dev data (``benchmarks/reader_setpoint.py``),
    used when ``Context.reader_setpoint`` is unset; None falls back to
    ``DEFAULT_READER_SETPOINT`` (the default generator's probe).
    """

    features: tuple[str, ...]
    linear: LinearProbe
    setpoints: dict[str, float] = field(default_factory=dict)
    record: dict[str, Any] = field(default_factory=dict)
    default_setpoint: float | None = None

    def __post_init__(self) -> None:
        _check_features(self.features)

    @property
    def layers(self) -> tuple[int, ...]:
        return probe_layers(self.features)

    def score(
        self,
        tokens: Sequence[GeneratedToken],
        *,
        question: str | None = None,
        passages: Sequence[Passage] = (),
        answer: str | None = None,
    ) -> float:
        """P(wrong) of the answer decoded as ``tokens``; 1.0 when nothing was decoded.

        ``question``, ``passages`` and ``answer`` (its text) are needed when the probe
        reads ``SUPPORT`` features.
        """
        if not tokens:
            return 1.0
        x = feature_vector(
            tokens, self.features, question=question, passages=passages, answer=answer
        )
        return self.score_features(x)

    @classmethod
    def unfitted(cls, features: Sequence[str], hidden_size: int) -> ReaderProbe:
        """A probe that scores every answer 0.5: what a reader without a probe records rows with."""
        width = sum(hidden_size if _HIDDEN.match(f) else 1 for f in features)
        return cls(
            tuple(features),
            LinearProbe(
                layer=-1, mean=[0.0] * width, scale=[1.0] * width, weights=[0.0] * width, bias=0.0
            ),
        )

    def score_features(self, x: list[float]) -> float:
        """P(wrong) of one ``feature_vector`` (``score`` without the decoding)."""
        return self.linear.score(x)

    def save(self, path: Path) -> Path:
        return write_json(
            path,
            {
                "format": "setpoint-reader-probe/1",
                "features": list(self.features),
                "setpoints": self.setpoints,
                **(
                    {"default_setpoint": self.default_setpoint}
                    if self.default_setpoint is not None
                    else {}
                ),
                "record": self.record,
                "linear": asdict(self.linear),
            },
        )

    @classmethod
    def load(cls, path: Path) -> ReaderProbe:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
            return cls(
                features=tuple(data["features"]),
                linear=LinearProbe(**data["linear"]),
                setpoints={str(k): float(v) for k, v in data.get("setpoints", {}).items()},
                record=dict(data.get("record", {})),
                default_setpoint=(
                    None
                    if data.get("default_setpoint") is None
                    else float(data["default_setpoint"])
                ),
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ConfigError(
                f"cannot read the reader probe {path}: {exc}; retrain it with `setpoint calibrate --reader`"
            ) from None


def load_reader_probe(adapter_dir: Path | str) -> ReaderProbe | None:
    """The probe stored with the reader adapter at ``adapter_dir``, or None when it has none."""
    path = Path(adapter_dir).expanduser() / PROBE_FILE
    return ReaderProbe.load(path) if path.is_file() else None


def probe_to_read_with(
    adapter_dir: Path | str, num_hidden_layers: int, hidden_size: int
) -> ReaderProbe:
    """The probe whose features a calibration records: the adapter's own, else an unfitted one.

    A reader without a probe yet (a new family's) gets ``default_features`` at its model's
    depth (``num_hidden_layers``, ``hidden_size``), scoring every answer 0.5.
    """
    return load_reader_probe(adapter_dir) or ReaderProbe.unfitted(
        default_features(num_hidden_layers), hidden_size
    )


# ------------------------------------------------------------------ training
def unseen_training_questions(
    dataset: QADataset, train_titles: Sequence[str], seen: int, n: int | None, *, seed: int = 1
) -> list[QARecord]:
    """``n`` training-title questions the reader adapter did not train on (None: all of them).

    ``tune --task read`` consumes questions in a seeded order (``tuning.reader_groups``);
    ``seen`` is how many it used over all stages (``skip_examples`` + training questions of
    the last stage's record). The rest are shuffled with ``seed`` and the first ``n`` kept.
    """
    import random

    from setpoint.adapters.lora.config import TuningConfig
    from setpoint.adapters.lora.examples import reader_groups

    config = TuningConfig(task="read", skip_examples=seen, distractors=0)
    rest = [q for g in reader_groups(dataset, train_titles, config, None) for q in g.items]
    random.Random(seed).shuffle(rest)
    return rest[:n]


def collect_probe_rows(
    generator: Generator,
    dataset: QADataset,
    train_titles: Sequence[str],
    questions: Sequence[QARecord],
    features: Sequence[str] = DEFAULT_FEATURES,
    *,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Answer each question as the retrieve route reads, and keep its probe features.

    Grounded decoding with the active adapter, twice per question: with its gold passage
    alone and with the top-3 BM25 passages of the training titles (the gold one may be
    missing, as after a real search). Rows: ``id``, ``title``, ``context``, ``f1``, ``x``.
    """
    from tqdm import tqdm

    from setpoint.adapters.domain.lexical import Bm25Index
    from setpoint.adapters.domain.metrics import best_f1
    from setpoint.adapters.model.quoting import answer_question

    _check_features(features)
    allowed = set(train_titles)
    index = Bm25Index(p for p in dataset.passages.values() if p.title in allowed)
    rows = []
    for q in tqdm(questions, desc="reader answers", unit="question", disable=not progress):
        title = dataset.title_of(q)
        if title not in allowed:
            raise ConfigError(
                f"question {q.id} is from {title!r}, not a training title; "
                "the probe must never see evaluation titles"
            )
        for context, passages in (
            ("gold", [dataset.passages[q.passage_id]]),
            ("top3", index.search(q.question, k=3)),
        ):
            answer = answer_question(
                generator,
                q.question,
                passages,
                grounded=True,
                capture_layers=probe_layers(features),
            )
            rows.append(
                {
                    "id": q.id,
                    "title": title,
                    "context": context,
                    "f1": best_f1(answer.text, q.answers),
                    "x": feature_vector(
                        answer.tokens,
                        features,
                        question=q.question,
                        passages=passages,
                        answer=answer.text,
                    ),
                }
            )
    return rows


def fit_reader_probe(
    rows: Sequence[dict[str, Any]],
    features: Sequence[str],
    hidden_size: int,
    *,
    model: str = "",
    adapter: str | None = None,
    c: float = 0.001,
    validation_fraction: float = 0.2,
    wrong_below_f1: float = 0.5,
    seed: int = 0,
) -> ReaderProbe:
    """Fit the probe on ``collect_probe_rows`` output; validate on held-out titles, then refit on all.

    ``validation_fraction`` of the titles is held out: the probe fitted without them gives
    the recorded validation AUROC and the coverage setpoints (P(wrong) quantiles of its
    validation scores). The shipped probe is then refitted on every row.
    """
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    from setpoint.adapters.domain.metrics import auroc
    from setpoint.adapters.lora.qa_data import split_titles

    _check_features(features)
    columns: list[str] = []
    for name in features:
        columns.extend([name] * (hidden_size if _HIDDEN.match(name) else 1))
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["title"]] = counts.get(r["title"], 0) + 1
    held_out = set(split_titles(counts, eval_fraction=validation_fraction, seed=seed).eval)

    def fit(part: Sequence[dict[str, Any]]) -> LinearProbe:
        x = np.array([r["x"] for r in part], dtype=np.float64)
        if x.shape[1] != len(columns):
            raise ConfigError(f"rows hold {x.shape[1]} values, the features need {len(columns)}")
        y = np.array([r["f1"] < wrong_below_f1 for r in part])
        if len(set(y.tolist())) < 2:
            raise ConfigError(
                "every answer is equally right or wrong; train the probe on more questions"
            )
        mean = x.mean(axis=0)
        scale = x.std(axis=0) + 1e-6
        scale[[i for i, name in enumerate(columns) if name in ONE_NUMBER]] /= SCALAR_WEIGHT
        fitted = LogisticRegression(C=c, max_iter=5000).fit((x - mean) / scale, y)
        return LinearProbe(
            layer=-1,
            mean=mean.tolist(),
            scale=scale.tolist(),
            weights=fitted.coef_[0].tolist(),
            bias=float(fitted.intercept_[0]),
            model=model,
            adapter=adapter,
            trained_on={
                "answers": len(part),
                "titles": len({r["title"] for r in part}),
                "label": f"token F1 < {wrong_below_f1}",
            },
        )

    train = [r for r in rows if r["title"] not in held_out]
    val = [r for r in rows if r["title"] in held_out]
    if not train or not val:
        raise ConfigError("too few titles to hold some out; train the probe on more questions")
    scores = [fit(train).score(r["x"]) for r in val]
    wrong = [r["f1"] < wrong_below_f1 for r in val]

    def auroc_where(context: str | None, values: Sequence[float]) -> float:
        keep = [i for i, r in enumerate(val) if context in (None, r["context"])]
        return auroc([values[i] for i in keep], [wrong[i] for i in keep])

    surprisal = (
        [r["x"][columns.index("log_total_surprisal")] for r in val]
        if "log_total_surprisal" in features
        else None
    )
    ordered = sorted(scores)
    contexts = sorted({str(r["context"]) for r in val})
    record = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "answers": len(rows),
        "questions": len({r["id"] for r in rows}),
        "validation_titles": sorted(held_out),
        "validation_answers": len(val),
        "validation_auroc_wrong": {
            ctx or "all": auroc_where(ctx, scores) for ctx in (None, *contexts)
        },
        "validation_surprisal_auroc_wrong": (
            {ctx or "all": auroc_where(ctx, surprisal) for ctx in (None, *contexts)}
            if surprisal is not None
            else None
        ),
        "c": c,
        "scalar_weight": SCALAR_WEIGHT,
        "refit_on_all": True,
    }
    return ReaderProbe(
        features=tuple(features),
        linear=fit(rows),
        setpoints={
            f"{coverage:.1f}": ordered[max(0, round(coverage * len(ordered)) - 1)]
            for coverage in (0.9, 0.8, 0.7, 0.5)
        },
        record=record,
    )
