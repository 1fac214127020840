"""How a generator reads with no reader adapter: the adapter's prompt against the base-reader prompt.

A model without a reader adapter (the second family, or ``reader_adapter=None``) learned no
answer format. This measures what the product does about it: each question is answered
with the passages that hold its answer, by the generator of ``SETPOINT_MODEL`` with its base
weights, four ways, interleaved:

* ``adapter-prompt``: ``READER_SYSTEM_PROMPT``, the messages the reader adapters were
  trained on (``chat_messages(..., tuned_reader=True)``), grounded decoding (quotes or
  ``unanswerable``, as before yes/no was allowed);
* ``adapter-prompt/free``: the same, free decoding;
* ``base-prompt``: ``BASE_READER_SYSTEM_PROMPT`` and its cue after the question
  (``tuned_reader=False``, what the product uses when no reader adapter reads), grounded
  decoding with ``unquoted_answers`` allowed as in the product (unanswerable; yes / no to a
  yes/no question);
* ``base-prompt/free``: the same, free decoding.

Questions: SQuAD questions of the shipped reader's **evaluation titles** (its ``split.json``)
with their gold passage, and 2WikiMultihopQA **train-split** questions with their
supporting passages (``../shared/data/2wikimultihopqa_train``; the dev set that
``generalization.py`` scores is not read). The prompt was chosen on these, so neither is a
report set: ``generalization.py`` is where the choice is checked.

Run: ``SETPOINT_MODEL=qwen2.5-coder-0.5b .venv/bin/python benchmarks/reader_prompt.py``.
Prints a table; writes ``benchmarks/results/reader_prompt-<model>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import time
from pathlib import Path
from typing import Any

from machine_info import machine  # the folder of this script is on sys.path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
VARIANTS = ("adapter-prompt", "adapter-prompt/free", "base-prompt", "base-prompt/free")


def _items(squad: int, multihop: int, seed: int) -> list[tuple[str, str, list[str], list[Any]]]:
    """``(set, question, gold answers, passages)``: SQuAD evaluation titles, 2Wiki train."""
    from setpoint.adapters.lora.qa_data import TitleSplit, load_multihop, load_squad
    from setpoint.adapters.lora.reader import shipped_reader_dir
    from setpoint.adapters.lora.record import SPLIT_FILE

    squad_set = load_squad(SHARED / "squad")
    squad_qs = squad_set.in_titles(TitleSplit.load(shipped_reader_dir() / SPLIT_FILE).eval)
    wiki = load_multihop(SHARED / "2wikimultihopqa_train")
    wiki_qs = list(wiki.questions)
    rng = random.Random(seed)
    rng.shuffle(squad_qs)
    rng.shuffle(wiki_qs)
    items = [
        ("squad", q.question, list(q.answers), [squad_set.passages[q.passage_id]])
        for q in squad_qs[:squad]
    ]
    items += [
        ("2wiki_train", q.question, list(q.answers), [wiki.passages[i] for i in q.supporting_ids])
        for q in wiki_qs[:multihop]
    ]
    return items


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--squad", type=int, default=40, help="SQuAD evaluation-title questions")
    parser.add_argument("--multihop", type=int, default=40, help="2Wiki train questions")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--max-new-tokens", type=int, default=24)
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated subset")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    variants = [v for v in args.variants.split(",") if v]
    if not set(variants) <= set(VARIANTS):
        parser.error(f"--variants: choose from {', '.join(VARIANTS)}")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from setpoint.adapters.domain.metrics import best_exact_match, best_f1
    from setpoint.adapters.lora.reader import NO_ANSWER, unquoted_answers
    from setpoint.adapters.model.generator import Generator
    from setpoint.adapters.model.quoting import SpanConstraint
    from setpoint.settings import Settings

    settings = Settings.from_env()
    generator = Generator.from_pretrained(
        settings.generator_dir, threads=settings.threads, precision=settings.precision
    )
    items = _items(args.squad, args.multihop, args.seed)
    rows: dict[str, list[dict[str, Any]]] = {v: [] for v in variants}
    started = time.perf_counter()
    for n, (kind, question, golds, passages) in enumerate(items, start=1):
        for variant in variants:
            base = variant.startswith("base")
            prompt = generator.prompt_ids(question, passages, tuned_reader=not base)
            constraint = None
            if not variant.endswith("/free"):
                extra = unquoted_answers(question) if base else (NO_ANSWER,)
                constraint = SpanConstraint.for_generator(generator, passages, extra=extra)
            t0 = time.perf_counter()
            pieces: list[str] = []
            for token in generator.stream(
                prompt, max_new_tokens=args.max_new_tokens, logits_processor=constraint
            ):
                if token.token_id in generator.stop_ids:
                    break
                pieces.append(token.text)
            answer = "".join(pieces).strip()
            rows[variant].append(
                {
                    "set": kind,
                    "question": question,
                    "answer": answer,
                    "f1": best_f1(answer, golds),
                    "em": best_exact_match(answer, golds),
                    "tokens": len(pieces),
                    "seconds": time.perf_counter() - t0,
                }
            )
        if n % 10 == 0 or n == len(items):
            print(f"  {n}/{len(items)} ({time.perf_counter() - started:.0f} s)", flush=True)

    table: list[dict[str, Any]] = []
    for variant in variants:
        for kind in ("squad", "2wiki_train"):
            part = [r for r in rows[variant] if r["set"] == kind]
            if not part:
                continue
            table.append(
                {
                    "variant": variant,
                    "set": kind,
                    "n": len(part),
                    "f1": statistics.fmean(r["f1"] for r in part),
                    "em": statistics.fmean(r["em"] for r in part),
                    "median_tokens": statistics.median(r["tokens"] for r in part),
                    "seconds_mean": statistics.fmean(r["seconds"] for r in part),
                }
            )
    print(f"\nmodel {settings.model} ({generator.name}), base weights, gold/supporting passages")
    print("| variant | set | n | F1 | EM | median answer tokens | s/answer |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for r in table:
        print(
            f"| {r['variant']} | {r['set']} | {r['n']} | {r['f1']:.3f} | {r['em']:.3f} | "
            f"{r['median_tokens']:g} | {r['seconds_mean']:.2f} |"
        )
    out = args.out or ROOT / "benchmarks" / "results" / f"reader_prompt-{settings.model}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "command": "benchmarks/reader_prompt.py "
        + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if k != "out"),
        "model": settings.model,
        "machine": machine(),
        "seconds": time.perf_counter() - started,
        "table": table,
        "answers": rows,
    }
    out.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
