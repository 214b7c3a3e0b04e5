"""Check results -> reports, lines of text and JSON. No pytest import here.

A report is plain data (numbers, strings, lists, dicts) so it crosses
pytest-xdist and lands in the JSON report unchanged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from .checks.causes import Cause

FIX_PREFIX = "fix: "


@dataclass
class CheckReport:
    """What one check measured and concluded. ``message`` is the diagnosis text."""

    name: str
    passed: bool
    message: str
    metrics: dict[str, Any] = field(default_factory=dict)
    causes: list[dict[str, Any]] = field(default_factory=list)
    key: tuple[str, ...] = ()  # metric names shown in the one-line summary
    nodeid: str | None = None
    skipped: str = ""  # why the check does not apply to this setup (then ``passed`` says nothing)

    @property
    def verdict(self) -> str:
        if self.skipped:
            return "skipped"
        return "passed" if self.passed else "FAILED"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "passed": self.passed,
            "message": self.message,
            "metrics": {k: plain(v) for k, v in self.metrics.items()},
            "causes": [plain(c) for c in self.causes],
            "key": list(self.key),
            "nodeid": self.nodeid,
            "skipped": self.skipped,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "CheckReport":
        return cls(
            data["name"], data["passed"], data["message"], dict(data.get("metrics", {})),
            list(data.get("causes", [])), tuple(data.get("key", ())), data.get("nodeid"), data.get("skipped", ""),
        )

    def key_numbers(self) -> str:
        return ", ".join(f"{k}={fmt(self.metrics[k])}" for k in self.key if k in self.metrics)

    def summary_line(self) -> str:
        where = f"{self.nodeid} " if self.nodeid else ""
        return f"{where}{self.name} {self.verdict}: {self.skipped or self.key_numbers()}"


def plain(value: Any) -> Any:
    """numpy scalars/arrays and tuples -> JSON-ready Python values; non-finite floats -> None."""
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def fmt(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        if value == 0:
            return "0"
        return f"{value:.3f}" if 1e-3 <= abs(value) < 1e4 else f"{value:.3g}"
    return str(value)


def time_text(value: Any) -> str:
    """A time as people write it: numpy's datetime64 and pandas' Timestamp alike as
    ``2024-01-09 07:30``, down to the finest unit the time needs (``2024-01-09`` at midnight, a
    fraction of a second only when there is one). A tz-aware Timestamp is written in UTC and says so,
    as Dask and Spark hand zoned times back and numpy holds them; a zoned column read by name from a
    table arrives as numpy's UTC datetime64, without its zone. Any other value (a float or int time,
    a datetime) as ``str`` gives it."""
    zone = ""
    if type(value).__name__ == "Timestamp":  # pandas, without importing it
        if value.tzinfo is not None:
            zone = " UTC"
            value = value.tz_convert(None)
        value = value.to_datetime64()
    if type(value).__name__ == "datetime64":
        import numpy as np

        return np.datetime_as_string(value, unit="auto").replace("T", " ") + zone
    return str(value)


def pct(value: float) -> str:
    return f"{100 * value:.1f}%"


def cause_lines(likely: list[Cause], ruled_out: list[Cause]) -> list[str]:
    """The ranked-causes block every model-based check prints."""
    lines: list[str] = []
    if likely:
        lines.append("Likely causes, strongest evidence first:")
        for i, cause in enumerate(likely, 1):
            lines.append(f"  {i}. {cause.name} (evidence score {cause.score:.2f}): {cause.evidence}")
            lines.append(f"     {FIX_PREFIX}{cause.fix}")
    if ruled_out:
        lines.append("Measured and ruled out:")
        lines += [f"  - {c.name}: {c.evidence}" for c in ruled_out]
    return lines
