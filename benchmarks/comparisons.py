"""Date comparisons read from the options' passages: coverage and accuracy, per set and kind.

For every question of a multi-hop set that names two options (``choices.closed_answers``),
``compare.compare_options`` is given the question's own paragraphs (``passage_ids``: its
supporting passages and distractors, no retrieval) and its outcome is counted:
``right`` / ``wrong`` (an answer, scored against the gold answers, case-insensitive),
``missing`` (an option has no passage), ``open`` (dates not read, or equal), or
``declined`` (not a date comparison of the options themselves). The product's
``COMPARISON_P_WRONG`` comes from the *train* split's row (Laplace's rule: (wrong + 1) /
(answered + 2)); the dev sets are only reported.

Run: ``.venv/bin/python benchmarks/comparisons.py`` (seconds; no model). Writes
``benchmarks/results/comparisons.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from generalization import DATA, ROOT  # the folder of this script is on sys.path

OUTCOMES = ("right", "wrong", "missing", "open", "declined")


def _read(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def score_set(folder: Path) -> dict[str, Counter[str]]:
    """Outcome counts per question kind (the set's ``type`` field, else ``all``)."""
    from setpoint.adapters.domain.choices import YES_NO, closed_answers
    from setpoint.adapters.domain.compare import compare_options

    passages = {p["id"]: p for p in _read(folder / "passages.jsonl")}
    counts: dict[str, Counter[str]] = {}  # kinds in the order first seen
    for q in _read(folder / "questions.jsonl"):
        options = closed_answers(q["question"])
        if not options or set(options) & set(YES_NO):
            continue
        ids = q.get("passage_ids") or q.get("supporting_ids") or [q.get("passage_id")]
        found = compare_options(
            q["question"], list(options), [passages[i] for i in ids if i in passages]
        )
        if found is None:
            outcome = "declined"
        elif found.answer is not None:
            gold = {a.lower() for a in q.get("answers", [])}
            outcome = "right" if found.answer.lower() in gold else "wrong"
        else:
            outcome = "missing" if found.missing else "open"
        counts.setdefault(str(q.get("type", "all")), Counter())[outcome] += 1
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sets",
        default="2wikimultihopqa_train,2wikimultihopqa,musique_train,musique",
        help="comma-separated folders of ../shared/data",
    )
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "comparisons.json"))
    args = parser.parse_args(argv)
    rows = []
    print(f"| set | kind | {' | '.join(OUTCOMES)} | accuracy when answered | Laplace P(wrong) |")
    print(f"|---|---|{'---:|' * len(OUTCOMES)}---:|---:|")
    for name in [s for s in args.sets.split(",") if s]:
        kinds = score_set(DATA / name)
        kinds["all kinds"] = sum(kinds.values(), Counter())
        for kind, c in kinds.items():
            answered = c["right"] + c["wrong"]
            row = {
                "set": name,
                "kind": kind,
                **{o: c[o] for o in OUTCOMES},
                "accuracy": round(c["right"] / answered, 3) if answered else None,
                "laplace_p_wrong": round((c["wrong"] + 1) / (answered + 2), 3),
            }
            rows.append(row)
            cells = " | ".join(str(c[o]) for o in OUTCOMES)
            acc = "–" if row["accuracy"] is None else f"{row['accuracy']:.3f}"
            print(f"| {name} | {kind} | {cells} | {acc} | {row['laplace_p_wrong']:.3f} |")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"rows": rows}, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
