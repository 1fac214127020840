"""The reader adapter shipped with setpoint: where it lives, its training record, and whether it fits a generator."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

from setpoint.adapters.domain.choices import YES_NO, is_polar
from setpoint.adapters.lora.qa_data import NO_ANSWER
from setpoint.adapters.lora.record import BASE_MODEL_KEYS, training_record

__all__ = [
    "AUTO",
    "NO_ANSWER",
    "adapter_fits",
    "is_no_answer",
    "resolve_reader",
    "shipped_reader_dir",
    "shipped_readers",
    "training_record",
    "unquoted_answers",
]

#: ``Context.reader_adapter`` value meaning "the shipped reader that fits the generator, if any".
AUTO = "auto"


def unquoted_answers(question: str) -> tuple[str, ...]:
    """What grounded decoding lets the reader say besides quotes of its passages.

    Always ``NO_ANSWER`` (the passages hold none); for a yes/no question (it opens with an
    auxiliary verb) also yes and no, whose answer no passage spells out. Other questions do
    not get them: offered everywhere, a base model answers "yes" to "Which countries …?".

    Example:
        >>> unquoted_answers("Are the Tamar and the Badam in the same country?")
        ('unanswerable', 'yes', 'no', 'Yes', 'No')
        >>> unquoted_answers("Which NFL team won Super Bowl 50?")
        ('unanswerable',)
    """
    return (NO_ANSWER, *YES_NO) if is_polar(question) else (NO_ANSWER,)


def shipped_reader_dir(model: str | None = None) -> Path:
    """The packaged reader adapter of a catalog model (``SETPOINT_MODEL`` key; None: the default).

    The default generator's is ``adapters/lora/weights/reader`` in the source tree; another
    family's sits beside it as ``weights/reader-<key>``.

    Example:
        >>> shipped_reader_dir().name, shipped_reader_dir("qwen2.5-coder-0.5b").name
        ('reader', 'reader-qwen2.5-coder-0.5b')
    """
    from setpoint.adapters.model.catalog import DEFAULT_MODEL

    weights = Path(str(resources.files("setpoint.adapters.lora").joinpath("weights")))
    key = (model or DEFAULT_MODEL).strip().lower()
    return weights / ("reader" if key == DEFAULT_MODEL else f"reader-{key}")


def shipped_readers() -> tuple[Path, ...]:
    """Every packaged reader adapter: the default generator's first, then one per other family.

    A second family's reader lives beside the default one as ``weights/reader-<model key>``
    (e.g. ``reader-qwen2.5-coder-0.5b``); ``resolve_reader`` picks the one that fits.
    """
    default = shipped_reader_dir()
    others = sorted(
        d for d in default.parent.glob("reader-*") if (d / "adapter_config.json").is_file()
    )
    return (default, *others)


def adapter_fits(model_config: Any, directory: Path) -> str | None:
    """Why the adapter at ``directory`` cannot go on a model with ``model_config``; None when it can.

    Compares the base-model card in the training record (architecture, width, depth,
    vocabulary); an adapter without a record is assumed to fit.

    Example:
        >>> from types import SimpleNamespace
        >>> cfg = SimpleNamespace(model_type="llama", hidden_size=32, num_hidden_layers=4, vocab_size=70)
        >>> adapter_fits(cfg, shipped_reader_dir())  # doctest: +ELLIPSIS
        'adapter ... was trained for hidden_size=576, this model has 32'
    """
    if not (Path(directory) / "adapter_config.json").is_file():
        return f"no adapter at {directory}"
    card = training_record(directory).get("base_model") or {}
    for key in BASE_MODEL_KEYS:
        want, have = card.get(key), getattr(model_config, key, None)
        if want is not None and want != have:
            return f"adapter {Path(directory).name} was trained for {key}={want}, this model has {have}"
    return None


def resolve_reader(model_config: Any, requested: str | None) -> str | None:
    """What ``Context.reader_adapter`` means for this model: a name or directory to load, or None.

    ``"auto"`` is the first shipped reader that fits the model (``shipped_readers``) and the
    base model when none does (a ``SETPOINT_MODEL_DIR`` of another shape cannot use them);
    anything else is returned as given.
    """
    if requested != AUTO:
        return requested
    for directory in shipped_readers():
        if adapter_fits(model_config, directory) is None:
            return str(directory)
    return None


def is_no_answer(text: str) -> bool:
    """Whether a reader answer is ``NO_ANSWER``: the reader says its passages hold no answer.

    Example:
        >>> is_no_answer(" Unanswerable."), is_no_answer("unanswerable questions")
        (True, False)
    """
    return text.strip().strip(".!").strip().lower() == NO_ANSWER
