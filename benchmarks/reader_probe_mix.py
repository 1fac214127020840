"""The shipped reader probe, refitted on answers the product gave on five kinds of question.

The probe shipped before was fitted on SQuAD reads made outside the graph, so it had never
seen an unanswerable question, a multi-hop one, or the product's own retrieval. This job
reads questions of five sources through ``Setpoint.ask`` (``setpoint.jobs.reader_calibration``),
each in the generalisation benchmark's collection of its data folder, and fits one probe on
all of them (held-out groups give its validation numbers):

- ``squad``: training-title questions the reader adapter never trained on, of the ten
  training titles SQuAD v2 does not share (so no SQuAD v2 question the benchmarks score is
  fitted to);
- ``squad_v2``: the set-aside titles ``SQUAD_V2_TRAIN_TITLES``, answerable and unanswerable;
- ``2wikimultihopqa_train`` and ``musique_train``: the train splits;
- ``nq_open_dev``: NQ-Open's named dev part (``generalization.DEV_PARTS``: 400 questions
  outside, and sharing no passage with, every scored sample of seed 0 up to 250).

No scored set is read, and no question the reader adapter trained on (its record's
``learned`` questions, and for SQuAD every question of its stages' training order). Rows are
cached per reader and source in ``<cache>/reader-probe-rows/<reader>/`` (a rerun fits again
without reading). The new probe is written to ``--out`` (default: the reader's
``probe.json``, the shipped one) with its record, and the validation AUROC of the old and
the new probe on the same held-out rows is printed.

The reader is the shipped one of ``SETPOINT_MODEL`` (``reader.shipped_reader_dir``) unless
``--reader`` names another; a reader without a probe yet starts from the default features.
``--scale`` reads a share of each source's questions (a bigger model reads more slowly).

Run: ``SETPOINT_THREADS=2 .venv/bin/python benchmarks/reader_probe_mix.py``;
the second family: ``SETPOINT_MODEL=qwen2.5-coder-0.5b SETPOINT_THREADS=2
.venv/bin/python benchmarks/reader_probe_mix.py --scale 0.4``.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from generalization import DATA, ROOT, SETS, TRAIN_SETS, dev_part, reader_split, results_suffix
from machine_info import machine

#: Source -> (data folder, questions read).
SOURCES = {
    "squad": ("squad", 300),
    "squad_v2": ("squad_v2", 300),
    "2wikimultihopqa_train": ("2wikimultihopqa_train", 400),
    "musique_train": ("musique_train", 100),
    # Real search-engine queries (lower case, no question mark): the named dev part of
    # NQ-Open (generalization.DEV_PARTS), which the generalisation benchmark never scores.
    "nq_open_dev": ("nq_open", 300),
}


def source_questions(name: str, limit: int, seed: int, reader: Path) -> list[Any]:
    """The questions read for one source: none of a scored set's, none ``reader`` trained on."""
    from setpoint.adapters.domain.reader_probe import unseen_training_questions
    from setpoint.adapters.lora.qa_data import SQUAD_V2_TRAIN_TITLES, load_squad
    from setpoint.adapters.lora.reader import training_record
    from setpoint.adapters.lora.record import questions_trained_on
    from setpoint.jobs.reader_calibration import read_questions, sample_questions

    record = training_record(reader)
    learned = {q["id"] for q in (record.get("learned") or {}).get("questions") or []}
    folder = DATA / SOURCES[name][0]
    if name == "squad_v2":
        pool = read_questions(folder, groups=SQUAD_V2_TRAIN_TITLES, by_passage=True)
    elif name == "nq_open_dev":
        held = {str(q["id"]) for q in dev_part("nq_open")}
        pool = [q for q in read_questions(folder) if q.id in held]
    elif name != "squad":
        pool = read_questions(folder)
    else:
        split = reader_split()
        v2_titles = {q.group for q in read_questions(DATA / "squad_v2")}
        titles = [t for t in split.train if t not in v2_titles]
        unseen = {
            q.id
            for q in unseen_training_questions(
                load_squad(folder), split.train, questions_trained_on(record), None
            )
        }
        pool = [q for q in read_questions(folder, groups=titles, by_passage=True) if q.id in unseen]
    pool = [q for q in pool if q.id not in learned]
    if name == "squad":
        random.Random(seed).shuffle(pool)
        return pool[:limit]
    # The seed read_questions draws with, so a reader that trained on none keeps its sample.
    return sample_questions(pool, limit, f"{seed}:{folder.name}")


def read_source(
    name: str, index: Path, cache: Path, seed: int, reader: Path, scale: float
) -> list[dict[str, Any]]:
    from setpoint import Setpoint, Settings
    from setpoint.jobs.reader_calibration import load_rows, read_rows, reading_context, save_rows

    path = cache / f"{name}.jsonl"
    if path.is_file():
        return load_rows(path)
    folder, limit = SOURCES[name]
    questions = source_questions(name, max(1, round(limit * scale)), seed, reader)
    collection = {**SETS, **TRAIN_SETS}[folder]
    settings = Settings.from_env().replace(
        collection=collection, weaviate_url=None, weaviate_data_override=index
    )
    probe = reader_probe(reader)
    started = time.perf_counter()
    with Setpoint(settings) as sp:
        report = sp.ingest(DATA / folder / "passages.jsonl", progress=False)
        print(f"{name}: {collection}: {report.summary()}", flush=True)
        rows = read_rows(sp, questions, probe, context=reading_context(sp, str(reader)))
    print(f"{name}: {len(rows)} rows in {time.perf_counter() - started:.0f} s", flush=True)
    cache.mkdir(parents=True, exist_ok=True)
    return load_rows(save_rows(rows, path))


def reader_probe(reader: Path) -> Any:
    """The probe whose features ``reader``'s rows record (``reader_probe.probe_to_read_with``)."""
    from setpoint.adapters.domain.reader_probe import probe_to_read_with
    from setpoint.adapters.lora.reader import training_record

    card = training_record(reader)["base_model"]
    return probe_to_read_with(reader, int(card["num_hidden_layers"]), int(card["hidden_size"]))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sources", default=",".join(SOURCES))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--index", type=Path, help="Weaviate data (default: the benchmark's)")
    parser.add_argument(
        "--reader", type=Path, help="reader adapter folder (default: SETPOINT_MODEL's shipped one)"
    )
    parser.add_argument("--scale", type=float, default=1.0, help="share of each source's questions")
    parser.add_argument("--out", type=Path, help="probe file (default: the reader's probe.json)")
    parser.add_argument("--json", type=Path, help="results (default: benchmarks/results/)")
    args = parser.parse_args(argv)

    from setpoint import Settings
    from setpoint.adapters.domain.metrics import auroc
    from setpoint.adapters.domain.reader_probe import fit_reader_probe, load_reader_probe
    from setpoint.adapters.lora.reader import shipped_reader_dir, training_record

    base = Settings.from_env()
    reader = args.reader or shipped_reader_dir(base.model)
    if not (reader / "adapter_config.json").is_file():
        raise SystemExit(
            f"no reader adapter at {reader}; train one with `setpoint tune --task read`"
        )
    out = args.out or reader / "probe.json"
    json_out = (
        args.json
        or ROOT / "benchmarks" / "results" / f"reader_probe_mix{results_suffix(reader)}.json"
    )
    index = args.index or base.cache_dir / "bench-generalization-weaviate"
    cache = base.cache_dir / "reader-probe-rows" / reader.name
    rows: list[dict[str, Any]] = []
    for name in [s.strip() for s in args.sources.split(",") if s.strip()]:
        if name not in SOURCES:
            raise SystemExit(f"unknown source {name!r}; choose from {', '.join(SOURCES)}")
        rows += read_source(name, index, cache, args.seed, reader, args.scale)
    old = load_reader_probe(reader)
    card = training_record(reader)["base_model"]
    features = reader_probe(reader).features
    probe = fit_reader_probe(
        rows, features, int(card["hidden_size"]), model=str(card["name"]),
        adapter=reader.name, seed=args.seed,
    )  # fmt: skip
    held = set(probe.record["validation_titles"])
    val = [r for r in rows if r["title"] in held]
    per_source: dict[str, Any] = {}
    for source in sorted({r["context"] for r in rows}):
        part = [r for r in rows if r["context"] == source]
        held_part = [r for r in val if r["context"] == source]
        wrong = [r["f1"] < 0.5 for r in held_part]
        per_source[source] = {
            "rows": len(part),
            "validation_rows": len(held_part),
            "wrong": sum(r["f1"] < 0.5 for r in part) / len(part),
            "impossible": sum(bool(r.get("impossible")) for r in part),
            "old_probe_auroc_wrong": (
                auroc([old.linear.score(r["x"]) for r in held_part], wrong)
                if old is not None
                else None
            ),
            "new_probe_auroc_wrong": probe.record["validation_auroc_wrong"].get(source),
        }
    record = {
        **probe.record,
        "command": "benchmarks/reader_probe_mix.py " + " ".join(argv or sys.argv[1:]),
        "sources": per_source,
        "note": "rows read through Setpoint.ask (retrieval first, no hop on doubt) in the "
        "generalisation benchmark's collections; no scored question was read",
    }
    keep = old.default_setpoint if old is not None else None
    probe = replace(probe, record=record, default_setpoint=keep)
    probe.save(out)
    json_out.parent.mkdir(parents=True, exist_ok=True)
    json_out.write_text(
        json.dumps({"machine": machine(), **record, "setpoints": probe.setpoints}, indent=2) + "\n",
        encoding="utf-8",
    )
    print(json.dumps(per_source, indent=2))
    print(f"wrote {out} and {json_out}")


if __name__ == "__main__":
    main()
