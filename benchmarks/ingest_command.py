"""The whole ``setpoint ingest`` command, as a user runs it: passages/s of its final line and wall time.

Each variant ingests the same file into a fresh embedded Weaviate (a new data folder, so
the server starts and the collection is new every time), and the variants run
interleaved, ``--rounds`` times, so a change in the machine's load falls on all alike.
A variant is ``NAME=ENV...`` with command-line flags after a colon, e.g.
``batch64=:--batch-size 64`` or ``torch=SETPOINT_EMBED_BACKEND=torch``.

Reported per variant: the median over rounds of the command's own rate (its final line,
which counts from connecting to the last write, so without the server's start-up) and of
the command's wall time (everything: Python start-up, imports, server start, model load).

Run: ``.venv/bin/python benchmarks/ingest_command.py`` (SQuAD dev's 2,067 passages).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from machine_info import machine, rotated  # the folder of this script is on sys.path

from setpoint.adapters.lora.qa_data import default_squad_dir

ROOT = Path(__file__).resolve().parents[1]
RATE = re.compile(r"in ([0-9.]+) s \(([0-9]+) passages/s\)")

__all__ = ["main", "parse_variant"]


def parse_variant(spec: str) -> tuple[str, dict[str, str], list[str]]:
    """``NAME=K=V,K=V:--flag value`` as (name, environment, extra arguments).

    Example:
        >>> parse_variant("torch=SETPOINT_EMBED_BACKEND=torch:--batch-size 64")
        ('torch', {'SETPOINT_EMBED_BACKEND': 'torch'}, ['--batch-size', '64'])
    """
    name, _, rest = spec.partition("=")
    env_part, _, flags = rest.partition(":")
    env = dict(item.split("=", 1) for item in env_part.split(",") if item)
    return name, env, shlex.split(flags)


def run_once(passages: Path, env: dict[str, str], flags: list[str], work: Path) -> dict[str, Any]:
    """One fresh ingest; its final line's seconds and rate, and the command's wall time."""
    data = Path(tempfile.mkdtemp(prefix="wv-", dir=work))
    command = [str(ROOT / ".venv/bin/setpoint"), "ingest", str(passages), "--quiet"]
    command += ["--collection", "IngestCommandBench", *flags]
    started = time.perf_counter()
    done = subprocess.run(
        command,
        env={**os.environ, "SETPOINT_WEAVIATE_DATA": str(data), **env},
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    wall = time.perf_counter() - started
    found = RATE.search(done.stdout + done.stderr)
    if done.returncode != 0 or found is None:
        raise SystemExit(
            f"ingest failed ({done.returncode}): {(done.stderr or done.stdout)[-400:]}"
        )
    return {"wall_s": wall, "ingest_s": float(found.group(1)), "rate": float(found.group(2))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--passages", type=Path, default=default_squad_dir() / "passages.jsonl")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--variant",
        action="append",
        help="NAME=ENV,...:FLAGS (repeatable; default: the product's defaults only)",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/ingest_command.json")
    args = parser.parse_args()
    variants = [parse_variant(v) for v in (args.variant or ["default="])]
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name, _, _ in variants}
    info = machine()
    with tempfile.TemporaryDirectory(prefix="ingest-command-") as work:
        for round_no in range(args.rounds):
            for name, env, flags in rotated(variants, round_no):
                result = run_once(args.passages, env, flags, Path(work))
                runs[name].append(result)
                print(f"round {round_no + 1} {name}: {result}", flush=True)
    rows = []
    for name, env, flags in variants:
        results = runs[name]
        rows.append(
            {
                "variant": name,
                "env": env,
                "flags": flags,
                "rate_median": statistics.median(r["rate"] for r in results),
                "ingest_s_median": statistics.median(r["ingest_s"] for r in results),
                "wall_s_median": statistics.median(r["wall_s"] for r in results),
                "runs": results,
            }
        )
    print(f"\n{args.passages} ({args.rounds} rounds, interleaved)\n")
    print("| variant | passages/s (final line) | ingest s | command wall s |")
    print("|---|---:|---:|---:|")
    for row in rows:
        print(
            f"| {row['variant']} | {row['rate_median']:.0f} | {row['ingest_s_median']:.1f} "
            f"| {row['wall_s_median']:.1f} |"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps({"machine": info, "passages": str(args.passages), "rows": rows}, indent=2)
        + "\n",
        encoding="utf-8",
    )
    print(f"\nJSON: {args.out}")


if __name__ == "__main__":
    main()
