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
    return settings.replace(**changes) if changes else settings


def _cmd_setup(args: argparse.Namespace) -> int:
    from setpoint.adapters.provisioning import provision_all

    started = time.perf_counter()
    provision_all(_settings(args))
    print(f"setup: done in {time.perf_counter() - started:.1f} s")
    return 0


def _report_ingest(report: Any, path: Path) -> int:
    for line, reason in report.skipped_lines:
        print(f"{path}:{line}: skipped: {reason}", file=sys.stderr)
    for object_id, reason in report.failed:
        print(f"{path}: failed {object_id}: {reason}", file=sys.stderr)
    rate = report.added / report.seconds if report.seconds > 0 else 0.0
    print(
        f"ingest: {report.added} passages written from {path.name} in {report.seconds:.1f} s "
        f"({rate:.0f}/s), {len(report.skipped_lines)} bad lines, {len(report.failed)} failed"
    )
    return 0 if not report.skipped_lines and not report.failed else 1


def _cmd_ingest(args: argparse.Namespace) -> int:
    from setpoint.api import Setpoint

    path = Path(args.file) if args.file else _sample_corpus()
    with Setpoint(_settings(args)) as sp:
        report = sp.ingest(path, progress=not args.quiet)
    return _report_ingest(report, path)


def _context_overrides(args: argparse.Namespace) -> dict[str, Any]:
    overrides: dict[str, Any] = {}
    for name in ("probe_setpoint", "max_retrievals", "top_k", "alpha", "max_new_tokens", "adapter"):
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


def _cmd_demo(args: argparse.Namespace) -> int:
    from setpoint.adapters.provisioning import provision_all
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
        "ingest", help="ingest a JSONL file of passages ({id, title, text}) into Weaviate"
    )
    ingest.add_argument("file", nargs="?", help="JSONL file (default: the packaged SQuAD sample)")
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
    tracing_flags(ask)
    ask.set_defaults(func=_cmd_ask)

    demo = sub.add_parser(
        "demo", help="setup + ingest the SQuAD sample + three questions, one per route"
    )
    tracing_flags(demo)
    demo.set_defaults(func=_cmd_demo)
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
