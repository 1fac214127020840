"""One decoder pass over one row or a batch: LM-head logits at the last position for the final and logit-lens layers.

Shared by the serialised decoder (``Generator``) and the batching scheduler
(``scheduler.GenerationScheduler``), so both read the same numbers off the same pass.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from setpoint.adapters.domain.signals import StepSignals, token_entropy, top2_probs

if TYPE_CHECKING:
    import torch

__all__ = ["BASE_ADAPTER", "PassOutput", "adapter_rows", "lm_head", "run_pass", "step_signals"]

#: PEFT's name for "no adapter" in a mixed-adapter batch.
BASE_ADAPTER = "__base__"


@dataclass(frozen=True)
class PassOutput:
    """What one forward pass gives every row at its last position."""

    #: ``[rows, 1 + len(lens_layers), vocab]``: the final layer first, then each lens layer.
    logits: torch.Tensor
    #: layer -> ``[rows, hidden]`` for the layers asked to be kept.
    hidden: dict[int, torch.Tensor]
    cache: Any


def run_pass(
    causal_lm: Any,
    lens_layers: Sequence[int],
    input_ids: torch.Tensor,
    cache: Any,
    *,
    capture: Sequence[int] = (),
    attention_mask: torch.Tensor | None = None,
    position_ids: torch.Tensor | None = None,
) -> PassOutput:
    """One decoder pass; the final hidden state and the lens rows go through the head in one matmul."""
    import torch

    decoder = causal_lm.get_decoder()
    out = decoder(
        input_ids=input_ids,
        attention_mask=attention_mask,
        position_ids=position_ids,
        cache=cache,
        use_cache=True,
        output_hidden_states=bool(lens_layers) or bool(capture),
    )
    hidden = {layer: out.hidden_states[layer][:, -1].detach().clone() for layer in capture}
    rows = [out.last_hidden_state[:, -1]]
    norm = getattr(decoder, "norm", None)
    for layer in lens_layers:
        state = out.hidden_states[layer][:, -1]
        rows.append(norm(state) if norm is not None else state)
    stacked = torch.stack(rows, dim=1)  # [batch, rows per position, hidden]
    batch, per_row, width = stacked.shape
    logits = lm_head(causal_lm, stacked.reshape(batch * per_row, width))
    return PassOutput(logits.reshape(batch, per_row, -1), hidden, out.cache)


def lm_head(causal_lm: Any, rows: torch.Tensor) -> torch.Tensor:
    """LM-head logits of ``rows`` ([n, hidden])."""
    import torch

    head = causal_lm.get_output_embeddings()
    if type(head) is torch.nn.Linear:
        # weight @ rows.T instead of linear(rows): on CPU (MKL, fp32) this layout costs
        # ~5 ms for 2-4 rows of SmolLM2's 49k x 576 head where linear() costs 25-40 ms
        # (benchmarks/overhead.py), so the logit-lens rows ride along almost free.
        logits = torch.matmul(head.weight, rows.T).T
        if head.bias is not None:
            logits = logits + head.bias
        return logits
    logits_: torch.Tensor = head(rows)  # e.g. a LoRA-wrapped head applies its own delta
    return logits_


def step_signals(logits: torch.Tensor, lens_layers: Sequence[int]) -> list[StepSignals]:
    """Per row of ``logits`` ([rows, 1 + lens, vocab]): the signals of its next-token distribution."""
    entropies = token_entropy(logits).tolist()
    tops = top2_probs(logits[:, 0]).tolist()
    return [
        StepSignals(
            entropy=row[0],
            margin=first - second,
            lens_entropy=dict(zip(lens_layers, row[1:], strict=True)),
            top_prob=first,
        )
        for row, (first, second) in zip(entropies, tops, strict=True)
    ]


@contextlib.contextmanager
def adapter_rows(peft: Any, adapters: Sequence[str | None]) -> Iterator[None]:
    """Run the passes inside with one LoRA adapter per batch row (None: the base model).

    PEFT's own ``forward(adapter_names=...)`` does exactly this around the whole causal LM;
    the decoder is called directly here (the head's layout above), so the same hooks are set.
    """
    if peft is None:
        yield
        return
    names = [BASE_ADAPTER if a is None else a for a in adapters]
    with peft.base_model._enable_peft_forward_hooks(adapter_names=names):
        yield
