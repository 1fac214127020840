"""``setpoint serve``: the graph on the LangGraph API (``langgraph dev``), announced for warm asks."""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

from setpoint.cli.daemon import GRAPH_ID, remove_record, server_healthy, write_record
from setpoint.cli.options import settings_from
from setpoint.errors import ConfigError

__all__ = ["run_serve", "served_graph", "served_http_app"]

#: Addresses that mean "every interface": a client on this machine reaches them on loopback.
_ANY_HOST = {"", "0.0.0.0", "::"}
#: What ``langgraph.json`` names, for an install without it (relative to ``graphs/``).
_FALLBACK_GRAPH = "served.py:make_graph"
_FALLBACK_HTTP_APP = "served_http.py:app"


def served_graph() -> str:
    """``path/to/module.py:name`` of the graph to serve, found without importing it.

    The project's ``langgraph.json`` names it when it sits beside the package (an editable
    install), so ``setpoint serve`` and ``langgraph dev`` serve the same thing; an installed
    wheel has no ``langgraph.json`` and serves the ``graphs`` package's factory.
    """
    return _from_config(lambda config: config["graphs"][GRAPH_ID], _FALLBACK_GRAPH)


def served_http_app() -> str:
    """``path/to/module.py:app`` of the HTTP layer (``BusyError`` as 503), like ``served_graph``."""
    return _from_config(lambda config: config["http"]["app"], _FALLBACK_HTTP_APP)


def _from_config(pick: Callable[[Any], Any], fallback: str) -> str:
    spec = importlib.util.find_spec("setpoint.graphs")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("setpoint.graphs is missing; reinstall setpoint")
    folder = Path(next(iter(spec.submodule_search_locations)))
    try:
        config = json.loads((folder.parent / "langgraph.json").read_text(encoding="utf-8"))
        path, name = str(pick(config)).rsplit(":", 1)
        return f"{(folder.parent / path).resolve()}:{name}"
    except (OSError, ValueError, KeyError, TypeError):
        return f"{folder / fallback}"


def _stop_on_sigterm(signum: int, frame: FrameType | None) -> None:
    # SystemExit unwinds through ``finally``: the record is withdrawn and the child stopped.
    raise SystemExit(128 + signum)


def run_serve(args: argparse.Namespace) -> int:
    """Run ``langgraph dev`` over the installed graph, from any folder, until stopped."""
    settings = settings_from(args)
    langgraph = shutil.which("langgraph", path=str(Path(sys.executable).parent)) or shutil.which(
        "langgraph"
    )
    if langgraph is None:
        raise ConfigError(
            "langgraph-cli is not installed; run `pip install 'langgraph-cli[inmem]'`"
        )
    host = "127.0.0.1" if args.host in _ANY_HOST else args.host
    url = f"http://{host}:{args.port}"
    with tempfile.TemporaryDirectory(prefix="setpoint-serve-") as tmp:
        config = Path(tmp) / "langgraph.json"
        config.write_text(
            json.dumps(
                {
                    "dependencies": ["."],
                    "graphs": {GRAPH_ID: served_graph()},
                    "http": {"app": served_http_app()},
                }
            ),
            encoding="utf-8",
        )
        env = {
            **os.environ,
            "LANGGRAPH_CLI_NO_ANALYTICS": "1",
            "SETPOINT_COLLECTION": settings.collection,
        }
        cmd = [langgraph, "dev", "--config", str(config), "--port", str(args.port)]
        cmd += ["--host", args.host, "--no-reload"]
        # Every run the generator can batch or queue runs at once; more wait in the server's queue.
        cmd += ["--n-jobs-per-worker", str(max(10, settings.max_batch + settings.max_queue))]
        if not args.browser:
            cmd.append("--no-browser")
        print(f"serving the setpoint graph on {url} (Ctrl-C stops it)", flush=True)
        signal.signal(signal.SIGTERM, _stop_on_sigterm)
        proc = subprocess.Popen(cmd, env=env, cwd=tmp)
        record: Path | None = None
        try:
            while record is None and proc.poll() is None:
                if server_healthy(url):
                    record = write_record(settings, url, args.port)
                else:
                    time.sleep(0.25)
            return proc.wait()
        finally:
            if record is not None:
                remove_record(record)
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
