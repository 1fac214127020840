"""The generator's signals are the model's own numbers, computed without extra forward passes."""

from __future__ import annotations

import math
import threading
from typing import Any

import pytest
import torch

from setpoint.adapters.domain.signals import token_entropy, top2_margin
from setpoint.adapters.model.generator import Generator, Passage
from setpoint.errors import ConfigError, ModelError


def test_token_entropy_known_values() -> None:
    assert float(token_entropy(torch.zeros(8))) == pytest.approx(math.log(8), abs=1e-6)
    peaked = torch.tensor([100.0, 0.0, 0.0])
    assert float(token_entropy(peaked)) == pytest.approx(0.0, abs=1e-6)
    assert float(top2_margin(torch.tensor([0.0, 0.0]))) == pytest.approx(0.0)
    assert float(top2_margin(peaked)) == pytest.approx(1.0, abs=1e-6)


def test_greedy_stream_matches_model_generate(any_family_generator: Generator) -> None:
    ids = any_family_generator.prompt_ids("who won the super bowl ?")
    reference = any_family_generator.model.generate(
        torch.tensor([ids]),
        max_new_tokens=10,
        do_sample=False,
        eos_token_id=sorted(any_family_generator.stop_ids),
    )[0, len(ids) :].tolist()
    mine = [t.token_id for t in any_family_generator.stream(ids, max_new_tokens=10)]
    assert mine == reference


def test_step_signals_equal_full_forward(any_family_generator: Generator) -> None:
    """Entropy and logit lens at every step equal a from-scratch forward over the whole sequence."""
    ids = any_family_generator.prompt_ids("what is the capital of france ?")
    tokens = list(any_family_generator.stream(ids, max_new_tokens=6))
    model = any_family_generator.model
    seq = list(ids)
    for token in tokens:
        with torch.no_grad():
            out = model(torch.tensor([seq]), output_hidden_states=True)
        logits = out.logits[0, -1]
        assert token.signals.entropy == pytest.approx(float(token_entropy(logits)), abs=1e-4)
        assert token.signals.margin == pytest.approx(float(top2_margin(logits)), abs=1e-4)
        for layer, value in token.signals.lens_entropy.items():
            with torch.no_grad():
                lens_logits = model.lm_head(model.model.norm(out.hidden_states[layer][0, -1]))
            assert value == pytest.approx(float(token_entropy(lens_logits)), abs=1e-4)
        seq.append(token.token_id)


def test_probe_reuses_prefill_for_stream(any_family_generator: Generator) -> None:
    ids = any_family_generator.prompt_ids("who won the super bowl ?")
    probe = any_family_generator.probe(ids)
    calls = 0
    original = any_family_generator._forward

    def counting(*args: object, **kwargs: object) -> object:
        nonlocal calls
        calls += 1
        return original(*args, **kwargs)  # type: ignore[arg-type]

    any_family_generator._forward = counting  # type: ignore[method-assign]
    first = next(iter(any_family_generator.stream(ids, max_new_tokens=1)))
    assert calls == 0, "stream after probe must not prefill the same prompt again"
    assert first.signals.entropy == pytest.approx(probe.entropy)


def test_prompt_has_chat_template_and_passages(tiny_generator: Generator) -> None:
    closed = tiny_generator.tokenizer.decode(tiny_generator.prompt_ids("who won ?"))
    assert closed.count("<|im_start|>") == 3 and closed.rstrip().endswith("assistant")
    opened = tiny_generator.tokenizer.decode(
        tiny_generator.prompt_ids("who won ?", [Passage("p1", "super bowl", "denver broncos won")])
    )
    assert "denver broncos won" in opened and "[ 1 ]" in opened


def test_lens_layers_validated(tiny_generator: Generator) -> None:
    with pytest.raises(ConfigError, match="logit-lens layer 9"):
        Generator(tiny_generator.model, tiny_generator.tokenizer, lens_layers=[9])


def test_missing_model_dir_is_clear(tmp_path: object) -> None:
    with pytest.raises(ModelError, match="run `setpoint setup`"):
        Generator.from_pretrained(f"{tmp_path}/nope")


def save_random_adapter(model: Any, directory: str) -> Any:
    """A random (non-zero) q/v LoRA on ``model``, saved to ``directory``; the PEFT model."""
    from peft import LoraConfig, get_peft_model

    from setpoint.adapters.model.peft_init import quiet_peft_init

    torch.manual_seed(1)
    with quiet_peft_init():
        peft_model = get_peft_model(
            model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
        )
    peft_model.save_pretrained(directory)
    return peft_model


def test_lora_adapter_load_and_switch(any_family_generator: Generator, tmp_path: object) -> None:
    peft_model = save_random_adapter(any_family_generator.model, f"{tmp_path}/a1")
    base = peft_model.unload()  # back to the bare model, adapter saved on disk
    gen = Generator(base, any_family_generator.tokenizer, name="tiny")
    ids = gen.prompt_ids("who won the super bowl ?")
    before = gen.probe(ids).entropy
    name = gen.load_adapter(f"{tmp_path}/a1")
    assert gen.active_adapter == name == "a1"
    with_adapter = gen.probe(ids).entropy
    assert with_adapter != pytest.approx(before, abs=1e-6)
    gen.set_adapter(None)
    assert gen.probe(ids).entropy == pytest.approx(before, abs=1e-5)
    gen.set_adapter("a1")
    assert gen.probe(ids).entropy == pytest.approx(with_adapter, abs=1e-5)
    with pytest.raises(ConfigError, match="unknown adapter"):
        gen.set_adapter("nope")
    # A folder named like a model version ("reader-qwen2.5-…") loads: PEFT names hold no dot.
    import shutil

    shutil.copytree(f"{tmp_path}/a1", f"{tmp_path}/reader-q2.5")
    assert gen.load_adapter(f"{tmp_path}/reader-q2.5") == "reader-q2_5" == gen.active_adapter
    assert gen.probe(ids).entropy == pytest.approx(with_adapter, abs=1e-5)
    with pytest.raises(ModelError, match="has a dot"):
        gen.load_adapter(f"{tmp_path}/a1", "a.1")


def test_choosing_an_adapter_does_not_wait_for_another_threads_decoding(
    tiny_generator: Generator, tmp_path: object
) -> None:
    """A run picks its adapter while another holds the model; its next decoding uses it."""
    peft_model = save_random_adapter(tiny_generator.model, f"{tmp_path}/a1")
    gen = Generator(peft_model.unload(), tiny_generator.tokenizer, name="tiny")
    ids = gen.prompt_ids("who won the super bowl ?")
    gen.load_adapter(f"{tmp_path}/a1")
    with_adapter = gen.probe(ids).entropy
    gen.set_adapter(None)
    base = gen.probe(ids).entropy
    decoding, done = threading.Event(), threading.Event()
    chosen, seen = threading.Event(), []

    def another_run_decoding() -> None:
        with gen.lock:  # what a serialised answer or a scheduler step holds
            decoding.set()
            done.wait(10)

    def this_run() -> None:
        gen.load_adapter(f"{tmp_path}/a1")  # already loaded: by name, no lock
        gen.set_adapter("a1")
        chosen.set()
        seen.append(gen.probe(ids).entropy)  # waits for the model, then reads with a1

    holder = threading.Thread(target=another_run_decoding)
    holder.start()
    assert decoding.wait(10)
    run = threading.Thread(target=this_run)
    run.start()
    picked_while_busy = chosen.wait(5)
    done.set()
    holder.join(10)
    run.join(10)
    assert picked_while_busy, "choosing an adapter waited for another thread's decoding"
    assert seen == [pytest.approx(with_adapter, abs=1e-5)]
    assert gen.probe(ids).entropy == pytest.approx(base, abs=1e-5)  # this thread kept None


def saved_tiny_model(directory: str, architecture: str = "llama") -> Generator:
    """A tiny generator whose model and tokenizer are saved to ``directory`` (a model folder)."""
    from tests.unit.conftest import make_tiny_generator

    tiny = make_tiny_generator(architecture=architecture, initializer_range=0.2)
    tiny.model.save_pretrained(directory)
    tiny.tokenizer.save_pretrained(directory)
    return tiny


@pytest.mark.parametrize("architecture", ["llama", "qwen2"])
def test_bfloat16_loading_decodes_and_reports_float_signals(
    architecture: str, tmp_path: object
) -> None:
    """``precision="bfloat16"`` loads bf16 weights; greedy tokens match the bf16 model's own
    ``generate``, signals and hidden states come back as floats, and an adapter applies."""
    tiny = saved_tiny_model(f"{tmp_path}/m", architecture)
    save_random_adapter(tiny.model, f"{tmp_path}/a1")

    full = Generator.from_pretrained(f"{tmp_path}/m", precision="float32")
    half = Generator.from_pretrained(f"{tmp_path}/m", precision="bfloat16")
    assert {p.dtype for p in full.model.parameters()} == {torch.float32}
    assert {p.dtype for p in half.model.parameters()} == {torch.bfloat16}
    ids = half.prompt_ids("who won the super bowl ?")
    reference = half.model.generate(
        torch.tensor([ids]), max_new_tokens=8, do_sample=False, eos_token_id=sorted(half.stop_ids)
    )[0, len(ids) :].tolist()
    tokens = list(half.stream(ids, max_new_tokens=8))
    assert [t.token_id for t in tokens] == reference
    for token in tokens:
        assert isinstance(token.signals.entropy, float) and math.isfinite(token.signals.entropy)
        assert all(math.isfinite(v) for v in token.signals.lens_entropy.values())
    # bf16 keeps ~3 significant digits: its entropy is near, not equal to, float32's.
    assert half.probe(ids).entropy == pytest.approx(full.probe(ids).entropy, abs=0.1)
    _, hidden = half.probe_features(ids, layer=2)
    assert len(hidden) == 32 and all(isinstance(v, float) for v in hidden)
    before = half.probe(ids).entropy
    half.load_adapter(f"{tmp_path}/a1")
    assert half.probe(ids).entropy != pytest.approx(before, abs=1e-3)
    with pytest.raises(ConfigError, match="generator precision 'half' is not one of"):
        Generator.from_pretrained(f"{tmp_path}/m", precision="half")


def test_served_generator_takes_the_precision_setting(
    monkeypatch: pytest.MonkeyPatch, tmp_path: object
) -> None:
    from setpoint.agents.resources import Resources
    from setpoint.settings import Settings

    saved_tiny_model(f"{tmp_path}/m")
    monkeypatch.setenv("SETPOINT_MODEL_DIR", f"{tmp_path}/m")
    monkeypatch.setenv("SETPOINT_PRECISION", "BFloat16")
    served = Resources(settings=Settings.from_env()).generator()
    assert next(served.model.parameters()).dtype == torch.bfloat16
    monkeypatch.setenv("SETPOINT_PRECISION", "fp16")
    with pytest.raises(ConfigError) as caught:
        Settings.from_env()
    assert str(caught.value) == "SETPOINT_PRECISION='fp16' is not one of auto, float32, bfloat16"
