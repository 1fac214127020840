"""Decode steps of the generator under transformers' ``sdpa`` and setpoint's packed-head backend.

Loads the product's generator (``Settings.from_env()``: the default model, bfloat16 where
the CPU computes it) and, in one process, times one decode step over reader-sized KV caches
(a ``--context``-token prompt of the packaged SQuAD sample) for 1, 4 and 16 rows, with the
attention backend switched on the same weights between rounds:

- **equal rows**: every row the same length, so transformers builds no attention mask
  (the serialised generator's case at 1 row; ``sample``'s rows; a batch whose rows happen
  to line up);
- **left-padded rows**: lengths differ by up to 40 tokens, so a mask goes in (the batching
  scheduler's usual case).

The median of ``--steps`` steps per cell, ``--rounds`` rounds with the backends' order
rotated. Also reported: the largest logit difference between the two backends and whether
24 greedy tokens agree on three prompts (bfloat16 rounding differs between the kernels).

Run: ``SETPOINT_THREADS=2 .venv/bin/python benchmarks/decode_attention.py [--rounds 3]``;
prints a table and writes ``benchmarks/results/decode_attention.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

from machine_info import machine, rotated  # the folder of this script is on sys.path

__all__ = ["main"]

ROOT = Path(__file__).resolve().parents[1]
BACKENDS = ("sdpa", "setpoint_sdpa")


def _prompt(generator: Any, tokens: int) -> list[int]:
    """A reader-sized prompt: the packaged sample's passages as context, cut to ``tokens``."""
    sample = ROOT / "setpoint" / "data" / "squad_sample.jsonl"
    texts = [json.loads(line)["text"] for line in sample.read_text().splitlines() if line]
    ids: list[int] = generator.tokenizer(" ".join(texts))["input_ids"]
    if len(ids) < tokens:
        raise SystemExit(f"the sample has only {len(ids)} tokens; ask for fewer")
    return ids[:tokens]


def _step_ms(generator: Any, prompt: list[int], rows: int, ragged: bool, steps: int) -> float:
    """Median milliseconds of one decode step of ``rows`` rows after prefilling them."""
    import torch
    from transformers import DynamicCache

    from setpoint.adapters.model.forward import run_pass

    cut = [(i * 40) // max(1, rows - 1) if ragged else 0 for i in range(rows)]
    ids = torch.tensor([prompt] * rows)
    mask = torch.tensor([[0] * c + [1] * (len(prompt) - c) for c in cut]) if ragged else None
    positions = None if mask is None else (mask.cumsum(-1) - 1).clamp(min=0)
    times = []
    with torch.inference_mode():
        out = run_pass(generator.causal_lm, generator.lens_layers, ids, DynamicCache(),
                       attention_mask=mask, position_ids=positions)  # fmt: skip
        for _ in range(steps):
            token = out.logits[:, 0].argmax(-1, keepdim=True)
            if mask is not None:
                mask = torch.cat([mask, torch.ones(rows, 1, dtype=mask.dtype)], dim=1)
                positions = mask.sum(-1, keepdim=True) - 1
            start = time.perf_counter()
            out = run_pass(generator.causal_lm, generator.lens_layers, token, out.cache,
                           attention_mask=mask, position_ids=positions)  # fmt: skip
            times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def _agreement(generator: Any, prompts: list[list[int]]) -> dict[str, Any]:
    """Greedy tokens and logits of both backends on the same prompts (one row, no mask)."""
    import torch
    from transformers import DynamicCache

    from setpoint.adapters.model.forward import run_pass

    tokens: dict[str, list[list[int]]] = {}
    logits: dict[str, list[Any]] = {}
    for backend in BACKENDS:
        generator.model.set_attn_implementation(backend)
        tokens[backend], logits[backend] = [], []
        with torch.inference_mode():
            for prompt in prompts:
                out = run_pass(generator.causal_lm, generator.lens_layers,
                               torch.tensor([prompt]), DynamicCache())  # fmt: skip
                chosen, first = [], out.logits[0, 0].float()
                for _ in range(24):
                    token = int(out.logits[0, 0].argmax())
                    chosen.append(token)
                    out = run_pass(generator.causal_lm, generator.lens_layers,
                                   torch.tensor([[token]]), out.cache)  # fmt: skip
                tokens[backend].append(chosen)
                logits[backend].append(first)
    diff = max(float((a - b).abs().max()) for a, b in zip(*logits.values(), strict=True))
    same = sum(a == b for a, b in zip(*tokens.values(), strict=True))
    return {
        "max_first_logit_diff": round(diff, 4),
        "greedy_24_tokens_identical": f"{same}/{len(prompts)}",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--context", type=int, default=500, help="prompt tokens per row")
    parser.add_argument("--rows", default="1,4,16")
    parser.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks/results/decode_attention.json"
    )
    args = parser.parse_args()

    from setpoint.adapters.model.attention import use_packed_decode_attention
    from setpoint.agents.resources import Resources
    from setpoint.settings import Settings

    settings = Settings.from_env()
    generator = Resources(settings).generator()
    use_packed_decode_attention(generator.model)  # registers the backend, whatever the setting
    info = machine()
    prompt = _prompt(generator, args.context)
    cells = [(rows, ragged) for rows in map(int, args.rows.split(",")) for ragged in (False, True)
             if rows > 1 or not ragged]  # fmt: skip
    runs: dict[str, dict[str, list[float]]] = {b: {} for b in BACKENDS}
    for round_no in range(args.rounds):
        for backend in rotated(BACKENDS, round_no):
            generator.model.set_attn_implementation(backend)
            for rows, ragged in cells:
                key = f"{rows} {'left-padded' if ragged else 'equal'}"
                ms = _step_ms(generator, prompt, rows, ragged, args.steps)
                runs[backend].setdefault(key, []).append(ms)
    agreement = _agreement(generator, [prompt[:n] for n in (120, 300, args.context)])
    table = []
    print(f"\n{'rows':24s} {'sdpa ms':>9s} {'packed ms':>10s} {'sdpa / packed':>14s}")
    for key in runs["sdpa"]:
        old, new = (statistics.median(runs[b][key]) for b in BACKENDS)
        table.append({"rows": key, "sdpa_ms": round(old, 1), "packed_ms": round(new, 1),
                      "ratio": round(old / new, 2)})  # fmt: skip
        print(f"{key:24s} {old:9.1f} {new:10.1f} {old / new:14.2f}")
    print(f"agreement: {agreement}")
    result = {
        "command": "python benchmarks/decode_attention.py "
        f"--rounds {args.rounds} --steps {args.steps} --context {args.context} --rows {args.rows}",
        "created": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": info,
        "model": generator.name,
        "dtype": str(generator.model.dtype),
        "table": table,
        "runs_ms": runs,
        "agreement": agreement,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
