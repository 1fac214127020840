"""Retrieval on the SQuAD evaluation titles of a tuned embedder's split, for several embedders.

Companion of ``retrieval.py`` (same scoring): for each ``--embedder`` folder, one fresh
collection in one embedded Weaviate (a temp dir unless ``--data-dir``) holds every SQuAD
dev passage, written with that embedder the way ``setpoint ingest`` writes it (the
product's ``Embedder``: bfloat16 where the CPU has native bfloat16, else float32). The
questions are ``--questions`` evaluation-title questions of the split stored with the
tuned embedder (``split.json``), drawn like ``setpoint tune --task embed`` draws its
evaluation sample, so no question's article was seen in training or mining. Measured:
BM25, vector only, hybrid and hybrid + rerank R@1/R@5/R@10/MRR@10 of the gold passage
among all 2,067 passages (``tune`` scores vector-only among evaluation-title passages
only, so its numbers are higher), and ingest passages/s per embedder.

Run: ``.venv/bin/python benchmarks/retrieval_split.py --embedder BASE --embedder TUNED``
(the split: the first folder that has a ``split.json``, or ``--split``).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from machine_info import machine  # the folder of this script is on sys.path
from retrieval import load_squad as load_records
from retrieval import quality

from setpoint.adapters.lora.qa_data import default_squad_dir

ROOT = Path(__file__).resolve().parents[1]

__all__ = ["main", "score_embedder"]


def _split_file(split: str | None, folders: list[Path]) -> Path:
    if split:
        return Path(split)
    for folder in folders:
        if (Path(folder) / "split.json").is_file():
            return Path(folder) / "split.json"
    raise SystemExit("no split.json in any --embedder folder; give --split")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--embedder",
        action="append",
        default=[],
        help="embedder folder (repeatable; default: SETPOINT_EMBEDDER_DIR or the packaged one)",
    )
    parser.add_argument("--split", help="split.json (default: the first embedder's)")
    parser.add_argument("--squad-dir", type=Path, default=default_squad_dir())
    parser.add_argument("--questions", type=int, default=500, help="evaluation-title questions")
    parser.add_argument("--alpha", type=float, default=0.5, help="hybrid alpha")
    parser.add_argument("--data-dir", type=Path, help="Weaviate data dir (default: a temp dir)")
    parser.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks" / "results" / "retrieval_split.json"
    )
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from setpoint.adapters.lora.qa_data import TitleSplit, load_squad, sample_questions
    from setpoint.adapters.model.provisioning import embedder_dir
    from setpoint.adapters.weaviate.server import WeaviateServer
    from setpoint.settings import Settings

    settings = Settings.from_env()
    folders = [Path(f) for f in args.embedder] or [embedder_dir(settings)]
    split_path = _split_file(args.split, folders)
    split = TitleSplit.load(split_path)
    dataset = load_squad(args.squad_dir)
    questions = sample_questions(dataset.in_titles(split.eval), args.questions, seed=split.seed)
    records = load_records(args.squad_dir)[0]  # PassageRecords, as ingest reads them
    results: dict[str, Any] = {
        "machine": machine(load=False),
        "load_avg_start": os.getloadavg(),
        "split": str(split_path),
        "eval_titles": len(split.eval),
        "questions": len(questions),
        "passages": len(records),
        "alpha": args.alpha,
        "embedders": {},
    }
    print(f"{len(records)} passages, {len(questions)} evaluation-title questions ({split_path})")
    tmp = tempfile.TemporaryDirectory(prefix="setpoint-bench-split-")
    server = WeaviateServer(settings.weaviate_binary, args.data_dir or Path(tmp.name))
    with server:
        for n, folder in enumerate(folders):
            row = score_embedder(server, folder, f"BenchSplit{n}", records, questions, args.alpha)
            results["embedders"][folder.name] = row
    tmp.cleanup()
    results["load_avg_end"] = os.getloadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2, default=str))
    print("\n| embedder | mode | R@1 | R@5 | R@10 | MRR@10 |\n|---|---|---:|---:|---:|---:|")
    for name, row in results["embedders"].items():
        for label, q in row["quality"].items():
            print(
                f"| {name} | {label} | {q['R@1']:.4f} | {q['R@5']:.4f} | {q['R@10']:.4f} "
                f"| {q['MRR@10']:.4f} |"
            )
    print(f"\nwrote {args.out}")


def score_embedder(
    server: Any,
    folder: Path,
    collection: str,
    records: list[Any],
    questions: list[Any],
    alpha: float,
) -> dict[str, Any]:
    """Ingest ``records`` with ``folder``'s embedder into ``collection``; score four modes."""
    from setpoint.adapters.domain.rerank import SentenceEvidenceReranker
    from setpoint.adapters.model.embedder import Embedder
    from setpoint.adapters.weaviate.store import WeaviateStore

    embedder = Embedder(folder)
    store = WeaviateStore(
        url=server.url,
        grpc_port=server.grpc_port,
        collection=collection,
        embedder=embedder,
        reranker=SentenceEvidenceReranker(),
        rerank=False,
    )
    gold = [q.passage_id for q in questions]
    with store:
        report = store.ingest(records, source="squad", progress=False)
        vectors = embedder.embed_documents([q.question for q in questions])
        row: dict[str, Any] = {
            "folder": str(folder),
            "dtype": embedder.dtype,
            "vector_name": embedder.vector_name,
            "ingest_seconds": report.seconds,
            "ingest_embed_seconds": report.embed_seconds,
            "ingest_passages_per_s": len(records) / report.seconds,
            "quality": {},
        }
        configs = [
            ("bm25", {"mode": "bm25"}),
            ("vector", {"mode": "vector"}),
            (f"hybrid α={alpha:g}", {"mode": "hybrid", "alpha": alpha}),
            (f"hybrid α={alpha:g} + rerank", {"mode": "hybrid", "alpha": alpha, "rerank": True}),
        ]
        for label, options in configs:
            options = {"rerank": False, **options}

            def search(i: int, options: dict[str, Any] = options) -> list[str]:
                hits = store.search(questions[i].question, k=10, query_vector=vectors[i], **options)
                return [h.id for h in hits]

            row["quality"][label] = quality(search, gold, label, every=0)
            print(f"{folder.name} {label}: {row['quality'][label]}", flush=True)
    return row


if __name__ == "__main__":
    main()
