"""The example chat app in a real headless Chromium: streamed answer, route, citations and the entropy chart.

The app and browser helpers are the README screenshot's (``python -m examples.chat_app.screenshot``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from examples.chat_app.screenshot import CHROMIUM_FLAGS, SAMPLE, chromium_path, serve_chat_app
from examples.chat_app.screenshot import ask as ask_on_page

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def app_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``python -m examples.chat_app`` on a free loopback port, over a fresh Weaviate holding three Super Bowl passages."""
    base = tmp_path_factory.mktemp("chat_app")
    corpus = base / "super_bowl.jsonl"
    lines = [
        line for line in SAMPLE.read_text(encoding="utf-8").splitlines() if '"Super_Bowl_50' in line
    ]
    corpus.write_text("\n".join(lines[:3]) + "\n", encoding="utf-8")
    try:
        with serve_chat_app(corpus, base) as url:
            yield url
    except RuntimeError as exc:
        pytest.fail(str(exc))


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    try:
        chromium = chromium_path()
    except RuntimeError as exc:
        pytest.fail(str(exc))
    with sync_playwright() as pw:
        # Playwright runs the system Chromium headless with a fresh temporary profile.
        instance = pw.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_FLAGS)
        yield instance
        instance.close()


@pytest.fixture
def page(browser: Any, app_url: str) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 900, "height": 960})
    page = context.new_page()
    page.goto(app_url)
    # Record the answer's text every time the page changes it, to prove it grew token by
    # token before the final result arrived (however fast the machine decodes).
    page.evaluate(
        """() => {
        window.answerLog = [];
        new MutationObserver(() => window.answerLog.push({
            text: document.getElementById('answer').textContent,
            state: document.body.dataset.state,
        })).observe(document.getElementById('answer'), {childList: true, characterData: true, subtree: true});
    }"""
    )
    yield page
    context.close()


def ask(page: Any, question: str, setpoint: str, probe_setpoint: str = "inf") -> None:
    ask_on_page(page, question, setpoint, probe_setpoint)
    assert page.inner_text("#error") == ""


def chart(page: Any) -> dict[str, Any]:
    result: dict[str, Any] = page.evaluate(
        """() => ({
        line: document.getElementById('entropy-line').getAttribute('points').trim().split(/\\s+/).filter(Boolean),
        dots: [...document.querySelectorAll('#entropy-dots circle')].map(c => Number(c.getAttribute('cy'))),
        setpointY: Number(document.getElementById('setpoint-line').getAttribute('y1')),
        setpointVisible: document.getElementById('setpoint-line').getAttribute('visibility'),
        setpointLabel: document.getElementById('setpoint-label').textContent,
        markers: document.getElementById('markers').textContent,
    })"""
    )
    return result


def test_page_offers_the_configured_setpoint(page: Any) -> None:
    assert page.input_value("#setpoint") == "1.6"
    assert page.input_value("#probe-setpoint") == "inf"
    assert page.title() == "setpoint chat"


def test_answer_from_weights_streams_with_entropy_under_the_setpoint(page: Any) -> None:
    ask(page, "What is the capital of France?", "8")
    answer = page.inner_text("#answer")
    assert "Paris" in answer
    assert page.get_attribute("#route", "data-route") == "answer"
    assert page.inner_text("#route") == "route: answer"
    assert "0 retrieval call(s)" in page.inner_text("#status")
    assert page.inner_text("#trail").split(" → ")[:3] == ["guard_input", "probe", "generate"]
    assert page.locator("#citations li").count() == 0
    assert page.inner_text("#citations-note") == "none: answered from the model's weights"

    drawn = chart(page)
    assert len(drawn["line"]) == len(drawn["dots"]) >= 3
    assert drawn["setpointVisible"] == "visible" and drawn["setpointLabel"] == "setpoint 8"
    # SVG y grows downwards: every token's entropy is drawn below the setpoint line.
    assert all(cy > drawn["setpointY"] for cy in drawn["dots"])
    assert "thermostat" not in drawn["markers"]

    log = page.evaluate("window.answerLog")
    partial = [entry["text"] for entry in log if entry["state"] == "running" and entry["text"]]
    assert len(partial) >= 3 and any(len(text) < len(partial[-1]) for text in partial)
    assert "Paris" in partial[-1]


def test_probe_setpoint_zero_retrieves_first_and_cites(page: Any) -> None:
    ask(page, "Which NFL team represented the AFC at Super Bowl 50?", "8", probe_setpoint="0")
    assert page.get_attribute("#route", "data-route") == "retrieve"
    assert "answered · 1 retrieval call(s)" in page.inner_text("#status")
    assert page.inner_text("#reason").startswith("probe entropy")
    assert page.inner_text("#trail").split(" → ")[:4] == [
        "guard_input",
        "probe",
        "retrieve",
        "generate",
    ]
    assert page.inner_text("#answer").strip()
    citations = page.locator("#citations li").all_inner_texts()
    assert len(citations) == 3 and all("Super_Bowl_50" in c for c in citations)
    drawn = chart(page)
    assert (
        drawn["dots"] and "thermostat" not in drawn["markers"] and page.inner_text("#draft") == ""
    )


def test_default_setpoint_fires_the_thermostat_mid_answer(page: Any, tmp_path: Path) -> None:
    ask(page, "Where did Super Bowl 50 take place?", "1.6")
    drawn = chart(page)
    assert "thermostat → retrieve" in drawn["markers"] and "reader" in drawn["markers"]
    assert "above setpoint 1.6; retrieving" in page.inner_text("#draft-note")
    draft = page.inner_text("#draft").strip()
    assert draft and draft not in page.inner_text("#answer")
    assert "1 retrieval call(s)" in page.inner_text("#status")
    # After reading the passages the graph answers or, still unsure with the budget spent,
    # abstains; either way the page says which and why.
    assert page.get_attribute("#route", "data-route") in {"retrieve", "escalate"}
    assert page.inner_text("#reason") and page.inner_text("#answer").strip()
    # both passes are on the chart: the closed-book draft, then the reader pass
    assert len(drawn["dots"]) > len(draft.split()) + 1
    assert drawn["setpointLabel"] == "setpoint 1.6"

    shot = tmp_path / "chat_app.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 20_000


def test_bad_setpoint_is_one_error_event(app_url: str) -> None:
    with httpx.stream(
        "GET",
        f"{app_url}/ask",
        params={"question": "What is the capital of France?", "setpoint": "warm"},
        timeout=30,
    ) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        frames = [line for line in response.iter_lines() if line]
    assert frames[0] == "event: error"
    assert "is not a number" in json.loads(frames[1].removeprefix("data: "))["message"]
    assert len(frames) == 2
