"""``Resources.retrieval_available`` follows the store: down after the warm-up, and back again."""

from __future__ import annotations

import pytest
from conftest import PASSAGES, KeywordStore

import setpoint.agents.resources as resources_module
from setpoint.agents.resources import Resources
from setpoint.settings import Settings


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_availability_is_rechecked_after_the_ttl(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = _Clock()
    monkeypatch.setattr(resources_module.time, "monotonic", clock)
    store = KeywordStore(list(PASSAGES))
    res = Resources(settings=Settings(), _store=store)
    assert res.retrieval_available() is True

    store.up = False
    assert res.retrieval_available() is True  # within the TTL: the last answer stands
    clock.now += Resources.AVAILABILITY_TTL_S + 0.1
    assert res.retrieval_available() is False  # the store went down after the warm-up

    store.up = True
    clock.now += 1.0
    assert res.retrieval_available() is False  # a down store is asked again less often
    clock.now += Resources.UNAVAILABLE_TTL_S
    assert res.retrieval_available() is True  # and seen again once it is back


def test_a_store_that_was_down_at_warm_up_is_seen_when_it_comes_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = _Clock()
    monkeypatch.setattr(resources_module.time, "monotonic", clock)
    store = KeywordStore(list(PASSAGES), up=False)
    res = Resources(settings=Settings(), _store=store)
    assert res.retrieval_available() is False
    store.up = True
    clock.now += Resources.UNAVAILABLE_TTL_S + 0.1
    assert res.retrieval_available() is True
