"""Building PEFT models without the deprecation warning peft itself triggers in transformers."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["quiet_peft_init"]


@contextmanager
def quiet_peft_init() -> Iterator[None]:
    """Ignore exactly transformers' ``is_gradient_checkpointing`` FutureWarning inside the block.

    peft 0.21's ``PeftModel.__init__`` reads ``model.is_gradient_checkpointing``, which
    transformers 5 deprecated for ``is_activation_checkpointing``: every adapter load or LoRA
    wrap printed the warning although no code of ours uses the name. Any other warning still
    shows. Drop this once peft reads the new property.

    >>> import warnings
    >>> with warnings.catch_warnings(record=True) as seen:
    ...     warnings.simplefilter("always")
    ...     with quiet_peft_init():
    ...         warnings.warn("`is_gradient_checkpointing` is deprecated", FutureWarning)
    ...         warnings.warn("another", FutureWarning)
    >>> [str(w.message) for w in seen]
    ['another']
    """
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning
        )
        yield
