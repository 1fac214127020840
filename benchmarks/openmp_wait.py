"""The generator's forward passes under three OpenMP wait settings, each in a fresh process.

torch's GNU OpenMP runtime reads ``OMP_WAIT_POLICY`` / ``GOMP_SPINCOUNT`` once, at
``import torch``, so every variant runs in its own process (started with exactly the
variant's environment, without importing setpoint, which would set its defaults). Each
process loads the generator (``Settings.generator_dir``, bfloat16 as served on CPUs that
compute it, else float32) and times, best of ``--repeats``:

- a 600-token prefill in one pass, and in 128-token chunks (the batching scheduler's
  ``prefill_chunk`` while other rows decode);
- one decode step of 1 and of 16 rows over 500-token KV caches.

It also reports the process's CPU seconds per wall second during each measurement
(2.0 = both cores of a 2-thread run busy). Variants run interleaved, ``--rounds`` times.

Run: ``.venv/bin/python benchmarks/openmp_wait.py [--rounds 2]``; prints a table and
writes ``benchmarks/results/openmp_wait.json``.
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

from machine_info import machine, rotated  # the folder of this script is on sys.path

__all__ = ["main"]

ROOT = Path(__file__).resolve().parents[1]
MEASURES = (
    "prefill 600",
    "prefill 600 in 128-token chunks",
    "decode step, 1 row",
    "decode step, 16 rows",
)


def _timed(run: Any, repeats: int) -> tuple[float, float]:
    """Best wall seconds of ``repeats`` calls of ``run``, and CPU/wall during that call."""
    best, busy = float("inf"), 0.0
    for _ in range(repeats):
        cpu, wall = time.process_time(), time.perf_counter()
        run()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        if wall < best:
            best, busy = wall, cpu / wall
    return best, busy


def worker(
    model_dir: str, dtype: str, threads: int, repeats: int
) -> dict[str, tuple[float, float]]:
    """Time every measure in this process (its environment is the variant's)."""
    import torch
    from transformers import AutoModelForCausalLM, DynamicCache

    torch.set_num_threads(threads)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=getattr(torch, dtype))
    decoder = model.get_decoder()
    generator = torch.Generator().manual_seed(0)
    prompt = torch.randint(100, 40000, (1, 600), generator=generator)

    def prefill(chunk: int) -> None:
        cache = DynamicCache()
        for at in range(0, prompt.shape[1], chunk):
            decoder(input_ids=prompt[:, at : at + chunk], cache=cache, use_cache=True)

    def decode(rows: int) -> Any:
        cache = DynamicCache()
        decoder(input_ids=prompt[:, :500].repeat(rows, 1), cache=cache, use_cache=True)
        token = torch.full((rows, 1), 500)

        def step() -> None:
            decoder(input_ids=token, cache=cache, use_cache=True)
            cache.crop(-1)  # every repeat decodes after the same 500 tokens

        return step

    with torch.inference_mode():
        runs = [lambda: prefill(600), lambda: prefill(128), decode(1), decode(16)]
        return {name: _timed(run, repeats) for name, run in zip(MEASURES, runs, strict=True)}


def _variants() -> dict[str, dict[str, str]]:
    """name -> the OpenMP variables of that run (nothing else of the environment changes).

    Imported here, in the parent only: a worker importing setpoint would get its defaults.
    """
    from setpoint.openmp import OPENMP_DEFAULTS

    return {
        f"setpoint default: passive after {int(OPENMP_DEFAULTS['GOMP_SPINCOUNT']):,} spins": dict(
            OPENMP_DEFAULTS
        ),
        "passive (the previous default)": {"OMP_WAIT_POLICY": "PASSIVE"},
        "libgomp's own default (neither set)": {},
    }


def _run(
    model_dir: Path, dtype: str, env: dict[str, str], args: argparse.Namespace
) -> dict[str, Any]:
    from setpoint.openmp import OPENMP_DEFAULTS

    clean = {k: v for k, v in os.environ.items() if k not in OPENMP_DEFAULTS}
    command = [sys.executable, __file__, "--worker", str(model_dir), "--dtype", dtype]
    command += ["--threads", str(args.threads), "--repeats", str(args.repeats)]
    done = subprocess.run(
        command, env={**clean, **env}, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"worker failed ({done.returncode}): {done.stderr[-600:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--dtype", default="float32", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/openmp_wait.json")
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.dtype, args.threads, args.repeats)))
        return
    from setpoint.adapters.model.precision import use_bfloat16
    from setpoint.settings import Settings

    settings = Settings.from_env()
    model_dir = settings.generator_dir
    # The served generator's float type (``SETPOINT_PRECISION``), chosen here: importing
    # setpoint in a worker would set the OpenMP defaults the variants compare.
    dtype = "bfloat16" if use_bfloat16(settings.precision, what="generator") else "float32"
    variants = _variants()
    names = list(variants)
    rounds: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    for r in range(args.rounds):
        for name in rotated(names, r):
            rounds[name].append(_run(model_dir, dtype, variants[name], args))
            print(f"round {r + 1} {name}: done", flush=True)
    results = {
        name: {
            measure: {
                "ms": statistics.median(1000 * run[measure][0] for run in runs),
                "cpu_per_wall": statistics.median(run[measure][1] for run in runs),
            }
            for measure in MEASURES
        }
        for name, runs in rounds.items()
    }
    base = results[names[0]]
    print(
        f"\n{dtype}, {args.threads} threads, median over {args.rounds} rounds of the best of "
        f"{args.repeats}; each cell: ms (CPU/wall, × the first row)\n"
    )
    print("| variant | " + " | ".join(MEASURES) + " |")
    print("|---|" + "---:|" * len(MEASURES))
    for name, row in results.items():
        cells = [
            f"{row[m]['ms']:.0f} ({row[m]['cpu_per_wall']:.2f}, ×{row[m]['ms'] / base[m]['ms']:.2f})"
            for m in MEASURES
        ]
        print(f"| {name} | " + " | ".join(cells) + " |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "command": "benchmarks/openmp_wait.py " + " ".join(sys.argv[1:]),
        "machine": machine(),
        "model_dir": str(model_dir),
        "dtype": dtype,
        "variants": variants,
        "results": results,
        "rounds": rounds,
    }
    args.out.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    print(f"\nJSON: {args.out}")


if __name__ == "__main__":
    main()
