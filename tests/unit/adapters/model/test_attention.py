"""Decode steps on packed key/value heads: the same numbers as eager attention, never the enable_gqa kernel."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import torch
from transformers import DynamicCache

from setpoint.adapters.model.attention import ATTENTION, use_packed_decode_attention
from setpoint.adapters.model.forward import run_pass
from tests.unit.conftest import make_tiny_generator


@pytest.fixture
def sdpa_calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[dict[str, Any]]]:
    """The keyword arguments and query shape of every scaled_dot_product_attention call."""
    calls: list[dict[str, Any]] = []
    real = torch.nn.functional.scaled_dot_product_attention

    def spy(query: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        calls.append({"query": tuple(query.shape), **kwargs})
        return real(query, *args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", spy)
    yield calls


def _decode(model: Any, generator: Any, prompt: torch.Tensor, mask: torch.Tensor | None,
            steps: int = 4) -> list[torch.Tensor]:  # fmt: skip
    """Last-position logits (final and lens rows) of a prefill and ``steps`` greedy decode steps."""
    rows = prompt.shape[0]
    positions = None if mask is None else (mask.cumsum(-1) - 1).clamp(min=0)
    with torch.inference_mode():
        out = run_pass(generator.causal_lm, generator.lens_layers, prompt, DynamicCache(),
                       attention_mask=mask, position_ids=positions)  # fmt: skip
        logits = [out.logits]
        for _ in range(steps):
            token = out.logits[:, 0].argmax(-1, keepdim=True)
            if mask is not None:
                mask = torch.cat([mask, torch.ones(rows, 1, dtype=mask.dtype)], dim=1)
                positions = mask.sum(-1, keepdim=True) - 1
            out = run_pass(generator.causal_lm, generator.lens_layers, token, out.cache,
                           attention_mask=mask, position_ids=positions)  # fmt: skip
            logits.append(out.logits)
    return logits


@pytest.mark.parametrize("architecture", ["llama", "qwen2"])
@pytest.mark.parametrize("padded", [False, True], ids=["one row, no mask", "left-padded rows"])
def test_packed_decode_steps_give_eager_attentions_logits(
    architecture: str, padded: bool, sdpa_calls: list[dict[str, Any]]
) -> None:
    generator = make_tiny_generator(initializer_range=0.4, architecture=architecture)
    model = generator.model
    assert model.config._attn_implementation == ATTENTION  # Generator switched it
    assert model.config.num_key_value_heads < model.config.num_attention_heads  # grouped
    prompt = torch.tensor([[5, 9, 14, 21, 7, 30, 12, 8]])
    mask = None
    if padded:  # a second row two tokens shorter, padded on the left
        prompt = torch.cat([prompt, torch.tensor([[0, 0, 3, 4, 11, 19, 25, 6]])])
        mask = torch.tensor([[1] * 8, [0, 0] + [1] * 6])
    packed = _decode(model, generator, prompt, mask)
    decode_calls = [c for c in sdpa_calls if c["query"][2] != prompt.shape[1]]
    assert decode_calls and not any(c.get("enable_gqa") for c in decode_calls)
    model.set_attn_implementation("eager")
    reference = _decode(model, generator, prompt, mask)
    for got, want in zip(packed, reference, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_transformers_own_sdpa_takes_the_gqa_kernel_without_a_mask(
    sdpa_calls: list[dict[str, Any]],
) -> None:
    """What the backend is for: plain ``sdpa`` decodes a lone row with ``enable_gqa``."""
    generator = make_tiny_generator()
    generator.model.set_attn_implementation("sdpa")
    _decode(generator.model, generator, torch.tensor([[5, 9, 14, 21]]), None, steps=1)
    assert any(c.get("enable_gqa") and c["query"][2] == 1 for c in sdpa_calls)
    assert use_packed_decode_attention(generator.model)
    sdpa_calls.clear()
    _decode(generator.model, generator, torch.tensor([[5, 9, 14, 21]]), None, steps=1)
    assert not any(c.get("enable_gqa") and c["query"][2] == 1 for c in sdpa_calls)


def test_a_model_on_another_backend_keeps_it() -> None:
    generator = make_tiny_generator()
    generator.model.set_attn_implementation("eager")
    assert not use_packed_decode_attention(generator.model)
    assert generator.model.config._attn_implementation == "eager"
