"""Overhead of setpoint's answer-from-weights path against plain ``model.generate()``.

Same model, same prompts, same greedy decoding, in one process, interleaved A/B so machine
noise hits both sides alike. Three variants are timed per prompt:

* ``generate``  — ``model.generate(do_sample=False)`` (the baseline),
* ``stream``    — setpoint's generator: probe (prefill + signals) then the stepwise decode with
  entropy, margin and logit-lens signals and the thermostat, no graph,
* ``graph``     — the whole LangGraph run with the setpoint at infinity (guard, probe,
  generate, check, finalize; tracing to an in-memory exporter).

Run: ``.venv/bin/python benchmarks/overhead.py [--repeats 3] [--max-new-tokens 48]``.
Prints a table and writes ``benchmarks/results/overhead.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import time
from pathlib import Path

PROMPTS = [
    "What is the capital of France?",
    "What is the largest planet in the solar system?",
    "Who painted the Mona Lisa?",
    "How many legs does a spider have?",
    "What is the boiling point of water in Celsius?",
    "Which NFL team represented the AFC at Super Bowl 50?",
    "What language is spoken in Spain?",
    "Explain in two sentences what a thermostat does.",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "overhead.json"))
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    import torch
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from setpoint.agents.resources import Resources
    from setpoint.agents.thermostat import Thermostat
    from setpoint.graphs.context import Context
    from setpoint.graphs.graph import build_graph
    from setpoint.settings import Settings
    from setpoint.tracing import configure_tracing

    settings = Settings.from_env()
    spans = InMemorySpanExporter()
    res = Resources(settings=settings, tracer_provider=configure_tracing(exporters=[spans]))
    gen = res.generator()
    res.warm_up_retrieval()
    res.retrieval_available()  # the graph's finalize asks; start the server outside the timing
    graph = build_graph(res)
    ctx = Context(setpoint=math.inf, max_new_tokens=args.max_new_tokens)
    eos = sorted(gen.stop_ids)

    def run_generate(ids: list[int]) -> int:
        out = gen.model.generate(
            torch.tensor([ids]),
            max_new_tokens=args.max_new_tokens,
            do_sample=False,
            eos_token_id=eos,
            pad_token_id=eos[0],
        )
        new = out[0, len(ids) :].tolist()
        return len([t for t in new if t not in gen.stop_ids])

    def run_stream(ids: list[int]) -> int:
        gen.probe(ids)
        thermostat = Thermostat(ctx)
        n = 0
        for token in gen.stream(ids, max_new_tokens=args.max_new_tokens):
            thermostat.update(token.signals.entropy)
            if token.token_id in gen.stop_ids:
                break
            n += 1
        return n

    def run_graph_counted(question: str) -> int:
        state = graph.invoke({"question": question}, context=ctx)
        chat = [s for s in spans.get_finished_spans() if s.name.startswith("chat ")][-1]
        spans.clear()
        assert state["route"] == "answer"
        return int(chat.attributes["gen_ai.usage.output_tokens"])

    variants = {
        "generate": lambda q, ids: run_generate(ids),
        "stream": lambda q, ids: run_stream(ids),
        "graph": lambda q, ids: run_graph_counted(q),
    }
    # warm-up
    for fn in variants.values():
        fn(PROMPTS[0], gen.prompt_ids(PROMPTS[0]))

    totals = {name: {"tokens": 0, "seconds": 0.0, "per_prompt": []} for name in variants}
    for _ in range(args.repeats):
        for question in PROMPTS:
            ids = gen.prompt_ids(question)
            for name, fn in variants.items():
                t0 = time.perf_counter()
                n = fn(question, ids)
                dt = time.perf_counter() - t0
                totals[name]["tokens"] += n  # type: ignore[operator]
                totals[name]["seconds"] += dt  # type: ignore[operator]
                totals[name]["per_prompt"].append(n / dt if dt > 0 else 0.0)  # type: ignore[union-attr]

    base = totals["generate"]["tokens"] / totals["generate"]["seconds"]  # type: ignore[operator]
    rows = []
    for name, t in totals.items():
        tps = t["tokens"] / t["seconds"]  # type: ignore[operator]
        rows.append(
            {
                "variant": name,
                "tokens": t["tokens"],
                "seconds": round(t["seconds"], 3),  # type: ignore[arg-type]
                "tokens_per_s": round(tps, 2),
                "median_prompt_tokens_per_s": round(statistics.median(t["per_prompt"]), 2),  # type: ignore[arg-type]
                "ratio_vs_generate": round(tps / base, 3),
            }
        )
    print(f"{'variant':<10} {'tokens':>7} {'seconds':>8} {'tok/s':>7} {'ratio':>6}")
    for r in rows:
        print(
            f"{r['variant']:<10} {r['tokens']:>7} {r['seconds']:>8.2f} {r['tokens_per_s']:>7.2f} {r['ratio_vs_generate']:>6.3f}"
        )
    result = {
        "benchmark": "overhead",
        "model": gen.name,
        "lens_layers": list(gen.lens_layers),
        "threads": torch.get_num_threads(),
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "cpus": os.cpu_count(),
        },
        "repeats": args.repeats,
        "max_new_tokens": args.max_new_tokens,
        "prompts": PROMPTS,
        "rows": rows,
        "target_ratio": 0.95,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2), encoding="utf-8")
    print(f"saved {args.out}")
    res.close()


if __name__ == "__main__":
    main()
