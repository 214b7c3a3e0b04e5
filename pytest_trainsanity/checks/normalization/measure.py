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
    field: str | None = None  # the input field, when a batch has several
    names: tuple[str, ...] = ()  # the features' column names (table splits)

    def place(self, index: int) -> str:
        """How messages name one feature: its column name when it has one, else its index."""
        return repr(self.names[index]) if index < len(self.names) else str(index)

    @property
    def label(self) -> str:
        """``train``, or ``train field 'x_num'`` when the batch has several input fields."""
        return self.name if self.field is None else f"{self.name} field {self.field!r}"

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


class StatsAccumulator:
    """Per-feature/channel statistics of one split (or one input field of it), fed block by block:
    counts, mean and the sum of squared deviations merged per chunk (Chan et al.), so a stream
    of any length is summarised in float64 with memory of one chunk."""

    def __init__(self, name: str, field: str | None = None) -> None:
        self.name, self.field = name, field
        self.n = self.nan = self.inf = 0
        self.d: int | None = None
        self.axis_label = "feature"
        self.dtype = ""

    def add(self, X: np.ndarray, dtype: str = "") -> None:
        """``dtype`` names the source's type where ``X`` is a conversion of it (a table's columns, read as float64)."""
        if not len(X):
            return
        axis = feature_axis(X)
        shape = X.shape if X.ndim > 2 else (len(X), int(np.prod(X.shape[1:], dtype=np.int64)))
        if X.ndim <= 2:
            axis = 1
        pre, post = int(np.prod(shape[1:axis], dtype=np.int64)), int(np.prod(shape[axis + 1 :], dtype=np.int64))
        view = X.reshape(len(X), pre, shape[axis], post)  # the feature/channel axis in place: no moveaxis copy
        d = shape[axis]
        if self.d is None:
            self.d, self.axis_label, self.dtype = d, "feature" if X.ndim <= 2 else "channel", dtype or str(X.dtype)
            self.count, self.mean, self.m2 = np.zeros(d), np.zeros(d), np.zeros(d)
            self.lo, self.hi, self.bad = np.full(d, np.inf), np.full(d, -np.inf), np.zeros(d, dtype=np.int64)
        elif d != self.d:
            raise ValueError(f"{self.name} samples have {d} {self.axis_label}s in one block and {self.d} in another")
        self.n += len(X)
        per_sample = max(1, pre * post)  # values of each feature/channel in one sample
        step = max(1, CHUNK // per_sample)  # samples per chunk: a chunk never copies more than CHUNK rows
        for start in range(0, len(X), step):
            self._chunk(np.array(view[start : start + step], dtype=np.float64))  # a copy: _chunk works in place

    def _chunk(self, block: np.ndarray) -> None:
        """One chunk, shaped (samples, pre, features, post): statistics over every axis but the third."""
        axes = (0, 1, 3)
        finite = np.isfinite(block)
        if finite.all():  # the common case: no masked copies
            count = np.full(block.shape[2], float(block.size // block.shape[2]))
            mean = block.mean(axis=axes)
            lo, hi = block.min(axis=axes), block.max(axis=axes)
            block -= mean[None, None, :, None]
            block *= block
            m2 = block.sum(axis=axes)
        else:
            self.nan += int(np.isnan(block).sum())
            self.inf += int(np.isinf(block).sum())
            self.bad += (~finite).sum(axis=axes)
            count = finite.sum(axis=axes).astype(np.float64)
            mean = np.where(finite, block, 0.0).sum(axis=axes) / np.maximum(count, 1)
            dev = np.where(finite, block - mean[None, None, :, None], 0.0)
            m2 = (dev * dev).sum(axis=axes)
            lo = np.where(finite, block, np.inf).min(axis=axes)
            hi = np.where(finite, block, -np.inf).max(axis=axes)
        self.lo = np.fmin(self.lo, lo)
        self.hi = np.fmax(self.hi, hi)
        total = self.count + count
        delta = mean - self.mean
        share = np.divide(count, total, out=np.zeros_like(total), where=total > 0)
        self.m2 += m2 + delta * delta * self.count * share
        self.mean += delta * share
        self.count = total

    def result(self) -> "SplitStats":
        if self.d is None:
            raise ValueError(f"{self.name} has no samples")
        std = np.sqrt(self.m2 / np.maximum(self.count, 1))
        std[std < 1e-12 * np.maximum(np.abs(self.mean), 1.0)] = 0.0  # constant (also float32 round-off)
        return SplitStats(
            self.name, self.n, self.axis_label, self.mean.copy(), std, self.lo, self.hi, self.nan, self.inf,
            np.flatnonzero(self.bad)[:5].tolist(), self.dtype, self.field,
        )


def split_stats(name: str, X: np.ndarray, field: str | None = None) -> SplitStats:
    acc = StatsAccumulator(name, field)
    acc.add(X)
    return acc.result()


@dataclass(frozen=True)
class Finding:
    split: str
    kind: str  # "nonfinite", "raw_scale", "tiny_scale", "split_shift"
    text: str
    fix: str
    field: str | None = None

    @property
    def where(self) -> str:
        return self.split if self.field is None else f"{self.split} field {self.field!r}"


@dataclass
class NormalizationResult:
    passed: bool
    findings: list[Finding]
    stats: dict[str, SplitStats]  # by label: "train", or "train field 'x_num'" for several fields
    integer_ids: bool = False
    notes: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # input field -> why it is not a feature to scale

    def metrics(self) -> dict[str, Any]:
        out: dict[str, Any] = {"integer_ids": self.integer_ids, "skipped_fields": len(self.skipped)}
        for split in dict.fromkeys(s.name for s in self.stats.values()):
            group = [s for s in self.stats.values() if s.name == split]
            means = [np.abs(s.mean[s.varying]) for s in group if s.varying.any()]
            out[f"{split}_max_abs_mean"] = float(max(m.max() for m in means)) if means else 0.0
            out[f"{split}_max_std"] = float(max((np.max(s.std) for s in group if len(s.std)), default=0.0))
            lows = [float(np.min(s.min)) for s in group if np.isfinite(s.min).any()]
            highs = [float(np.max(s.max)) for s in group if np.isfinite(s.max).any()]
            out[f"{split}_min"] = min(lows) if lows else float("nan")
            out[f"{split}_max"] = max(highs) if highs else float("nan")
            out[f"{split}_nan"] = sum(s.nan for s in group)
            out[f"{split}_inf"] = sum(s.inf for s in group)
        return out


def is_integer_ids(X: np.ndarray) -> bool:
    """Token/category ids: integer dtypes other than uint8 (uint8 arrays are image pixels)."""
    return X.dtype.kind in "iu" and X.dtype != np.uint8 or X.dtype.kind == "b"


def field_role(name: str, dtype: np.dtype) -> str | None:
    """Why an input field is not a feature to scale ('integer ids', 'mask'), or None when it is."""
    dtype = np.dtype(dtype)
    if dtype.kind == "b" or (dtype.kind in "iu" and "mask" in name.lower()):
        return "mask"
    if dtype.kind in "iu" and dtype != np.uint8:
        return "integer ids"
    return None


def check_normalization(splits: dict[str, np.ndarray], tol: float = DEFAULT_TOL) -> NormalizationResult:
    """One input per split (arrays in memory)."""
    return check_fields({name: {"x": X} for name, X in splits.items()}, tol)


def check_fields(splits: dict[str, dict[str, np.ndarray]], tol: float = DEFAULT_TOL,
                 numbers: tuple[str, ...] = ()) -> NormalizationResult:
    """Every input field of every split (numpy in memory, e.g. an eval sample); integer fields in
    ``numbers`` (the model reads them as numbers: ``Adapter.number_fields``) are judged as features."""
    stats: dict[str | None, dict[str, SplitStats]] = {}
    dtypes: dict[str, np.dtype] = {}
    several = len(next(iter(splits.values()), {})) > 1
    for split, fields in splits.items():
        for name, X in fields.items():
            dtypes.setdefault(name, X.dtype)
            if name in numbers or field_role(name, X.dtype) is None or not several and not is_integer_ids(X):
                key = name if several else None
                stats.setdefault(key, {})[split] = split_stats(split, X, key)
    return judge(stats, dtypes, tol)


STANDARDISED = "standardised in the model's forward"  # a skip reason: int numbers the forward standardises itself


def judge(stats: dict[str | None, dict[str, SplitStats]], dtypes: dict[str, np.dtype], tol: float = DEFAULT_TOL,
          reasons: dict[str, str] | None = None) -> NormalizationResult:
    """The verdict over per-field, per-split statistics; ``dtypes`` names every input field (a
    field with no statistics was skipped as ids or a mask, or for ``reasons[field]``)."""
    several = len(dtypes) > 1
    reasons = reasons or {}
    skipped = {name: reasons.get(name) or field_role(name, dt) or "integer ids" for name, dt in dtypes.items()
               if (name if several else None) not in stats}
    if stats == {} and skipped and all(why == STANDARDISED for why in skipped.values()):
        return NormalizationResult(True, [], {}, integer_ids=True, skipped=skipped, notes=[
            "the integer inputs are standardised inside the model's forward (see the note); nothing is left to judge."])
    if not stats:
        what = (f"inputs are integer ids (dtype {next(iter(dtypes.values()))})" if not several else
                "every input field is integer ids or a mask (" + "; ".join(f"{k}: {dtypes[k]} {skipped[k]}" for k in dtypes) + ")")
        return NormalizationResult(True, [], {}, integer_ids=True, skipped=skipped, notes=[
            f"{what}: token or category ids feed an embedding and are not features to scale; nothing to normalise."])
    findings: list[Finding] = []
    for per_split in stats.values():
        findings += _findings(per_split, tol)
    flat = {s.label: s for per_split in stats.values() for s in per_split.values()}
    notes = []
    if skipped:
        notes.append("not features to scale, skipped: " + "; ".join(
            f"{name} ({dtypes[name]}, {why})" for name, why in skipped.items()))
    return NormalizationResult(not findings, findings, flat, skipped=skipped, notes=notes)


def _findings(stats: dict[str, SplitStats], tol: float) -> list[Finding]:
    findings: list[Finding] = []
    for name, s in stats.items():
        if s.nan or s.inf:
            findings.append(Finding(
                name, "nonfinite",
                f"{s.label} holds {s.nan} NaN and {s.inf} Inf value(s), in {s.axis_label}(s) "
                f"[{', '.join(s.place(i) for i in s.nonfinite_where)}]"
                f"{' (first 5)' if len(s.nonfinite_where) == 5 else ''}",
                "impute or drop the non-finite values before training (np.nan_to_num, or drop the rows); "
                "one NaN input turns the loss into NaN", s.field,
            ))
    train = stats.get("train")
    if train is not None:
        findings += _scale_findings(train, tol)
        for name, s in stats.items():
            if name != "train":  # on train's scale first; if it is, it may still be raw like train
                findings += _shift_findings(train, s) or _scale_findings(s, tol)
    return findings


def _scale_findings(s: SplitStats, tol: float) -> list[Finding]:
    v = s.varying
    if not v.any():
        return [Finding(s.name, "tiny_scale", f"every {s.axis_label} of {s.label} is constant", "check the data pipeline", s.field)]
    abs_mean, std = np.abs(s.mean[v]), s.std[v]
    worst_mean, worst_std = float(abs_mean.max()), float(std.max())
    out = []
    if worst_mean > tol or worst_std > tol:
        idx = np.flatnonzero(v)[int(np.argmax(np.maximum(abs_mean, std)))]
        out.append(Finding(
            s.name, "raw_scale",
            f"{s.label} inputs are not standardised: values span {s.range_text()}, per-{s.axis_label} "
            f"|mean| up to {_num(worst_mean)} and std up to {_num(worst_std)} (limit {_num(tol)}; "
            f"worst {s.axis_label} {s.place(idx)}: mean {_num(float(s.mean[idx]))}, std {_num(float(s.std[idx]))})",
            _scale_fix(s), s.field,
        ))
    elif worst_std < TINY_STD:
        out.append(Finding(
            s.name, "tiny_scale",
            f"{s.label} inputs are vanishingly small: the largest per-{s.axis_label} std is "
            f"{_num(worst_std)} (below {TINY_STD}), values span {s.range_text()}",
            "the inputs look scaled twice (e.g. divided by 255 two times); scale once, to unit range or z-scores",
            s.field,
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
        return [Finding(s.name, "split_shift", f"{s.label} has {len(s.mean)} {s.axis_label}s but train has {len(train.mean)}",
                        "use the same preprocessing for every split", s.field)]
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
        f"{s.label} is scaled differently from {train.label}: median per-{s.axis_label} mean shift "
        f"{_num(med_shift)} train-stds (limit {MAX_MEDIAN_SHIFT}) and median std ratio "
        f"{_num(med_ratio)} (limit [{1 / MAX_STD_RATIO:g}, {MAX_STD_RATIO:g}]); {s.name} spans "
        f"{s.range_text()} vs train {train.range_text()}",
        f"apply the transform fitted on train to {s.name} too (scaler.transform(X_{s.name})); "
        f"never fit a separate scaler on {s.name}", s.field,
    )]
