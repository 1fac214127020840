"""Where batching is on by default: the served graph and the chat app, not in-process use."""

from __future__ import annotations

from pathlib import Path

import pytest

from setpoint.settings import Settings


@pytest.mark.parametrize(
    ("env", "in_process", "served"),
    [(None, None, True), ("off", False, False), ("on", True, True)],
)
def test_batching_is_on_for_servers_unless_the_environment_says_otherwise(
    monkeypatch: pytest.MonkeyPatch, env: str | None, in_process: bool | None, served: bool
) -> None:
    from examples.chat_app.app import ChatService
    from setpoint.graphs.served import served_settings

    if env is None:
        monkeypatch.delenv("SETPOINT_BATCHING", raising=False)
    else:
        monkeypatch.setenv("SETPOINT_BATCHING", env)
    assert Settings.from_env().batching is in_process
    assert served_settings().batching is served
    chat = ChatService()
    try:
        assert chat.session.settings.batching is served
    finally:
        chat.close()


def test_a_server_keeps_an_explicit_weaviate_auth_and_batching_choice() -> None:
    assert Settings(weaviate_auth=False, batching=False).for_server() == Settings(
        weaviate_auth=False, batching=False
    )
    assert Settings().for_server() == Settings(weaviate_auth=True, batching=True)
    assert Settings().for_concurrent_runs() == Settings(batching=True)


@pytest.fixture(autouse=True)
def _own_trace_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SETPOINT_TRACE_FILE", str(tmp_path / "spans.jsonl"))
