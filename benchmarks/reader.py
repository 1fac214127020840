"""Reader quality on held-out SQuAD articles: base model vs the shipped reader adapter vs reader + grounded decoding.

Questions come only from the adapter's evaluation titles (``split.json`` next to the
adapter), so none of their articles was seen in training. Each question is answered six
ways, interleaved so that machine load hits every variant alike:

* context: the gold passage alone, or the top-3 passages of the project's Weaviate hybrid
  search (``WeaviateStore.hybrid_search``, default alpha and rerank) over all 2,067 passages;
* model: the base SmolLM2, the reader adapter, the reader adapter with grounded decoding,
  and (``sampled``, opt-in with ``--variants``) grounded decoding plus ``--samples`` answers
  drawn for the disagreement signal that ``Context(reader_samples=…)`` uses. When the
  adapter has a reader probe (``probe.json``), the grounded answers are also scored by it.

Reported per variant: EM, F1, median answer tokens, seconds per answer; for the uncertainty
signals AUROC for wrong answers (wrong = F1 < 0.5) and accuracy at 80 % coverage (the 80 %
least uncertain answers); the accuracy-coverage curve of the reader variants; training
time, tokens/s and examples from the adapter's training record.

Run: ``.venv/bin/python benchmarks/reader.py`` (``--help`` for options). Prints a table and
writes ``benchmarks/results/reader.json``. The Weaviate index lives in
``<cache>/bench-reader-weaviate`` and the retrieved passages are cached in
``benchmarks/results/reader_retrieval.json`` so reruns skip retrieval.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from machine_info import machine  # the folder of this script is on sys.path

ROOT = Path(__file__).resolve().parents[1]
WRONG_BELOW_F1 = 0.5


# ------------------------------------------------------------------ uncertainty signals
SIGNALS = ("total_surprisal", "mean_surprisal", "first_entropy", "mean_entropy", "max_entropy")
#: With ``--samples``: sampled-answer disagreement, and the same with ties broken by surprisal.
SAMPLED_SIGNALS = ("disagreement", "disagreement_surprisal")
#: Grounded answers of an adapter with a ``probe.json``: the reader probe's P(wrong), the
#: signal selective answering reads by default (``Context.reader_probe``).
PROBE_SIGNALS = ("probe",)


def _signals(tokens: Sequence[Any], disagreement: float | None = None) -> dict[str, float]:
    """Candidate uncertainty signals of one answer (higher = less sure)."""
    from setpoint.adapters.model.quoting import reader_uncertainty, sampled_uncertainty

    if not tokens:
        out = dict.fromkeys(SIGNALS, math.inf)
    else:
        entropies = [t.signals.entropy for t in tokens]
        out = {
            "total_surprisal": reader_uncertainty(tokens),
            "mean_surprisal": -sum(t.logprob for t in tokens) / len(tokens),
            "first_entropy": entropies[0],
            "mean_entropy": sum(entropies) / len(entropies),
            "max_entropy": max(entropies),
        }
    if disagreement is not None:
        out["disagreement"] = disagreement
        out["disagreement_surprisal"] = sampled_uncertainty(disagreement, out["total_surprisal"])
    return out


def coverage_curve(
    uncertainty: Sequence[float], score: Sequence[float], points: Sequence[float]
) -> list[dict[str, float]]:
    """Mean ``score`` over the least uncertain fraction of answers, per coverage point."""
    order = sorted(range(len(score)), key=lambda i: uncertainty[i])
    out = []
    for coverage in points:
        kept = order[: max(1, round(coverage * len(order)))]
        out.append(
            {
                "coverage": coverage,
                "threshold": uncertainty[kept[-1]],
                "score": sum(score[i] for i in kept) / len(kept),
            }
        )
    return out


def _coverage(rows: Sequence[dict[str, Any]], signal: str, suffix: str) -> dict[str, Any]:
    """Accuracy-, F1- and EM-coverage curves of ``rows`` ordered by ``signal``, and the 80 % point."""
    uncertainty = [r[signal] for r in rows]
    points = [1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1]
    correct = [float(r["f1"] >= WRONG_BELOW_F1) for r in rows]
    curves = {
        "f1": coverage_curve(uncertainty, [r["f1"] for r in rows], points),
        "em": coverage_curve(uncertainty, [r["em"] for r in rows], points),
        "correct": coverage_curve(uncertainty, correct, points),
    }

    def at80(name: str) -> dict[str, float]:
        return next(p for p in curves[name] if p["coverage"] == 0.8)

    out: dict[str, Any] = {f"coverage_{name}{suffix}": c for name, c in curves.items()}
    out[f"at_80_coverage{suffix}"] = {
        f"threshold_{signal}": at80("correct")["threshold"],
        "accuracy": at80("correct")["score"],
        "f1": at80("f1")["score"],
        "exact_match": at80("em")["score"],
    }
    return out


# ------------------------------------------------------------------ retrieval
def retrieve_top3(
    questions: Sequence[Any], dataset: Any, cache_file: Path, data_dir: Path
) -> dict[str, list[dict[str, str]]]:
    """Top-3 hybrid-search passages per question id, from the cache file or a fresh index."""
    if cache_file.is_file():
        cached = json.loads(cache_file.read_text(encoding="utf-8"))
        if all(q.id in cached["hits"] for q in questions):
            return dict(cached["hits"])
    from setpoint.adapters.weaviate.corpus import PassageRecord
    from setpoint.adapters.weaviate.store import WeaviateStore
    from setpoint.settings import Settings

    settings = Settings.from_env().replace(
        weaviate_url=None, weaviate_data_override=data_dir, collection="ReaderBench"
    )
    records = [PassageRecord(p.id, p.title, p.text) for p in dataset.passages.values()]
    hits: dict[str, list[dict[str, str]]] = {}
    with WeaviateStore.from_settings(settings) as store:
        report = store.ingest(records, source="squad", progress=True)
        print(f"index: {report.summary()}")
        started = time.perf_counter()
        for q in questions:
            found = store.hybrid_search(q.question, k=3)
            hits[q.id] = [{"id": h.id, "title": h.title, "text": h.text} for h in found]
        seconds = time.perf_counter() - started
    cache_file.write_text(
        json.dumps({"search": "WeaviateStore.hybrid_search(k=3)", "seconds": seconds, "hits": hits})
        + "\n",
        encoding="utf-8",
    )
    return hits


# ------------------------------------------------------------------ main
def main() -> None:
    from setpoint.adapters.lora.qa_data import default_squad_dir

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--squad-dir", type=Path, default=default_squad_dir(), help="SQuAD-format data folder"
    )
    parser.add_argument("--adapter", type=Path, help="reader adapter (default: the shipped one)")
    parser.add_argument("--questions", type=int, default=500, help="evaluation-title questions")
    parser.add_argument("--seed", type=int, default=0, help="seed of the question sample")
    parser.add_argument(
        "--max-new-tokens", type=int, default=24, help="answer length cap (all variants)"
    )
    parser.add_argument(
        "--variants",
        default="base,reader,grounded",
        help="comma-separated subset of base, reader, grounded, sampled",
    )
    parser.add_argument(
        "--contexts", default="gold,top3", help="comma-separated subset of gold, top3"
    )
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "reader.json")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="keep the answers already in --out (any variant) and answer only what is missing",
    )
    parser.add_argument(
        "--samples",
        type=int,
        default=4,
        help="answers the sampled variant draws besides its grounded greedy one",
    )
    parser.add_argument(
        "--retrieval-cache",
        type=Path,
        default=ROOT / "benchmarks" / "results" / "reader_retrieval.json",
    )
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from setpoint.adapters.domain.metrics import auroc, best_exact_match, best_f1
    from setpoint.adapters.domain.reader_probe import load_reader_probe
    from setpoint.adapters.lora.qa_data import TitleSplit, load_squad, sample_questions
    from setpoint.adapters.lora.reader import shipped_reader_dir, training_record
    from setpoint.adapters.lora.record import SPLIT_FILE
    from setpoint.adapters.model.generator import Generator, Passage
    from setpoint.adapters.model.quoting import TokenTable, answer_question
    from setpoint.settings import Settings

    settings = Settings.from_env()
    if settings.threads:
        import torch

        # Before the embedder runs too: on a loaded 2-core machine, 1 thread beat 2 by 10x.
        torch.set_num_threads(settings.threads)
    adapter_dir = args.adapter or shipped_reader_dir()
    split = TitleSplit.load(adapter_dir / SPLIT_FILE)
    dataset = load_squad(args.squad_dir)
    questions = sample_questions(dataset.in_titles(split.eval), args.questions, seed=args.seed)
    variants = [v for v in args.variants.split(",") if v]
    contexts = [c for c in args.contexts.split(",") if c]
    results: dict[str, Any] = {
        "machine": machine(),
        "questions": len(questions),
        "eval_titles": list(split.eval),
        "max_new_tokens": args.max_new_tokens,
        "wrong_means": f"F1 < {WRONG_BELOW_F1}",
    }
    print(
        f"{len(questions)} questions from {len(split.eval)} evaluation titles; load {os.getloadavg()}"
    )

    top3: dict[str, list[dict[str, str]]] = {}
    if "top3" in contexts:
        top3 = retrieve_top3(
            questions, dataset, args.retrieval_cache, settings.cache_dir / "bench-reader-weaviate"
        )
        recall = sum(any(h["id"] == q.passage_id for h in top3[q.id]) for q in questions)
        results["retrieval_recall_at_3"] = recall / len(questions)
        print(f"gold passage in the top 3: {recall / len(questions):.3f}")

    generator = Generator.from_pretrained(
        settings.generator_dir, threads=settings.threads, precision=settings.precision
    )
    generator.load_adapter(adapter_dir, "reader")
    probe = load_reader_probe(adapter_dir)
    TokenTable.of(generator.tokenizer)  # built once per process; keep it out of the timings
    wanted = {q.id for q in questions}
    runs: dict[str, list[dict[str, Any]]] = {}
    if args.resume and args.out.is_file():
        # Rows of earlier runs (e.g. the base model while the adapter trained), same questions only.
        for key, rows in (
            json.loads(args.out.read_text(encoding="utf-8")).get("answers", {}).items()
        ):
            runs[key] = [r for r in rows if r["id"] in wanted]
    for key in (f"{v}/{c}" for c in contexts for v in variants):
        runs.setdefault(key, [])
    done = {key: {r["id"] for r in rows} for key, rows in runs.items()}
    passages_for: dict[str, Callable[[Any], list[Passage]]] = {
        "gold": lambda q: [dataset.passages[q.passage_id]],
        "top3": lambda q: [Passage(h["id"], h["title"], h["text"]) for h in top3[q.id]],
    }
    started = time.perf_counter()
    for n, q in enumerate(questions, start=1):
        for context in contexts:
            passages = passages_for[context](q)
            for variant in variants:
                if q.id in done[f"{variant}/{context}"]:
                    continue
                generator.set_adapter(None if variant == "base" else "reader")
                scored = probe if variant == "grounded" else None
                answer = answer_question(
                    generator,
                    q.question,
                    passages,
                    max_new_tokens=args.max_new_tokens,
                    grounded=variant in ("grounded", "sampled"),
                    samples=args.samples if variant == "sampled" else 0,
                    capture_layers=scored.layers if scored is not None else (),
                )
                runs[f"{variant}/{context}"].append(
                    {
                        "id": q.id,
                        "answer": answer.text,
                        "em": best_exact_match(answer.text, q.answers),
                        "f1": best_f1(answer.text, q.answers),
                        "tokens": len(answer.answer_tokens),
                        "seconds": answer.seconds,
                        "quote": answer.quote is not None,
                        **_signals(answer.tokens, answer.disagreement),
                        **(
                            {
                                "probe": scored.score(
                                    answer.tokens,
                                    question=q.question,
                                    passages=passages,
                                    answer=answer.text,
                                )
                            }
                            if scored is not None
                            else {}
                        ),
                        **({"samples": answer.samples} if answer.samples else {}),
                    }
                )
        if n % 25 == 0 or n == len(questions):
            elapsed = time.perf_counter() - started
            line = " ".join(
                f"{k}={statistics.mean(r['f1'] for r in rows):.2f}"
                for k, rows in runs.items()
                if rows
            )
            print(f"  {n}/{len(questions)} ({elapsed:.0f} s) F1 {line}", flush=True)
            # Partial results survive an interrupted run (--resume picks them up).
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps({"answers": runs}) + "\n", encoding="utf-8")

    summary: dict[str, Any] = {}
    for key, rows in runs.items():
        if not rows:
            continue
        signal_names = [
            n for n in (*SIGNALS, *SAMPLED_SIGNALS, *PROBE_SIGNALS) if all(n in r for r in rows)
        ]
        wrong = [r["f1"] < WRONG_BELOW_F1 for r in rows]
        entry: dict[str, Any] = {
            "exact_match": statistics.mean(r["em"] for r in rows),
            "f1": statistics.mean(r["f1"] for r in rows),
            "questions": len(rows),
            "median_answer_tokens": statistics.median(r["tokens"] for r in rows),
            "mean_seconds": statistics.mean(r["seconds"] for r in rows),
            "median_seconds": statistics.median(r["seconds"] for r in rows),
            "quotes": statistics.mean(r["quote"] for r in rows),
            "auroc_wrong": {s: auroc([r[s] for r in rows], wrong) for s in signal_names},
        }
        entry.update(_coverage(rows, "total_surprisal", ""))
        if "disagreement_surprisal" in signal_names:
            # The signal Context(reader_samples=k) gives selective answering.
            entry.update(_coverage(rows, "disagreement_surprisal", "_sampled"))
        if "probe" in signal_names:
            # The signal selective answering reads by default with the shipped reader.
            entry.update(_coverage(rows, "probe", "_probe"))
        summary[key] = entry
    results["variants"] = summary
    results["answers"] = runs
    record = training_record(adapter_dir)
    results["training"] = {
        "command": record.get("command"),
        **{
            k: record.get("training", {}).get(k)
            for k in ("seconds", "tokens_per_s", "examples_seen", "steps", "tokens_seen")
        },
        "threads": record.get("environment", {}).get("threads"),
    }
    results["samples"] = args.samples
    results["seconds"] = time.perf_counter() - started
    results["machine"]["load_average_end"] = os.getloadavg()

    print()
    print(
        "| variant | context | EM | F1 | median answer tokens | s/answer (mean) | "
        "AUROC wrong (total surprisal) | accuracy @80% coverage | F1 @80% |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for key, e in summary.items():
        variant, context = key.split("/")
        print(
            f"| {variant} | {context} | {e['exact_match']:.3f} | {e['f1']:.3f} | "
            f"{e['median_answer_tokens']:g} | {e['mean_seconds']:.2f} | "
            f"{e['auroc_wrong']['total_surprisal']:.3f} | {e['at_80_coverage']['accuracy']:.3f} | "
            f"{e['at_80_coverage']['f1']:.3f} |"
        )
    print()
    print("AUROC for wrong answers by signal:")
    for key, e in summary.items():
        print(f"  {key}: " + ", ".join(f"{s} {v:.3f}" for s, v in e["auroc_wrong"].items()))
    for key, e in summary.items():
        for suffix, label in (("_sampled", "sampled disagreement"), ("_probe", "reader probe")):
            if f"at_80_coverage{suffix}" in e:
                at80 = e[f"at_80_coverage{suffix}"]
                print(
                    f"  {key} @80% coverage by {label}: accuracy {at80['accuracy']:.3f}, "
                    f"F1 {at80['f1']:.3f}"
                )
    t = results["training"]
    print(
        f"\ntraining: {t['seconds']} s, {t['tokens_per_s']} tokens/s, {t['examples_seen']} examples "
        f"({t['steps']} steps)"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2, default=str) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
