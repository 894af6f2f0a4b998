"""Small statistics without dependencies: percentiles, and a run summary (median + spread)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100), linear interpolation between closest ranks."""
    if not values:
        return math.nan
    data = sorted(values)
    if len(data) == 1:
        return float(data[0])
    pos = (len(data) - 1) * q / 100
    low = math.floor(pos)
    high = min(low + 1, len(data) - 1)
    return float(data[low] + (data[high] - data[low]) * (pos - low))


def summary(values: Sequence[float]) -> dict[str, Any]:
    """Median over repeated runs and its spread: IQR (q1, q3) and min-max."""
    clean = [float(v) for v in values if v is not None and not math.isnan(v)]
    if not clean:
        return {"median": None, "q1": None, "q3": None, "min": None, "max": None, "n": 0, "runs": []}
    return {
        "median": percentile(clean, 50),
        "q1": percentile(clean, 25),
        "q3": percentile(clean, 75),
        "min": min(clean),
        "max": max(clean),
        "n": len(clean),
        "runs": clean,
    }


def fmt(s: dict[str, Any] | None, unit: str = "", digits: int = 1, scale: float = 1.0) -> str:
    """``median [min–max]`` for tables."""
    if not s or s.get("median") is None:
        return "n/a"
    m, lo, hi = s["median"] * scale, s["min"] * scale, s["max"] * scale
    return f"{m:,.{digits}f}{unit} [{lo:,.{digits}f}–{hi:,.{digits}f}]"
