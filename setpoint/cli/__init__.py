"""The ``setpoint`` command: setup, ingest, ask, demo. Errors end in one line and a non-zero exit."""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from setpoint.errors import SetpointError
from setpoint.settings import Settings

__all__ = ["main"]

DEMO_QUESTIONS = (
    "What is the capital of France?",
    "Who was the commissioner of the NFL in 2012?",
    "How do I build a bomb at home?",
)


def _float(text: str) -> float:
    try:
        return math.inf if text.lower() in {"inf", "infinity"} else float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a number (use e.g. 1.6 or inf)"
        ) from None


def _sample_corpus() -> Path:
    from importlib import resources

    return Path(str(resources.files("setpoint").joinpath("data/squad_sample.jsonl")))


def _print_result(result: Any) -> None:
    print(f"Q: {result.question}")
    print(f"A: {result.answer}")
    entropy = "n/a" if result.answer_entropy is None else f"{result.answer_entropy:.2f}"
    probe = "n/a" if result.probe_entropy is None else f"{result.probe_entropy:.2f}"
    print(
        f"   route={result.route} status={result.status} retrieval_calls={result.retrieval_calls} "
        f"probe_entropy={probe} answer_entropy={entropy} setpoint={result.setpoint:g} "
        f"({result.seconds:.2f} s)"
    )
    print(f"   why: {result.reason}")
    if result.status == "pending_review":
        print(
            f"   paused for review: setpoint review {result.thread_id} "
            "--approve | --edit TEXT | --reject [--note TEXT]"
        )
    if result.retrieval_unavailable:
        print("   note: Weaviate was unavailable; this answer comes from the weights alone")
    for c in result.citations:
        score = "" if c.get("score") is None else f" score={c['score']:.3f}"
        print(f"   [{c['index']}] {c['id']} ({c.get('title', '')}){score}")
    for d in result.dropped_passages:
        print(f"   dropped passage {d['id']}: {d['reason']}")
    if result.trace_file:
        print(f"   trace: {result.trace_file} (trace_id {result.trace_id})")


def _settings(args: argparse.Namespace) -> Settings:
    settings = Settings.from_env()
    changes: dict[str, Any] = {}
    if getattr(args, "setpoint", None) is not None:
        changes["setpoint"] = args.setpoint
    if getattr(args, "trace_file", None):
        changes["trace_file_override"] = Path(args.trace_file)
    if getattr(args, "console_trace", False):
        changes["trace_console"] = True
    if getattr(args, "review", False):
        changes["review"] = True
    return settings.replace(**changes) if changes else settings


def _cmd_setup(args: argparse.Namespace) -> int:
    from setpoint.adapters.model.provisioning import provision_all

    started = time.perf_counter()
    provision_all(_settings(args))
    print(f"setup: done in {time.perf_counter() - started:.1f} s")
    return 0


def _report_ingest(report: Any, path: Path) -> int:
    for part in report.parts or [report]:
        where = path if not report.parts else path / part.source.split("/", 1)[-1]
        for line, reason in part.skipped_lines:
            print(f"{where}:{line}: skipped: {reason}", file=sys.stderr)
        for object_id, reason in part.failed:
            print(f"{where}: failed {object_id}: {reason}", file=sys.stderr)
    for source, passage_id in report.deleted[:20]:
        print(f"deleted {passage_id} ({source})")
    if len(report.deleted) > 20:
        print(f"… and {len(report.deleted) - 20} more deleted")
    skipped = len(report.skipped_lines) + sum(len(p.skipped_lines) for p in report.parts)
    print(
        f"ingest: {report.added + report.updated} passages written from {path.name} "
        f"({report.summary()}), {skipped} bad lines"
    )
    return 0 if report.ok else 1


def _cmd_ingest(args: argparse.Namespace) -> int:
    from setpoint.adapters.domain.chunking import ChunkPolicy
    from setpoint.api import Setpoint
    from setpoint.errors import InputError

    if args.delete and (args.file or args.sync):
        raise InputError("--delete takes passage ids, not a file or folder")
    if args.sync and args.file:
        raise InputError("give either FILE or --sync FOLDER, not both")
    if args.source and not args.delete:
        raise InputError("--source goes with --delete")
    chunking = ChunkPolicy(max_words=args.chunk_words, overlap_words=args.chunk_overlap)
    path = Path(args.sync or args.file) if (args.sync or args.file) else _sample_corpus()
    with Setpoint(_settings(args)) as sp:
        if args.recreate:
            sp.resources.store().recreate_collection()
        try:
            if args.delete:
                report = sp.delete_passages(args.delete, source=args.source)
                missing = len(set(args.delete) - {pid for _, pid in report.deleted})
                print(f"ingest: deleted {len(report.deleted)} passages, {missing} ids not found")
                return 0
            report = sp.ingest(
                path,
                progress=not args.quiet,
                sync=bool(args.sync),
                chunking=chunking,
                batch_size=args.batch_size,
            )
        except KeyboardInterrupt:
            print(
                "setpoint: ingest interrupted; run the same command again to finish "
                "(stored passages are skipped, none is written twice)",
                file=sys.stderr,
            )
            return 130
    return _report_ingest(report, path)


def _context_overrides(args: argparse.Namespace) -> dict[str, Any]:
    overrides: dict[str, Any] = {}
    # ``setpoint`` again here (it is also in the settings): a calibration file must not win over the flag.
    for name in (
        "setpoint",
        "probe_setpoint",
        "max_retrievals",
        "top_k",
        "alpha",
        "max_new_tokens",
        "adapter",
    ):
        value = getattr(args, name, None)
        if value is not None:
            overrides[name] = value
    return overrides


def _cmd_ask(args: argparse.Namespace) -> int:
    from setpoint.agents.guard_input import validate_question
    from setpoint.api import Setpoint

    settings = _settings(args)
    question = validate_question(args.question, settings.max_question_chars)
    with Setpoint(settings) as sp:
        sp.resources.warm_up_retrieval()
        result = sp.ask(question, context=sp.context(**_context_overrides(args)))
    if args.json:
        print(json.dumps(result.to_dict(), indent=2, default=str))
    else:
        _print_result(result)
    return 0


def _print_pending(pending: list[dict[str, Any]], where: str) -> None:
    if not pending:
        print(f"review: no paused runs in {where}")
        return
    for run in pending:
        print(f"{run['thread_id']}  {run.get('created_at', '')}  reason={run.get('reason', '')}")
        print(f"   Q: {run.get('question', '')}")
        print(f"   draft: {run.get('draft_answer') or '(none)'}")
        for check in run.get("failed_checks") or []:
            where_ = check.get("passage_id") or check.get("target", "")
            print(
                f"   failed: {check.get('check')} on {where_}: {check.get('reason')} {check.get('matched', '')}".rstrip()
            )
    print(
        f"{len(pending)} paused; resume one with: setpoint review THREAD --approve | --edit TEXT | --reject"
    )


def _cmd_review(args: argparse.Namespace) -> int:
    from setpoint.api import Setpoint
    from setpoint.errors import InputError

    settings = _settings(args).replace(review=True)
    chosen = [
        name
        for name, on in (
            ("approve", args.approve),
            ("edit", args.edit is not None),
            ("reject", args.reject),
        )
        if on
    ]
    if args.thread is None and chosen:
        raise InputError("name the paused run to resume: setpoint review THREAD --approve")
    if args.thread is not None and len(chosen) != 1:
        raise InputError("choose exactly one of --approve, --edit TEXT or --reject")
    with Setpoint(settings) as sp:
        if args.thread is None:
            pending = sp.pending_reviews()
            if args.json:
                print(json.dumps(pending, indent=2, default=str))
            else:
                _print_pending(pending, settings.checkpoints)
            return 0
        decision = {"action": chosen[0], "answer": args.edit or "", "note": args.note or ""}
        result = sp.resume(args.thread, decision)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2, default=str))
    else:
        _print_result(result)
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from setpoint.adapters.model.provisioning import provision_all
    from setpoint.api import Setpoint

    settings = _settings(args)
    provision_all(settings)
    corpus = _sample_corpus()
    with Setpoint(settings) as sp:
        sp.resources.warm_up_retrieval()
        report = sp.ingest(corpus, progress=False)
        _report_ingest(report, corpus)
        print()
        for question in DEMO_QUESTIONS:
            _print_result(sp.ask(question))
            print()
    return 0


def _squad_dir(args: argparse.Namespace) -> Path:
    if args.squad_dir:
        return Path(args.squad_dir).expanduser()
    env = os.environ.get("SETPOINT_SQUAD_DIR")
    return Path(env).expanduser() if env else Path.cwd().parent / "shared" / "data" / "squad"


def _cmd_calibrate(args: argparse.Namespace) -> int:
    if args.reader:
        return _calibrate_reader(args)
    from setpoint.api import Setpoint
    from setpoint.jobs.calibration import calibrate
    from setpoint.jobs.evaluation import build_stream, load_squad, split_titles

    settings = _settings(args).replace(collection=args.collection)
    passages, questions = load_squad(_squad_dir(args))
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


def _calibrate_reader(args: argparse.Namespace) -> int:
    """``setpoint calibrate --reader``: train the reader adapter's uncertainty probe (no Weaviate needed)."""
    from setpoint.adapters.domain.reader_probe import (
        DEFAULT_FEATURES,
        PROBE_FILE,
        collect_probe_rows,
        fit_reader_probe,
        unseen_training_questions,
    )
    from setpoint.adapters.lora.qa_data import TitleSplit, default_squad_dir, load_squad
    from setpoint.adapters.lora.reader import shipped_reader_dir, training_record
    from setpoint.adapters.lora.training import SPLIT_FILE
    from setpoint.adapters.model.generator import Generator
    from setpoint.errors import ConfigError

    settings = _settings(args)
    directory = shipped_reader_dir() if args.reader == "auto" else Path(args.reader).expanduser()
    if not (directory / SPLIT_FILE).is_file():
        raise ConfigError(
            f"{directory} has no {SPLIT_FILE}: the probe needs the adapter's title split "
            "(train it with `setpoint tune --task read`)"
        )
    split = TitleSplit.load(directory / SPLIT_FILE)
    record = training_record(directory)
    # Questions every stage trained on: the last stage skipped the earlier ones' share.
    seen = int(record.get("config", {}).get("skip_examples") or 0) + int(
        record.get("data", {}).get("training_questions") or 0
    )
    dataset = load_squad(
        Path(args.squad_dir) if args.squad_dir else default_squad_dir(), option="--squad-dir"
    )
    questions = unseen_training_questions(dataset, split.train, seen, args.limit or None)
    generator = Generator.from_pretrained(settings.generator_dir, threads=settings.threads)
    generator.set_adapter(generator.load_adapter(directory, "reader"))
    rows = collect_probe_rows(generator, dataset, split.train, questions)
    probe = fit_reader_probe(
        rows,
        DEFAULT_FEATURES,
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


def _cmd_eval(args: argparse.Namespace) -> int:
    from setpoint.api import Setpoint
    from setpoint.jobs.evaluation import evaluate, print_table

    settings = _settings(args).replace(collection=args.collection)
    out = Path(args.out) if args.out else settings.cache_dir / "eval"
    strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
    with Setpoint(settings) as sp:
        ctx = sp.context(**({"adapter": args.adapter} if args.adapter else {}))
        probe = args.probe or ctx.probe_path
        summary = evaluate(
            sp,
            squad_dir=_squad_dir(args),
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


def _cmd_tune(args: argparse.Namespace) -> int:
    from setpoint.adapters.lora.qa_data import default_squad_dir
    from setpoint.adapters.lora.training import TuningConfig, tune

    settings = _settings(args)
    config = TuningConfig(
        task=args.task,
        rank=args.rank,
        alpha=args.lora_alpha,
        dropout=args.dropout,
        target_modules=tuple(m.strip() for m in args.targets.split(",") if m.strip()),
        learning_rate=args.lr,
        epochs=args.epochs,
        max_examples=args.max_examples,
        skip_examples=args.skip_examples,
        init_adapter=args.init_adapter,
        max_steps=args.max_steps,
        group_size=args.group_size,
        distractors=args.distractors,
        gold_only_fraction=args.gold_only_fraction,
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


def _cmd_distill(args: argparse.Namespace) -> int:
    from setpoint.adapters.lora.training import TuningConfig
    from setpoint.jobs.distill import distill

    settings = _settings(args)
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


def _cmd_trace(args: argparse.Namespace) -> int:
    from setpoint.jobs.trace_reader import plot_run, read_spans, render_run, runs

    path = Path(args.file) if args.file else Settings.from_env().trace_file
    grouped = runs(read_spans(path))
    if not grouped:
        print(f"{path}: no spans")
        return 0
    if args.trace_id:
        wanted = [
            t for t in grouped if t.removeprefix("0x").startswith(args.trace_id.removeprefix("0x"))
        ]
        if not wanted:
            from setpoint.errors import InputError

            raise InputError(f"no run with trace id {args.trace_id} in {path}")
    else:
        wanted = list(grouped)[-args.last :]
    for trace_id in wanted:
        print(f"trace {trace_id.removeprefix('0x')}")
        for line in render_run(grouped[trace_id]):
            print(f"  {line}")
    if args.png:
        out = plot_run(grouped[wanted[-1]], Path(args.png))
        print(f"plot: {out}")
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    """`langgraph dev` over the installed graph, from any folder (writes its own langgraph.json)."""
    import shutil
    import subprocess
    import tempfile

    import setpoint.graphs.graph as graph_module
    from setpoint.errors import ConfigError

    langgraph = shutil.which("langgraph", path=str(Path(sys.executable).parent)) or shutil.which(
        "langgraph"
    )
    if langgraph is None:
        raise ConfigError(
            "langgraph-cli is not installed; run `pip install 'langgraph-cli[inmem]'`"
        )
    with tempfile.TemporaryDirectory(prefix="setpoint-serve-") as tmp:
        config = Path(tmp) / "langgraph.json"
        config.write_text(
            json.dumps(
                {"dependencies": ["."], "graphs": {"setpoint": f"{graph_module.__file__}:graph"}}
            ),
            encoding="utf-8",
        )
        env = {**os.environ, "LANGGRAPH_CLI_NO_ANALYTICS": "1"}
        cmd = [
            langgraph,
            "dev",
            "--config",
            str(config),
            "--port",
            str(args.port),
            "--host",
            args.host,
            "--no-reload",
        ]
        if not args.browser:
            cmd.append("--no-browser")
        print(f"serving the setpoint graph on http://{args.host}:{args.port} (Ctrl-C stops it)")
        return subprocess.call(cmd, env=env, cwd=tmp)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="setpoint",
        description="Entropy-gated question answering: answer from the weights, retrieve from Weaviate, or escalate.",
    )
    sub = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    def tracing_flags(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--trace-file",
            help="JSON-lines span file (default: SETPOINT_TRACE_FILE or the cache dir)",
        )
        p.add_argument(
            "--console-trace", action="store_true", help="also print spans to the console"
        )

    setup = sub.add_parser(
        "setup", help="convert the model, locate the embedder, build weaviate-server (idempotent)"
    )
    setup.set_defaults(func=_cmd_setup)

    ingest = sub.add_parser(
        "ingest",
        help="ingest passages (JSONL, Markdown, text; a file or a folder) into Weaviate",
        description=(
            "Chunk, embed and write passages. Re-running writes only what changed; an "
            "interrupted run, run again, finishes the job. Ends with a summary: added, "
            "updated, unchanged, deleted, failed."
        ),
    )
    ingest.add_argument(
        "file",
        nargs="?",
        help="a .jsonl ({id, title, text, ...} per line), .md or .txt file, or a folder of them "
        "(default: the packaged SQuAD sample)",
    )
    ingest.add_argument(
        "--sync",
        metavar="FOLDER",
        help="ingest FOLDER and delete passages whose file (or line, or section) is gone",
    )
    ingest.add_argument(
        "--delete", nargs="+", metavar="ID", help="delete these passage ids instead of ingesting"
    )
    ingest.add_argument("--source", help="with --delete: only in this source (a file name)")
    ingest.add_argument(
        "--chunk-words", type=int, default=180, help="longest chunk, in words (default 180)"
    )
    ingest.add_argument(
        "--chunk-overlap",
        type=int,
        default=30,
        help="words of the previous chunk repeated at the start of the next (default 30)",
    )
    ingest.add_argument(
        "--batch-size", type=int, default=64, help="passages per embedding and write batch"
    )
    ingest.add_argument(
        "--recreate", action="store_true", help="delete the whole collection first, then ingest"
    )
    ingest.add_argument("--quiet", action="store_true", help="no progress bar")
    ingest.set_defaults(func=_cmd_ingest)

    ask = sub.add_parser("ask", help="answer one question and say which route it took and why")
    ask.add_argument("question")
    ask.add_argument("--json", action="store_true", help="machine-readable output")
    ask.add_argument(
        "--setpoint", type=_float, help="per-token entropy setpoint in nats (inf: never retrieve)"
    )
    ask.add_argument(
        "--probe-setpoint",
        type=_float,
        help="probe entropy above which to retrieve before generating",
    )
    ask.add_argument("--max-retrievals", type=int, help="retrieval budget per question")
    ask.add_argument("--top-k", type=int, help="passages per retrieval")
    ask.add_argument("--alpha", type=float, help="hybrid weight: 0 = BM25 only, 1 = vector only")
    ask.add_argument("--max-new-tokens", type=int, help="answer length cap")
    ask.add_argument("--adapter", help="name of a loaded LoRA adapter to answer with")
    ask.add_argument(
        "--review",
        action="store_true",
        help="pause an escalated question for `setpoint review` instead of abstaining",
    )
    tracing_flags(ask)
    ask.set_defaults(func=_cmd_ask)

    review = sub.add_parser(
        "review",
        help="list runs paused for review, or resume one with a decision",
        description="Without THREAD: list paused runs (SETPOINT_CHECKPOINT_URL, default "
        "<cache>/checkpoints.sqlite). With THREAD: approve the draft answer, edit it, or reject.",
    )
    review.add_argument("thread", nargs="?", help="the paused run's thread id (from the list)")
    decision = review.add_mutually_exclusive_group()
    decision.add_argument("--approve", action="store_true", help="give the draft answer")
    decision.add_argument("--edit", metavar="TEXT", help="give this answer instead")
    decision.add_argument("--reject", action="store_true", help="abstain")
    review.add_argument("--note", help="reviewer's note (shown with a rejection)")
    review.add_argument("--json", action="store_true", help="machine-readable output")
    tracing_flags(review)
    review.set_defaults(func=_cmd_review)

    tune = sub.add_parser(
        "tune",
        help="train a LoRA adapter: the reader (--task read, RAFT) or a knowledge adapter (--task qa)",
        description="Supervised LoRA tuning on SQuAD-format data (passages.jsonl + questions.jsonl), "
        "split by article title; the adapter is saved with its training record and split.",
    )
    tune.add_argument(
        "--task",
        choices=("read", "qa"),
        default="read",
        help="read: answer from passages; qa: closed book",
    )
    tune.add_argument(
        "--data",
        help="folder with passages.jsonl and questions.jsonl (default: SETPOINT_SQUAD_DIR or ../shared/data/squad)",
    )
    tune.add_argument(
        "--out", help="adapter folder (default: <cache>/adapters/reader or knowledge)"
    )
    tune.add_argument("--rank", type=int, default=16, help="LoRA rank")
    tune.add_argument(
        "--lora-alpha", type=int, default=32, help="LoRA alpha (scale = alpha / rank)"
    )
    tune.add_argument("--dropout", type=float, default=0.05, help="LoRA dropout")
    tune.add_argument(
        "--targets", default="q_proj,k_proj,v_proj,o_proj", help="comma-separated module names"
    )
    tune.add_argument(
        "--lr",
        type=float,
        default=5e-4,
        help="peak learning rate (AdamW, linear warm-up and decay)",
    )
    tune.add_argument("--epochs", type=int, default=1)
    tune.add_argument("--max-examples", type=int, help="train on at most this many questions")
    tune.add_argument(
        "--skip-examples",
        type=int,
        default=0,
        help="skip the first N questions of the training order",
    )
    tune.add_argument(
        "--init-adapter", help="continue training this adapter (same rank and targets)"
    )
    tune.add_argument("--max-steps", type=int, help="stop after this many steps (reproducible)")
    tune.add_argument("--max-seconds", type=float, help="stop after this much training time")
    tune.add_argument(
        "--group-size", type=int, default=8, help="questions sharing one context per step"
    )
    tune.add_argument(
        "--distractors",
        type=int,
        default=2,
        help="retrieved distractor passages per context (RAFT)",
    )
    tune.add_argument(
        "--gold-only-fraction",
        type=float,
        default=0.3,
        help="share of contexts with the gold passage alone",
    )
    tune.add_argument(
        "--retriever",
        choices=("bm25", "weaviate"),
        default="bm25",
        help="where distractors come from",
    )
    tune.add_argument(
        "--eval-fraction",
        type=float,
        default=0.2,
        help="share of questions whose titles are held out",
    )
    tune.add_argument("--split-seed", type=int, default=0, help="seed of the title split")
    tune.add_argument(
        "--eval-questions",
        type=int,
        default=50,
        help="held-out questions answered after training (0: none)",
    )
    tune.add_argument("--seed", type=int, default=0)
    tune.add_argument(
        "--update",
        metavar="ADAPTER",
        help="extend this knowledge adapter (--task qa) with new questions plus a replay sample of its old ones; saved in place unless --out",
    )
    tune.add_argument(
        "--replay-fraction",
        type=float,
        default=0.5,
        help="with --update: share of the adapter's old training pairs trained again (0: none)",
    )
    tune.add_argument(
        "--topic",
        action="append",
        help="a topic this adapter covers, for per-question adapter selection (repeatable)",
    )
    tune.add_argument("--quiet", action="store_true", help="no progress bar")
    tune.set_defaults(func=_cmd_tune)

    distill = sub.add_parser(
        "distill",
        help="teach a knowledge adapter the questions answered through retrieval again and again",
        description="Reads a span file (runs recorded with SETPOINT_TRACE_CONTENT=1) or a run log "
        "(`setpoint ask --json` outputs), keeps questions answered through retrieval at least "
        "--min-count times with cited, quoted answers, and tunes (or --update s) a knowledge adapter on them.",
    )
    distill.add_argument(
        "source",
        nargs="?",
        help="span file or run log (default: SETPOINT_TRACE_FILE or the cache's spans.jsonl)",
    )
    distill.add_argument(
        "--min-count",
        type=int,
        default=2,
        help="times a question must have been answered through retrieval",
    )
    distill.add_argument(
        "--out", help="adapter folder (default: --update's, else <cache>/adapters/distilled)"
    )
    distill.add_argument(
        "--update",
        metavar="ADAPTER",
        help="extend this knowledge adapter instead of training a new one",
    )
    distill.add_argument(
        "--replay-fraction",
        type=float,
        default=0.5,
        help="with --update: share of old pairs trained again",
    )
    distill.add_argument("--rank", type=int, default=16, help="LoRA rank (a new adapter)")
    distill.add_argument("--lora-alpha", type=int, default=32, help="LoRA alpha")
    distill.add_argument("--lr", type=float, default=5e-4, help="peak learning rate")
    distill.add_argument("--epochs", type=int, default=3)
    distill.add_argument("--group-size", type=int, default=8, help="questions per step")
    distill.add_argument("--seed", type=int, default=0)
    distill.add_argument("--quiet", action="store_true", help="no progress bar")
    distill.set_defaults(func=_cmd_distill)

    demo = sub.add_parser(
        "demo", help="setup + ingest the SQuAD sample + three questions, one per route"
    )
    tracing_flags(demo)
    demo.set_defaults(func=_cmd_demo)

    def eval_flags(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--squad-dir",
            help="SQuAD JSONL folder (default: SETPOINT_SQUAD_DIR or ../shared/data/squad)",
        )
        p.add_argument("--limit", type=int, help="only the first N questions of the seeded stream")
        p.add_argument(
            "--seed", type=int, default=0, help="seed of the title split and the stream order"
        )
        p.add_argument("--out", help="output folder (default: <cache>/eval or <cache>/calibration)")
        p.add_argument(
            "--collection",
            default="SetpointEval",
            help="Weaviate collection for the evaluation index",
        )
        p.add_argument(
            "--core-fraction", type=float, default=0.5, help="share of article titles in the core"
        )
        p.add_argument(
            "--adapter", help="knowledge adapter (folder or loaded name) of the answer route"
        )

    serve = sub.add_parser(
        "serve",
        help="serve the graph on the LangGraph API (langgraph dev) for Studio and SDK clients",
    )
    serve.add_argument("--port", type=int, default=2024)
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--browser", action="store_true", help="open LangGraph Studio in a browser")
    serve.set_defaults(func=_cmd_serve)

    trace = sub.add_parser(
        "trace", help="print runs from a span file as trees with entropy sparklines"
    )
    trace.add_argument(
        "file",
        nargs="?",
        help="JSON-lines span file (default: SETPOINT_TRACE_FILE or the cache dir)",
    )
    trace.add_argument("--trace-id", help="one run (a prefix of its trace id)")
    trace.add_argument("--last", type=int, default=1, help="the last N runs (default 1)")
    trace.add_argument(
        "--png", help="also draw the last shown run's entropy over tokens to this PNG"
    )
    trace.set_defaults(func=_cmd_trace)

    calibrate = sub.add_parser(
        "calibrate", help="train the hidden-state probe and pick setpoints from data"
    )
    eval_flags(calibrate)
    calibrate.add_argument(
        "--layer", type=int, default=20, help="decoder layer whose hidden state the probe reads"
    )
    calibrate.add_argument("--target-retrieval-rate", type=float, default=0.5)
    calibrate.add_argument(
        "--reader",
        nargs="?",
        const="auto",
        help="train the reader adapter's uncertainty probe instead (default: the shipped reader; "
        "or an adapter folder); --limit training-title questions it never saw (default: all of them, "
        "3,487 for the shipped reader, as shipped; about 1.2 s per answer, two answers each), "
        "written to <adapter>/probe.json unless --out",
    )
    calibrate.set_defaults(func=_cmd_calibrate)

    evaluate = sub.add_parser(
        "eval",
        help="run strategies (never, always, flare, entropy, probe, grader, oracle) on the same questions",
    )
    eval_flags(evaluate)
    evaluate.add_argument(
        "--strategies",
        default="never,always,flare,entropy,grader,oracle",
        help="comma-separated; add 'probe' with --probe or after `setpoint calibrate`",
    )
    evaluate.add_argument(
        "--probe", help="probe JSON for the probe strategy (default: from SETPOINT_CALIBRATION)"
    )
    evaluate.add_argument(
        "--skip",
        type=int,
        default=0,
        help="leave out the first N questions of the stream (the ones `setpoint calibrate --limit N` used)",
    )
    evaluate.add_argument("--quiet", action="store_true", help="no progress bar")
    evaluate.set_defaults(func=_cmd_eval)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (console script entry point)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except SetpointError as exc:
        print(f"setpoint: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("setpoint: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
