"""Which float type a model computes in on this machine: one rule for the generator and embedder.

``auto`` means bfloat16 where the CPU multiplies it in hardware (AVX512-BF16 or AMX) and
float32 elsewhere, where bfloat16 is emulated and slower than float32. Measured on 2
cores (BENCHMARKS.md, "The generator in bfloat16"): the generator's prefill ran about
1.5x and its decode steps 1.6x faster in bfloat16, the embedder 1.7-1.8x.
"""

from __future__ import annotations

from setpoint.errors import ConfigError

__all__ = ["PRECISIONS", "cpu_has_native_bfloat16", "use_bfloat16"]

PRECISIONS = ("auto", "float32", "bfloat16")


def cpu_has_native_bfloat16() -> bool:
    """Whether this CPU multiplies bfloat16 in hardware (Linux: its /proc/cpuinfo flags)."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as info:
            for line in info:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_bf16", "amx_bf16"})
    except OSError:
        pass
    return False


def use_bfloat16(precision: str, *, what: str = "model", on_cpu: bool = True) -> bool:
    """Whether ``precision`` (one of :data:`PRECISIONS`) means bfloat16 here.

    Example:
        >>> use_bfloat16("float32"), use_bfloat16("bfloat16"), use_bfloat16("auto", on_cpu=False)
        (False, True, False)
        >>> use_bfloat16("fp8", what="generator")
        Traceback (most recent call last):
        ...
        setpoint.errors.ConfigError: generator precision 'fp8' is not one of auto, float32, bfloat16
    """
    if precision not in PRECISIONS:
        raise ConfigError(f"{what} precision {precision!r} is not one of {', '.join(PRECISIONS)}")
    if precision != "auto":
        return precision == "bfloat16"
    return on_cpu and cpu_has_native_bfloat16()
