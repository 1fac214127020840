"""The ``setpoint`` argument parser: every verb's flags, each shared option defined once."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from setpoint.cli.ask import run_ask, run_demo, run_review
from setpoint.cli.ingest import EXIT_CODES_HELP, run_ingest, run_setup
from setpoint.cli.jobs import run_calibrate, run_distill, run_eval, run_tune
from setpoint.cli.options import number
from setpoint.cli.serve import run_serve
from setpoint.cli.trace import run_trace
from setpoint.settings import INGEST_BATCH

__all__ = ["build_parser"]

if TYPE_CHECKING:
    # argparse has no public name for what add_subparsers returns.
    _VerbParsers = argparse._SubParsersAction[argparse.ArgumentParser]


def _verb(sub: _VerbParsers, name: str, *, help: str, **kwargs: Any) -> argparse.ArgumentParser:
    """A verb whose ``--help`` opens with its one-line summary unless it has a longer description."""
    kwargs.setdefault("description", help[:1].upper() + help[1:] + ".")
    return sub.add_parser(name, help=help, **kwargs)


def _collection_flag(p: argparse.ArgumentParser, default: str | None = None) -> None:
    where = default or "SETPOINT_COLLECTION, else SetpointPassages"
    p.add_argument(
        "--collection",
        metavar="NAME",
        default=default,
        help=f"Weaviate collection to read and write (default: {where}); a capital letter "
        "first, then letters, digits, underscores",
    )


def _tracing_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--trace-file",
        help="JSON-lines span file (default: SETPOINT_TRACE_FILE or the cache dir)",
    )
    p.add_argument("--console-trace", action="store_true", help="also print spans to the console")


def _run_context_flags(p: argparse.ArgumentParser) -> None:
    """The run-context overrides (``options.CONTEXT_FLAGS``), one flag per field."""
    p.add_argument(
        "--setpoint", type=number, help="per-token entropy setpoint in nats (inf: never retrieve)"
    )
    p.add_argument(
        "--probe-setpoint",
        type=number,
        help="probe entropy above which to retrieve before generating",
    )
    p.add_argument(
        "--max-retrievals", type=int, help="retrieval budget per question (default 2: one more hop)"
    )
    p.add_argument(
        "--reader-setpoint",
        type=number,
        help="reader uncertainty above which a read answer is 'unsure' (a second hop, then the "
        "best guess with status unsure); default: the dev-chosen one for the reader probe; "
        "inf: never unsure",
    )
    p.add_argument(
        "--hop-setpoint",
        type=number,
        help="reader uncertainty above which a read answer earns a second hop (default: the "
        "reader setpoint); -inf: always a second hop while the budget lasts",
    )
    for flag, help_text in (
        (
            "--no-nested-hops",
            "read nested questions ('Where was the director of film X born?') whole, "
            "instead of the bridge first and the rest on the second hop",
        ),
        ("--no-compare-dates", "let the reader pick between two options, not their dates"),
        ("--no-reread-echo", "keep a read answer that only repeats words of the question"),
    ):
        # Off switches: absent leaves the Context default (None is not an override).
        dest = flag.removeprefix("--no-").replace("-", "_")
        p.add_argument(flag, dest=dest, action="store_const", const=False, help=help_text)
    p.add_argument("--top-k", type=int, help="passages per retrieval")
    p.add_argument("--alpha", type=float, help="hybrid weight: 0 = BM25 only, 1 = vector only")
    p.add_argument("--max-new-tokens", type=int, help="answer length cap")
    p.add_argument("--adapter", help="name of a loaded LoRA adapter to answer with")


def _eval_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--squad-dir",
        help="SQuAD JSONL folder (default: SETPOINT_SQUAD_DIR or ../shared/data/squad)",
    )
    p.add_argument("--limit", type=int, help="only the first N questions of the seeded stream")
    p.add_argument(
        "--seed", type=int, default=0, help="seed of the title split and the stream order"
    )
    p.add_argument("--out", help="output folder (default: <cache>/eval or <cache>/calibration)")
    _collection_flag(p, "SetpointEval")
    p.add_argument(
        "--core-fraction", type=float, default=0.5, help="share of article titles in the core"
    )
    p.add_argument(
        "--adapter", help="knowledge adapter (folder or loaded name) of the answer route"
    )


def _quiet_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _lora_flags(p: argparse.ArgumentParser, *, epochs: int) -> None:
    """Training flags that ``tune`` and ``distill`` share."""
    p.add_argument("--rank", type=int, default=16, help="LoRA rank (a new adapter)")
    p.add_argument("--lora-alpha", type=int, default=32, help="LoRA alpha (scale = alpha / rank)")
    p.add_argument(
        "--lr",
        type=float,
        default=5e-4,
        help="peak learning rate (AdamW, linear warm-up and decay)",
    )
    p.add_argument("--epochs", type=int, default=epochs)
    p.add_argument(
        "--group-size", type=int, default=8, help="questions sharing one context per step"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--update",
        metavar="ADAPTER",
        help="extend this knowledge adapter with new questions plus a replay sample of its "
        "old ones; saved in place unless --out",
    )
    p.add_argument(
        "--replay-fraction",
        type=float,
        default=0.5,
        help="with --update: share of the adapter's old training pairs trained again (0: none)",
    )
    _quiet_flag(p)


def _add_ingest(sub: _VerbParsers) -> None:
    ingest = _verb(
        sub,
        "ingest",
        help="ingest passages (JSONL, Markdown, text; a file or a folder) into Weaviate",
        description=(
            "Chunk, embed and write passages. Re-running writes only what changed; an "
            "interrupted run, run again, finishes the job. Ends with a summary: added, "
            "updated, unchanged, deleted, failed."
        ),
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
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
    ingest.add_argument("--batch-size", type=int, default=INGEST_BATCH, help="passages per batch")
    ingest.add_argument(
        "--recreate", action="store_true", help="delete the whole collection first, then ingest"
    )
    ingest.add_argument(
        "--reembed",
        metavar="EMBEDDER",
        help="give every stored passage this embedder folder's named vector (searches keep "
        "the current one; switch with SETPOINT_EMBEDDER_DIR afterwards)",
    )
    _collection_flag(ingest)
    _quiet_flag(ingest)
    ingest.set_defaults(func=run_ingest)


def _add_questions(sub: _VerbParsers) -> None:
    """``ask``, ``review`` and ``demo``."""
    ask = _verb(
        sub,
        "ask",
        help="answer one question and say which route it took and why",
        description="Answer one question. When a `setpoint serve` with the same settings runs "
        "on this machine, the question goes to it (no start-up; same answer); otherwise it is "
        "answered in this process.",
    )
    ask.add_argument("question")
    ask.add_argument("--json", action="store_true", help="machine-readable output")
    _run_context_flags(ask)
    ask.add_argument(
        "--review",
        action="store_true",
        help="pause an escalated question for `setpoint review` instead of abstaining",
    )
    ask.add_argument(
        "--cold",
        action="store_true",
        help="answer in this process even when a `setpoint serve` runs (also SETPOINT_NO_DAEMON=1)",
    )
    _collection_flag(ask)
    _tracing_flags(ask)
    ask.set_defaults(func=run_ask)

    review = _verb(
        sub,
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
    _collection_flag(review)
    _tracing_flags(review)
    review.set_defaults(func=run_review)

    demo = _verb(
        sub, "demo", help="setup + ingest the SQuAD sample + three questions, one per route"
    )
    _collection_flag(demo)
    _tracing_flags(demo)
    demo.set_defaults(func=run_demo)


def _add_training(sub: _VerbParsers) -> None:
    """``tune`` and ``distill``."""
    tune = _verb(
        sub,
        "tune",
        help="train a LoRA adapter: the reader (--task read, RAFT) or a knowledge adapter (--task qa)",
        description="Supervised LoRA tuning on SQuAD-format data (passages.jsonl + questions.jsonl), "
        "split by article title; the adapter is saved with its training record and split.",
    )
    tune.add_argument(
        "--task",
        choices=("read", "qa", "embed"),
        default="read",
        help="read: answer from passages; qa: closed book; embed: the retriever's embedder",
    )
    embed = tune.add_argument_group("--task embed")
    embed.add_argument(
        "--base", help="embedder folder to start from (default: SETPOINT_EMBEDDER_DIR or packaged)"
    )
    embed.add_argument("--batch-size", type=int, default=32, help="questions per step")
    embed.add_argument("--hard-negatives", type=int, default=1, help="mined negatives per question")
    embed.add_argument(
        "--miner", choices=("bm25", "vectors"), default="bm25", help="where negatives come from"
    )
    tune.add_argument(
        "--data",
        help="folder with passages.jsonl and questions.jsonl (default: SETPOINT_SQUAD_DIR or ../shared/data/squad)",
    )
    tune.add_argument(
        "--out", help="adapter folder (default: <cache>/adapters/reader or knowledge)"
    )
    mix = tune.add_argument_group("--task read: data beyond SQuAD")
    mix.add_argument(
        "--multihop",
        action="append",
        metavar="DIR",
        help="a multi-hop training split (supporting_ids, passage_ids; rows of split 'train'): "
        "contexts of all supporting passages and the question's own distractors (repeatable); "
        "with --task embed: train on (question, supporting passage) pairs instead of SQuAD",
    )
    mix.add_argument("--multihop-examples", type=int, help="at most this many multi-hop questions")
    mix.add_argument(
        "--multihop-distractors", type=int, default=3, help="distractors per multi-hop context"
    )
    mix.add_argument(
        "--unanswerable",
        metavar="DIR",
        help="a SQuAD v2 folder: its is_impossible questions of --unanswerable-titles teach "
        "the reader to say 'unanswerable'",
    )
    mix.add_argument(
        "--unanswerable-titles",
        help="comma-separated set-aside titles (default: Packet_switching,Steam_engine,Warsaw)",
    )
    mix.add_argument(
        "--unanswerable-examples", type=int, help="at most this many unanswerable questions"
    )
    _lora_flags(tune, epochs=1)
    tune.add_argument("--dropout", type=float, default=0.05, help="LoRA dropout")
    tune.add_argument(
        "--targets", default="q_proj,k_proj,v_proj,o_proj", help="comma-separated module names"
    )
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
    _collection_flag(tune)
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
    tune.add_argument(
        "--topic",
        action="append",
        help="a topic this adapter covers, for per-question adapter selection (repeatable)",
    )
    # --lr's default depends on the task (LoRA 5e-4, embedder 3e-5): run_tune picks it.
    tune.set_defaults(func=run_tune, lr=None)

    distill = _verb(
        sub,
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
    _lora_flags(distill, epochs=3)
    distill.set_defaults(func=run_distill)


def _add_measuring(sub: _VerbParsers) -> None:
    """``calibrate`` and ``eval``."""
    calibrate = _verb(
        sub, "calibrate", help="train the hidden-state probe and pick setpoints from data"
    )
    _eval_flags(calibrate)
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
    calibrate.add_argument(
        "--data",
        action="append",
        metavar="DIR",
        help="with --reader: fit the probe on answers the product gives to DIR's questions "
        "(questions.jsonl; passages.jsonl is ingested into --collection first), read through "
        "retrieval as a user's are (repeatable; --limit questions per folder)",
    )
    calibrate.add_argument(
        "--rows",
        action="append",
        metavar="FILE",
        help="with --reader: rows saved by --save-rows (another collection's) to fit with",
    )
    calibrate.add_argument(
        "--save-rows",
        metavar="FILE",
        help="with --reader --data: keep the rows read, as JSON lines",
    )
    calibrate.set_defaults(func=run_calibrate)

    evaluate = _verb(
        sub,
        "eval",
        help="run strategies (never, always, flare, entropy, probe, grader, oracle) on the same questions",
    )
    _eval_flags(evaluate)
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
    _quiet_flag(evaluate)
    evaluate.set_defaults(func=run_eval)


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``setpoint VERB ...``; each verb's ``func`` runs it and returns the exit code."""
    parser = argparse.ArgumentParser(
        prog="setpoint",
        description="Entropy-gated question answering: answer from the weights, retrieve from Weaviate, or escalate.",
    )
    sub = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    setup = _verb(
        sub,
        "setup",
        help="convert the model, locate the embedder, build weaviate-server (idempotent)",
    )
    setup.set_defaults(func=run_setup)
    _add_ingest(sub)
    _add_questions(sub)
    _add_training(sub)

    serve = _verb(
        sub,
        "serve",
        help="serve the graph on the LangGraph API (langgraph dev) for Studio, SDK clients and warm `setpoint ask`",
        description="Serve the graph with `langgraph dev`. While it runs, `setpoint ask` with the "
        "same settings (collection, models, Weaviate) on this machine answers through it instead of "
        "starting cold; the server announces itself in <cache>/servers/PORT.json.",
    )
    serve.add_argument("--port", type=int, default=2024)
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--browser", action="store_true", help="open LangGraph Studio in a browser")
    _collection_flag(serve)
    serve.set_defaults(func=run_serve)

    trace = _verb(sub, "trace", help="print runs from a span file as trees with entropy sparklines")
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
    trace.set_defaults(func=run_trace)
    _add_measuring(sub)
    return parser
