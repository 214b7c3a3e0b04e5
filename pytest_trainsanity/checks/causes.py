"""A diagnosed cause: a name, a score for ranking, the measured evidence, a fix."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

REPORT_MIN_SCORE = 0.1  # below this a cause is listed as ruled out, with its numbers


@dataclass(frozen=True)
class Cause:
    """``score`` in [0, 1] is how much of the problem the measurement explains.

    Scores from counterfactual probes (the same pass with one thing changed)
    are direct; scores from statistics alone are capped lower so a measured
    effect outranks a suspicion.
    """

    name: str
    score: float
    evidence: str
    fix: str
    metrics: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def rank(causes: list[Cause]) -> tuple[list[Cause], list[Cause]]:
    """(likely causes strongest first, ruled-out ones); a later cause replaces an earlier one of the same name."""
    by_name: dict[str, Cause] = {}
    for cause in causes:
        by_name[cause.name] = cause
    ordered = sorted(by_name.values(), key=lambda c: (-c.score, c.name))
    return [c for c in ordered if c.score >= REPORT_MIN_SCORE], [c for c in ordered if c.score < REPORT_MIN_SCORE]
