"""The ``setpoint`` command (entry point ``setpoint.cli:main``); errors end in one line and a non-zero exit."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from setpoint.errors import SetpointError

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (console script entry point).

    Exit codes: 0 done; 2 a usage or configuration error (one line on stderr); 130
    interrupted; ``setpoint ingest`` adds 1 (passages not written) and 3 (lines skipped).
    """
    from setpoint.cli.parser import build_parser

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except SetpointError as exc:
        print(f"setpoint: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("setpoint: interrupted", file=sys.stderr)
        return 130
