"""Regenerate the README's picture of the chat app: the app on loopback, a headless Chromium, one question.

    python -m examples.chat_app.screenshot                  # writes docs/chat_app.png
    python -m examples.chat_app.screenshot --out shot.png --question "Who won Super Bowl 50?"

It ingests the bundled 50-passage SQuAD sample (what ``make demo`` ingests) into a
throwaway embedded Weaviate, serves ``python -m examples.chat_app`` on a free loopback
port with the default settings, asks the question through the page in Debian's Chromium
(driven by Playwright, as ``tests/integration/test_chat_app.py`` does), once to warm the
app up and again on a fresh page, and saves that whole page once the answer is in. The helpers here serve that test too.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = ["CHROMIUM_FLAGS", "SAMPLE", "ask", "chromium_path", "main", "serve_chat_app"]

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "setpoint" / "data" / "squad_sample.jsonl"
QUESTION = "Where did Super Bowl 50 take place?"
# Headless and quiet: no sandbox (root in CI), no GPU, no calls home.
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
RUN_TIMEOUT_MS = 240_000


def chromium_path() -> str:
    """The system Chromium's executable; ``RuntimeError`` in one line when there is none."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        raise RuntimeError(
            "Chromium is not installed; `make test` installs it (.ci/system-packages.sh), "
            "or apt-get install chromium"
        )
    return found


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def serve_chat_app(corpus: Path, workdir: Path) -> Iterator[str]:
    """``python -m examples.chat_app`` on a free loopback port over a fresh Weaviate holding ``corpus``.

    Everything the app writes (Weaviate data, spans, its log) goes under ``workdir``; the
    settings are the defaults whatever the caller's shell says. Yields the app's URL once
    ``/healthz`` answers; stops the app on exit.
    """
    import httpx

    env = {
        **os.environ,
        "SETPOINT_WEAVIATE_DATA": str(workdir / "weaviate"),
        "SETPOINT_TRACE_FILE": str(workdir / "spans.jsonl"),
        "SETPOINT_WEAVIATE_URL": "",
        "SETPOINT_SETPOINT": "1.6",
        "SETPOINT_CALIBRATION": "",
        "SETPOINT_REVIEW": "",
        "SETPOINT_COLLECTION": "SetpointPassages",
    }
    setpoint_cli = Path(sys.executable).parent / "setpoint"
    ingest = subprocess.run(
        [str(setpoint_cli), "ingest", str(corpus), "--quiet"],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    if ingest.returncode != 0:
        raise RuntimeError(f"ingesting {corpus} failed: {ingest.stderr[-2000:]}")
    port, log_path = _free_port(), workdir / "app.log"
    url = f"http://127.0.0.1:{port}"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "examples.chat_app", "--port", str(port)],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 60
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"the chat app exited: {log_path.read_text()[-3000:]}")
                try:
                    if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError("the chat app did not answer /healthz within 60 s")
                time.sleep(0.3)
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


def ask(page: Any, question: str, setpoint: str, probe_setpoint: str = "inf") -> None:
    """Ask through the page's form and wait until the run is done (its error line, if any, stays)."""
    page.fill("#question-input", question)
    page.fill("#setpoint", setpoint)
    page.fill("#probe-setpoint", probe_setpoint)
    page.click("#ask")
    page.wait_for_selector("body[data-state=done]", timeout=RUN_TIMEOUT_MS)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m examples.chat_app.screenshot", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--question", default=QUESTION)
    parser.add_argument("--setpoint", default="1.6", help="the page's setpoint field (default 1.6)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "chat_app.png")
    args = parser.parse_args(argv)
    from playwright.sync_api import sync_playwright

    try:
        chromium = chromium_path()
    except RuntimeError as exc:
        print(f"screenshot: {exc}", file=sys.stderr)
        return 1
    with (
        tempfile.TemporaryDirectory(prefix="setpoint-screenshot-") as workdir,
        serve_chat_app(SAMPLE, Path(workdir)) as url,
        sync_playwright() as pw,
    ):
        browser = pw.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 900, "height": 960})
        # The first run pays for warming the model and the Weaviate connection; the picture
        # shows the second, as a running app answers it.
        for _ in range(2):
            page.goto(url)
            ask(page, args.question, args.setpoint)
        error = page.inner_text("#error")
        if error:
            print(f"screenshot: the app answered with an error: {error}", file=sys.stderr)
            return 1
        args.out.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(args.out), full_page=True)
        print(f"{args.out}: {page.inner_text('#route')}; {page.inner_text('#answer').strip()!r}")
        browser.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
