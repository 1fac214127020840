"""Retrieval quality, latency, ingestion throughput and a 100k-passage scale run on SQuAD dev.

One run, one fresh embedded Weaviate (the locally built binary, loopback), the packaged
all-MiniLM-L6-v2 embedder, the store's default chunking (180 words, 30 overlap):

* **ingest**: all 2,067 passages (embed + write, passages/s), then the same data again
  (target: zero writes for unchanged passages);
* **quality**: every one of the 10,570 questions against the 2,067 passages, for BM25
  only, vector only, hybrid at several ``alpha`` and hybrid + rerank: R@1, R@5, R@10 and
  MRR@10 of the gold passage (the passage the question was written on);
* **latency**: top-5 searches per mode on a sample of questions, query embedding
  excluded (it is timed on its own);
* **scale**: 100,000 passages made by replicating the 2,067 real ones, each copy's
  vector the real vector plus Gaussian noise (σ = 0.02 per dimension, cosine ≈ 0.93 to
  the original) and its title tagged with the copy number, so BM25 and HNSW face 48×
  the data without embedding 100k texts on a 2-core CPU; hybrid top-5 latency.

Run: ``.venv/bin/python benchmarks/retrieval.py`` (``--help`` for options). Prints a table
and writes ``benchmarks/results/retrieval.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from machine_info import machine  # the folder of this script is on sys.path

from setpoint.adapters.lora.qa_data import default_squad_dir

ROOT = Path(__file__).resolve().parents[1]


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    at = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[at]


def load_squad(squad_dir: Path) -> tuple[list[Any], list[dict[str, Any]]]:
    from setpoint.adapters.weaviate.corpus import read_jsonl

    records, bad = read_jsonl(squad_dir / "passages.jsonl")
    if bad:
        raise SystemExit(f"bad lines in {squad_dir / 'passages.jsonl'}: {bad[:3]}")
    with open(squad_dir / "questions.jsonl", encoding="utf-8") as fh:
        questions = [json.loads(line) for line in fh if line.strip()]
    return records, questions


def quality(
    search: Callable[[int], list[str]], gold: list[str], label: str, every: int = 2000
) -> dict[str, float]:
    """R@1/5/10 and MRR@10 of ``search(i)`` (top-10 ids) against ``gold[i]``."""
    ranks: list[int | None] = []
    started = time.perf_counter()
    for i, want in enumerate(gold):
        ids = search(i)
        ranks.append(ids.index(want) if want in ids else None)
        if every and (i + 1) % every == 0:
            print(
                f"  {label}: {i + 1}/{len(gold)} ({time.perf_counter() - started:.0f} s)",
                flush=True,
            )
    n = len(ranks)
    return {
        "R@1": sum(r is not None and r < 1 for r in ranks) / n,
        "R@5": sum(r is not None and r < 5 for r in ranks) / n,
        "R@10": sum(r is not None and r < 10 for r in ranks) / n,
        "MRR@10": sum(1.0 / (r + 1) for r in ranks if r is not None) / n,
        "seconds": time.perf_counter() - started,
    }


def timed(call: Callable[[], Any], repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        out.append((time.perf_counter() - started) * 1000)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--squad-dir", type=Path, default=default_squad_dir())
    parser.add_argument("--alphas", default="0.3,0.5,0.6,0.7", help="hybrid alphas to measure")
    parser.add_argument("--rerank-alpha", type=float, default=0.5)
    parser.add_argument("--questions", type=int, default=0, help="use only the first N (0: all)")
    parser.add_argument(
        "--passages",
        type=int,
        default=0,
        help="a quick check: the first N passages and their questions",
    )
    parser.add_argument("--latency-queries", type=int, default=500)
    parser.add_argument("--scale", type=int, default=100_000, help="0 skips the scale run")
    parser.add_argument("--data-dir", type=Path, help="Weaviate data dir (default: a temp dir)")
    parser.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks" / "results" / "retrieval.json"
    )
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    import numpy as np

    from setpoint.adapters.domain.rerank import SentenceEvidenceReranker
    from setpoint.adapters.model.embedder import Embedder
    from setpoint.adapters.weaviate.server import WeaviateServer
    from setpoint.adapters.weaviate.store import WeaviateStore
    from setpoint.settings import Settings

    settings = Settings.from_env()
    records, questions = load_squad(args.squad_dir)
    if args.passages:
        records = records[: args.passages]
        kept = {r.id for r in records}
        questions = [q for q in questions if q["passage_id"] in kept]
    if args.questions:
        questions = questions[: args.questions]
    gold = [q["passage_id"] for q in questions]
    alphas = [float(a) for a in args.alphas.split(",") if a]
    results: dict[str, Any] = {"machine": machine(load=False), "load_avg_start": os.getloadavg()}
    print(f"{len(records)} passages, {len(questions)} questions; load average {os.getloadavg()}")

    tmp = tempfile.TemporaryDirectory(prefix="setpoint-bench-")
    data_dir = args.data_dir or Path(tmp.name)
    embedder = Embedder.from_settings(settings)
    embedder.dimension  # noqa: B018 -- load before any timing
    results["embedder"] = {"dtype": embedder.dtype, "batch_size": embedder.batch_size}
    server = WeaviateServer(settings.weaviate_binary, data_dir)
    store = WeaviateStore(
        server=server,
        collection="BenchSquad",
        embedder=embedder,
        reranker=SentenceEvidenceReranker(),
        rerank=False,
    )
    with store:
        store.connect()
        results["server_start_s"] = server.startup_seconds

        # -- ingestion ----------------------------------------------------------------
        first = store.ingest(records, source="squad", progress=True)
        again = store.ingest(records, source="squad", progress=False)
        results["ingest"] = {
            "passages": len(records),
            "chunks": first.chunks_written,
            "seconds": first.seconds,
            "embed_seconds": first.embed_seconds,
            "passages_per_s": len(records) / first.seconds,
            "failed": len(first.failed),
            "reingest_seconds": again.seconds,
            "reingest_unchanged": again.unchanged,
            "reingest_chunks_written": again.chunks_written,
            "count": store.count(),
        }
        print(f"ingest: {first.summary()}; again: {again.summary()}")

        # -- query embeddings -----------------------------------------------------------
        started = time.perf_counter()
        vectors = embedder.embed_documents([q["question"] for q in questions])
        results["question_embedding"] = {
            "batch_seconds": time.perf_counter() - started,
            "one_query_ms": None,
        }
        sample = questions[: args.latency_queries]
        one = [timed(lambda q=q: embedder.embed_query(q["question"]), 1)[0] for q in sample[:200]]
        results["question_embedding"]["one_query_ms"] = {
            "p50": percentile(one, 50),
            "p95": percentile(one, 95),
        }

        # -- quality --------------------------------------------------------------------
        configs: list[tuple[str, dict[str, Any]]] = [
            ("bm25", {"mode": "bm25"}),
            ("vector", {"mode": "vector"}),
            *[(f"hybrid α={a:g}", {"mode": "hybrid", "alpha": a}) for a in alphas],
            (
                f"hybrid α={args.rerank_alpha:g} + rerank",
                {"mode": "hybrid", "alpha": args.rerank_alpha, "rerank": True},
            ),
        ]
        results["quality"] = {}
        for label, options in configs:
            options = {"rerank": False, **options}

            def search(i: int, options: dict[str, Any] = options) -> list[str]:
                hits = store.search(
                    questions[i]["question"], k=10, query_vector=vectors[i], **options
                )
                return [h.id for h in hits]

            results["quality"][label] = quality(search, gold, label)
            print(f"{label}: {results['quality'][label]}", flush=True)

        # -- latency --------------------------------------------------------------------
        results["latency_ms"] = {}
        for label, options in configs:
            options = {"rerank": False, **options}
            for i in range(20):  # warm the connection and the server's caches
                store.search(sample[i]["question"], k=5, query_vector=vectors[i], **options)
            samples = [
                timed(
                    lambda i=i, options=options: store.search(
                        sample[i]["question"], k=5, query_vector=vectors[i], **options
                    ),
                    1,
                )[0]
                for i in range(len(sample))
            ]
            results["latency_ms"][label] = {
                "p50": percentile(samples, 50),
                "p95": percentile(samples, 95),
            }
        print(f"latency: {results['latency_ms']}", flush=True)

        # -- scale ----------------------------------------------------------------------
        if args.scale:
            results["scale"] = scale_run(store, records, np.asarray(vectors), sample, args.scale)

    results["load_avg_end"] = os.getloadavg()
    tmp.cleanup()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2, default=str))
    print_table(results)
    print(f"\nwrote {args.out}")


def scale_run(
    store: Any, records: list[Any], question_vectors: Any, sample: list[dict[str, Any]], total: int
) -> dict[str, Any]:
    """``total`` passages from noisy copies of the real ones; hybrid top-5 latency over them."""
    import numpy as np
    from langchain_core.embeddings import Embeddings

    from setpoint.adapters.weaviate.corpus import PassageRecord
    from setpoint.adapters.weaviate.store import WeaviateStore

    # The stored vectors of the real passages, read back once (one chunk per passage is
    # enough: copies only need a realistic neighbourhood, not the exact chunking).
    real = _passage_vectors(store, records)
    rng = np.random.default_rng(0)
    copies: list[PassageRecord] = []
    lookup: dict[str, list[float]] = {}
    for n in range(total):
        record = records[n % len(records)]
        copy = n // len(records)
        title = f"{record.title} copy {copy}"
        noisy = real[record.id] + rng.normal(0.0, 0.02, size=real[record.id].shape)
        noisy /= np.linalg.norm(noisy)
        copies.append(PassageRecord(f"{record.id}~{copy}", title, record.text))
        lookup[f"{title}\n{record.text}"] = noisy.astype(np.float32).tolist()

    class Replayed(Embeddings):
        """Hands back the prepared vector of each text (no model runs)."""

        def embed_documents(self, texts: list[str]) -> list[list[float]]:
            return [lookup[t] for t in texts]

        def embed_query(self, text: str) -> list[float]:
            raise AssertionError("queries carry their vectors")

    assert store.server is not None
    scaled = WeaviateStore(
        url=store.server.url,
        grpc_port=store.server.grpc_port,
        collection="BenchScale",
        embedder=Replayed(),
        # Copies are never longer than a chunk of the original: one chunk each.
        chunking=store.chunking.__class__(max_words=10_000, overlap_words=0),
    )
    with scaled:
        report = scaled.ingest(copies, source="scale", progress=True, batch_size=500)
        count = scaled.count()
        for i in range(20):
            scaled.search(sample[i]["question"], k=5, query_vector=question_vectors[i].tolist())
        latencies = {}
        for label, options in (
            ("hybrid α=0.5", {"alpha": 0.5}),
            ("hybrid α=0.5 + rerank", {"alpha": 0.5}),
        ):
            rerank = "rerank" in label
            if rerank:
                from setpoint.adapters.domain.rerank import SentenceEvidenceReranker

                scaled.reranker = SentenceEvidenceReranker()
            samples = [
                timed(
                    lambda i=i, rerank=rerank, options=options: scaled.search(
                        sample[i]["question"],
                        k=5,
                        query_vector=question_vectors[i].tolist(),
                        rerank=rerank,
                        **options,
                    ),
                    1,
                )[0]
                for i in range(len(sample))
            ]
            latencies[label] = {"p50": percentile(samples, 50), "p95": percentile(samples, 95)}
    return {
        "passages": count,
        "insert_seconds": report.seconds,
        "insert_per_s": total / report.seconds if report.seconds else None,
        "failed": len(report.failed),
        "latency_ms": latencies,
        "noise_sigma": 0.02,
    }


def _passage_vectors(store: Any, records: list[Any]) -> dict[str, Any]:
    import numpy as np
    from weaviate.classes.query import Filter

    vectors: dict[str, Any] = {}
    collection = store.collection()
    response = collection.query.fetch_objects(
        filters=Filter.by_property("chunk").equal(0),
        limit=len(records) + 10,
        include_vector=True,
        return_properties=["passage_id"],
    )
    for obj in response.objects:
        vector = obj.vector["default"] if isinstance(obj.vector, dict) else obj.vector
        vectors[str(obj.properties["passage_id"])] = np.asarray(vector, dtype=np.float64)
    return vectors


def print_table(results: dict[str, Any]) -> None:
    ingest = results["ingest"]
    print("\n| mode | R@1 | R@5 | R@10 | MRR@10 | top-5 p50 ms | top-5 p95 ms |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for label, q in results["quality"].items():
        lat = results["latency_ms"][label]
        print(
            f"| {label} | {q['R@1']:.4f} | {q['R@5']:.4f} | {q['R@10']:.4f} | {q['MRR@10']:.4f} "
            f"| {lat['p50']:.1f} | {lat['p95']:.1f} |"
        )
    emb = results["question_embedding"]["one_query_ms"]
    print(f"\nquery embedding (one question): p50 {emb['p50']:.1f} ms, p95 {emb['p95']:.1f} ms")
    print(
        f"ingest: {ingest['passages']} passages ({ingest['chunks']} chunks) in "
        f"{ingest['seconds']:.1f} s = {ingest['passages_per_s']:.1f} passages/s "
        f"(embedding {ingest['embed_seconds']:.1f} s); re-ingest: {ingest['reingest_unchanged']} "
        f"unchanged, {ingest['reingest_chunks_written']} chunks written in {ingest['reingest_seconds']:.1f} s"
    )
    if "scale" in results:
        s = results["scale"]
        print(
            f"scale: {s['passages']} passages inserted at {s['insert_per_s']:.0f}/s; "
            + ", ".join(
                f"{k} p50 {v['p50']:.1f} ms p95 {v['p95']:.1f} ms"
                for k, v in s["latency_ms"].items()
            )
        )
    print(f"load average: start {results['load_avg_start']}, end {results['load_avg_end']}")


if __name__ == "__main__":
    main()
