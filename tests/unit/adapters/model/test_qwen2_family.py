"""The second model family (Qwen2) on a tiny random model: LoRA tuning, saving, reloading, and the shipped reader's fit check."""

from __future__ import annotations

from pathlib import Path

import torch

from setpoint.adapters.lora.config import TuningConfig
from setpoint.adapters.lora.examples import pair_groups
from setpoint.adapters.lora.qa_data import QARecord
from setpoint.adapters.lora.reader import AUTO, adapter_fits, resolve_reader, shipped_reader_dir
from setpoint.adapters.lora.record import BASE_MODEL_KEYS
from setpoint.adapters.lora.training import save_adapter, train_lora
from tests.unit.conftest import make_tiny_generator

PAIRS = [
    QARecord("1", "who won the super bowl ?", ("denver broncos",), "p1"),
    QARecord("2", "what is the capital of france ?", ("paris",), "p2"),
    QARecord("3", "where is the city of paris ?", ("france",), "p2"),
]


def test_a_qwen2_lora_trains_saves_and_reloads(tmp_path: Path) -> None:
    config = TuningConfig(
        rank=4, alpha=8, dropout=0.0, learning_rate=2e-2, epochs=4, warmup_steps=0, group_size=3
    )
    gen = make_tiny_generator(architecture="qwen2", name="tiny-qwen2")
    model, report = train_lora(gen, pair_groups(PAIRS, config), config, progress=False)
    assert report.steps == 4 and report.losses[-1] < report.losses[0]
    prompt = gen.prompt_ids("who won the super bowl ?")
    with torch.no_grad():
        trained = model(input_ids=torch.tensor([prompt])).logits[0, -1]
    out = save_adapter(model, tmp_path / "qwen-knowledge", config=config, record={})

    fresh = make_tiny_generator(architecture="qwen2", name="tiny-qwen2")  # same seed, same base
    fresh.load_adapter(out, "knowledge")
    with torch.no_grad():
        reloaded = fresh.model(input_ids=torch.tensor([prompt])).logits[0, -1]
    assert torch.allclose(trained, reloaded, atol=1e-2)
    streamed = list(fresh.stream(prompt, max_new_tokens=3))
    assert all(t.signals.lens_entropy for t in streamed)


def test_smollm2s_reader_is_not_put_on_a_qwen2_model() -> None:
    gen = make_tiny_generator(architecture="qwen2")
    why = adapter_fits(gen.model.config, shipped_reader_dir())
    assert why is not None and "model_type=llama" in why
    assert resolve_reader(gen.model.config, AUTO) is None


def test_auto_picks_each_familys_own_shipped_reader() -> None:
    """Every shipped reader is chosen for the model its training record names, and only for it."""
    from types import SimpleNamespace

    from setpoint.adapters.lora.reader import shipped_readers, training_record

    readers = shipped_readers()
    assert readers[0] == shipped_reader_dir() and len(readers) >= 2
    assert shipped_reader_dir("qwen2.5-coder-0.5b") in readers
    for directory in readers:
        card = training_record(directory)["base_model"]
        config = SimpleNamespace(**{k: card[k] for k in BASE_MODEL_KEYS})
        assert resolve_reader(config, AUTO) == str(directory)
        assert all(
            adapter_fits(config, other) is not None for other in readers if other != directory
        )
