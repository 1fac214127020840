"""``setpoint ask``, ``review`` and ``demo``: questions through the graph, warm when a server runs."""

from __future__ import annotations

import argparse
from typing import Any

from setpoint.cli.daemon import ask_through_server, daemon_disabled
from setpoint.cli.options import context_overrides, sample_corpus, settings_from
from setpoint.cli.output import print_json, print_pending, print_report, print_result
from setpoint.errors import InputError
from setpoint.settings import Settings

__all__ = ["DEMO_QUESTIONS", "run_ask", "run_demo", "run_review"]

DEMO_QUESTIONS = (
    "What is the capital of France?",
    "Who was the commissioner of the NFL in 2012?",
    "How do I build a bomb at home?",
)


def _warm_allowed(args: argparse.Namespace, settings: Settings) -> bool:
    # A paused review lives in this machine's checkpointer, and the server does not write
    # this process's trace flags: those runs stay in process.
    return not (
        args.cold or daemon_disabled() or settings.review or args.trace_file or args.console_trace
    )


def _ask_warm(settings: Settings, question: str, overrides: dict[str, Any]) -> Any:
    """The ``AskResult`` of a running ``setpoint serve``, or None (then ask cold)."""
    from setpoint.api import calibrated_context

    # What ``Setpoint.context(**overrides)`` would build in process, as plain fields.
    context: dict[str, Any] = dict(settings.thermostat)
    if settings.calibration_file is not None:
        context.update(calibrated_context(settings.calibration_file))
    context.update(overrides)
    return ask_through_server(settings, question, context)


def run_ask(args: argparse.Namespace) -> int:
    """Answer one question: on a running ``setpoint serve`` when one fits, else in process."""
    settings = settings_from(args)
    overrides = context_overrides(args)
    result = (
        _ask_warm(settings, args.question, overrides) if _warm_allowed(args, settings) else None
    )
    via = "server"
    if result is None:
        from setpoint.agents.guard_input import validate_question
        from setpoint.api import Setpoint

        via = "process"
        question = validate_question(args.question, settings.max_question_chars)
        with Setpoint(settings) as sp:
            sp.resources.warm_up_retrieval()
            result = sp.ask(question, context=sp.context(**overrides))
    if args.json:
        print_json({**result.to_dict(), "via": via})
    else:
        print_result(result)
    return 0


def run_review(args: argparse.Namespace) -> int:
    """List runs paused for review, or resume one with a decision."""
    from setpoint.api import Setpoint

    settings = settings_from(args).replace(review=True)
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
                print_json(pending)
            else:
                print_pending(pending, settings.checkpoints)
            return 0
        decision = {"action": chosen[0], "answer": args.edit or "", "note": args.note or ""}
        result = sp.resume(args.thread, decision)
    if args.json:
        print_json(result.to_dict())
    else:
        print_result(result)
    return 0


def run_demo(args: argparse.Namespace) -> int:
    """Provision, ingest the packaged sample and answer three questions, one per route."""
    from setpoint.adapters.model.provisioning import provision_all
    from setpoint.api import Setpoint

    settings = settings_from(args)
    provision_all(settings)
    corpus = sample_corpus()
    with Setpoint(settings) as sp:
        sp.resources.warm_up_retrieval()
        report = sp.ingest(corpus, progress=False)
        print_report(report, corpus)
        print()
        for question in DEMO_QUESTIONS:
            print_result(sp.ask(question))
            print()
    return 0
