"""A left-padded batched KV cache: rows prefilled alone join it, finished rows leave it, at step boundaries.

Every row's real entries end at the last column; shorter rows are padded on the left and
masked out, and each row's position ids count only its real tokens, so a row's attention
sees exactly what it would see decoded alone. Joining pads and concatenates (one copy of
the cache, the same copy ``DynamicCache.update`` makes on every step anyway); leaving
selects rows and drops leading columns that became padding for every row.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

__all__ = ["BatchCache"]


class BatchCache:
    """The KV cache of the rows being decoded together, one row per sequence.

    Example:
        >>> cache = BatchCache()  # doctest: +SKIP
        >>> cache.add(prefilled_row_cache, length=42)  # doctest: +SKIP
        >>> mask, positions = cache.step_inputs()  # doctest: +SKIP
    """

    def __init__(self) -> None:
        self.cache: Any = None
        #: Real (unpadded) tokens per row.
        self.lengths: list[int] = []
        #: Columns every row has (real + left padding).
        self.width = 0

    def __len__(self) -> int:
        return len(self.lengths)

    def add(self, row_cache: Any, length: int) -> None:
        """Append a prefilled one-row cache (``length`` real entries); it is copied, not mutated."""
        import torch
        from torch.nn.functional import pad
        from transformers import DynamicCache

        layers = [(layer.keys, layer.values) for layer in row_cache.layers]
        width = max(self.width, length)
        merged = DynamicCache()
        for index, (keys, values) in enumerate(layers):
            new_k, new_v = (pad(t, (0, 0, width - length, 0)) for t in (keys, values))
            if self.lengths:
                old = self.cache.layers[index]
                old_k, old_v = (
                    pad(t, (0, 0, width - self.width, 0)) for t in (old.keys, old.values)
                )
                new_k, new_v = torch.cat([old_k, new_k]), torch.cat([old_v, new_v])
            merged.update(new_k, new_v, index)
        self.cache, self.width = merged, width
        self.lengths.append(length)

    def keep(self, rows: list[int]) -> None:
        """Keep only ``rows`` (indices, in order); drop columns no remaining row needs."""
        import torch

        if not rows:
            self.cache, self.lengths, self.width = None, [], 0
            return
        lengths = [self.lengths[i] for i in rows]
        start = self.width - max(lengths)
        index = torch.tensor(rows, device=self.cache.layers[0].keys.device)
        for layer in self.cache.layers:
            layer.keys = layer.keys.index_select(0, index)[:, :, start:]
            layer.values = layer.values.index_select(0, index)[:, :, start:]
        self.lengths, self.width = lengths, self.width - start

    def step_inputs(self, device: Any = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Attention mask ``[rows, width + 1]`` and position ids ``[rows, 1]`` for one new token per row."""
        import torch

        columns = torch.arange(self.width + 1, device=device)
        pads = torch.tensor([self.width - n for n in self.lengths], device=device)
        mask = (columns[None, :] >= pads[:, None]).long()
        positions = torch.tensor(self.lengths, device=device)[:, None]
        return mask, positions

    def advance(self) -> None:
        """Record that one token per row went through the cache."""
        self.width += 1
        self.lengths = [n + 1 for n in self.lengths]
