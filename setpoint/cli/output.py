"""How the CLI prints an answer, a list of paused runs and an ingest report."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

__all__ = ["print_json", "print_pending", "print_report", "print_result"]


def print_result(result: Any) -> None:
    """An ``AskResult`` as lines: question, answer, route and signals, why, citations, trace."""
    print(f"Q: {result.question}")
    # "Unsure" with no text: the reader said the passages hold no answer.
    no_answer = result.status == "unsure" and not result.answer.strip()
    print(
        f"A: {'(not sure: the passages found do not answer this)' if no_answer else result.answer}"
    )
    entropy = "n/a" if result.answer_entropy is None else f"{result.answer_entropy:.2f}"
    probe = "n/a" if result.probe_entropy is None else f"{result.probe_entropy:.2f}"
    print(
        f"   route={result.route} status={result.status} retrieval_calls={result.retrieval_calls} "
        f"probe_entropy={probe} answer_entropy={entropy} setpoint={result.setpoint:g} "
        f"({result.seconds:.2f} s)"
    )
    print(f"   why: {result.reason}")
    if result.status == "unsure" and not no_answer:
        print("   not sure: this is the best guess; check it against the citations below")
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


def print_json(data: Any) -> None:
    """``data`` as indented JSON (numbers and paths that JSON lacks become strings)."""
    print(json.dumps(data, indent=2, default=str))


def print_pending(pending: list[dict[str, Any]], where: str) -> None:
    """Runs paused for review, newest first, with the command that resumes one."""
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


def print_report(report: Any, path: Path) -> tuple[int, int]:
    """An ``IngestReport``: bad lines and refused passages on stderr, the summary on stdout.

    Returns:
        ``(failed passages, skipped lines)`` over the report and its parts.
    """
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
    failed = len(report.failed) + sum(len(p.failed) for p in report.parts)
    print(
        f"ingest: {report.added + report.updated} passages written from {path.name} "
        f"({report.summary()}), {skipped} bad lines"
    )
    return failed, skipped
