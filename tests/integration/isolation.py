"""Helpers the integration tests share: free loopback ports and settings of a test's own."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

from setpoint.settings import Settings


def free_port() -> int:
    """A loopback TCP port nothing listens on right now (the OS picks it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def isolated_settings(base: Path, collection: str, **changes: Any) -> Settings:
    """Settings for a test module of its own: embedded Weaviate data, span file and collection under ``base``."""
    return Settings.from_env().replace(
        # Always the embedded server, even when the environment points at another one.
        weaviate_url=None,
        weaviate_data_override=base / "weaviate",
        trace_file_override=base / "spans.jsonl",
        collection=collection,
        **changes,
    )
