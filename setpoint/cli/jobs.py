"""The offline jobs behind ``setpoint calibrate``, ``eval``, ``tune`` and ``distill``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from setpoint.cli.options import settings_from, squad_dir

if TYPE_CHECKING:
    from setpoint.settings import Settings

__all__ = ["run_calibrate", "run_distill", "run_eval", "run_tune"]


def run_calibrate(args: argparse.Namespace) -> int:
    """Train the hidden-state probe and pick setpoints (or, with ``--reader``, the reader's probe)."""
    if args.reader:
        return _calibrate_reader(args)
    if args.data or args.rows or args.save_rows:
        from setpoint.errors import ConfigError

        raise ConfigError("--data, --rows and --save-rows fit the reader probe: add --reader")
    from setpoint.api import Setpoint
    from setpoint.jobs.calibration import calibrate
    from setpoint.jobs.eval_questions import build_stream, load_squad, split_titles

    settings = settings_from(args)
    passages, questions = load_squad(squad_dir(args))
    core, _ = split_titles({p["title"] for p in passages}, args.core_fraction, args.seed)
    # The head of the same stream `setpoint eval` reads: run eval with --skip N to score on the rest.
    stream = build_stream(
        questions, passages, core_titles=core, limit=args.limit or 300, seed=args.seed
    )
    out = Path(args.out) if args.out else settings.cache_dir / "calibration"
    with Setpoint(settings) as sp:
        ctx = sp.context(**({"adapter": args.adapter} if args.adapter else {}))
        record = calibrate(
            sp,
            stream,
            layer=args.layer,
            out_dir=out,
            seed=args.seed,
            target_retrieval_rate=args.target_retrieval_rate,
            context=ctx,
        )
    print(json.dumps(record, indent=2))
    print(
        f"calibration written to {out / 'calibration.json'}; use it with SETPOINT_CALIBRATION={out / 'calibration.json'}"
    )
    return 0


def _calibrate_reader_in_product(
    args: argparse.Namespace, settings: Settings, directory: Path
) -> int:
    """``setpoint calibrate --reader --data DIR``: the probe fitted on the product's own answers."""
    from setpoint.adapters.domain.reader_probe import PROBE_FILE
    from setpoint.api import Setpoint
    from setpoint.jobs.reader_calibration import calibrate_reader

    with Setpoint(settings) as sp:
        probe = calibrate_reader(
            sp,
            [Path(d).expanduser() for d in args.data or ()],
            rows_files=[Path(f).expanduser() for f in args.rows or ()],
            limit=args.limit or None,
            seed=args.seed,
            save_to=Path(args.save_rows).expanduser() if args.save_rows else None,
            reader=str(directory),
        )
    path = probe.save((Path(args.out) if args.out else directory) / PROBE_FILE)
    print(json.dumps({"setpoints": probe.setpoints, **probe.record}, indent=2))
    print(f"reader probe written to {path}; reads with this adapter use it for selective answering")
    return 0


def _calibrate_reader(args: argparse.Namespace) -> int:
    """``setpoint calibrate --reader``: train the reader adapter's uncertainty probe (no Weaviate needed)."""
    from setpoint.adapters.domain.reader_probe import (
        PROBE_FILE,
        collect_probe_rows,
        default_features,
        fit_reader_probe,
        unseen_training_questions,
    )
    from setpoint.adapters.lora.qa_data import TitleSplit, default_squad_dir, load_squad
    from setpoint.adapters.lora.reader import shipped_reader_dir, training_record
    from setpoint.adapters.lora.record import SPLIT_FILE, questions_trained_on
    from setpoint.adapters.model.generator import Generator
    from setpoint.errors import ConfigError

    settings = settings_from(args)
    directory = (
        shipped_reader_dir(settings.model)
        if args.reader == "auto"
        else Path(args.reader).expanduser()
    )
    if args.data or args.rows:
        return _calibrate_reader_in_product(args, settings, directory)
    if not (directory / SPLIT_FILE).is_file():
        raise ConfigError(
            f"{directory} has no {SPLIT_FILE}: the probe needs the adapter's title split "
            "(train it with `setpoint tune --task read`)"
        )
    split = TitleSplit.load(directory / SPLIT_FILE)
    seen = questions_trained_on(training_record(directory))
    dataset = load_squad(
        Path(args.squad_dir) if args.squad_dir else default_squad_dir(), option="--squad-dir"
    )
    questions = unseen_training_questions(dataset, split.train, seen, args.limit or None)
    # The probe reads the hidden states the served generator will give it: same precision.
    generator = Generator.from_pretrained(
        settings.generator_dir, threads=settings.threads, precision=settings.precision
    )
    generator.set_adapter(generator.load_adapter(directory, "reader"))
    features = default_features(int(generator.model.config.num_hidden_layers))
    rows = collect_probe_rows(generator, dataset, split.train, questions, features)
    probe = fit_reader_probe(
        rows,
        features,
        int(generator.model.config.hidden_size),
        model=generator.name,
        adapter="reader",
        seed=args.seed,
    )
    out = Path(args.out) if args.out else directory
    path = probe.save(out / PROBE_FILE)
    print(json.dumps({"setpoints": probe.setpoints, **probe.record}, indent=2))
    print(
        f"reader probe written to {path}; graphs reading with this adapter use it for selective answering"
    )
    return 0


def run_eval(args: argparse.Namespace) -> int:
    """Run the strategies on the same seeded question stream and print the table."""
    from setpoint.api import Setpoint
    from setpoint.jobs.eval_report import print_table
    from setpoint.jobs.evaluation import evaluate

    settings = settings_from(args)
    out = Path(args.out) if args.out else settings.cache_dir / "eval"
    strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
    with Setpoint(settings) as sp:
        ctx = sp.context(**({"adapter": args.adapter} if args.adapter else {}))
        probe = args.probe or ctx.probe_path
        summary = evaluate(
            sp,
            squad_dir=squad_dir(args),
            out_dir=out,
            strategies=strategies,
            limit=args.limit,
            seed=args.seed,
            core_fraction=args.core_fraction,
            probe_path=probe,
            progress=not args.quiet,
            skip=args.skip,
            context=ctx,
        )
    print_table(summary["rows"])
    for name, value in summary["signal_auroc"].items():
        print(f"AUROC closed-book wrong  {name:<26} {value:.3f}")
    print(
        f"results: {out / 'results.jsonl'}  summary: {out / 'summary.json'}  plots: {', '.join(summary['plots'])}"
    )
    return 0


def run_tune(args: argparse.Namespace) -> int:
    """Train a LoRA adapter (the reader, RAFT, or a knowledge adapter) or the embedder."""
    if args.task == "embed":
        return _tune_embedder(args)
    from setpoint.adapters.lora.config import TuningConfig
    from setpoint.adapters.lora.qa_data import default_squad_dir
    from setpoint.adapters.lora.tune import tune

    settings = settings_from(args)
    config = TuningConfig(
        task=args.task,
        rank=args.rank,
        alpha=args.lora_alpha,
        dropout=args.dropout,
        target_modules=tuple(m.strip() for m in args.targets.split(",") if m.strip()),
        learning_rate=5e-4 if args.lr is None else args.lr,
        epochs=args.epochs,
        max_examples=args.max_examples,
        skip_examples=args.skip_examples,
        init_adapter=args.init_adapter,
        max_steps=args.max_steps,
        group_size=args.group_size,
        distractors=args.distractors,
        gold_only_fraction=args.gold_only_fraction,
        multihop_examples=args.multihop_examples,
        multihop_distractors=args.multihop_distractors,
        unanswerable_examples=args.unanswerable_examples,
        seed=args.seed,
    )
    default_name = "reader" if args.task == "read" else "knowledge"
    if args.update:
        out = Path(args.out or args.update)
    else:
        out = Path(args.out) if args.out else settings.cache_dir / "adapters" / default_name
    store = None
    if args.retriever == "weaviate":
        from setpoint.adapters.weaviate.store import WeaviateStore

        store = WeaviateStore.from_settings(settings)
    try:
        result = tune(
            config,
            data_dir=Path(args.data) if args.data else default_squad_dir(),
            out_dir=out,
            generator_dir=settings.generator_dir,
            eval_fraction=args.eval_fraction,
            split_seed=args.split_seed,
            retriever=args.retriever,
            store=store,
            threads=settings.threads,
            eval_questions=args.eval_questions,
            max_seconds=args.max_seconds,
            progress=not args.quiet,
            command=" ".join(["setpoint", *sys.argv[1:]]),
            update=Path(args.update) if args.update else None,
            replay_fraction=args.replay_fraction,
            topics=tuple(args.topic or ()),
            multihop=[Path(d) for d in args.multihop or ()],
            unanswerable=Path(args.unanswerable) if args.unanswerable else None,
            **(
                {"unanswerable_titles": [t for t in args.unanswerable_titles.split(",") if t]}
                if args.unanswerable_titles
                else {}
            ),
        )
    finally:
        if store is not None:
            store.close()
    r = result.report
    print(
        f"tune: {r.steps} steps, {r.examples_seen} examples, {r.tokens_seen} tokens in "
        f"{r.seconds:.0f} s ({r.tokens_per_s:.0f} tokens/s); loss {r.mean_loss(True):.3f} -> "
        f"{r.mean_loss(False):.3f}"
    )
    if result.evaluation:
        e = result.evaluation
        print(
            f"tune: {e['questions']} evaluation-title questions ({e['context']}): "
            f"EM {e['exact_match']:.2f} F1 {e['f1']:.2f}"
        )
    print(
        f"tune: adapter saved to {result.directory} (split: {len(result.split.train)} training, "
        f"{len(result.split.eval)} evaluation titles)"
    )
    return 0


def _tune_embedder(args: argparse.Namespace) -> int:
    """``setpoint tune --task embed``: a new embedder version, scored before and after."""
    from setpoint.adapters.lora.qa_data import default_squad_dir
    from setpoint.adapters.model.embed_tuning import EmbedTuningConfig, tune_embedder
    from setpoint.adapters.model.provisioning import embedder_dir

    settings = settings_from(args)
    config = EmbedTuningConfig(
        learning_rate=3e-5 if args.lr is None else args.lr,
        epochs=args.epochs,
        batch_size=args.batch_size,
        hard_negatives=args.hard_negatives,
        miner=args.miner,
        max_examples=args.max_examples,
        max_steps=args.max_steps,
        seed=args.seed,
    )
    result = tune_embedder(
        config,
        data_dir=Path(args.data) if args.data else default_squad_dir(),
        out_dir=Path(args.out) if args.out else settings.cache_dir / "embedders",
        base_dir=Path(args.base) if args.base else embedder_dir(settings),
        eval_fraction=args.eval_fraction,
        split_seed=args.split_seed,
        eval_questions=args.eval_questions,
        progress=not args.quiet,
        command=" ".join(["setpoint", *sys.argv[1:]]),
        multihop=[Path(d) for d in args.multihop or ()],
    )
    t, e = result.record["training"], result.record["evaluation"]
    print(
        f"tune: {t['steps']} steps on {t['rows']} training rows (question, passage) in {t['seconds']:.0f} s; "
        f"contrastive loss {t['loss_before']:.3f} -> {t['loss_after']:.3f}"
    )
    if e["before"]:
        b, a = e["before"], e["after"]
        print(
            f"tune: {e['questions']} evaluation-title questions, vector-only R@1 "
            f"{b['R@1']:.3f} -> {a['R@1']:.3f}, R@10 {b['R@10']:.3f} -> {a['R@10']:.3f}"
        )
    print(
        f"tune: embedder saved to {result.directory} (named vector "
        f"{result.record['vector_name']}); fill it with `setpoint ingest --reembed "
        f"{result.directory}`, then set SETPOINT_EMBEDDER_DIR={result.directory}"
    )
    return 0


def run_distill(args: argparse.Namespace) -> int:
    """Tune a knowledge adapter on questions answered through retrieval again and again."""
    from setpoint.adapters.lora.config import TuningConfig
    from setpoint.jobs.distill import distill

    settings = settings_from(args)
    source = Path(args.source) if args.source else settings.trace_file
    out = Path(args.out or args.update or settings.cache_dir / "adapters" / "distilled")
    config = TuningConfig(
        task="qa",
        rank=args.rank,
        alpha=args.lora_alpha,
        learning_rate=args.lr,
        epochs=args.epochs,
        group_size=args.group_size,
        seed=args.seed,
    )
    pairs, result = distill(
        source,
        out,
        generator_dir=settings.generator_dir,
        config=config,
        min_count=args.min_count,
        update=Path(args.update) if args.update else None,
        replay_fraction=args.replay_fraction,
        threads=settings.threads,
        progress=not args.quiet,
        command=" ".join(["setpoint", *sys.argv[1:]]),
    )
    if result is None:
        print(
            f"distill: no question answered through retrieval {args.min_count}+ times with passing answers in {source}"
        )
        return 0
    r = result.report
    print(
        f"distill: {len(pairs)} pairs from {source} ({len(result.replayed_questions)} replayed); "
        f"{r.steps} steps in {r.seconds:.0f} s, loss {r.mean_loss(True):.3f} -> {r.mean_loss(False):.3f}"
    )
    print(f"distill: adapter saved to {result.directory}")
    return 0
