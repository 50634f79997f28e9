"""The overview's chart of events per day, drawn as server-side SVG (no script)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any, Final

SERIES: Final = (
    ("admitted", "Admissions", "#1f7a4d"),
    ("exited", "Exits", "#2f6db5"),
    ("expelled", "Expulsions", "#c0392b"),
)


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    left: int
    top: int
    plot_w: int
    plot_h: int
    y_ticks: list[tuple[float, int]]  # (y, value)
    x_labels: list[tuple[float, str]]  # (x, label)
    series: list[dict[str, Any]]  # {key, label, colour, points: "x,y …", dots: [...]}
    bucket: str  # "day" or "month"
    total: dict[str, int]


def _nice_step(value: int, ticks: int = 4) -> int:
    """A round step (1, 2, 5 × 10^n) so that ``ticks`` steps reach ``value``."""
    raw = max(1.0, value / ticks)
    exponent = 10 ** math.floor(math.log10(raw))
    for factor in (1, 2, 5, 10):
        if factor * exponent >= raw:
            return int(factor * exponent)
    return int(10 * exponent)


def build_chart(per_day: list[dict[str, Any]], width: int = 880, height: int = 300) -> Chart | None:
    """Admissions, exits and expulsions over time: per day, or per month over long spans."""
    rows = sorted(
        (r for r in per_day if isinstance(r.get("day"), str)), key=lambda r: str(r["day"])
    )
    if not rows:
        return None
    first, last = date.fromisoformat(rows[0]["day"]), date.fromisoformat(rows[-1]["day"])
    monthly = (last - first).days > 92
    buckets: dict[str, dict[str, int]] = {}
    if monthly:
        year, month = first.year, first.month
        while (year, month) <= (last.year, last.month):
            buckets[f"{year:04d}-{month:02d}"] = {}
            year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    for r in rows:
        key = str(r["day"])[:7] if monthly else str(r["day"])
        bucket = buckets.setdefault(key, {})
        for name, _, _ in SERIES:
            bucket[name] = bucket.get(name, 0) + int(r.get(name) or 0)
    keys = list(buckets)
    highest = max((max(b.values(), default=0) for b in buckets.values()), default=0)
    step_y = _nice_step(highest)
    top = step_y * max(1, math.ceil(highest / step_y))
    left, right, upper, bottom = 44, 36, 14, 34
    plot_w, plot_h = width - left - right, height - upper - bottom
    step = plot_w / max(1, len(keys) - 1)

    def x(i: int) -> float:
        return round(left + (i * step if len(keys) > 1 else plot_w / 2), 1)

    def y(v: int) -> float:
        return round(upper + plot_h - v / top * plot_h, 1)

    series = []
    for name, label, colour in SERIES:
        values = [buckets[k].get(name, 0) for k in keys]
        series.append(
            {
                "key": name,
                "label": label,
                "colour": colour,
                "points": " ".join(f"{x(i)},{y(v)}" for i, v in enumerate(values)),
                "dots": [
                    {"x": x(i), "y": y(v), "title": f"{keys[i]}: {v} {label.lower()}"}
                    for i, v in enumerate(values)
                ],
            }
        )
    label_every = max(1, math.ceil(len(keys) / 12))
    x_labels = [(x(i), k) for i, k in enumerate(keys) if i % label_every == 0]
    y_ticks = [(y(v), v) for v in range(0, top + 1, step_y)]
    totals = {name: sum(b.get(name, 0) for b in buckets.values()) for name, _, _ in SERIES}
    return Chart(
        width,
        height,
        left,
        upper,
        plot_w,
        plot_h,
        y_ticks,
        x_labels,
        series,
        "month" if monthly else "day",
        totals,
    )


def bars(counts: Mapping[str, int], limit: int = 20) -> list[dict[str, Any]]:
    """Rows for a horizontal bar list, largest first."""
    items = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:limit]
    top = max((v for _, v in items), default=0) or 1
    return [{"label": k, "value": v, "pct": round(100 * v / top, 1)} for k, v in items]
