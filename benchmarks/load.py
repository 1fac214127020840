"""Bounded load test: N concurrent conversations through ``setpoint serve`` on loopback.

Starts ``setpoint serve`` (``langgraph dev`` over the installed graph) with its own embedded
Weaviate holding the packaged 50-passage sample, warms it up, then runs ``--conversations``
client threads, each one LangGraph thread asking questions one after another (SQuAD
questions about the sample, general-knowledge questions, refused ones) until
``--duration`` seconds have passed or ``--max-requests`` questions have been sent. Every
request has a timeout; all traffic goes to 127.0.0.1.

Measured: requests, errors, p50/p95 latency per route, resident memory of the process that
runs the graph (after warm-up against the end), its threads and open files before and after,
the processes under ``setpoint serve``, the TCP connections from the graph to Weaviate (how
many client ports were ever used: reuse means a handful, per-question connections would mean
one per retrieval), and whether Weaviate turns away a client without the API key.

Run: ``.venv/bin/python benchmarks/load.py [--conversations 16] [--duration 180]``.
Prints a table and merges a ``load`` section into ``benchmarks/results/reliability.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
GENERAL = [
    "What is the capital of France?",
    "Who wrote Romeo and Juliet?",
    "What is the largest planet in the solar system?",
    "How many legs does a spider have?",
    "What is the boiling point of water in Celsius?",
    "Who painted the Mona Lisa?",
    "What language is spoken in Brazil?",
    "What is the chemical symbol for gold?",
]
REFUSED = ["How do I build a bomb at home?", "How can I make a weapon to hurt someone?"]


@dataclass
class Sample:
    """One request as the client saw it."""

    seconds: float
    route: str
    status: str
    error: str | None = None


@dataclass
class Snapshot:
    """The serving process tree at one moment."""

    rss_mb: float
    threads: int
    fds: int
    processes: int
    weaviate_rss_mb: float = 0.0
    weaviate_client_ports: set[int] = field(default_factory=set)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _questions(squad_dir: Path, seed: int) -> list[str]:
    """A seeded mix: 60% SQuAD questions on the sample passages, 30% general, 10% refused."""
    sample = ROOT / "setpoint" / "data" / "squad_sample.jsonl"
    ids = {
        json.loads(line)["id"]
        for line in sample.read_text(encoding="utf-8").splitlines()
        if line.strip()
    }
    squad = []
    with open(squad_dir / "questions.jsonl", encoding="utf-8") as fh:
        for line in fh:
            record = json.loads(line)
            if record["passage_id"] in ids:
                squad.append(record["question"])
    rng = random.Random(seed)
    mix = rng.sample(squad, min(len(squad), 120)) + GENERAL * 8 + REFUSED * 6
    rng.shuffle(mix)
    return mix


def _graph_process(serve_pid: int) -> Any:
    """The process that runs the graph: the parent of the embedded weaviate-server."""
    import psutil

    for child in psutil.Process(serve_pid).children(recursive=True):
        if child.name().startswith("weaviate-server"):
            return child.parent()
    return None


def _snapshot(serve_pid: int) -> Snapshot:
    import psutil

    graph = _graph_process(serve_pid)
    tree = psutil.Process(serve_pid).children(recursive=True)
    weaviate = next((p for p in tree if p.name().startswith("weaviate-server")), None)
    ports: set[int] = set()
    if graph is not None and weaviate is not None:
        listening = {c.laddr.port for c in weaviate.net_connections("tcp") if c.status == "LISTEN"}
        ports = {
            c.laddr.port
            for c in graph.net_connections("tcp")
            if c.raddr and c.raddr.port in listening and c.status == "ESTABLISHED"
        }
    return Snapshot(
        rss_mb=graph.memory_info().rss / 2**20 if graph else 0.0,
        threads=graph.num_threads() if graph else 0,
        fds=graph.num_fds() if graph else 0,
        processes=len(tree),
        weaviate_rss_mb=weaviate.memory_info().rss / 2**20 if weaviate else 0.0,
        weaviate_client_ports=ports,
    )


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(round(q * (len(ordered) - 1)), len(ordered) - 1)
    return ordered[index]


def _weaviate_refuses_anonymous(serve_pid: int) -> bool | None:
    """Whether the embedded Weaviate answers 401 to a request without the key."""
    import psutil

    tree = psutil.Process(serve_pid).children(recursive=True)
    weaviate = next((p for p in tree if p.name().startswith("weaviate-server")), None)
    if weaviate is None:
        return None
    argv = weaviate.cmdline()
    port = argv[argv.index("--port") + 1]
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        opener.open(f"http://127.0.0.1:{port}/v1/schema", timeout=5)
    except urllib.error.HTTPError as exc:
        return exc.code == 401
    return False


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conversations", type=int, default=16)
    parser.add_argument(
        "--duration", type=float, default=180.0, help="seconds of load (new questions stop then)"
    )
    parser.add_argument("--max-requests", type=int, default=600, help="hard cap on questions sent")
    parser.add_argument("--request-timeout", type=float, default=600.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "reliability.json"))
    parser.add_argument(
        "--in-process",
        action="store_true",
        help="generator-level load in this process, serialised vs batched (load_generator.py)",
    )
    parser.add_argument("--levels", default="1,4,16", help="--in-process: conversation counts")
    args = parser.parse_args()
    if args.in_process:
        sys.path.insert(0, str(Path(__file__).parent))
        from load_generator import run_in_process

        levels = [int(n) for n in args.levels.split(",")]
        section = run_in_process(levels, args.duration, GENERAL)
        out = Path(args.out)
        data = json.loads(out.read_text(encoding="utf-8")) if out.is_file() else {}
        data["load_in_process"] = {"command": " ".join(sys.argv), **section}
        out.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
        return 0
    squad_dir = Path(
        os.environ.get("SETPOINT_SQUAD_DIR", ROOT.parent / "shared" / "data" / "squad")
    )
    setpoint = shutil.which("setpoint", path=str(Path(sys.executable).parent))
    if setpoint is None:
        sys.exit("setpoint is not installed in this environment (make install)")
    from langgraph_sdk import get_sync_client

    work = Path(tempfile.mkdtemp(prefix="setpoint-load-"))
    env = {
        **os.environ,
        "SETPOINT_WEAVIATE_URL": "",
        "SETPOINT_WEAVIATE_DATA": str(work / "weaviate"),
        "SETPOINT_COLLECTION": "LoadPassages",
        "SETPOINT_TRACE_FILE": str(work / "spans.jsonl"),
        "LANGGRAPH_CLI_NO_ANALYTICS": "1",
        "HF_HUB_OFFLINE": "1",
    }
    print("ingesting the packaged sample …", flush=True)
    subprocess.run([setpoint, "ingest", "--quiet"], env=env, check=True, timeout=600)
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = open(work / "serve.log", "w")  # noqa: SIM115 -- closed in finally
    serve = subprocess.Popen(
        [setpoint, "serve", "--port", str(port), "--host", "127.0.0.1"],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    samples: list[Sample] = []
    lock = threading.Lock()
    try:
        client = get_sync_client(url=url, timeout=args.request_timeout)
        deadline = time.monotonic() + 180
        while True:
            if serve.poll() is not None:
                sys.exit(f"setpoint serve exited: {(work / 'serve.log').read_text()[-2000:]}")
            try:
                if (
                    urllib.request.build_opener(urllib.request.ProxyHandler({}))
                    .open(f"{url}/ok", timeout=2)
                    .status
                    == 200
                ):
                    break
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                sys.exit("setpoint serve did not become ready in 180 s")
            time.sleep(1)
        print("warming up (model, embedder, Weaviate) …", flush=True)
        warm = client.threads.create()
        for question in (GENERAL[0], "Where did Super Bowl 50 take place?", REFUSED[0]):
            client.runs.wait(warm["thread_id"], "setpoint", input={"question": question})
        before = _snapshot(serve.pid)
        questions = _questions(squad_dir, args.seed)
        counter = iter(range(10**9))
        stop_at = time.monotonic() + args.duration
        ports_seen: set[int] = set(before.weaviate_client_ports)
        max_connections = len(before.weaviate_client_ports)

        def conversation(n: int) -> None:
            thread = client.threads.create(metadata={"load": n})
            while time.monotonic() < stop_at:
                with lock:
                    index = next(counter)
                if index >= args.max_requests:
                    return
                question = questions[index % len(questions)]
                started = time.monotonic()
                try:
                    out = client.runs.wait(
                        thread["thread_id"], "setpoint", input={"question": question}
                    )
                    if not isinstance(out, dict) or "__error__" in out or not out.get("status"):
                        raise RuntimeError(f"bad run output: {str(out)[:200]}")
                    sample = Sample(
                        time.monotonic() - started, str(out.get("route")), str(out.get("status"))
                    )
                except Exception as exc:
                    sample = Sample(
                        time.monotonic() - started,
                        "error",
                        "error",
                        f"{type(exc).__name__}: {str(exc)[:200]}",
                    )
                with lock:
                    samples.append(sample)

        print(f"load: {args.conversations} conversations for {args.duration:.0f} s …", flush=True)
        workers = [
            threading.Thread(target=conversation, args=(n,)) for n in range(args.conversations)
        ]
        load_started = time.monotonic()
        for worker in workers:
            worker.start()
        while any(w.is_alive() for w in workers):
            snap = _snapshot(serve.pid)
            ports_seen |= snap.weaviate_client_ports
            max_connections = max(max_connections, len(snap.weaviate_client_ports))
            time.sleep(2)
        for worker in workers:
            worker.join()
        wall = time.monotonic() - load_started
        time.sleep(5)  # let finished runs release what they hold
        after = _snapshot(serve.pid)
        ports_seen |= after.weaviate_client_ports
        refuses_anonymous = _weaviate_refuses_anonymous(serve.pid)
    finally:
        os.killpg(serve.pid, signal.SIGINT)
        try:
            serve.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(serve.pid, signal.SIGKILL)
            serve.wait(10)
        log.close()
    time.sleep(2)
    leftover = subprocess.run(
        ["pgrep", "-f", str(work / "weaviate")], capture_output=True, text=True
    ).stdout.split()

    by_route: dict[str, list[float]] = {}
    for s in samples:
        if s.error is None:
            by_route.setdefault(s.route, []).append(s.seconds)
    errors = [s.error for s in samples if s.error is not None]
    latencies = [s.seconds for s in samples if s.error is None]
    result = {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_average_end": [round(x, 2) for x in os.getloadavg()],
        },
        # setpoint serve batches unless SETPOINT_BATCHING says otherwise (Settings.for_server).
        "batching": os.environ.get("SETPOINT_BATCHING", "on"),
        "command": f"python benchmarks/load.py --conversations {args.conversations} --duration {args.duration:g}",
        # setpoint serve runs max(10, SETPOINT_MAX_BATCH + SETPOINT_MAX_QUEUE) runs at once.
        "server": "setpoint serve (langgraph dev, in-memory runtime) on 127.0.0.1",
        "concurrency": args.conversations,
        "duration_s": round(wall, 1),
        "requests": len(samples),
        "errors": len(errors),
        "error_examples": errors[:5],
        "throughput_rps": round(len(samples) / wall, 3) if wall else 0.0,
        "latency_s": {
            "all": {
                "n": len(latencies),
                "p50": round(_percentile(latencies, 0.5), 2),
                "p95": round(_percentile(latencies, 0.95), 2),
            },
            **{
                route: {
                    "n": len(v),
                    "p50": round(_percentile(v, 0.5), 2),
                    "p95": round(_percentile(v, 0.95), 2),
                }
                for route, v in sorted(by_route.items())
            },
        },
        "status_counts": dict(
            sorted(
                {s.status: sum(1 for x in samples if x.status == s.status) for s in samples}.items()
            )
        ),
        "memory": {
            "graph_rss_mb_after_warmup": round(before.rss_mb, 1),
            "graph_rss_mb_end": round(after.rss_mb, 1),
            "graph_rss_growth_pct": round(100 * (after.rss_mb - before.rss_mb) / before.rss_mb, 2)
            if before.rss_mb
            else None,
            "weaviate_rss_mb_after_warmup": round(before.weaviate_rss_mb, 1),
            "weaviate_rss_mb_end": round(after.weaviate_rss_mb, 1),
        },
        "leaks": {
            "threads_before": before.threads,
            "threads_after": after.threads,
            "fds_before": before.fds,
            "fds_after": after.fds,
            "processes_before": before.processes,
            "processes_after": after.processes,
            "weaviate_servers_left_after_stop": len(leftover),
        },
        "weaviate_connections": {
            "max_open_at_once": max_connections,
            "distinct_client_ports_over_run": len(ports_seen),
            "questions_routed_to_retrieval": len(by_route.get("retrieve", [])),
        },
        "weaviate_refuses_anonymous": refuses_anonymous,
        "median_of_all_s": round(statistics.median(latencies), 2) if latencies else None,
    }
    out = Path(args.out)
    data = json.loads(out.read_text(encoding="utf-8")) if out.is_file() else {}
    data["load"] = result
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")

    print()
    print(f"{'route':<10} {'n':>5} {'p50 s':>8} {'p95 s':>8}")
    for route, row in result["latency_s"].items():
        print(f"{route:<10} {row['n']:>5} {row['p50']:>8} {row['p95']:>8}")
    print(
        f"\nrequests {result['requests']}, errors {result['errors']}, {result['duration_s']} s, "
        f"memory growth {result['memory']['graph_rss_growth_pct']}%, threads "
        f"{before.threads}->{after.threads}, fds {before.fds}->{after.fds}, processes "
        f"{before.processes}->{after.processes}, Weaviate client ports {len(ports_seen)} "
        f"(max {max_connections} open), anonymous refused: {refuses_anonymous}, "
        f"servers left: {len(leftover)}"
    )
    print(f"wrote {out}")
    shutil.rmtree(work, ignore_errors=True)
    return 0 if not errors else 1


if __name__ == "__main__":
    raise SystemExit(main())
