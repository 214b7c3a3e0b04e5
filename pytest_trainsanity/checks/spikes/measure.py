"""``lr_spike_explained``'s numpy core: spike detection, attribution from replays, lr collapse.

Detection. ``m`` is the metric after each epoch; ``g[t]`` its change from
epoch t-1 to t, signed so that an improvement is positive. The run's own
trend predicts ``g[t]`` by the median of the (up to) three changes before it,
so the fast but shrinking gains of a concave learning curve predict each
other and are not spikes; a jump after a plateau is. Residuals
``r = g - trend`` give the run's noise ``sigma`` (1.4826 x their median
absolute deviation, the largest one left out so a spike does not widen its
own yardstick; at least the metric's resolution). A spike is a
residual beyond ``max(K_SIGMA * sigma, RANGE_FRACTION * range(m), min_jump)``,
either way (a rise or a drop). The first three epochs only feed the trend.

Attribution. Each spike's epoch is replayed from the checkpoint before it,
as recorded (the baseline) and under interventions; an intervention's effect
is the fraction of the baseline jump it removes. The cause is the
intervention that removes most, when it removes at least ``EXPLAINS``:
hold the lr -> ``lr_schedule``; reshuffle the batches or freeze the
batch-norm statistics -> ``batch_stats``; reset the momentum buffers ->
``momentum``; none -> ``unexplained``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

K_SIGMA = 5.0
RANGE_FRACTION = 0.1
TREND_WINDOW = 3
FIRST_DETECTABLE = 3  # 0-based epoch index: epochs 0..2 only feed the trend
EXPLAINS = 0.5  # an intervention explains a spike when it removes at least half of it
COLLAPSE_FACTOR = 1e-3  # lr below this fraction of its peak ...
COLLAPSE_BY = 0.5  # ... within the first half of the run, and still there at its end

INTERVENTIONS = {
    "hold_lr": ("lr_schedule", "hold the lr at its value before the spike"),
    "reshuffle": ("batch_stats", "reshuffle the epoch's batches (another seed)"),
    "freeze_bn": ("batch_stats", "freeze the batch-norm running statistics"),
    "reset_momentum": ("momentum", "reset the momentum buffers"),
}
HIGHER_IS_BETTER = {"val_acc": True, "train_acc": True, "val_loss": False, "train_loss": False}


@dataclass
class Spike:
    epoch: int  # 0-based index of the epoch whose end shows the jump
    before: float
    after: float
    trend: float  # the change the run's trend predicted (in metric units)
    threshold: float
    cause: str = "unexplained"
    how: str = "replay"  # "replay", or "evidence" when the replay budget was spent
    evidence: list[str] = field(default_factory=list)
    baseline: float | None = None  # the replayed jump, as recorded
    effects: dict[str, float] = field(default_factory=dict)  # intervention -> fraction of the jump removed
    replayed: dict[str, float] = field(default_factory=dict)  # intervention -> replayed metric

    @property
    def jump(self) -> float:
        return self.after - self.before

    def to_dict(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch + 1, "before": self.before, "after": self.after, "jump": self.jump,
            "trend": self.trend, "threshold": self.threshold, "cause": self.cause, "attributed_by": self.how,
            "evidence": list(self.evidence), "replayed_jump": self.baseline,
            "removed_fraction": dict(self.effects), "replayed_metric": dict(self.replayed),
        }


@dataclass(frozen=True)
class Detection:
    spikes: list[Spike]
    sigma: float
    threshold: float
    note: str | None = None
    margin: float = float("nan")  # the largest |change - trend| over the threshold (>= 1: a spike)


def detect(m: np.ndarray, higher_is_better: bool, min_jump: float | None = None, resolution: float = 0.0) -> Detection:
    """Epoch-over-epoch jumps that stand out from the run's own trend and noise."""
    m = np.asarray(m, dtype=np.float64)
    if len(m) <= FIRST_DETECTABLE or not np.all(np.isfinite(m)):
        why = "the metric is not finite" if len(m) > FIRST_DETECTABLE else f"{len(m)} epoch(s): spikes need at least {FIRST_DETECTABLE + 1}"
        return Detection([], float("nan"), float("nan"), f"no spike detection: {why}")
    s = 1.0 if higher_is_better else -1.0
    g = s * np.diff(m)  # g[i] is the change into epoch i + 1
    trend = np.array([np.median(g[max(0, i - TREND_WINDOW) : i]) if i else 0.0 for i in range(len(g))])
    r = g - trend
    scored = r[FIRST_DETECTABLE - 2 :]  # residuals whose trend has at least two changes behind it
    if len(scored) >= 6:  # the largest residual (a spike's own) does not widen the noise it is judged by
        scored = np.delete(scored, np.argmax(np.abs(scored)))
    sigma = max(1.4826 * float(np.median(np.abs(scored - np.median(scored)))), resolution, 1e-12)
    threshold = max(K_SIGMA * sigma, RANGE_FRACTION * float(m.max() - m.min()), min_jump or 0.0)
    spikes, margin = [], 0.0
    for i in range(FIRST_DETECTABLE - 1, len(g)):
        rise, drop = g[i] - max(trend[i], 0.0), g[i] - min(trend[i], 0.0)
        margin = max(margin, rise / threshold, -drop / threshold)
        if rise > threshold or drop < -threshold:
            spikes.append(Spike(i + 1, float(m[i]), float(m[i + 1]), float(s * trend[i]), threshold))
    return Detection(spikes, sigma, threshold, margin=margin)


def attribute(spike: Spike, baseline: float, replayed: dict[str, float]) -> None:
    """Set the spike's cause from its replays: ``baseline`` is the metric after replaying the
    epoch as recorded, ``replayed`` the metric under each intervention. An effect is the share
    of the replayed jump an intervention removes (1: none of the jump is left)."""
    spike.baseline = base = baseline - spike.before
    spike.replayed = dict(replayed)
    if not (np.sign(base) == np.sign(spike.jump) and abs(base) >= 0.5 * abs(spike.jump)):
        spike.cause = "unexplained"
        spike.evidence.append(f"the replay did not reproduce the jump ({base:+.3f} vs {spike.jump:+.3f} recorded)")
        return
    spike.effects = {k: float(1.0 - (v - spike.before) / base) for k, v in replayed.items()}
    best = max(spike.effects, key=lambda k: spike.effects[k], default=None)
    spike.cause = INTERVENTIONS[best][0] if best is not None and spike.effects[best] >= EXPLAINS else "unexplained"


@dataclass(frozen=True)
class Collapse:
    epoch: int  # 0-based epoch in which the lr first fell below the floor
    step: int
    peak: float
    final: float
    halving_steps: float | None  # steps per halving of the lr, when it decays geometrically
    steps_per_epoch: int
    epoch_factor: float | None = None  # the lr changes only between epochs: its mean factor per epoch (0.01: x0.01)


def lr_collapse(lr: np.ndarray, step_epoch: np.ndarray, epochs: int) -> Collapse | None:
    """The lr falls below ``COLLAPSE_FACTOR`` of its peak within the first ``COLLAPSE_BY`` of the
    run and stays there to the end: a decay counted in steps where epochs were meant, usually."""
    if not len(lr):
        return None
    top = top_lr(lr, len(step_epoch))
    peak = float(top.max())
    if not peak > 0:
        return None
    low = top <= COLLAPSE_FACTOR * peak
    if not low[-1]:
        return None
    first = int(len(low) - np.argmin(low[::-1])) if not low.all() else 0  # the final stretch below the floor
    if step_epoch[first] >= COLLAPSE_BY * epochs:
        return None
    steps_per_epoch = int(np.bincount(step_epoch).max())
    positive = top > 0
    halving = factor = None
    start = int(np.argmax(top))
    epochs_seen = step_epoch[: len(top)]
    within = epochs_seen[1:] == epochs_seen[:-1]
    if steps_per_epoch > 1 and np.array_equal(top[1:][within], top[:-1][within]):
        # the lr moves only between epochs (a per-epoch callback or scheduler): its factor per epoch
        e0, e1 = int(epochs_seen[start]), int(epochs_seen[first])
        at = epoch_lr(top, epochs_seen, int(epochs_seen[-1]) + 1)[e0: e1 + 1]
        if e1 > e0 and np.all(at > 0):
            factor = float((at[-1] / at[0]) ** (1.0 / (e1 - e0)))
    elif positive[start:first].sum() >= 2:  # a geometric decay: fit log2(lr) over the decaying stretch
        idx = np.arange(start, first)[positive[start:first]]
        slope = np.polyfit(idx, np.log2(top[idx]), 1)[0]
        halving = float(-1.0 / slope) if slope < 0 else None
    return Collapse(int(step_epoch[first]), first, peak, float(top[-1]), halving, steps_per_epoch, factor)


def top_lr(lr: np.ndarray, steps: int) -> np.ndarray:
    """Per step, the largest lr of any param group (zeros when none was recorded)."""
    if lr.ndim == 2 and lr.size:
        return lr.max(axis=1)
    return lr if lr.ndim == 1 and len(lr) == steps else np.zeros(steps)


def epoch_lr(lr: np.ndarray, step_epoch: np.ndarray, epochs: int) -> np.ndarray:
    """The first step's lr of each epoch (max over param groups)."""
    top = top_lr(lr, len(step_epoch))
    out = np.full(epochs, np.nan)
    for e in range(epochs):
        at = np.flatnonzero(step_epoch == e)
        if len(at):
            out[e] = top[at[0]]
    return out


def batch_mix(tv: np.ndarray, step_epoch: np.ndarray, epochs: int) -> np.ndarray:
    """Per epoch, how far the batches' label mix strays from the split's: the mean over the
    epoch's batches of each batch's total-variation distance (``labels.batch_tv``)."""
    out = np.full(epochs, np.nan)
    for e in range(epochs):
        at = step_epoch[: len(tv)] == e
        if at.any():
            out[e] = float(tv[at].mean())
    return out
