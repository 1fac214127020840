"""Supporting-passage recall on the multi-hop dev sets, base embedder against one tuned on their train splits.

For each ``--embedder`` folder and each multi-hop dev set (2WikiMultihopQA, MuSiQue; dev
only: nothing here trains), one fresh collection in one embedded Weaviate (``--data-dir``,
else a temp dir) holds the set's whole passage pool, written with that embedder the way
``setpoint ingest`` writes it. Every question is asked once in vector-only and hybrid
(``--alpha``) mode, top 10; reported: the share of questions with **any** and with **all**
of their supporting passages in the top 5 and top 10. Then, so that "no set gets worse"
can be read, the SQuAD evaluation-title questions of ``--split`` (a ``split.json`` written
by ``setpoint tune --task embed``) are scored as ``retrieval_split.py`` scores them.

Run: ``.venv/bin/python benchmarks/retrieval_multihop.py --embedder BASE --embedder TUNED
--data-dir /tmp/x/wv`` (``--squad-questions 0`` skips SQuAD).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from machine_info import machine  # the folder of this script is on sys.path
from retrieval import load_squad as load_records
from retrieval_split import score_embedder

from setpoint.adapters.lora.qa_data import default_squad_dir

ROOT = Path(__file__).resolve().parents[1]
DATA = default_squad_dir().parent
SETS = ("2wikimultihopqa", "musique")
DEPTHS = (5, 10)

__all__ = ["main", "supporting_recall"]


def supporting_recall(hits: list[list[str]], supporting: list[list[str]]) -> dict[str, float]:
    """Share of questions with any / all supporting ids among the top 5 and top 10 hits.

    Example:
        >>> supporting_recall([["a", "x", "b"], ["y"]], [["a", "b"], ["b", "c"]])
        {'any@5': 0.5, 'all@5': 0.5, 'any@10': 0.5, 'all@10': 0.5}
    """
    n = max(len(hits), 1)
    out: dict[str, float] = {}
    for k in DEPTHS:
        tops = [set(h[:k]) for h in hits]
        out[f"any@{k}"] = round(
            sum(bool(t & set(s)) for t, s in zip(tops, supporting, strict=True)) / n, 4
        )
        out[f"all@{k}"] = round(
            sum(set(s) <= t for t, s in zip(tops, supporting, strict=True)) / n, 4
        )
    return out


def score_set(
    server: Any, folder: Path, collection: str, name: str, alpha: float
) -> dict[str, Any]:
    """Ingest one dev set's passages with ``folder``'s embedder; recall of its questions."""
    from setpoint.adapters.model.embedder import Embedder
    from setpoint.adapters.weaviate.store import WeaviateStore

    records, questions = load_records(DATA / name)
    if any(q.get("split") not in (None, "dev", "validation") for q in questions):
        raise SystemExit(f"{name}: not a dev set; this benchmark scores dev sets only")
    supporting = [list(q["supporting_ids"]) for q in questions]
    embedder = Embedder(folder)
    store = WeaviateStore(
        url=server.url, grpc_port=server.grpc_port, collection=collection, embedder=embedder
    )
    with store:
        report = store.ingest(records, source=name, progress=False)
        vectors = embedder.embed_documents([q["question"] for q in questions])
        row: dict[str, Any] = {
            "passages": len(records),
            "questions": len(questions),
            "ingest_passages_per_s": round(len(records) / report.seconds, 1),
        }
        for label, options in (
            ("vector", {"mode": "vector"}),
            (f"hybrid α={alpha:g}", {"mode": "hybrid", "alpha": alpha}),
        ):
            hits = [
                [
                    h.id
                    for h in store.search(
                        q["question"], k=10, query_vector=v, rerank=False, **options
                    )
                ]
                for q, v in zip(questions, vectors, strict=True)
            ]
            row[label] = supporting_recall(hits, supporting)
            print(f"{folder.name} {name} {label}: {row[label]}", flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--embedder", action="append", required=True, help="folder (repeatable)")
    parser.add_argument("--split", help="SQuAD split.json (default: the first embedder's)")
    parser.add_argument("--squad-questions", type=int, default=500)
    parser.add_argument("--alpha", type=float, default=0.5, help="hybrid alpha")
    parser.add_argument("--data-dir", type=Path, help="Weaviate data dir (default: a temp dir)")
    parser.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks" / "results" / "retrieval_multihop.json"
    )
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from setpoint.adapters.lora.qa_data import TitleSplit, load_squad, sample_questions
    from setpoint.adapters.weaviate.server import WeaviateServer
    from setpoint.settings import Settings

    folders = [Path(f) for f in args.embedder]
    split_path = (
        Path(args.split)
        if args.split
        else next((f / "split.json" for f in folders if (f / "split.json").is_file()), None)
    )
    results: dict[str, Any] = {
        "machine": machine(load=False),
        "load_avg_start": os.getloadavg(),
        "alpha": args.alpha,
        "sets": list(SETS),
        "embedders": {f.name: {"folder": str(f)} for f in folders},
    }
    squad: tuple[list[Any], list[Any]] | None = None
    if args.squad_questions and split_path is not None:
        split = TitleSplit.load(split_path)
        dataset = load_squad(DATA / "squad")
        picked = sample_questions(
            dataset.in_titles(split.eval), args.squad_questions, seed=split.seed
        )
        squad = (load_records(DATA / "squad")[0], picked)
        results["squad_split"] = str(split_path)
    tmp = tempfile.TemporaryDirectory(prefix="setpoint-bench-hop-")
    started = time.perf_counter()
    with WeaviateServer(
        Settings.from_env().weaviate_binary, args.data_dir or Path(tmp.name)
    ) as server:
        for n, folder in enumerate(folders):
            row = results["embedders"][folder.name]
            for name in SETS:
                row[name] = score_set(
                    server, folder, f"BenchHop{n}{name.title()}", name, args.alpha
                )
            if squad is not None:
                row["squad"] = score_embedder(
                    server, folder, f"BenchHopSquad{n}", squad[0], squad[1], args.alpha
                )
    tmp.cleanup()
    results["seconds"] = round(time.perf_counter() - started, 1)
    results["load_avg_end"] = os.getloadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2, default=str))
    print_table(results)
    print(f"\nwrote {args.out}")


def print_table(results: dict[str, Any]) -> None:
    """One markdown row per (set, embedder, mode)."""
    print(
        "\n| set | embedder | mode | any@5 | all@5 | any@10 | all@10 |\n|---|---|---|---:|---:|---:|---:|"
    )
    for name in SETS:
        for embedder, row in results["embedders"].items():
            for mode, r in row[name].items():
                if isinstance(r, dict):
                    print(
                        f"| {name} | {embedder} | {mode} | {r['any@5']:.3f} | {r['all@5']:.3f} "
                        f"| {r['any@10']:.3f} | {r['all@10']:.3f} |"
                    )
    for embedder, row in results["embedders"].items():
        for mode, q in row.get("squad", {}).get("quality", {}).items():
            print(
                f"| squad eval titles | {embedder} | {mode} | R@1 {q['R@1']:.3f} | R@10 {q['R@10']:.3f} |"
            )


if __name__ == "__main__":
    main()
