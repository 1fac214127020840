"""Time per ``ask`` per route, float32 against bfloat16 generator weights, on the same questions.

Each variant (``NAME=ENV,...``, e.g. ``bfloat16=SETPOINT_PRECISION=bfloat16``) runs in a
fresh process that loads the product with that environment, asks one untimed warm-up
question, then every sampled question of every set through ``Setpoint().ask`` at default
settings. Variants run interleaved, ``--rounds`` times with the order rotated, so a
change in the machine's load falls on all alike. The sets' passages are the collections
``benchmarks/generalization.py`` ingests (the same index; ingested here when missing).

Reported per variant: median and mean seconds per question, per route and overall (the
median over rounds of each), F1 against the gold answers, the share of "not sure", and
how many answers differ from the first variant's.

Run: ``.venv/bin/python benchmarks/ask_precision.py --limit 40 --rounds 2``
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from generalization import DATA, ROOT, SETS, WARM_UP, scored_sample
from ingest_command import parse_variant
from machine_info import machine, rotated  # the folder of this script is on sys.path

from setpoint.adapters.domain.metrics import best_f1
from setpoint.settings import Settings

__all__ = ["main"]

DEFAULT_VARIANTS = ("float32=SETPOINT_PRECISION=float32", "bfloat16=SETPOINT_PRECISION=bfloat16")


def _settings(name: str, index: Path) -> Settings:
    return Settings.from_env().replace(collection=SETS[name], weaviate_data_override=index)


def worker(args: argparse.Namespace) -> None:
    """Ask every question in this process's environment; one ``ROW`` JSON line each."""
    from setpoint import Setpoint

    for name in args.sets:
        questions = scored_sample(name, args.limit, args.seed)
        with Setpoint(_settings(name, args.index)) as sp:
            sp.ask(WARM_UP)
            for question in questions:
                started = time.perf_counter()
                result = sp.ask(question["question"])
                seconds = time.perf_counter() - started
                row = {
                    "set": name,
                    "id": str(question["id"]),
                    "seconds": seconds,
                    "route": str(result.route),
                    "status": str(result.status),
                    "answer": result.answer,
                    "retrieval_calls": result.retrieval_calls,
                    "f1": best_f1(result.answer, question["answers"])
                    if question.get("answers")
                    else None,
                }
                print("ROW " + json.dumps(row), flush=True)


def _ingest(sets: list[str], index: Path) -> None:
    from setpoint import Setpoint

    for name in sets:
        with Setpoint(_settings(name, index)) as sp:
            report = sp.ingest(DATA / name / "passages.jsonl", progress=False)
        if not report.ok:
            raise SystemExit(f"{name}: ingest failed for {len(report.failed)} passages")
        print(f"{name}: {SETS[name]}: {report.summary()}", flush=True)


def _run(args: argparse.Namespace, env: dict[str, str]) -> list[dict[str, Any]]:
    command = [sys.executable, __file__, "--worker", "--sets", ",".join(args.sets)]
    command += ["--limit", str(args.limit), "--seed", str(args.seed), "--index", str(args.index)]
    done = subprocess.run(
        command, env={**os.environ, **env}, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"worker failed ({done.returncode}): {done.stderr[-600:]}")
    return [json.loads(line[4:]) for line in done.stdout.splitlines() if line.startswith("ROW ")]


def _summary(rounds: list[list[dict[str, Any]]], first: list[dict[str, Any]]) -> dict[str, Any]:
    routes = sorted({r["route"] for rows in rounds for r in rows})

    def median_of(pick: Any) -> float | None:
        values = [pick(rows) for rows in rounds]
        values = [v for v in values if v is not None]
        return statistics.median(values) if values else None

    def per_route(rows: list[dict[str, Any]], route: str | None) -> float | None:
        times = [r["seconds"] for r in rows if route is None or r["route"] == route]
        return statistics.median(times) if times else None

    last = rounds[-1]
    scored = [r["f1"] for r in last if r["f1"] is not None]
    return {
        "median_s": median_of(lambda rows: per_route(rows, None)),
        "mean_s": median_of(lambda rows: statistics.mean(r["seconds"] for r in rows)),
        "total_s": median_of(lambda rows: sum(r["seconds"] for r in rows)),
        "median_s_by_route": {
            route: median_of(lambda rows, route=route: per_route(rows, route)) for route in routes
        },
        "questions_by_route": {route: sum(r["route"] == route for r in last) for route in routes},
        "f1": statistics.mean(scored) if scored else None,
        "unsure": sum(r["status"] == "unsure" for r in last) / len(last),
        "answers_differing_from_first": sum(
            a["answer"] != b["answer"] or a["status"] != b["status"]
            for a, b in zip(last, first, strict=True)
        ),
        "rounds": rounds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", default="squad,nq_open", type=lambda t: t.split(","))
    parser.add_argument("--limit", type=int, default=40, help="questions per set")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--variant", action="append", help="NAME=ENV,... (repeatable)")
    parser.add_argument("--index", type=Path, default=None, help="Weaviate data folder")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/ask_precision.json")
    args = parser.parse_args()
    unknown = [name for name in args.sets if name not in SETS]
    if unknown:
        raise SystemExit(f"unknown set(s) {unknown}; choose from {', '.join(SETS)}")
    args.index = args.index or Settings.from_env().cache_dir / "bench-generalization-weaviate"
    if args.worker:
        worker(args)
        return
    info = machine()
    _ingest(args.sets, args.index)
    variants = [parse_variant(v)[:2] for v in (args.variant or DEFAULT_VARIANTS)]
    runs: dict[str, list[list[dict[str, Any]]]] = {name: [] for name, _ in variants}
    for round_no in range(args.rounds):
        for name, env in rotated(variants, round_no):
            started = time.perf_counter()
            runs[name].append(_run(args, env))
            print(f"round {round_no + 1} {name}: {time.perf_counter() - started:.0f} s", flush=True)
    first = runs[variants[0][0]][-1]
    rows = {name: {"env": env, **_summary(runs[name], first)} for name, env in variants}
    routes = sorted({route for row in rows.values() for route in row["median_s_by_route"]})
    base = rows[variants[0][0]]
    print(f"\n{', '.join(args.sets)}: {args.limit} questions each, {args.rounds} rounds\n")
    header = " | ".join(f"median s {r}" for r in routes)
    print(f"| variant | median s | mean s | {header} | × first (mean) | F1 | not sure | differ |")
    print("|---|---:|---:|" + "---:|" * len(routes) + "---:|---:|---:|---:|")
    for name, row in rows.items():
        by_route = " | ".join(
            f"{row['median_s_by_route'].get(r) or float('nan'):.2f}" for r in routes
        )
        print(
            f"| {name} | {row['median_s']:.2f} | {row['mean_s']:.2f} | {by_route} "
            f"| {base['mean_s'] / row['mean_s']:.2f} | {row['f1']:.3f} | {row['unsure']:.2f} "
            f"| {row['answers_differing_from_first']} |"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    payload = {"machine": info, "sets": args.sets, "limit": args.limit, "variants": rows}
    args.out.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    print(f"\nJSON: {args.out}")


if __name__ == "__main__":
    main()
