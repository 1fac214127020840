"""Reading setpoint's JSON-lines span files: a run as a tree, entropy sparklines, entropy plots."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from setpoint.errors import InputError

__all__ = ["plot_run", "read_spans", "render_run", "runs", "sparkline"]

_BARS = "▁▂▃▄▅▆▇█"


def read_spans(path: Path) -> list[dict[str, Any]]:
    """Every span in a JSON-lines file; a cut or foreign line is an ``InputError`` naming it."""
    if path.exists() and not path.is_file():
        # A directory fails anyway; a device such as /dev/zero would be read forever.
        raise InputError(f"{path} is not a regular file; give a JSON-lines span file")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (
        OSError,
        ValueError,
    ) as exc:  # ValueError: NUL or lone surrogates in the name, bad UTF-8
        raise InputError(f"cannot read trace file {path!r}: {exc}") from None
    spans = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            span = json.loads(line)
            span["context"]["trace_id"]
        except (ValueError, KeyError, TypeError):
            raise InputError(
                f"{path}:{number} is not an OpenTelemetry span written by setpoint"
            ) from None
        spans.append(span)
    return spans


def runs(spans: Sequence[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Spans grouped by trace id, in the order their traces first appear."""
    grouped: dict[str, list[dict[str, Any]]] = {}
    for span in spans:
        grouped.setdefault(span["context"]["trace_id"], []).append(span)
    return grouped


def sparkline(values: Sequence[float], *, top: float | None = None) -> str:
    """One block character per value, scaled to ``top`` (default: the largest value).

    Example:
        >>> sparkline([0.0, 1.0, 2.0, 4.0])
        '▁▃▅█'
    """
    if not values:
        return ""
    ceiling = top if top is not None else max(values)
    if ceiling <= 0:
        return _BARS[0] * len(values)
    return "".join(
        _BARS[min(len(_BARS) - 1, max(0, round(v / ceiling * (len(_BARS) - 1))))] for v in values
    )


def _seconds(span: dict[str, Any]) -> float:
    start = datetime.fromisoformat(span["start_time"].replace("Z", "+00:00"))
    end = datetime.fromisoformat(span["end_time"].replace("Z", "+00:00"))
    return (end - start).total_seconds()


def render_run(spans: Sequence[dict[str, Any]]) -> list[str]:
    """The run as an indented tree: span, duration, and the setpoint attributes that explain it."""
    by_parent: dict[str | None, list[dict[str, Any]]] = {}
    ids = {s["context"]["span_id"] for s in spans}
    for span in spans:
        parent = span.get("parent_id")
        by_parent.setdefault(parent if parent in ids else None, []).append(span)
    for children in by_parent.values():
        children.sort(key=lambda s: s["start_time"])
    lines: list[str] = []

    def walk(span: dict[str, Any], depth: int) -> None:
        attrs = span.get("attributes") or {}
        facts = []
        for key, label in (
            ("setpoint.route", "route"),
            ("setpoint.reason", "why"),
            ("setpoint.entropy", "entropy"),
            ("setpoint.retrieval_calls", "retrievals"),
            ("setpoint.adapter", "adapter"),
            ("gen_ai.usage.output_tokens", "tokens"),
        ):
            if key in attrs:
                value = attrs[key]
                facts.append(
                    f"{label}={value:.2f}" if isinstance(value, float) else f"{label}={value}"
                )
        lines.append(
            f"{'  ' * depth}{span['name']}  {_seconds(span) * 1000:.0f} ms  {' '.join(facts)}".rstrip()
        )
        entropy = attrs.get("setpoint.token_entropy")
        if entropy:
            setpoint = attrs.get("setpoint.setpoint")
            scale = max(
                [
                    *entropy,
                    setpoint if isinstance(setpoint, float) and math.isfinite(setpoint) else 0.0,
                ]
            )
            lines.append(
                f"{'  ' * (depth + 1)}entropy {sparkline(entropy, top=scale)}  (max {max(entropy):.2f}, setpoint {setpoint})"
            )
        for child in by_parent.get(span["context"]["span_id"], []):
            walk(child, depth + 1)

    for root in by_parent.get(None, []):
        walk(root, 0)
    return lines


def plot_run(spans: Sequence[dict[str, Any]], out: Path) -> Path:
    """PNG of the entropy over tokens for each generator call, with setpoint, hysteresis band and firing."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    chats = sorted(
        (s for s in spans if "setpoint.token_entropy" in (s.get("attributes") or {})),
        key=lambda s: s["start_time"],
    )
    if not chats:
        raise InputError("this run has no generator span with token entropies to plot")
    fig, ax = plt.subplots(figsize=(8, 3.5))
    offset = 0
    for i, span in enumerate(chats):
        attrs = span["attributes"]
        entropy = list(attrs["setpoint.token_entropy"])
        ema = list(attrs.get("setpoint.token_ema") or [])
        xs = list(range(offset, offset + len(entropy)))
        ax.plot(
            xs,
            entropy,
            marker=".",
            linewidth=1,
            label="entropy" if i == 0 else None,
            color="tab:blue",
        )
        if ema:
            ax.plot(
                xs[: len(ema)],
                ema,
                linewidth=2,
                label="EMA" if i == 0 else None,
                color="tab:orange",
            )
        setpoint = attrs.get("setpoint.setpoint")
        hysteresis = attrs.get("setpoint.hysteresis") or 0.0
        if isinstance(setpoint, float) and math.isfinite(setpoint):
            ax.hlines(
                setpoint, xs[0], xs[-1], colors="red", label="setpoint" if i == 0 else "_nolegend_"
            )
            ax.fill_between(
                xs,
                setpoint - hysteresis,
                setpoint,
                color="red",
                alpha=0.08,
                label="hysteresis" if i == 0 else None,
            )
        fired = attrs.get("setpoint.thermostat.fired_at_step")
        if fired is not None:
            ax.axvline(offset + int(fired), color="green", linestyle="--", label="retrieval fired")
        offset += len(entropy) + 2
    ax.set_xlabel("generated token (passes side by side)")
    ax.set_ylabel("nats")
    ax.legend(fontsize=8)
    fig.savefig(out, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return out
