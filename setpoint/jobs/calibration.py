"""``setpoint calibrate``: record closed-book signals, train the hidden-state probe, pick setpoints from data.

Titles are split into train and validation so that the probe's AUROC and the chosen
setpoints are measured on articles it never saw.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from setpoint.adapters.domain.metrics import auroc, best_f1, pick_threshold
from setpoint.errors import ConfigError
from setpoint.jobs.eval_questions import EvalQuestion, split_titles
from setpoint.jobs.eval_strategies import CORRECT_F1

if TYPE_CHECKING:
    from setpoint.api import Setpoint
    from setpoint.graphs.context import Context

__all__ = ["ENTROPY_GRID", "SHAPES", "calibrate", "collect_features", "thermostat_fires"]

#: Candidate per-token entropy setpoints (nats) swept by ``setpoint calibrate``.
ENTROPY_GRID = tuple(round(0.1 * i, 1) for i in range(1, 61))


def thermostat_fires(context: Context, entropies: list[float]) -> bool:
    """Would the thermostat of ``context`` fire on this closed-book entropy trace?"""
    from setpoint.agents.thermostat import Thermostat

    thermostat = Thermostat(context)
    return any(thermostat.update(h).fired for h in entropies)


def collect_features(
    session: Setpoint,
    questions: list[EvalQuestion],
    layer: int,
    *,
    max_new_tokens: int = 24,
    context: Context | None = None,
) -> list[dict[str, Any]]:
    """Closed-book answer, F1 and signals for each question, plus the prefill hidden state at ``layer``.

    The answer comes from the context's knowledge adapter (the weights the answer route uses).
    """
    from tqdm import tqdm

    from setpoint.agents.probe import select_adapter

    ctx = context or session.context()
    generator = session.resources.generator()
    select_adapter(session.resources, ctx.adapter)
    rows = []
    for q in tqdm(questions, desc="closed-book", unit="q"):
        ids = generator.prompt_ids(q.question)
        first, hidden = generator.probe_features(ids, layer)
        tokens = [
            t
            for t in generator.stream(ids, max_new_tokens=max_new_tokens)
            if t.token_id not in generator.stop_ids
        ]
        answer = "".join(t.text for t in tokens).strip()
        entropies = [t.signals.entropy for t in tokens] or [first.entropy]
        fired = thermostat_fires(ctx, entropies)
        rows.append(
            {
                "qid": q.id,
                "title": q.title,
                "f1": best_f1(answer, q.answers),
                "answer": answer,
                "first_entropy": first.entropy,
                "mean_entropy": sum(entropies) / len(entropies),
                "thermostat_fired": fired,
                "entropies": [round(h, 4) for h in entropies],
                "hidden": hidden,
            }
        )
    return rows


def calibrate(
    session: Setpoint,
    questions: list[EvalQuestion],
    *,
    layer: int,
    out_dir: Path,
    seed: int = 0,
    validation_fraction: float = 0.3,
    target_retrieval_rate: float = 0.5,
    context: Context | None = None,
) -> dict[str, Any]:
    """Train the probe on train titles, report validation AUROC, choose setpoints, write files.

    Two setpoints are chosen on the validation titles for ``target_retrieval_rate``: the
    probe's (P(closed-book wrong) above it retrieves at prefill) and the thermostat's
    per-token entropy setpoint with its warm-up and hold (swept over ``ENTROPY_GRID`` and
    ``SHAPES`` with the context's EMA and hysteresis). Writes ``probe-layer{L}.json`` (the probe with its record) and
    ``calibration.json`` (the chosen values the CLI and ``Setpoint`` load) into ``out_dir``.
    """
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    if not questions:
        raise ConfigError("no questions to calibrate on")
    started = time.perf_counter()
    ctx = context or session.context()
    rows = collect_features(session, questions, layer, context=ctx)
    val_titles, _ = split_titles({r["title"] for r in rows}, validation_fraction, seed)
    train = [r for r in rows if r["title"] not in val_titles]
    val = [r for r in rows if r["title"] in val_titles]
    if not train or not val:
        raise ConfigError(
            "too few titles for a train/validation split; calibrate on more questions"
        )
    x_train = np.array([r["hidden"] for r in train], dtype=np.float64)
    y_train = np.array([r["f1"] < CORRECT_F1 for r in train])
    mean = x_train.mean(axis=0)
    scale = x_train.std(axis=0) + 1e-6
    if len(set(y_train.tolist())) < 2:
        raise ConfigError(
            "every closed-book answer in the training titles is equally right or wrong; "
            "the probe needs both kinds (calibrate on more questions, or with a tuned adapter)"
        )
    model = LogisticRegression(C=0.05, class_weight="balanced", max_iter=2000)
    model.fit((x_train - mean) / scale, y_train)

    from setpoint.adapters.domain.linear_probe import LinearProbe

    generator = session.resources.generator()
    probe = LinearProbe(
        layer=layer,
        mean=mean.tolist(),
        scale=scale.tolist(),
        weights=model.coef_[0].tolist(),
        bias=float(model.intercept_[0]),
        model=generator.name,
        adapter=generator.active_adapter,
        trained_on={
            "questions": len(train),
            "titles": sorted({r["title"] for r in train}),
            "label": f"closed-book token F1 < {CORRECT_F1}",
            "seed": seed,
        },
    )
    val_scores = [probe.score(r["hidden"]) for r in val]
    val_wrong = [r["f1"] < CORRECT_F1 for r in val]
    probe = replace(probe, validation_auroc=auroc(val_scores, val_wrong))
    out_dir.mkdir(parents=True, exist_ok=True)
    probe_path = probe.save(out_dir / f"probe-layer{layer}.json")

    # Setpoint for the probe: on validation titles, retrieve for at most the target share.
    # Open-book correctness is unknown here, so "retrieval fixes a wrong answer" is assumed
    # (the upper bound); `setpoint eval` measures the real effect.
    choice = pick_threshold(
        val_scores,
        [float(r["f1"] >= CORRECT_F1) for r in val],
        [1.0] * len(val),
        target_retrieval_rate=target_retrieval_rate,
    )
    entropy_choice = _entropy_setpoint(ctx, val, target_retrieval_rate)
    record = {
        "adapter": ctx.adapter,
        "entropy_setpoint": entropy_choice["setpoint"],
        "thermostat_warmup_steps": entropy_choice.get("warmup_steps"),
        "thermostat_consecutive_steps": entropy_choice.get("consecutive_steps"),
        "entropy_validation_retrieval_rate": entropy_choice["retrieval_rate"],
        "entropy_validation_wrong_caught": entropy_choice["wrong_caught"],
        "probe_path": str(probe_path),
        "probe_setpoint": choice.threshold if math.isfinite(choice.threshold) else None,
        "probe_validation_auroc": probe.validation_auroc,
        "target_retrieval_rate": target_retrieval_rate,
        "validation_retrieval_rate": choice.retrieval_rate,
        "signal_auroc_validation": {
            "first_entropy": auroc([r["first_entropy"] for r in val], val_wrong),
            "mean_entropy": auroc([r["mean_entropy"] for r in val], val_wrong),
            "probe": probe.validation_auroc,
        },
        "closed_book_f1": {
            "train": sum(r["f1"] for r in train) / len(train),
            "validation": sum(r["f1"] for r in val) / len(val),
        },
        "layer": layer,
        "questions": {"train": len(train), "validation": len(val)},
        "seconds": round(time.perf_counter() - started, 1),
    }
    (out_dir / "calibration.json").write_text(json.dumps(record, indent=2), encoding="utf-8")
    (out_dir / "features.jsonl").write_text(
        "\n".join(json.dumps({k: v for k, v in r.items() if k != "hidden"}) for r in rows) + "\n",
        encoding="utf-8",
    )
    return record


#: Thermostat shapes ``setpoint calibrate`` tries: (warm-up tokens, consecutive steps). A
#: tuned adapter answers in 2-5 tokens, so the default shape (1 warm-up, 2 steps) can
#: never fire on a wrong short answer; the data decide.
SHAPES = ((1, 2), (0, 2), (1, 1), (0, 1))


def _entropy_setpoint(
    ctx: Context, rows: list[dict[str, Any]], target_rate: float
) -> dict[str, Any]:
    """The thermostat shape and setpoint that catch the most wrong answers within ``target_rate``.

    For each shape in ``SHAPES`` the lowest grid setpoint whose thermostat retrieves for at
    most ``target_rate`` of ``rows`` (lowest = the most retrieval the budget allows); the
    shape whose setpoint catches the largest share of wrong closed-book answers wins (ties:
    the earlier shape, the context's default first). ``setpoint`` is None when no shape fits.
    """
    wrong = [r["f1"] < CORRECT_F1 for r in rows]
    best: dict[str, Any] = {"setpoint": None, "retrieval_rate": None, "wrong_caught": None}
    for warmup, steps in SHAPES:
        for value in ENTROPY_GRID:
            trial = replace(ctx, setpoint=value, warmup_steps=warmup, consecutive_steps=steps)
            fired = [thermostat_fires(trial, r["entropies"]) for r in rows]
            rate = sum(fired) / len(rows)
            if rate <= target_rate + 1e-12:
                caught = sum(f and w for f, w in zip(fired, wrong, strict=True)) / max(
                    sum(wrong), 1
                )
                if best["wrong_caught"] is None or caught > best["wrong_caught"] + 1e-12:
                    best = {
                        "setpoint": value,
                        "warmup_steps": warmup,
                        "consecutive_steps": steps,
                        "retrieval_rate": rate,
                        "wrong_caught": caught,
                    }
                break
    return best
