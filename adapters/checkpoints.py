"""Checkpointers for paused runs: SQLite by default, Postgres by configuration.

A paused (interrupted) run lives in the checkpointer until a reviewer resumes it, possibly
from another process or after a restart, so the checkpointer must be durable.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from setpoint.errors import ConfigError

if TYPE_CHECKING:
    from langgraph.checkpoint.base import BaseCheckpointSaver

__all__ = ["open_checkpointer", "sqlite_path"]


def sqlite_path(target: str) -> Path | None:
    """The SQLite file ``target`` names (a path or ``sqlite:///path``); None for other URLs.

    Example:
        >>> sqlite_path("sqlite:////tmp/runs.sqlite"), sqlite_path("postgresql://db/x")
        (PosixPath('/tmp/runs.sqlite'), None)
    """
    if target.startswith("sqlite:///"):
        return Path(target[len("sqlite:///") :]).expanduser()
    if "://" in target:
        return None
    return Path(target).expanduser()


@contextmanager
def open_checkpointer(target: str) -> Iterator[BaseCheckpointSaver[str]]:
    """A ready checkpointer for ``target``, closed on exit.

    Raises:
        ConfigError: the URL scheme is unknown, the SQLite file cannot be opened, or the
            Postgres checkpointer is not installed.
    """
    path = sqlite_path(target)
    if path is not None:
        try:
            from langgraph.checkpoint.sqlite import SqliteSaver
        except ImportError:
            raise ConfigError(
                "the SQLite checkpointer is not installed; pip install langgraph-checkpoint-sqlite"
            ) from None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # The saver serialises access with its own lock; the graph may call it from worker threads.
            conn = sqlite3.connect(str(path), check_same_thread=False)
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(
                f"cannot open the checkpoint database {path}: {exc}; fix SETPOINT_CHECKPOINT_URL"
            ) from None
        try:
            saver = SqliteSaver(conn)
            saver.setup()
            yield saver
        finally:
            conn.close()
        return
    if target.startswith(("postgresql://", "postgres://")):
        try:
            from langgraph.checkpoint.postgres import PostgresSaver
        except ImportError:
            raise ConfigError(
                "SETPOINT_CHECKPOINT_URL is a Postgres URL but the Postgres checkpointer is not "
                "installed; pip install 'setpoint[postgres]'"
            ) from None
        import psycopg

        # libpq waits for an unanswered connect as long as the OS does (minutes); bound it.
        joiner = "&" if "?" in target else "?"
        bounded = target if "connect_timeout=" in target else f"{target}{joiner}connect_timeout=10"
        with ExitStack() as stack:
            try:
                postgres = stack.enter_context(PostgresSaver.from_conn_string(bounded))
                postgres.setup()
            except psycopg.Error as exc:
                # The first line names host and port; never echo the URL (it may hold a password).
                reason = (
                    str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                )
                raise ConfigError(
                    f"cannot open the Postgres checkpoint database: {reason}; "
                    "check SETPOINT_CHECKPOINT_URL"
                ) from None
            yield postgres
        return
    scheme = target.split("://", 1)[0]
    raise ConfigError(
        f"SETPOINT_CHECKPOINT_URL scheme {scheme!r} is not supported; use a file path, "
        "sqlite:///path or postgresql://…"
    )
