"""The generator's attention: transformers' SDPA, with decode steps of grouped-query models run on packed heads.

A decode step has one query position per row. transformers' ``sdpa`` backend sends such a
step of a grouped-query model (SmolLM2: 9 query heads over 3 key/value heads; Qwen2.5: 14
over 2) through one of two paths: with an attention mask, it folds each group's query heads
into the query-length axis (``[rows, kv heads, group, dim]``) so the key/value heads are
read as they are; without one (a lone row, or rows of equal length), it calls
``scaled_dot_product_attention(enable_gqa=True)``, whose CPU kernel made a whole SmolLM2
decode step (bfloat16, 500-token caches, 2 threads) 1.21x as long for one row and 2.18x for
sixteen (``benchmarks/decode_attention.py``). The serialised generator never has a mask, so
every one of its decode steps took the slow path.

``setpoint_sdpa`` (registered with transformers' ``AttentionInterface``, the documented way
to add an attention backend) runs every one-position step on the packed heads, mask or not,
and hands every other call (prefill, masks with a per-head axis, position biases) to
transformers' own ``sdpa_attention_forward`` unchanged. Masks are built exactly as for
``sdpa`` (``AttentionMaskInterface``). Written here because transformers' choice between
the two paths is a fixed rule of its SDPA integration (no setting picks the packed path
without a mask); this module only widens that rule.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

__all__ = ["ATTENTION", "packed_decode_attention", "use_packed_decode_attention"]

#: The backend name models are switched to (``config._attn_implementation``).
ATTENTION = "setpoint_sdpa"


def packed_decode_attention(
    module: Any,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    is_causal: bool | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """An attention backend: transformers' SDPA, one-position steps on packed key/value heads.

    Shapes as transformers passes them: ``query`` ``[rows, heads, positions, dim]``,
    ``key``/``value`` ``[rows, kv heads, length, dim]``; returns ``[rows, positions, heads,
    dim]`` and no attention weights, like ``sdpa_attention_forward``.
    """
    import torch
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    groups = int(getattr(module, "num_key_value_groups", 1))
    rows, heads, positions, dim = query.shape
    packable = (
        positions == 1
        and groups > 1
        and kwargs.get("position_bias") is None
        and kwargs.get("softcap") is None
        and not kwargs.get("output_attentions", False)
        and (attention_mask is None or attention_mask.shape[1] == 1)
    )
    if not packable:
        return sdpa_attention_forward(
            module,
            query,
            key,
            value,
            attention_mask,
            dropout=dropout,
            scaling=scaling,
            is_causal=is_causal,
            **kwargs,
        )
    # [rows, heads, 1, dim] -> [rows, kv heads, group, dim]: the group's query heads become
    # query positions of their key/value head. A mask [rows, 1, 1 | group, length] still
    # broadcasts over both new axes. No causal flag: one position sees the whole cache.
    packed = query.reshape(rows, heads // groups, groups, dim)
    out = torch.nn.functional.scaled_dot_product_attention(
        packed, key, value, attn_mask=attention_mask, scale=scaling
    )
    return out.reshape(rows, heads, 1, dim).transpose(1, 2).contiguous(), None


def use_packed_decode_attention(model: Any) -> bool:
    """Switch a transformers model that uses ``sdpa`` to ``setpoint_sdpa``; False when it uses another backend.

    A model loaded with ``eager`` or a flash backend keeps it; so does a model whose
    architecture cannot switch backends after loading.
    """
    from transformers import AttentionInterface, AttentionMaskInterface
    from transformers.masking_utils import sdpa_mask

    config = getattr(model, "config", None)
    current = getattr(config, "_attn_implementation", None)
    if current == ATTENTION:
        return True
    if current != "sdpa" or not hasattr(model, "set_attn_implementation"):
        return False
    AttentionInterface.register(ATTENTION, packed_decode_attention)
    AttentionMaskInterface.register(ATTENTION, sdpa_mask)
    try:
        model.set_attn_implementation(ATTENTION)
    except (ValueError, ImportError):
        return False
    return True
