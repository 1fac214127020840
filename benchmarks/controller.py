"""Prove the controller: a tuned core, a calibrated probe and thermostat, and every strategy on one stream.

The question stream is SQuAD (``../shared/data/squad``) with its article titles split into a
*core* and a *fringe* half (``setpoint.jobs.eval_questions.split_titles``, seed recorded). The run:

1. **Core adapter.** A knowledge LoRA adapter is tuned closed-book on every core question of
   the stream's first ``--calibrate + --eval`` questions: those facts now live in the weights;
   fringe facts live only in the index. Cached under ``<cache>/adapters/`` by a fingerprint
   of the questions and hyper-parameters, so a rerun does not retrain.
2. **Calibration** (``setpoint calibrate``) on the head of the stream (``--calibrate``
   questions) with that adapter: the hidden-state probe and its validation AUROC, and the
   probe and entropy setpoints for ``--target-retrieval-rate``.
3. **Evaluation** (``setpoint eval --skip``) on the next ``--eval`` questions: never, always,
   flare, entropy, probe, grader and oracle on the same questions, the calibrated values
   loaded; the F1-vs-retrieval frontiers swept from the never/always runs.

Run: ``.venv/bin/python benchmarks/controller.py`` (``--help`` for the knobs). Prints the
table, writes ``benchmarks/results/controller.json`` and the plots under ``docs/``. The eval
results are appended per question (``<cache>/eval-controller/eval/results.jsonl``), so an
interrupted run resumes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

from machine_info import machine  # the folder of this script is on sys.path

ROOT = Path(__file__).resolve().parents[1]


def train_core_adapter(
    core: list[Any],
    fringe_titles: set[str],
    squad_dir: Path,
    out: Path,
    args: argparse.Namespace,
    settings: Any,
) -> dict[str, Any]:
    """Tune (or find) the knowledge adapter on the core questions; returns its training record."""
    from setpoint.adapters.lora.config import TuningConfig
    from setpoint.adapters.lora.examples import TrainingGroup
    from setpoint.adapters.lora.qa_data import QARecord, TitleSplit, load_squad
    from setpoint.adapters.lora.record import RECORD_FILE, base_model_card
    from setpoint.adapters.lora.training import save_adapter, train_lora
    from setpoint.adapters.model.generator import Generator

    config = TuningConfig(
        task="qa",
        learning_rate=args.lr,
        epochs=args.epochs,
        group_size=8,
        seed=args.seed,
    )
    fingerprint = hashlib.sha256(
        json.dumps([[q.id for q in core], args.lr, args.epochs, args.seed]).encode()
    ).hexdigest()[:16]
    record_path = out / RECORD_FILE
    if record_path.is_file():
        record = json.loads(record_path.read_text(encoding="utf-8"))
        if record.get("core_fingerprint") == fingerprint:
            print(f"core adapter: reusing {out}")
            return dict(record)
    dataset = load_squad(squad_dir)
    records = [QARecord(q.id, q.question, tuple(q.answers), q.passage_id) for q in core]
    groups = [
        TrainingGroup((), tuple(records[i : i + config.group_size]))
        for i in range(0, len(records), config.group_size)
    ]
    generator = Generator.from_pretrained(settings.generator_dir, threads=settings.threads)
    print(f"core adapter: {len(records)} questions x {args.epochs} epochs ...", flush=True)
    model, report = train_lora(generator, groups, config, progress=True)
    core_titles = sorted({q.title for q in core})
    record = {
        "task": "qa",
        "command": "benchmarks/controller.py (core adapter of the controller evaluation)",
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "base_model": base_model_card(generator),
        "data": {
            "directory": str(dataset.directory),
            "sha256": dataset.fingerprint,
            "training_questions": len(records),
            "question_ids": [q.id for q in core],
        },
        "core_fingerprint": fingerprint,
        "training": report.to_dict(),
    }
    # Fringe titles are never trained on: they are the split's evaluation side.
    split = TitleSplit(
        train=tuple(core_titles),
        eval=tuple(sorted(fringe_titles)),
        seed=args.seed,
        eval_fraction=1.0 - args.core_fraction,
        rule="core/fringe title split of benchmarks/controller.py (setpoint.jobs.eval_questions.split_titles)",
    )
    save_adapter(model, out, config=config, record=record, split=split)
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--squad-dir", type=Path, default=ROOT.parent / "shared" / "data" / "squad")
    parser.add_argument(
        "--calibrate", type=int, default=80, help="questions at the head of the stream"
    )
    parser.add_argument("--eval", type=int, default=160, help="questions after them, scored")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--core-fraction", type=float, default=0.5)
    parser.add_argument("--target-retrieval-rate", type=float, default=0.5)
    parser.add_argument("--layer", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=12, help="core adapter epochs")
    parser.add_argument("--lr", type=float, default=1e-3, help="core adapter learning rate")
    parser.add_argument("--strategies", default="never,always,flare,entropy,probe,grader,oracle")
    parser.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks" / "results" / "controller.json"
    )
    parser.add_argument(
        "--work", type=Path, help="calibration and eval folder (default: <cache>/eval-controller)"
    )
    parser.add_argument(
        "--no-plots-in-docs", action="store_true", help="leave the plots in the work folder"
    )
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from setpoint.api import Setpoint, calibrated_context
    from setpoint.jobs.calibration import calibrate
    from setpoint.jobs.eval_questions import build_stream, load_squad, split_titles
    from setpoint.jobs.eval_report import print_table
    from setpoint.jobs.evaluation import evaluate
    from setpoint.settings import Settings

    settings = Settings.from_env().replace(collection="SetpointEval")
    if settings.threads:
        import torch

        torch.set_num_threads(settings.threads)
    started = time.perf_counter()
    results: dict[str, Any] = {
        "machine": machine(),
        "args": {k: str(v) for k, v in vars(args).items()},
    }
    passages, questions = load_squad(args.squad_dir)
    core_titles, fringe_titles = split_titles(
        {p["title"] for p in passages}, args.core_fraction, args.seed
    )
    stream = build_stream(
        questions,
        passages,
        core_titles=core_titles,
        limit=args.calibrate + args.eval,
        seed=args.seed,
    )
    head = stream[: args.calibrate]
    core = [q for q in stream if q.part == "core"]
    work = args.work or settings.cache_dir / "eval-controller"
    adapter_dir = settings.cache_dir / "adapters" / f"eval-core-s{args.seed}-{len(stream)}"

    t0 = time.perf_counter()
    record = train_core_adapter(core, fringe_titles, args.squad_dir, adapter_dir, args, settings)
    results["core_adapter"] = {
        "directory": str(adapter_dir),
        "questions": len(core),
        "training": {k: v for k, v in record["training"].items() if k != "losses"},
        "seconds_this_run": round(time.perf_counter() - t0, 1),
    }

    with Setpoint(settings) as sp:
        ctx = sp.context(adapter=str(adapter_dir))
        t0 = time.perf_counter()
        calibration = calibrate(
            sp,
            head,
            layer=args.layer,
            out_dir=work / "calibration",
            seed=args.seed,
            target_retrieval_rate=args.target_retrieval_rate,
            context=ctx,
        )
        results["calibration"] = calibration
        print(json.dumps(calibration, indent=2))
        features = [
            json.loads(line)
            for line in (work / "calibration" / "features.jsonl").read_text().splitlines()
            if line.strip()
        ]
        by_part: dict[str, list[float]] = {}
        for q, row in zip(head, features, strict=True):
            by_part.setdefault(q.part, []).append(row["f1"])
        results["closed_book_f1_head"] = {k: sum(v) / len(v) for k, v in by_part.items()}
        print(
            f"closed-book F1 with the core adapter (calibration questions): {results['closed_book_f1_head']}"
        )
        ctx = sp.context(**calibrated_context(work / "calibration" / "calibration.json"))
        strategies = [s for s in args.strategies.split(",") if s]
        summary = evaluate(
            sp,
            squad_dir=args.squad_dir,
            out_dir=work / "eval",
            strategies=strategies,
            limit=args.eval,
            seed=args.seed,
            core_fraction=args.core_fraction,
            probe_path=ctx.probe_path,
            skip=args.calibrate,
            context=ctx,
        )
    results["eval"] = {k: v for k, v in summary.items() if k != "split"}
    results["split"] = summary["split"]
    docs = ROOT / "docs"
    copied = []
    for plot in [] if args.no_plots_in_docs else summary["plots"]:
        target = docs / f"controller_{Path(plot).name}"
        shutil.copyfile(plot, target)
        copied.append(str(target.relative_to(ROOT)))
    results["plots"] = copied
    results["seconds"] = round(time.perf_counter() - started, 1)
    results["machine"]["load_average_end"] = os.getloadavg()
    print_table(summary["rows"])
    for name, value in summary["signal_auroc"].items():
        print(f"AUROC closed-book wrong  {name:<26} {value:.3f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2, default=str) + "\n", encoding="utf-8")
    print(f"wrote {args.out} and {', '.join(copied)}")


if __name__ == "__main__":
    main()
