"""Knowledge adapters measured: tuning cost and closed-book F1, forgetting with and without replay, staleness, distillation.

(a) a knowledge adapter on ``--core`` SQuAD pairs: training time, tokens/s, closed-book F1
    on those pairs before and after;
(b) forgetting: ``--update`` with ``--new`` further pairs, with replay (``--replay``) and
    without, F1 on the old and the new set;
(c) staleness: for up to ``--edits`` learned pairs the adapter answers from its weights, the
    pair's passage is indexed, the answer in it replaced by a counterfactual ("Zanzibar") and
    re-ingested, and the question asked again through the graph: the route, and whether the
    answer follows the edit or repeats the learned fact;
(d) distillation: a Zipf-like stream over ``--stream-questions`` other SQuAD questions
    through the graph before and after one distill round (``min_count`` 2): retrieval calls
    per question and F1, on repeated questions and on the rest.

Run with ``SETPOINT_THREADS=1``; writes ``benchmarks/results/tuning.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from setpoint.adapters.lora.config import TuningConfig
from setpoint.adapters.lora.knowledge_training import train_knowledge
from setpoint.adapters.lora.qa_data import QADataset, QARecord, default_squad_dir, load_squad
from setpoint.adapters.lora.tune import evaluate_reader
from setpoint.adapters.model.generator import Generator
from setpoint.adapters.weaviate.corpus import PassageRecord
from setpoint.settings import Settings

RESULTS = Path(__file__).parent / "results" / "tuning.json"


def f1_closed_book(
    generator: Generator, dataset: QADataset, pairs: Sequence[QARecord], adapter: Path | None
) -> float:
    generator.set_adapter(None)
    if adapter is not None:
        # A fresh name per call: the same folder is re-trained between measurements.
        name = f"{adapter.name}-{time.monotonic_ns()}".replace(".", "_")
        generator.set_adapter(generator.load_adapter(adapter, name))
    score = evaluate_reader(generator, dataset, pairs, closed_book=True, max_new_tokens=16)["f1"]
    generator.set_adapter(None)
    return float(score)


def fresh_generator(settings: Settings) -> Generator:
    return Generator.from_pretrained(settings.generator_dir, threads=settings.threads)


def zipf_stream(
    pairs: Sequence[QARecord], length: int, seed: int, s: float = 1.1
) -> list[QARecord]:
    rng = random.Random(seed)
    weights = [1 / (rank + 1) ** s for rank in range(len(pairs))]
    return rng.choices(list(pairs), weights=weights, k=length)


def run_stream(
    graph: Any, stream: Sequence[QARecord], ctx: Any, texts: dict[str, Any]
) -> list[dict[str, Any]]:
    """Run the stream; each row carries its cited passages (the graph's output names them by
    id in ``citations``; their texts come from ``texts``, the corpus that was indexed)."""
    from setpoint.adapters.domain.metrics import best_f1

    rows = []
    for q in stream:
        state = graph.invoke({"question": q.question}, context=ctx)
        rows.append(
            {
                "id": q.id,
                "question": q.question,
                "answer": state.get("answer", ""),
                "route": state.get("route", ""),
                "status": state.get("status", ""),
                "retrieval_calls": int(state.get("retrieval_calls", 0)),
                "f1": best_f1(state.get("answer", ""), q.answers),
                "passages": [
                    {"id": c["id"], "title": c.get("title", ""), "text": texts[c["id"]].text}
                    for c in state.get("citations") or []
                    if c["id"] in texts
                ],
            }
        )
    return rows


def summarise(rows: Sequence[dict[str, Any]], repeated: set[str]) -> dict[str, Any]:
    out = {}
    for name, keep in (("repeated", True), ("rest", False)):
        part = [r for r in rows if (r["id"] in repeated) == keep]
        n = max(len(part), 1)
        out[name] = {
            "questions": len(part),
            "retrieval_calls_per_question": round(sum(r["retrieval_calls"] for r in part) / n, 3),
            "f1": round(sum(r["f1"] for r in part) / n, 4),
            "answered_from_weights": sum(r["route"] == "answer" for r in part),
        }
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=default_squad_dir())
    parser.add_argument("--core", type=int, default=100, help="pairs of the first adapter")
    parser.add_argument("--new", type=int, default=50, help="pairs of the update")
    parser.add_argument("--replay", type=float, default=0.5, help="replay fraction of the update")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument(
        "--stream-questions", type=int, default=30, help="distinct questions of the stream"
    )
    parser.add_argument("--stream-length", type=int, default=60)
    parser.add_argument("--parts", default="a,b,c,d", help="which measurements to run")
    parser.add_argument("--edits", type=int, default=10, help="counterfactual edits of part c")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    parts = set(args.parts.split(","))
    settings = Settings.from_env()
    dataset = load_squad(args.data)
    short = [q for q in dataset.questions if q.target and len(q.target.split()) <= 4]
    random.Random(args.seed).shuffle(short)
    core, new = short[: args.core], short[args.core : args.core + args.new]
    stream_pool = short[args.core + args.new : args.core + args.new + args.stream_questions]
    config = TuningConfig(
        task="qa", rank=16, alpha=32, dropout=0.0, learning_rate=args.lr, epochs=args.epochs,
        warmup_steps=5, group_size=10, seed=args.seed,
    )  # fmt: skip
    work = Path(tempfile.mkdtemp(prefix="setpoint-bench-tuning-"))
    results: dict[str, Any] = {
        "machine": {
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "threads": settings.threads,
        },
        "config": {**config.to_dict(), "core": len(core), "new": len(new), "replay": args.replay},
        "commands": " ".join(["python", *sys.argv]),
    }
    table: list[tuple[str, str]] = []
    evaluator = fresh_generator(settings)

    if parts & {"a", "b", "c"}:
        trainer = fresh_generator(settings)
        kb = train_knowledge(trainer, core, dataset.passages, config, work / "core", progress=False)
        r = kb.report
        before = f1_closed_book(evaluator, dataset, core, None)
        after = f1_closed_book(evaluator, dataset, core, kb.directory)
        results["a_knowledge"] = {
            "pairs": len(core), "steps": r.steps, "seconds": round(r.seconds, 1),
            "tokens": r.tokens_seen, "tokens_per_s": round(r.tokens_per_s, 1),
            "loss_first": round(r.mean_loss(True, 10), 3), "loss_last": round(r.mean_loss(False, 10), 3),
            "f1_before": before, "f1_after": after,
        }  # fmt: skip
        table += [
            ("(a) training", f"{r.steps} steps, {r.seconds:.0f} s, {r.tokens_per_s:.0f} tokens/s"),
            ("(a) closed-book F1 on the tuned pairs", f"{before:.3f} -> {after:.3f}"),
        ]
        print(table[-2:], flush=True)

    if "b" in parts:
        forgetting = {}
        for fraction in (0.0, args.replay):
            import shutil

            target = work / f"update-{fraction}"
            shutil.copytree(work / "core", target)
            up = train_knowledge(
                fresh_generator(settings), new, dataset.passages, config, target,
                update=target, replay_fraction=fraction, progress=False,
            )  # fmt: skip
            forgetting[str(fraction)] = {
                "replayed": len(up.replayed_questions), "seconds": round(up.report.seconds, 1),
                "f1_old": f1_closed_book(evaluator, dataset, core, target),
                "f1_new": f1_closed_book(evaluator, dataset, new, target),
            }  # fmt: skip
            row = forgetting[str(fraction)]
            table.append(
                (
                    f"(b) update +{len(new)} pairs, replay {fraction:g}",
                    f"F1 old {row['f1_old']:.3f}, new {row['f1_new']:.3f}",
                )
            )
            print(table[-1], flush=True)
        results["b_forgetting"] = {
            "f1_new_before_update": f1_closed_book(evaluator, dataset, new, work / "core"),
            **forgetting,
        }

    if parts & {"c", "d"}:
        from setpoint.adapters.weaviate.store import WeaviateStore
        from setpoint.agents.resources import Resources
        from setpoint.graphs.context import Context
        from setpoint.graphs.graph import build_graph

        store_settings = settings.replace(
            weaviate_url=None, weaviate_data_override=work / "weaviate", collection="TuningBench"
        )
        store = WeaviateStore.from_settings(store_settings)
        store.connect()
        try:
            if "c" in parts:
                res = Resources(
                    settings=settings, _generator=fresh_generator(settings), _store=store
                )
                graph = build_graph(res)
                ctx = Context(adapter=str(work / "core"), max_new_tokens=16)
                from setpoint.adapters.domain.metrics import best_f1

                # Up to --edits tuned pairs that the adapter answers from its weights: each
                # one's passage is indexed, then its answer is replaced by a counterfactual and
                # re-ingested; the question is asked again.
                # The index holds every learned passage, so each question's top hit is its own
                # passage; each edit is undone after its trial (same text again: not stale).
                store.ingest(
                    [
                        PassageRecord(p.id, p.title, p.text)
                        for p in (dataset.passages[pid] for pid in sorted({q.passage_id for q in core}))
                    ],
                    source="bench", progress=False,
                )  # fmt: skip
                trials = []
                for q in core:
                    if len(trials) >= args.edits:
                        break
                    state = graph.invoke({"question": q.question}, context=ctx)
                    if state["route"] != "answer" or best_f1(state["answer"], q.answers) < 0.99:
                        continue
                    p = dataset.passages[q.passage_id]
                    if q.target not in p.text:
                        continue
                    edited = p.text.replace(q.target, "Zanzibar")
                    store.ingest(
                        [PassageRecord(p.id, p.title, edited)], source="bench", progress=False
                    )
                    after_edit = graph.invoke({"question": q.question}, context=ctx)
                    store.ingest(
                        [PassageRecord(p.id, p.title, p.text)], source="bench", progress=False
                    )
                    answer = str(after_edit.get("answer", ""))
                    trials.append(
                        {
                            "question": q.question, "learned_answer": q.target,
                            "before_edit": {"route": state["route"], "answer": state["answer"]},
                            "after_edit": {
                                "route": after_edit["route"], "answer": answer,
                                "reason": after_edit.get("reason"),
                                "stale_reason": "stale adapter knowledge" in str(after_edit.get("reason") or ""),
                                "follows_edit": "zanzibar" in answer.lower(),
                                "repeats_old_fact": best_f1(answer, [q.target]) >= 0.99,
                            },
                        }
                    )  # fmt: skip
                n = len(trials)
                routed = sum(t["after_edit"]["route"] == "retrieve" for t in trials)
                follows = sum(t["after_edit"]["follows_edit"] for t in trials)
                repeats = sum(t["after_edit"]["repeats_old_fact"] for t in trials)
                results["c_staleness"] = {
                    "edits": n, "routed_to_retrieval": routed, "answer_follows_edit": follows,
                    "answer_repeats_old_fact": repeats, "trials": trials,
                }  # fmt: skip
                if n:
                    table.append(
                        (
                            "(c) edited passages",
                            f"{routed}/{n} routed to retrieval, {follows}/{n} answers follow the edit, {repeats}/{n} repeat the old fact",
                        )
                    )
                    print(table[-1], flush=True)
            if "d" in parts:
                from setpoint.jobs.distill import Observation, select_pairs

                passages = {q.passage_id for q in stream_pool}
                store.ingest(
                    [PassageRecord(pid, dataset.passages[pid].title, dataset.passages[pid].text) for pid in sorted(passages)],
                    source="stream", progress=False,
                )  # fmt: skip
                stream = zipf_stream(stream_pool, args.stream_length, args.seed)
                counts = Counter(q.id for q in stream)
                repeated = {i for i, n in counts.items() if n >= 2}
                res = Resources(
                    settings=settings, _generator=fresh_generator(settings), _store=store
                )
                graph = build_graph(res)
                started = time.perf_counter()
                # Same controller before and after: the thermostat shape `setpoint calibrate` chose
                # for a tuned adapter (BENCHMARKS.md, "The controller"): a tuned adapter answers in
                # 2-5 tokens, too short for the default 1 warm-up token + 2 steps to ever fire.
                shape = {
                    "setpoint": 1.6,
                    "warmup_steps": 0,
                    "consecutive_steps": 1,
                    "max_new_tokens": 16,
                }
                before_rows = run_stream(graph, stream, Context(**shape), dataset.passages)
                before_s = time.perf_counter() - started
                found = [
                    Observation(r["question"], r["answer"], r["route"], r["status"],
                                tuple((p["id"], p["title"], p["text"]) for p in r["passages"]))
                    for r in before_rows
                ]  # fmt: skip
                pairs = select_pairs(found, min_count=2)
                if not pairs:
                    routes = Counter((r["route"], r["status"]) for r in before_rows)
                    for r in before_rows[:3]:
                        print(json.dumps({k: r[k] for k in ("question", "answer", "route", "status")}),
                              [(p["id"], p["text"][:80]) for p in r["passages"]])  # fmt: skip
                    raise SystemExit(
                        f"distill selected no pair from the stream; routes: {dict(routes)}"
                    )
                qa = [QARecord(p.id, p.question, (p.answer,), p.passage_id) for p in pairs]
                distilled = train_knowledge(
                    fresh_generator(settings), qa, dataset.passages, config, work / "distilled",
                    kind="distill", indexed=True, progress=False,
                )  # fmt: skip
                res2 = Resources(
                    settings=settings, _generator=fresh_generator(settings), _store=store
                )
                graph2 = build_graph(res2)
                started = time.perf_counter()
                after_rows = run_stream(
                    graph2,
                    stream,
                    Context(adapter=str(work / "distilled"), **shape),
                    dataset.passages,
                )
                after_s = time.perf_counter() - started
                b, a = summarise(before_rows, repeated), summarise(after_rows, repeated)
                rb, ra = (
                    b["repeated"]["retrieval_calls_per_question"],
                    a["repeated"]["retrieval_calls_per_question"],
                )
                results["d_distillation"] = {
                    "stream_length": len(stream), "distinct": len(counts), "repeated_distinct": len(repeated),
                    "pairs_distilled": len(pairs), "distill_seconds": round(distilled.report.seconds, 1),
                    "before": b, "after": a, "stream_seconds_before": round(before_s, 1),
                    "stream_seconds_after": round(after_s, 1),
                    "retrieval_reduction_repeated": round(1 - ra / rb, 3) if rb else None,
                }  # fmt: skip
                table += [
                    ("(d) repeated: retrievals/question, F1", f"{rb:.2f} -> {ra:.2f}, {b['repeated']['f1']:.3f} -> {a['repeated']['f1']:.3f}"),
                    ("(d) rest: retrievals/question, F1", f"{b['rest']['retrieval_calls_per_question']:.2f} -> {a['rest']['retrieval_calls_per_question']:.2f}, {b['rest']['f1']:.3f} -> {a['rest']['f1']:.3f}"),
                ]  # fmt: skip
                print(table[-2:], flush=True)
        finally:
            store.close()

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    # Parts run separately (--parts) add to the file instead of replacing the others.
    earlier = json.loads(RESULTS.read_text(encoding="utf-8")) if RESULTS.is_file() else {}
    RESULTS.write_text(json.dumps({**earlier, **results}, indent=2) + "\n", encoding="utf-8")
    width = max(len(k) for k, _ in table) if table else 0
    for key, value in table:
        print(f"{key:<{width}}  {value}")
    print(f"results: {RESULTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
