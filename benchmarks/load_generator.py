"""Generator-level load: concurrent conversations decoding in one process, serialised vs batched.

Each conversation is a thread asking the load test's question mix one after another, the
way the graph drives the generator: general questions decode closed-book with the base
model, SQuAD questions decode as the reader (the shipped reader adapter, three sample
passages, ~500-token prompts) and draw no samples. Both modes use the same weights in the
same process, level by level, so their ratio is not skewed by other load drifting between
runs of separate processes. Also measured: one mixed-adapter decode step against one step
per adapter (the choice ``scheduler`` makes).

Run: ``.venv/bin/python benchmarks/load.py --in-process [--levels 1,4,16] [--duration 60]``.
"""

from __future__ import annotations

import json
import random
import resource
import statistics
import threading
import time
from pathlib import Path
from typing import Any

__all__ = ["run_in_process"]

ROOT = Path(__file__).resolve().parents[1]


def _prompts(generator: Any, general: list[str]) -> list[tuple[str, str | None, list[int]]]:
    """(route, adapter, prompt ids): the closed-book and reader mix."""
    from setpoint.adapters.model.prompts import Passage

    records = [
        json.loads(line)
        for line in (ROOT / "setpoint" / "data" / "squad_sample.jsonl").read_text().splitlines()
    ]
    passages = [Passage(r["id"], r["title"], r["text"]) for r in records]
    squad = [f"What is {r['title'].replace('_', ' ')} about?" for r in records[:8]]
    mix: list[tuple[str, str | None, list[int]]] = []
    for i, question in enumerate(general):
        mix.append(("closed_book", None, generator.prompt_ids(question)))
        context = passages[(3 * i) % len(passages) :][:3]
        mix.append(("reader", "reader", generator.prompt_ids(squad[i % len(squad)], context)))
    return mix


def _level(generator: Any, mix: list[Any], conversations: int, duration: float) -> dict[str, Any]:
    samples: list[tuple[str, float, int]] = []
    lock = threading.Lock()
    stop_at = time.monotonic() + duration

    def conversation(n: int) -> None:
        order = random.Random(n).sample(mix, len(mix))
        i = 0
        while time.monotonic() < stop_at:
            route, adapter, prompt = order[i % len(order)]
            i += 1
            generator.set_adapter(adapter)
            started = time.monotonic()
            tokens = len(list(generator.stream(prompt, max_new_tokens=24)))
            with lock:
                samples.append((route, time.monotonic() - started, tokens))

    before = generator.scheduler.stats() if generator.scheduler else None
    threads = [threading.Thread(target=conversation, args=(n,)) for n in range(conversations)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - started
    routes: dict[str, list[float]] = {}
    for route, seconds, _ in samples:
        routes.setdefault(route, []).append(seconds)
    result: dict[str, Any] = {
        "requests": len(samples),
        "requests_per_s": round(len(samples) / wall, 3),
        "tokens_per_s": round(sum(t for *_, t in samples) / wall, 1),
        "latency_s": {
            route: {
                "n": len(v),
                "p50": round(statistics.median(v), 2),
                "p95": round(sorted(v)[max(0, int(0.95 * len(v)) - 1)], 2),
            }
            for route, v in sorted(routes.items())
        },
        "rss_mb": _rss_mb(),
    }
    if generator.scheduler is not None and before is not None:
        after = generator.scheduler.stats()
        steps = after["decode_steps"] - before["decode_steps"]
        result["mean_batch_rows"] = round((after["row_steps"] - before["row_steps"]) / steps, 2)
    return result


def _rss_mb() -> float:
    """Resident memory of this process now (both generators' weights included)."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return round(pages * resource.getpagesize() / 2**20, 1)


def _adapter_batches(generator: Any, rows: int = 8, steps: int = 8) -> dict[str, float]:
    """ms per decode step: one mixed-adapter batch vs one batch per adapter (half base, half reader)."""
    import torch
    from transformers import DynamicCache

    from setpoint.adapters.model.forward import run_pass

    lm = generator.causal_lm
    prompt = torch.tensor([generator.prompt_ids("What is the capital of France?")])

    def timed(names: list[str | None]) -> float:
        cache = DynamicCache()
        with torch.inference_mode(), generator.adapter_scope(names):
            run_pass(lm, generator.lens_layers, prompt.expand(len(names), -1), cache)
            ids = torch.zeros((len(names), 1), dtype=torch.long)
            started = time.perf_counter()
            for _ in range(steps):
                run_pass(lm, generator.lens_layers, ids, cache)
        return (time.perf_counter() - started) / steps * 1000

    half: list[str | None] = [None] * (rows // 2) + ["reader"] * (rows // 2)
    with generator.lock:
        mixed = timed(half)
        split = timed([None] * (rows // 2)) + timed(["reader"] * (rows // 2))
    return {"rows": rows, "mixed_ms": round(mixed, 1), "per_adapter_ms": round(split, 1)}


def run_in_process(levels: list[int], duration: float, general: list[str]) -> dict[str, Any]:
    """Both modes at every level; returns the ``load_in_process`` section."""
    from setpoint.adapters.lora.reader import shipped_reader_dir
    from setpoint.adapters.model.generator import BatchLimits, Generator
    from setpoint.settings import Settings

    settings = Settings.from_env()
    # Two copies of the weights: PEFT wraps a model in place, so two generators on one model
    # would switch each other's adapter layers.
    serial = Generator.from_pretrained(
        settings.generator_dir, threads=settings.threads, precision=settings.precision
    )
    batched = Generator.from_pretrained(
        settings.generator_dir,
        threads=settings.threads,
        precision=settings.precision,
        batching=BatchLimits(settings.max_batch, settings.max_queue),
    )
    for generator in (serial, batched):
        generator.load_adapter(shipped_reader_dir(), "reader")
    mix = _prompts(serial, general)
    results: dict[str, Any] = {"duration_s_per_level": duration, "levels": {}}
    results["adapter_batches"] = _adapter_batches(batched)
    print(f"mixed-adapter step vs per-adapter steps: {results['adapter_batches']}", flush=True)
    for level in levels:
        row = {}
        for mode, generator in (("serialised", serial), ("batched", batched)):
            row[mode] = _level(generator, mix, level, duration)
            print(f"{level:>3} conversations {mode:<10} {row[mode]}", flush=True)
        row["throughput_ratio"] = round(
            row["batched"]["requests_per_s"] / max(row["serialised"]["requests_per_s"], 1e-9), 2
        )
        results["levels"][str(level)] = row
    return results
