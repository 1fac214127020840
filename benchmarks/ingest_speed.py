"""Ingest speed per embedding path: passages/s embedding alone and embed + write, cosine and recall against float32.

Paths: the product's ``Embedder`` with each backend (torch float32 = the reference, torch
bfloat16 = the default on CPUs with native bfloat16, onnxruntime float32 and dynamic int8,
OpenVINO). Everything is measured in one process, interleaved: the passages are cut into
``--rounds`` slices, and each slice is done by every path in turn (the order rotating
per round), so a change in the machine's load falls on all paths alike; compare the
paths' ratios, not absolute numbers across runs.

1. Embedding alone: the texts ``setpoint ingest`` embeds (title + chunk, ``INGEST_BATCH``
   passages per call), passages/s per path; cosine of each text's vector to torch float32's.
2. Vector-only recall, exact (numpy): ``--questions`` SQuAD dev questions (seed 0),
   gold passage's rank among all passages (a passage scores its best chunk); each path
   embeds queries and passages itself, and ``mixed`` rows pair a path's passages with
   the default path's (torch) query vectors.
3. Embed + write: each path ingests every passage into its own fresh collection of one
   embedded Weaviate, through the product's ``write_passages``, with embedding and
   writing overlapped (the default) and, for the torch paths, one after the other.

Run: ``.venv/bin/python benchmarks/ingest_speed.py`` (``--threads 2`` by default).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from machine_info import machine, rotated  # the folder of this script is on sys.path

from setpoint.adapters.lora.qa_data import default_squad_dir
from setpoint.settings import INGEST_BATCH

ROOT = Path(__file__).resolve().parents[1]

__all__ = ["main"]

PATHS: dict[str, dict[str, str]] = {
    "torch-fp32": {"backend": "torch", "precision": "float32"},
    "torch-bf16": {"backend": "torch", "precision": "bfloat16"},
    "onnx": {"backend": "onnx"},
    "onnx-int8": {"backend": "onnx-int8"},
    "openvino": {"backend": "openvino"},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--squad-dir", type=Path, default=default_squad_dir())
    parser.add_argument("--passages", type=int, default=0, help="first N passages (0: all)")
    parser.add_argument("--questions", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--paths", default=",".join(PATHS), help="comma-separated")
    parser.add_argument(
        "--write-paths",
        default="torch-bf16,onnx-int8,openvino",
        help="paths that also ingest into Weaviate, overlapped ('' for none)",
    )
    parser.add_argument(
        "--sequential-paths",
        default="torch-bf16,openvino",
        help="paths that also ingest with embedding and writing one after the other",
    )
    parser.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks" / "results" / "ingest_speed.json"
    )
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    torch.set_num_threads(args.threads)
    from setpoint.adapters.lora.qa_data import load_squad, sample_questions
    from setpoint.adapters.weaviate.corpus import read_jsonl

    records = read_jsonl(args.squad_dir / "passages.jsonl")[0]
    if args.passages:
        records = records[: args.passages]
    kept = {r.id for r in records}
    dataset = load_squad(args.squad_dir)
    pool = [q for q in dataset.questions if q.passage_id in kept]
    questions = sample_questions(pool, args.questions, seed=0)
    names = _names(args.paths)
    embedders = {name: _embedder(name, args.threads) for name in names}
    results: dict[str, Any] = {
        "machine": machine(load=False),
        "load_avg_start": os.getloadavg(),
        "passages": len(records),
        "questions": len(questions),
        "rounds": args.rounds,
        "threads": args.threads,
        "paths": {name: {"settings": PATHS[name]} for name in names},
    }
    print(f"{len(records)} passages, {len(questions)} questions, paths {names}", flush=True)
    _embed_alone(embedders, records, questions, results, args.rounds)
    runs = [(n, True) for n in _names(args.write_paths)]
    runs += [(n, False) for n in _names(args.sequential_paths)]
    if runs:
        _embed_and_write(embedders, runs, records, results, args.rounds)
    results["load_avg_end"] = os.getloadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2, default=str))
    _print_table(results)
    print(f"\nwrote {args.out}")


def _names(text: str) -> list[str]:
    return [n.strip() for n in text.split(",") if n.strip()]


def _embedder(name: str, threads: int) -> Any:
    from setpoint.adapters.model.embedder import Embedder
    from setpoint.adapters.model.provisioning import embedder_dir
    from setpoint.settings import Settings

    settings = Settings.from_env()
    options = PATHS[name]
    return Embedder(
        embedder_dir(settings),
        backend=options["backend"],
        precision=options.get("precision", "auto"),
        cache_dir=settings.cache_dir,
        threads=threads,
    )


def _groups(records: list[Any], size: int = INGEST_BATCH) -> list[list[str]]:
    """The texts ``write_passages`` embeds, one list per call (``INGEST_BATCH`` passages)."""
    from setpoint.adapters.domain.chunking import ChunkPolicy, chunk_text
    from setpoint.adapters.weaviate.ingestion import embedding_text

    policy = ChunkPolicy()
    return [
        [
            embedding_text(r.title, c)
            for r in records[i : i + size]
            for c in chunk_text(r.text, policy)
        ]
        for i in range(0, len(records), size)
    ]


def _owners(records: list[Any]) -> list[int]:
    from setpoint.adapters.domain.chunking import ChunkPolicy, chunk_text

    policy = ChunkPolicy()
    return [n for n, r in enumerate(records) for _ in chunk_text(r.text, policy)]


def _embed_alone(
    embedders: dict[str, Any],
    records: list[Any],
    questions: list[Any],
    results: dict[str, Any],
    rounds: int,
) -> None:
    import numpy as np

    groups = _groups(records)
    seconds = dict.fromkeys(embedders, 0.0)
    vectors: dict[str, list[Any]] = {name: [None] * len(groups) for name in embedders}
    for name, embedder in embedders.items():
        started = time.perf_counter()
        embedder.embed_documents(groups[0][:16])  # load (and export, the first time) + warm up
        results["paths"][name]["first_use_s"] = time.perf_counter() - started
        results["paths"][name]["dtype"] = embedder.dtype
    order = list(embedders)
    for r in range(rounds):
        mine = list(range(r, len(groups), rounds))
        for name in rotated(order, r):
            started = time.perf_counter()
            for g in mine:
                vectors[name][g] = embedders[name].embed_documents(groups[g])
            seconds[name] += time.perf_counter() - started
        print(f"embed round {r + 1}/{rounds}: {seconds}", flush=True)
    owners = np.array(_owners(records))
    gold = {r.id: n for n, r in enumerate(records)}
    want = np.array([gold[q.passage_id] for q in questions])
    texts = [q.question for q in questions]
    matrix = {n: np.array([v for g in vectors[n] for v in g], dtype=np.float32) for n in vectors}
    queries = {
        n: np.array(e.embed_documents(texts), dtype=np.float32) for n, e in embedders.items()
    }
    # bfloat16 rows are normalised in bfloat16: renormalise, so cosine is cosine.
    matrix = {n: m / np.linalg.norm(m, axis=1, keepdims=True) for n, m in matrix.items()}
    reference = matrix["torch-fp32"]
    for name in embedders:
        cos = (matrix[name] * reference).sum(axis=1)
        row = results["paths"][name]
        row["embed_s"] = seconds[name]
        row["embed_passages_per_s"] = len(records) / seconds[name]
        row["cosine_to_fp32"] = {"mean": float(cos.mean()), "min": float(cos.min())}
        row["recall"] = _recall(matrix[name], queries[name], owners, want, len(records))
        row["recall_mixed"] = {
            f"queries {q}": _recall(matrix[name], queries[q], owners, want, len(records))
            for q in ("torch-fp32", "torch-bf16")
            if q in queries and q != name
        }
        print(f"{name}: {row}", flush=True)


def _recall(
    passages: Any, queries: Any, owners: Any, want: Any, n_passages: int
) -> dict[str, float]:
    """Exact vector-only R@1/R@10 (a passage scores its best chunk)."""
    import numpy as np

    chunk_scores = queries @ passages.T
    scores = np.full((len(queries), n_passages), -np.inf, dtype=np.float32)
    np.maximum.at(scores.T, owners, chunk_scores.T)
    gold = scores[np.arange(len(want)), want]
    rank = (scores > gold[:, None]).sum(axis=1)
    return {"R@1": float((rank < 1).mean()), "R@10": float((rank < 10).mean())}


def _embed_and_write(
    embedders: dict[str, Any],
    runs: list[tuple[str, bool]],
    records: list[Any],
    results: dict[str, Any],
    rounds: int,
) -> None:
    from setpoint.adapters.domain.rerank import SentenceEvidenceReranker
    from setpoint.adapters.weaviate.ingestion import write_passages
    from setpoint.adapters.weaviate.server import WeaviateServer
    from setpoint.adapters.weaviate.store import WeaviateStore
    from setpoint.settings import Settings

    settings = Settings.from_env()
    seconds = {run: 0.0 for run in runs}
    embed_seconds = {run: 0.0 for run in runs}
    tmp = tempfile.TemporaryDirectory(prefix="setpoint-bench-ingest-")
    with WeaviateServer(settings.weaviate_binary, Path(tmp.name)) as server:
        stores = {}
        for n, (name, overlap) in enumerate(runs):
            stores[name, overlap] = WeaviateStore(
                url=server.url,
                grpc_port=server.grpc_port,
                collection=f"BenchIngest{n}",
                embedder=embedders[name],
                reranker=SentenceEvidenceReranker(),
                rerank=False,
            )
            stores[name, overlap].connect()
        for r in range(rounds):
            mine = records[r * len(records) // rounds : (r + 1) * len(records) // rounds]
            for run in rotated(runs, r):
                report = write_passages(
                    stores[run], mine, source="squad", progress=False, overlap=run[1]
                )
                if report.failed or report.added != len(mine):
                    raise SystemExit(f"{run}: {report.summary()}")
                seconds[run] += report.seconds
                embed_seconds[run] += report.embed_seconds
            print(f"write round {r + 1}/{rounds}: {seconds}", flush=True)
        for store in stores.values():
            store.close()
    tmp.cleanup()
    for name, overlap in runs:
        key = "write_overlapped" if overlap else "write_sequential"
        results["paths"][name][key] = {
            "seconds": seconds[name, overlap],
            "embed_seconds": embed_seconds[name, overlap],
            "passages_per_s": len(records) / seconds[name, overlap],
        }


def _print_table(results: dict[str, Any]) -> None:
    paths = results["paths"]
    base = paths.get("torch-bf16", {}).get("write_sequential", {}).get("passages_per_s")
    print(
        "\n| path | dtype | embed only p/s | embed+write p/s (overlapped) | (sequential) "
        "| overlapped / torch-bf16 sequential | cos mean | cos min | R@1 | R@10 |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, row in paths.items():
        over = row.get("write_overlapped", {}).get("passages_per_s")
        seq = row.get("write_sequential", {}).get("passages_per_s")
        ratio = f"{over / base:.2f}" if over and base else "-"
        print(
            f"| {name} | {row['dtype']} | {row['embed_passages_per_s']:.1f} "
            f"| {over or 0:.1f} | {seq or 0:.1f} | {ratio} "
            f"| {row['cosine_to_fp32']['mean']:.5f} | {row['cosine_to_fp32']['min']:.5f} "
            f"| {row['recall']['R@1']:.3f} | {row['recall']['R@10']:.3f} |"
        )
    for name, row in paths.items():
        for label, rec in row["recall_mixed"].items():
            print(f"mixed: {name} passages, {label}: R@1 {rec['R@1']:.3f} R@10 {rec['R@10']:.3f}")


if __name__ == "__main__":
    main()
