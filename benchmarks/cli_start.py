"""Start-up of ``setpoint ask``: a cold process against a warm one through ``setpoint serve``.

Three measurements of the same questions (answer route: a finite setpoint far above any
entropy, so no retrieval and no index are needed):

* ``answer``  — the graph's own time per question in a loaded session of the benchmark's
  process (``AskResult.seconds`` after one warm-up question): what no start-up trick removes,
* ``cold``    — wall time of ``setpoint ask --json --cold`` (imports, model load, the answer),
* ``answer_on_server`` — the run's round trip inside each warm ask (its JSON ``seconds``),
* ``warm``    — wall time of ``setpoint ask --json`` while ``setpoint serve`` runs (after one
  warm-up question that loads the server's model).

Run: ``.venv/bin/python benchmarks/cli_start.py [--repeats 2]``. Prints a table and writes
``benchmarks/results/cli_start.json``. The target: warm ≤ 1.5 × answer.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO, Any

from machine_info import machine

QUESTIONS = [
    "What is the capital of France?",
    "Who painted the Mona Lisa?",
    "What is the largest planet in the solar system?",
]
SETPOINT = "1000"


def ask(question: str, env: dict[str, str], *extra: str) -> tuple[float, dict[str, Any]]:
    """Wall seconds and the JSON result of one ``setpoint ask`` process."""
    started = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-m", "setpoint.cli", "ask", question, "--json", "--setpoint", SETPOINT, *extra],
        env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    if out.returncode != 0:
        raise SystemExit(
            f"setpoint ask {question!r} {' '.join(extra)} failed:\n{out.stderr[-2000:]}"
        )
    return time.perf_counter() - started, json.loads(out.stdout)


def start_server(env: dict[str, str], port: int, log_file: IO[bytes]) -> subprocess.Popen[bytes]:
    from setpoint.settings import default_cache_dir

    record = default_cache_dir() / "servers" / f"{port}.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "setpoint.cli", "serve", "--port", str(port)],
        env=env, stdout=log_file, stderr=subprocess.STDOUT,
    )  # fmt: skip
    deadline = time.monotonic() + 180
    while not record.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"setpoint serve did not start; see {log_file.name}")
        time.sleep(0.5)
    return proc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--port", type=int, default=28777)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "cli_start.json"))
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="setpoint-cli-start-"))
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "LANGGRAPH_CLI_NO_ANALYTICS": "1",
        "SETPOINT_WEAVIATE_DATA": str(tmp / "weaviate"),
        "SETPOINT_TRACE_FILE": str(tmp / "spans.jsonl"),
        "SETPOINT_WEAVIATE_URL": "",
        "SETPOINT_COLLECTION": "BenchCliStart",
    }
    env.pop("SETPOINT_NO_DAEMON", None)
    os.environ.update({k: env[k] for k in env if k.startswith("SETPOINT_")})
    info = machine()

    from setpoint.api import Setpoint

    # Interleaved per question (answer in process, warm, cold), so a busy machine slows all three alike.
    answer: list[float] = []
    cold: list[tuple[float, dict[str, Any]]] = []
    warm: list[tuple[float, dict[str, Any]]] = []
    with (tmp / "serve.log").open("wb") as log, Setpoint() as sp:
        server = start_server(env, args.port, log)
        try:
            ctx = sp.context(setpoint=float(SETPOINT))
            sp.ask(QUESTIONS[0], context=ctx)  # loads this session's model
            ask(QUESTIONS[0], env)  # the server loads its model on its first question
            for _ in range(args.repeats):
                for question in QUESTIONS:
                    answer.append(sp.ask(question, context=ctx).seconds)
                    warm.append(ask(question, env))
                    cold.append(ask(question, env, "--cold"))
        finally:
            server.terminate()
            server.wait(timeout=30)

    assert all(r["via"] == "process" for _, r in cold), "a cold ask went to a server"
    # A warm ask that could not reach the server in time answered cold: counted, and left out.
    fell_back = sum(r["via"] != "server" for _, r in warm)
    warm = [(s, r) for s, r in warm if r["via"] == "server"]
    answers = {c["question"]: c["answer"] for _, c in cold}
    same = all(answers[w["question"]] == w["answer"] for _, w in warm)
    rows = {
        "answer": answer,
        "cold": [s for s, _ in cold],
        "warm": [s for s, _ in warm],
        # The same answers' own time as the server saw them: the HTTP round trip of the run.
        "answer_on_server": [float(r["seconds"]) for _, r in warm],
    }
    medians = {name: statistics.median(values) for name, values in rows.items()}
    print(f"{'mode':<17} {'median s':>9} {'min s':>7} {'max s':>7}  x answer")
    for name, values in rows.items():
        print(
            f"{name:<17} {medians[name]:>9.2f} {min(values):>7.2f} {max(values):>7.2f}"
            f"  {medians[name] / medians['answer']:>7.2f}"
        )
    print(f"same answers cold and warm: {same}; warm asks that fell back to cold: {fell_back}")
    print(f"load average after: {os.getloadavg()}")
    record = {
        "machine": info,
        "load_average_end": os.getloadavg(),
        "questions": QUESTIONS,
        "repeats": args.repeats,
        "setpoint": float(SETPOINT),
        "seconds": rows,
        "median_seconds": medians,
        "warm_over_answer": medians["warm"] / medians["answer"],
        "warm_over_answer_on_server": medians["warm"] / medians["answer_on_server"],
        "cold_over_warm": medians["cold"] / medians["warm"],
        "same_answers": same,
        "warm_fell_back_to_cold": fell_back,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    print(f"written: {args.out}")


if __name__ == "__main__":
    main()
