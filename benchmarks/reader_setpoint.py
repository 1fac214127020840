"""The default reader setpoint: chosen on a named dev part of SQuAD v2, reported on the rest.

SQuAD v2 (``../shared/data/squad_v2``) has answerable and unanswerable questions. The dev
part is the questions of ``DEV_TITLES`` (training titles of the reader's SQuAD split; its
probe learned from none of their questions); the report part is the questions that
``generalization.py`` scores (the reader's evaluation titles). Each question is asked through ``Setpoint.ask`` with retrieval first
(probe setpoint -inf), one retrieval and no reader setpoint, and the reader probe's
P(wrong) is read from the reader span (``setpoint.reader_uncertainty``).

The rule: the lowest setpoint that marks at most ``MAX_ANSWERABLE_UNSURE`` of the dev
part's answerable questions ``unsure`` (the issue's target: <= 15 % of answerable
questions, as many unanswerable ones as possible). The report part is then scored at that
setpoint: the share of unanswerable and of answerable questions marked unsure.

Run: ``.venv/bin/python benchmarks/reader_setpoint.py --per-half 12`` (N per half of each
part; small on a shared 2-core machine). The reader is ``SETPOINT_MODEL``'s shipped one;
``--write`` stores the chosen value in its ``probe.json`` (``default_setpoint``, what a
run uses when ``Context.reader_setpoint`` is unset; the default generator's probe has
``DEFAULT_READER_SETPOINT`` in code instead). Per-question records go to
``<cache>/bench-reader-setpoint/records.jsonl`` (resumable); the summary to
``benchmarks/results/reader_setpoint.json``. Uses the generalisation benchmark's index.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import random
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from generalization import (
    ROOT,
    SETS,
    Records,
    ask_one,
    read_questions,
    results_suffix,
    span_recorder,
)

__all__ = ["DEV_TITLES", "choose_setpoint", "main", "split"]

DEV_TITLES = ("Geology", "Immune_system", "French_and_Indian_War")
MAX_ANSWERABLE_UNSURE = 0.15


def split(questions: Sequence[dict[str, Any]]) -> tuple[list[Any], list[Any]]:
    """(dev, report): the questions of ``DEV_TITLES``, and the others."""
    dev, rest = [], []
    for q in questions:
        (dev if str(q["passage_id"]).rsplit("-", 1)[0] in DEV_TITLES else rest).append(q)
    return dev, rest


def _halves(questions: Sequence[dict[str, Any]], n: int, seed: str) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    out: list[dict[str, Any]] = []
    for impossible in (False, True):
        pool = [q for q in questions if bool(q["is_impossible"]) is impossible]
        out += rng.sample(pool, min(n, len(pool)))
    return out


def choose_setpoint(rows: Sequence[dict[str, Any]], max_unsure: float) -> float:
    """The lowest setpoint marking at most ``max_unsure`` of answerable rows unsure.

    Example:
        >>> rows = [{"impossible": False, "reader_uncertainty": u} for u in (0.1, 0.2, 0.9)]
        >>> choose_setpoint(rows, 0.34)
        0.2
    """
    values = sorted(
        float(r["reader_uncertainty"])
        for r in rows
        if not r["impossible"] and r.get("reader_uncertainty") is not None
    )
    allowed = math.floor(max_unsure * len(values))
    return values[len(values) - 1 - allowed] if values else math.inf


def rates(rows: Sequence[dict[str, Any]], setpoint: float) -> dict[str, Any]:
    """Share of answerable / unanswerable rows whose uncertainty is above ``setpoint``."""
    out: dict[str, Any] = {}
    for half, impossible in (("answerable", False), ("unanswerable", True)):
        values = [
            float(r["reader_uncertainty"])
            for r in rows
            if r["impossible"] is impossible and r.get("reader_uncertainty") is not None
        ]
        out[half] = {
            "n": len(values),
            "unsure": sum(v > setpoint for v in values) / len(values) if values else None,
        }
    return out


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-half", type=int, default=12, help="questions per half per part")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="summary (default: benchmarks/results/)")
    parser.add_argument(
        "--write", action="store_true", help="store the chosen setpoint in the reader's probe.json"
    )
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from setpoint import Setpoint, Settings
    from setpoint.adapters.lora.reader import shipped_reader_dir

    base = Settings.from_env()
    reader = shipped_reader_dir(base.model)
    out = (
        args.out
        or ROOT / "benchmarks" / "results" / f"reader_setpoint{results_suffix(reader)}.json"
    )
    records = Records(base.cache_dir / "bench-reader-setpoint" / "records.jsonl", fresh=False)
    settings = base.replace(
        collection=SETS["squad_v2"],
        weaviate_url=None,
        weaviate_data_override=base.cache_dir / "bench-generalization-weaviate",
    )
    dev_all, _ = split(read_questions("squad_v2", all_titles=True))
    # Reported on the questions the generalisation benchmark scores (the reader's evaluation titles).
    rest_all = read_questions("squad_v2")
    parts = {
        "dev": _halves(dev_all, args.per_half, f"{args.seed}:dev"),
        "report": _halves(rest_all, args.per_half, f"{args.seed}:report"),
    }
    # Records of another probe are not reused.
    # (The hash leaves the stored setpoint out: --write must not orphan the records.)
    probe = scores_key(reader / "probe.json")
    provider, exporter = span_recorder()
    rows: dict[str, list[dict[str, Any]]] = {p: [] for p in parts}
    started = time.perf_counter()
    with Setpoint(settings, tracer_provider=provider) as sp:
        sp.ingest(ROOT.parent / "shared" / "data" / "squad_v2" / "passages.jsonl", progress=False)
        ctx = sp.context(
            setpoint=math.inf, probe_setpoint=-math.inf, reader_setpoint=math.inf, max_retrievals=1
        )
        for part, questions in parts.items():
            for i, q in enumerate(questions, 1):
                key = ("squad_v2", "dev-retrieve", str(q["id"]), f"reader-setpoint:{probe}")
                row = records.get(key)
                if row is None:
                    row = {"set": "squad_v2", "context": key[3]}
                    row.update(ask_one(sp, exporter, q, "dev-retrieve", ctx))
                    records.add(row)
                rows[part].append(row)
                print(f"{part} {i}/{len(questions)} ({time.perf_counter() - started:.0f} s)")
    chosen = choose_setpoint(rows["dev"], MAX_ANSWERABLE_UNSURE)
    summary = {
        "command": "benchmarks/reader_setpoint.py " + " ".join(argv or sys.argv[1:]),
        "dev_titles": list(DEV_TITLES),
        "max_answerable_unsure": MAX_ANSWERABLE_UNSURE,
        "reader": reader.name,
        "chosen_setpoint": chosen,
        "dev": rates(rows["dev"], chosen),
        "report": rates(rows["report"], chosen),
        "report_ids": [r["qid"] for r in rows["report"]],
        "seconds": time.perf_counter() - started,
    }
    print(json.dumps(summary, indent=2))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    if args.write:
        from dataclasses import replace

        from setpoint.adapters.domain.reader_probe import load_reader_probe

        current = load_reader_probe(reader)
        assert current is not None
        replace(current, default_setpoint=chosen).save(reader / "probe.json")
        print(f"wrote default_setpoint {chosen:.4f} to {reader / 'probe.json'}")


def scores_key(path: Path) -> str:
    """What the records' scores depend on in a probe file: its content without ``default_setpoint``.

    (``generalization.probe_key`` hashes the whole file: there the setpoint changes answers.)
    """
    data = json.loads(path.read_text(encoding="utf-8"))
    data.pop("default_setpoint", None)
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:12]


if __name__ == "__main__":
    main()
