"""Uncertainty math over logits: entropy, top-1/top-2 margin. Pure tensor functions, no model."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

__all__ = ["StepSignals", "token_entropy", "top2_margin", "top2_probs"]


def token_entropy(logits: torch.Tensor) -> torch.Tensor:
    """Shannon entropy (nats) of ``softmax(logits)`` over the last dimension.

    Computed from ``log_softmax`` so that very peaked distributions do not underflow.

    Example:
        >>> import torch
        >>> round(float(token_entropy(torch.zeros(4))), 4)  # uniform over 4 tokens: ln 4
        1.3863
    """
    import torch

    logp = torch.log_softmax(logits.float(), dim=-1)
    # p * log p is 0 where p underflows to 0; nan_to_num guards -inf * 0.
    return -(logp.exp() * logp).nan_to_num(0.0).sum(dim=-1).to(torch.float32)


def top2_probs(logits: torch.Tensor) -> torch.Tensor:
    """Probabilities of the two most likely tokens, ``[..., 2]``, largest first."""
    import torch

    return torch.topk(torch.softmax(logits.float(), dim=-1), k=2, dim=-1).values


def top2_margin(logits: torch.Tensor) -> torch.Tensor:
    """Probability of the most likely token minus that of the runner-up (1 = certain, 0 = tie)."""
    import torch

    top = top2_probs(logits)
    return (top[..., 0] - top[..., 1]).to(torch.float32)


@dataclass(frozen=True)
class StepSignals:
    """What the generator measured for one next-token distribution.

    ``lens_entropy`` maps a decoder layer index (1-based, as in ``hidden_states``) to the
    entropy of that layer's hidden state read through the final norm and LM head.
    """

    entropy: float
    margin: float
    lens_entropy: dict[int, float] = field(default_factory=dict)
    #: Probability of the most likely token (the greedy choice); FLARE-style triggers use it.
    top_prob: float = 1.0

    @property
    def surprisal(self) -> float:
        """``-ln top_prob``: above ``-ln θ`` exactly when the greedy token's probability is below θ."""
        import math

        return -math.log(max(self.top_prob, 1e-45))

    def to_dict(self) -> dict[str, object]:
        return {
            "entropy": self.entropy,
            "margin": self.margin,
            "top_prob": self.top_prob,
            "lens_entropy": {str(k): v for k, v in self.lens_entropy.items()},
        }
