"""Are the inputs on a scale a network trains well on? (numpy only)

Per feature (columns of tabular data) or per channel (images, sequences)
statistics are accumulated in float64 chunks. Train passes when every
non-constant feature has |mean| <= tol and std <= tol (standardised,
unit-scaled and globally normalised data all do; raw [0, 255] or [0, 16]
pixels do not) and its features are not all vanishingly small. Val/test
must be on train's scale: the median per-feature mean shift (in train
stds) and std ratio are compared. Integer ids are not features to scale.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

DEFAULT_TOL = 5.0
TINY_STD = 1e-3  # every feature std below this: probably scaled twice
MAX_MEDIAN_SHIFT = 0.5  # median |mean_split - mean_train| / std_train
MAX_STD_RATIO = 2.0  # median std_split / std_train outside [1/2, 2]
CHUNK = 65536


def feature_axis(X: np.ndarray) -> int:
    """Tabular: columns. Images/sequences: the channel axis, i.e. whichever of
    axis 1 and the last axis is smaller (NCHW and NHWC, (N, T, F) and (N, C, L))."""
    if X.ndim <= 2:
        return 1
    return 1 if X.shape[1] <= X.shape[-1] else X.ndim - 1


@dataclass(frozen=True)
class SplitStats:
    name: str
    n: int
    axis_label: str  # "feature" or "channel"
    mean: np.ndarray
    std: np.ndarray
    min: np.ndarray
    max: np.ndarray
    nan: int
    inf: int
    nonfinite_where: list[int]  # feature/channel indices holding NaN/Inf (first few)
    dtype: str

    @property
    def varying(self) -> np.ndarray:
        return self.std > 0

    def range_text(self) -> str:
        return f"[{_num(float(np.min(self.min)))}, {_num(float(np.max(self.max)))}]"


def _num(x: float) -> str:
    if x == 0:
        return "0"
    if not np.isfinite(x):
        return str(x)
    return f"{x:.3g}" if abs(x) < 1e4 else f"{x:.3e}"


def split_stats(name: str, X: np.ndarray) -> SplitStats:
    axis = feature_axis(X)
    moved = np.moveaxis(X, axis, -1) if X.ndim > 2 else X.reshape(len(X), -1)
    d = moved.shape[-1]
    flat = moved.reshape(-1, d)
    total = np.zeros(d)
    sq = np.zeros(d)
    lo = np.full(d, np.inf)
    hi = np.full(d, -np.inf)
    count = np.zeros(d)
    bad = np.zeros(d, dtype=np.int64)
    nan = inf = 0
    for start in range(0, len(flat), CHUNK):
        block = np.asarray(flat[start : start + CHUNK], dtype=np.float64)
        finite = np.isfinite(block)
        if not finite.all():
            nan += int(np.isnan(block).sum())
            inf += int(np.isinf(block).sum())
            bad += (~finite).sum(axis=0)
            block = np.where(finite, block, np.nan)
            total += np.nansum(block, axis=0)
            count += finite.sum(axis=0)
            lo = np.fmin(lo, np.nanmin(np.where(finite, block, np.inf), axis=0))
            hi = np.fmax(hi, np.nanmax(np.where(finite, block, -np.inf), axis=0))
            continue
        total += block.sum(axis=0)
        count += len(block)
        lo = np.minimum(lo, block.min(axis=0))
        hi = np.maximum(hi, block.max(axis=0))
    mean = total / np.maximum(count, 1)
    for start in range(0, len(flat), CHUNK):  # second pass: numerically stable variance
        block = np.asarray(flat[start : start + CHUNK], dtype=np.float64)
        dev = np.where(np.isfinite(block), block - mean, 0.0)
        sq += (dev * dev).sum(axis=0)
    std = np.sqrt(sq / np.maximum(count, 1))
    std[std < 1e-12 * np.maximum(np.abs(mean), 1.0)] = 0.0  # constant (also float32 round-off)
    return SplitStats(
        name, len(X), "feature" if X.ndim <= 2 else "channel", mean, std, lo, hi, nan, inf,
        np.flatnonzero(bad)[:5].tolist(), str(X.dtype),
    )


@dataclass(frozen=True)
class Finding:
    split: str
    kind: str  # "nonfinite", "raw_scale", "tiny_scale", "split_shift"
    text: str
    fix: str


@dataclass
class NormalizationResult:
    passed: bool
    findings: list[Finding]
    stats: dict[str, SplitStats]
    integer_ids: bool = False
    notes: list[str] = field(default_factory=list)

    def metrics(self) -> dict[str, Any]:
        out: dict[str, Any] = {"integer_ids": self.integer_ids}
        for name, s in self.stats.items():
            v = s.varying
            out[f"{name}_max_abs_mean"] = float(np.max(np.abs(s.mean[v]))) if v.any() else 0.0
            out[f"{name}_max_std"] = float(np.max(s.std)) if len(s.std) else 0.0
            out[f"{name}_min"] = float(np.min(s.min)) if np.isfinite(s.min).any() else float("nan")
            out[f"{name}_max"] = float(np.max(s.max)) if np.isfinite(s.max).any() else float("nan")
            out[f"{name}_nan"] = s.nan
            out[f"{name}_inf"] = s.inf
        return out


def is_integer_ids(X: np.ndarray) -> bool:
    """Token/category ids: integer dtypes other than uint8 (uint8 arrays are image pixels)."""
    return X.dtype.kind in "iu" and X.dtype != np.uint8 or X.dtype.kind == "b"


def check_normalization(splits: dict[str, np.ndarray], tol: float = DEFAULT_TOL) -> NormalizationResult:
    if splits and all(is_integer_ids(X) for X in splits.values()):
        return NormalizationResult(
            True, [], {}, integer_ids=True,
            notes=[
                f"inputs are integer ids (dtype {next(iter(splits.values())).dtype}): token or category "
                f"ids feed an embedding and are not features to scale; nothing to normalise."
            ],
        )
    stats = {name: split_stats(name, X) for name, X in splits.items()}
    findings: list[Finding] = []
    for name, s in stats.items():
        if s.nan or s.inf:
            findings.append(Finding(
                name, "nonfinite",
                f"{name} holds {s.nan} NaN and {s.inf} Inf value(s), in {s.axis_label}(s) {s.nonfinite_where}"
                f"{' (first 5)' if len(s.nonfinite_where) == 5 else ''}",
                "impute or drop the non-finite values before training (np.nan_to_num, or drop the rows); "
                "one NaN input turns the loss into NaN",
            ))
    train = stats.get("train")
    if train is not None:
        findings += _scale_findings(train, tol)
        for name, s in stats.items():
            if name != "train":  # on train's scale first; if it is, it may still be raw like train
                findings += _shift_findings(train, s) or _scale_findings(s, tol)
    return NormalizationResult(not findings, findings, stats)


def _scale_findings(s: SplitStats, tol: float) -> list[Finding]:
    v = s.varying
    if not v.any():
        return [Finding(s.name, "tiny_scale", f"every {s.axis_label} of {s.name} is constant", "check the data pipeline")]
    abs_mean, std = np.abs(s.mean[v]), s.std[v]
    worst_mean, worst_std = float(abs_mean.max()), float(std.max())
    out = []
    if worst_mean > tol or worst_std > tol:
        idx = np.flatnonzero(v)[int(np.argmax(np.maximum(abs_mean, std)))]
        out.append(Finding(
            s.name, "raw_scale",
            f"{s.name} inputs are not standardised: values span {s.range_text()}, per-{s.axis_label} "
            f"|mean| up to {_num(worst_mean)} and std up to {_num(worst_std)} (limit {_num(tol)}; "
            f"worst {s.axis_label} {idx}: mean {_num(float(s.mean[idx]))}, std {_num(float(s.std[idx]))})",
            _scale_fix(s),
        ))
    elif worst_std < TINY_STD:
        out.append(Finding(
            s.name, "tiny_scale",
            f"{s.name} inputs are vanishingly small: the largest per-{s.axis_label} std is "
            f"{_num(worst_std)} (below {TINY_STD}), values span {s.range_text()}",
            "the inputs look scaled twice (e.g. divided by 255 two times); scale once, to unit range or z-scores",
        ))
    return out


def _scale_fix(s: SplitStats) -> str:
    lo, hi = float(np.min(s.min)), float(np.max(s.max))
    if lo >= 0 and hi in (255.0, 16.0, 1023.0, 65535.0):
        return (f"divide by {hi:g} (unit range) or standardise per {s.axis_label} with the train mean/std "
                f"(e.g. sklearn StandardScaler fitted on train, or torchvision Normalize)")
    return (f"standardise per {s.axis_label} with statistics fitted on train only "
            f"(sklearn StandardScaler().fit(X_train), then transform every split)")


def _shift_findings(train: SplitStats, s: SplitStats) -> list[Finding]:
    if len(train.mean) != len(s.mean):
        return [Finding(s.name, "split_shift", f"{s.name} has {len(s.mean)} {s.axis_label}s but train has {len(train.mean)}", "use the same preprocessing for every split")]
    v = train.varying
    if not v.any():
        return []
    shift = np.abs(s.mean[v] - train.mean[v]) / train.std[v]
    ratio = np.where(train.std[v] > 0, s.std[v] / train.std[v], 1.0)
    med_shift = float(np.median(shift))
    med_ratio = float(np.median(ratio))
    if med_shift <= MAX_MEDIAN_SHIFT and 1 / MAX_STD_RATIO <= med_ratio <= MAX_STD_RATIO:
        return []
    return [Finding(
        s.name, "split_shift",
        f"{s.name} is scaled differently from train: median per-{s.axis_label} mean shift "
        f"{_num(med_shift)} train-stds (limit {MAX_MEDIAN_SHIFT}) and median std ratio "
        f"{_num(med_ratio)} (limit [{1 / MAX_STD_RATIO:g}, {MAX_STD_RATIO:g}]); {s.name} spans "
        f"{s.range_text()} vs train {train.range_text()}",
        f"apply the transform fitted on train to {s.name} too (scaler.transform(X_{s.name})); "
        f"never fit a separate scaler on {s.name}",
    )]
