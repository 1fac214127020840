"""``setpoint trace``: runs of a span file as trees with entropy sparklines (no model, no index)."""

from __future__ import annotations

import argparse
from pathlib import Path

from setpoint.settings import Settings

__all__ = ["run_trace"]


def run_trace(args: argparse.Namespace) -> int:
    """Print the last runs (or one by trace id) of a span file; optionally plot one."""
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
