"""Single-column target rules: does one column alone carry the label? (numpy only)

``no_leakage`` asks whether a column was computed from the label
(``target_columns``); ``no_epoch1_overfit`` asks whether a column predicts
the train label but not val's (``single_feature_leak``). Both score a column
by a rule fitted on other rows than the ones it predicts (``FOLDS``-fold
cross-fitting), so a noise column scores chance however few rows there are,
and both name a column only on evidence that holds for the sample size.

Rule. Classification: the nearest class median of the column (a column
computed from the label is f(label) + noise, which this rule reads best),
scored as lift over the majority baseline, (acc - base) / (1 - base).
Regression: the mean target in the column's quantile bin (``X_BINS``),
scored as held-out R^2.

Evidence. The held-out hits are a binomial count (regression: rows put on
the right side of the median target). A column counts only when the Chernoff
(KL) lower confidence bound of its lift, at ``ALPHA`` over the number of
columns tried, is >= ``MIN_LIFT_BOUND``: a noise column passes in at most
``ALPHA`` of splits whatever their size and width, and below
``rows_needed`` rows not even a column right on every row could pass, which
the reports say instead of judging.

Computed from the label (``no_leakage``). Real features can predict the
label alone as well as the label plus noise does (iris petal width: lift
0.95; breast cancer "worst perimeter": 0.78; the label + N(0, 0.3) on
breast cancer: 0.82-0.93). What differs is that a column computed from the
label carries nothing else: within each class it moves with no other column,
while a real measurement moves with its neighbours (radius and area; petal
length). A column is named when its lift is >= ``TARGET_LIFT`` and the upper
confidence bound (Fisher z) of its largest within-class |correlation| with
another column is <= ``MAX_RESIDUAL_CORR``, or when its lift bound alone is
>= ``SURE_LIFT``. ``no_epoch1_overfit`` needs no such test: there a real
feature predicts val too, and the score is the train lift less the val
lift's upper bound.

Measured (``python benchmarks/target_rules.py``; "subsets": 100 random row
subsets of 30-400 rows each):

- breast cancer: best lift 0.78, best lift bound 0.63; the columns with lift
  >= 0.75 have residual |r| >= 0.84 (bound >= 0.88); none named, on any subset.
- iris: best lift 0.95, bound 0.84; residual |r| 0.48 (bound 0.64); none named.
- wine 0.65, digits 0.16 best lift; diabetes (regression) best R^2 0.32: none.
- label + N(0, 0.3) on breast cancer, 50 seeds: lift 0.82-0.93, residual
  |r| 0.04-0.12 (bound <= 0.26); named 50/50 at 569 and 455 rows, 49/50 at
  300, 22/50 at 200, 0/50 at 100. On digits (25 seeds): lift 0.88-0.91, bound
  <= 0.15, named 25/25 at 455+ rows. Target + N(0, 0.3 sd) on diabetes: R^2
  0.90-0.93, bound <= 0.27, named 25/25 at 442 rows, 22/25 at 300.
- pure noise, 2160 splits of 10-500 rows x 1-50 columns: nothing named
  (classification or regression) or blamed.

Margins: residual bound 0.27 (planted) < 0.35 < 0.64 (real); lift 0.82
(planted) > 0.75; lift bound 0.84 (real) < 0.98. A label with noise needs
about 300 rows to be told from a strong real feature; a recoded label (one
value per class) only ``rows_needed`` (27 for 20 columns, balanced classes).

Speed: the search reads a uniform sample of ``ROWS`` train rows
(``RowSample``), screens every column by its correlation ratio (one matmul
with the one-hot classes) and runs the rule on at most ``MAX_CANDIDATES``
columns: about 15 ms for 100k x 784 float32 rows, 10 classes.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

ALPHA = 0.01  # family-wise: a noise column is named in at most 1% of splits, however many columns are tried
MIN_LIFT_BOUND = 0.5  # evidence: the lower confidence bound of a column's held-out lift must reach this
TARGET_LIFT = 0.75  # strength of a column computed from the label (its within-class variation its own)
SURE_LIFT = 0.98  # lift bound at which a column is named whatever the other columns do
MIN_OTHERS = 2  # "moves with no other column" is evidence only against at least this many other varying columns
MAX_RESIDUAL_CORR = 0.35  # within a class, a column computed from the label correlates with no other column beyond this
FOLDS = 4
FOLD_BITS = 2  # bits that hold a fold id (FOLDS <= 2**FOLD_BITS)
ROWS = 4096  # train rows the search reads: a uniform sample of the split
SCREEN_ETA2 = 0.2  # correlation ratio below which a column is not worth the exact rule
SCREEN_TOP = 4  # ... but the best few are always scored, so a report can say what the best column did
MAX_CANDIDATES = 16
MAX_COLUMNS = 4096
Y_BINS = 8  # regression: the target's quantile bins stand in for classes (screen, within-class residuals)
X_BINS = 16  # regression rule: the mean target per quantile bin of the column
CUT_BY_CUT = 32  # up to this many class cuts, the nearest class median is found by comparing with each cut in turn


@dataclass(frozen=True)
class FeatureLeak:
    column: int
    train_acc: float  # held-out (cross-fitted) accuracy of the column's rule on train; regression: R^2
    val_acc: float  # the rule fitted on all train rows, applied to val (nan without val)
    baseline: float  # majority-class accuracy on train; regression: 0
    lift_bound: float | None = None  # lower confidence bound of the train lift, corrected for the columns tried
    val_bound: float | None = None  # upper confidence bound of the val lift
    residual_corr: float | None = None  # largest within-class |correlation| with another column
    residual_bound: float | None = None  # its upper confidence bound (Fisher z, corrected for the columns tried)
    n: int = 0  # train rows judged
    needed: int = 0  # train rows a verdict needs
    tried: int = 1  # columns tried
    others: int = 0  # other columns varying within a class: what "moves with no other column" was measured against
    name: str = ""  # the column's name (table splits)

    @property
    def label(self) -> str:
        """How messages name the column: its name when it has one, else its index."""
        return repr(self.name) if self.name else str(self.column)

    @property
    def train_lift(self) -> float:
        return float(_lift(self.train_acc, self.baseline))

    @property
    def val_lift(self) -> float:
        return float(_lift(self.val_acc, self.baseline))

    @property
    def judged(self) -> bool:
        return self.n >= self.needed

    @property
    def supported(self) -> bool:
        """The column predicts the train label, by evidence that holds for the sample size."""
        bound = self.train_lift if self.lift_bound is None else self.lift_bound
        return self.judged and bound >= MIN_LIFT_BOUND

    @property
    def score(self) -> float:
        """How much better the column predicts train than val, in [0, 1]; 0 without evidence."""
        if not self.supported:
            return 0.0
        val = self.val_lift if self.val_bound is None else self.val_bound
        return float(np.clip(self.train_lift - max(val, 0.0), 0.0, 1.0))

    @property
    def computed_from_label(self) -> bool:
        """``no_leakage``'s verdict: strong, supported, and (unless near perfect) nothing but the label."""
        bound = self.train_lift if self.lift_bound is None else self.lift_bound
        return self.supported and (bound >= SURE_LIFT or (self.train_lift >= TARGET_LIFT and self.alone))

    @property
    def alone(self) -> bool:
        """One value per class (the label, recoded), or within each class it moves with none of at least
        ``MIN_OTHERS`` other varying columns."""
        if self.residual_bound is None:
            return False
        return self.residual_bound == 0 or (self.residual_bound <= MAX_RESIDUAL_CORR and self.others >= MIN_OTHERS)


@dataclass(frozen=True)
class TargetSearch:
    """``no_leakage``'s search: the named columns and how much data the verdict had."""

    columns: list[FeatureLeak] = field(default_factory=list)
    n: int = 0  # train rows read
    needed: int = 0  # rows a verdict needs
    tried: int = 0  # columns tried (0: the inputs are not tabular)
    task: str = "classification"

    @property
    def judged(self) -> bool:
        return self.tried > 0 and self.n >= self.needed


def _lift(acc: Any, base: float) -> Any:
    return (acc - base) / (1.0 - base) if base < 1 else acc * 0.0


def _kl(p: float, q: float) -> float:
    q = min(max(q, 1e-300), 1 - 1e-16)
    out = p * math.log(p / q) if p > 0 else 0.0
    return out + ((1 - p) * math.log((1 - p) / (1 - q)) if p < 1 else 0.0)


def binomial_bound(k: int, n: int, alpha: float, upper: bool = False) -> float:
    """Chernoff (KL) confidence bound on a binomial rate: the rate at which ``k`` of ``n``
    would be exactly ``alpha``-improbable (lower bound, or upper with ``upper``)."""
    if n <= 0:
        return 1.0 if upper else 0.0
    p, level = k / n, math.log(1 / alpha) / n
    lo, hi = (p, 1.0) if upper else (0.0, p)
    if _kl(p, hi if upper else lo) <= level:
        return hi if upper else lo
    while hi - lo > 1e-10:  # bisection to 1e-10 (about 33 halvings)
        mid = (lo + hi) / 2
        if (_kl(p, mid) > level) == upper:
            hi = mid
        else:
            lo = mid
    return hi if upper else lo


def normal_quantile(p: float) -> float:
    """z with P(Z > z) = p for a standard normal Z."""
    lo, hi = -40.0, 40.0
    for _ in range(100):
        mid = (lo + hi) / 2
        if math.erfc(mid / math.sqrt(2)) / 2 > p:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def rows_needed(baseline: float, tried: int) -> int:
    """Rows at which a column right on every row would just reach the evidence bound."""
    target = baseline + MIN_LIFT_BOUND * (1 - baseline)
    if target >= 1:
        return 2**62
    return math.ceil(math.log(max(tried, 1) / ALPHA) / -math.log(target))


class RowSample:
    """A uniform sample of up to ``size`` rows of a stream of (X, y) blocks, so a split sorted by class
    or time is sampled evenly. With the stream's length known (``total``) the rows are drawn up front
    and only they are copied; otherwise every row gets a random key and the smallest keys are kept
    (rows are copied as they enter: about size * (1 + ln(n / size)) in all)."""

    def __init__(self, size: int = ROWS, seed: int = 0, total: int | None = None) -> None:
        self.size, self.rng, self.n = size, np.random.default_rng(seed), 0
        self.X: np.ndarray | None = None
        self.y: np.ndarray | None = None
        self.keys = np.zeros(0)
        self.usable = True
        self.chosen = None if total is None or total <= size else np.sort(self.rng.choice(total, size, replace=False))

    def feed(self, X: np.ndarray, y: np.ndarray) -> None:
        self.n += len(X)
        if not self.usable:
            return
        if X.ndim != 2 or y.ndim != 1 or len(y) != len(X) or (self.X is not None and X.shape[1] != self.X.shape[1]):
            self.usable = False  # images, sequences, several outputs: not a table of columns
            return
        if self.chosen is not None:  # the rows were drawn up front: keep those in this block
            lo, hi = np.searchsorted(self.chosen, [self.n - len(X), self.n])
            X, y = X[self.chosen[lo:hi] - (self.n - len(X))], y[self.chosen[lo:hi] - (self.n - len(X))]
        keys = self.rng.random(len(X))
        if self.X is None:
            self.X, self.y = np.empty((self.size, X.shape[1]), X.dtype), np.empty(self.size, y.dtype)
        elif not (np.can_cast(X.dtype, self.X.dtype) and np.can_cast(y.dtype, self.y.dtype)):  # a later block is wider
            self.X, self.y = (_widened(self.X, X.dtype, len(self.keys)), _widened(self.y, y.dtype, len(self.keys)))
        free = min(self.size - len(self.keys), len(X))
        if free > 0:  # still filling
            at = len(self.keys)
            self.X[at : at + free], self.y[at : at + free] = X[:free], y[:free]
            self.keys = np.concatenate([self.keys, keys[:free]])
            X, y, keys = X[free:], y[free:], keys[free:]
        entering = np.flatnonzero(keys < self.keys.max()) if len(keys) else keys.astype(np.int64)
        if not len(entering):
            return
        merged = np.concatenate([self.keys, keys[entering]])
        keep = np.argpartition(merged, self.size - 1)[: self.size]
        stays = np.zeros(self.size, bool)
        stays[keep[keep < self.size]] = True
        slots, rows = np.flatnonzero(~stays), entering[keep[keep >= self.size] - self.size]
        self.X[slots], self.y[slots], self.keys[slots] = X[rows], y[rows], keys[rows]

    def arrays(self) -> tuple[np.ndarray, np.ndarray] | None:
        if not self.usable or self.X is None or self.y is None:
            return None
        return self.X[: len(self.keys)], self.y[: len(self.keys)]


def _widened(buf: np.ndarray, dtype: np.dtype, filled: int) -> np.ndarray:
    """``buf`` in a dtype that also holds ``dtype``: its first ``filled`` rows copied (the rest is
    unwritten memory, never converted)."""
    out = np.empty(buf.shape, np.promote_types(buf.dtype, dtype))
    out[:filled] = buf[:filled]
    return out


def _tabular(X: np.ndarray, y: np.ndarray) -> bool:
    return (X.ndim == 2 and 0 < X.shape[1] <= MAX_COLUMNS and X.dtype.kind in "biuf" and y.ndim == 1
            and len(y) == len(X) and np.asarray(y).dtype.kind in "biuf")


def _floats(X: np.ndarray) -> np.ndarray:
    return np.nan_to_num(np.asarray(X, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)


def _bins(values: np.ndarray, n_bins: int) -> np.ndarray:
    """Quantile bin index of each value (fewer bins where values tie)."""
    edges = np.unique(np.quantile(values, np.linspace(0, 1, n_bins + 1)[1:-1]))
    return np.searchsorted(edges, values, side="right")


class _Table:
    """One split's rows for the search: classes as codes (regression: target bins), the
    correlation-ratio screen, within-class residuals and the cross-fitting folds."""

    def __init__(self, X: np.ndarray, y: np.ndarray, task: str, seed: int) -> None:
        rng = np.random.default_rng(seed)
        if len(X) > ROWS:
            keep = np.sort(rng.choice(len(X), ROWS, replace=False))
            X, y = X[keep], y[keep]
        self.X, self.task = X, task
        self.n, self.d = X.shape
        if task == "classification":
            self.classes, self.codes = np.unique(y, return_inverse=True)
            self.y = self.codes
            self.baseline = float(np.bincount(self.codes).max() / self.n)
        else:
            self.y = _floats(y)
            self.codes = np.unique(_bins(self.y, Y_BINS), return_inverse=True)[1]
            self.baseline = 0.0
            self.above = _above_median(self.y)
            self.split_base = float(max(self.above.mean(), 1 - self.above.mean()))
        self.codes = self.codes.reshape(-1)
        self.n_codes = int(self.codes.max()) + 1
        self.folds = rng.permutation(self.n) % FOLDS
        self.needed = rows_needed(self.baseline if task == "classification" else self.split_base, self.d)

    def screen(self) -> np.ndarray:
        """Columns worth the exact rule, best correlation ratio first (one matmul with the one-hot classes)."""
        dtype = np.float32 if self.X.dtype == np.float32 else np.float64  # float32 stays: half the bytes
        X = self.X
        mean = X.mean(axis=0, dtype=np.float64)
        if not np.isfinite(mean).all():  # NaN or Inf in a column: read as 0, as the rule does
            X = _floats(X).astype(dtype)
            mean = X.mean(axis=0, dtype=np.float64)
        Xs = np.subtract(X, mean.astype(dtype), dtype=dtype)
        onehot = np.zeros((self.n, self.n_codes), dtype)
        onehot[np.arange(self.n), self.codes] = 1.0
        counts = np.maximum(onehot.sum(axis=0), 1.0)
        sums = onehot.T @ Xs
        total = np.einsum("ij,ij->j", Xs, Xs, dtype=np.float64)
        sums = sums.astype(np.float64)
        between = (sums**2 / counts[:, None]).sum(axis=0)
        varies = total > self.n * (1e-9 * (np.abs(mean) + 1e-300)) ** 2
        eta2 = np.where(varies, between / np.where(varies, total, 1.0), 0.0)
        self._centred, self._class_means, self._total = Xs, sums / counts[:, None], total
        within = total - between  # each column's within-class sum of squares: 0 for a recoded label, up to rounding
        self._tol = 1e-5 if dtype == np.float32 else 1e-10
        self._within = np.where(varies & (within > self._tol * total), within, 0.0)
        order = np.argsort(-eta2, kind="stable")
        n_keep = min(max(SCREEN_TOP, int((eta2 >= SCREEN_ETA2).sum())), MAX_CANDIDATES)
        return order[:n_keep][eta2[order[:n_keep]] > 0]

    def residual_corr(self, column: int) -> tuple[float, float, int]:
        """(largest within-class |correlation| of ``column`` with another column, its upper confidence
        bound, how many other columns vary within a class): (0, 0, .) for a column the label alone fixes. Residuals sum to 0 in each class, so
        R.T @ r_j = X_centred.T @ r_j: one matrix-vector product, no residual matrix."""
        ok = self._within > 0
        ok[column] = False
        others = int(ok.sum())
        r_j = self._centred[:, column] - self._class_means[self.codes, column]
        within_j = float(r_j @ r_j)
        if within_j <= self._tol * self._total[column]:
            return 0.0, 0.0, others
        dots = np.abs(r_j.astype(self._centred.dtype) @ self._centred)
        r = float(min((dots[ok] / np.sqrt(self._within[ok] * within_j)).max(initial=0.0), 1.0))
        dof = self.n - self.n_codes - 3  # the class means are fitted
        if dof <= 0:
            return r, 1.0, others
        return r, float(np.tanh(np.arctanh(min(r, 1 - 1e-12)) + normal_quantile(ALPHA / self.d) / math.sqrt(dof))), others

    def rules(self, columns: np.ndarray, X_val: np.ndarray | None,
              y_val: np.ndarray | None) -> list[tuple[float, int, float]]:
        """``rule`` of each column; classification rules all at once (a few 2-D array operations
        for every screened column instead of a dozen small ones per column and fold)."""
        if self.task != "classification":
            return [self.rule(int(j), X_val, y_val) for j in columns]
        if not len(columns):
            return []
        xt = np.ascontiguousarray(_floats(self.X[:, columns]).T)  # one row per column: the sorts run along contiguous memory
        xs, fs = self._by_class_then_value(xt)
        hits = np.zeros(len(columns), np.int64)
        for k in range(FOLDS):
            held = self.folds == k
            medians = _column_medians(xs, fs != k, self.codes[~held], self.n_codes)
            hits += np.count_nonzero(_nearest_columns(medians, xt[:, held]) == self.codes[held], axis=1)
        vals = np.full(len(columns), np.nan)
        if X_val is not None and y_val is not None and len(X_val):
            medians = _column_medians(xs, np.ones(xs.shape, bool), self.codes, self.n_codes)
            pred = self.classes[_nearest_columns(medians, np.ascontiguousarray(_floats(X_val[:, columns]).T))]
            vals = np.mean(pred == np.asarray(y_val).reshape(1, -1), axis=1)
        return [(int(h) / self.n, int(h), float(v)) for h, v in zip(hits, vals)]

    def _by_class_then_value(self, xt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(each row of ``xt`` sorted by class, then value; the folds of its values in that order).
        Values that are all float32 (float32 data, small ints) sort as one packed 64-bit key per value,
        class | value's order-preserving bits | fold, in one sort without an index; others by an argsort
        of the values, then a stable one of the classes. Ties hold one value, so how they are ordered
        changes no median."""
        x32 = xt.astype(np.float32)
        if self.n_codes <= 1 << (62 - 32 - FOLD_BITS) and np.array_equal(x32, xt):
            u = x32.view(np.uint32).astype(np.uint64)
            top = np.uint64(0x80000000)
            ordered = np.where(u & top, ~u & np.uint64(0xFFFFFFFF), u | top)  # as unsigned ints, in the floats' order
            key = (self.codes.astype(np.uint64) << np.uint64(32 + FOLD_BITS)) | (ordered << np.uint64(FOLD_BITS))
            key |= self.folds.astype(np.uint64)
            key.sort(axis=1)
            ordered = (key >> np.uint64(FOLD_BITS)) & np.uint64(0xFFFFFFFF)
            u = np.where(ordered & top, ordered ^ top, ~ordered & np.uint64(0xFFFFFFFF))
            return u.astype(np.uint32).view(np.float32).astype(np.float64), (key & np.uint64((1 << FOLD_BITS) - 1)).astype(self.folds.dtype)
        first = np.argsort(xt, axis=1)
        small = np.int16 if self.n_codes < 2**15 else np.int64  # a stable sort of 16-bit ints is a radix sort
        order = np.take_along_axis(first, np.argsort(self.codes.astype(small)[first], axis=1, kind="stable"), axis=1)
        return np.take_along_axis(xt, order, axis=1), self.folds[order]

    def rule(self, column: int, X_val: np.ndarray | None, y_val: np.ndarray | None) -> tuple[float, int, float]:
        """(held-out score, held-out hits for the bound, val score) of the column's rule."""
        if self.task == "classification":
            return self.rules(np.array([column]), X_val, y_val)[0]
        x = _floats(self.X[:, column])
        xv = _floats(X_val[:, column]) if X_val is not None else None
        return self._bin_rule(x, xv, y_val)

    def _bin_rule(self, x: np.ndarray, xv: np.ndarray | None, y_val: np.ndarray | None) -> tuple[float, int, float]:
        pred = np.empty(self.n)
        for k in range(FOLDS):
            fit, held = self.folds != k, self.folds == k
            pred[held] = _bin_means(x[fit], self.y[fit], x[held])
        hits = int((_above_median(pred) == self.above).sum())
        val = float("nan")
        if xv is not None and y_val is not None and len(xv):
            val = _r2(_floats(y_val).reshape(-1), _bin_means(x, self.y, xv))
        return _r2(self.y, pred), hits, val

    def bound(self, hits: int, tried: int) -> float:
        base = self.baseline if self.task == "classification" else self.split_base
        return float(_lift(binomial_bound(hits, self.n, ALPHA / max(tried, 1)), base))


def _above_median(values: np.ndarray) -> np.ndarray:
    """Which values lie above the median (at or above it, where most tie at the top)."""
    above = values > np.median(values)
    return above if above.mean() >= 0.25 else values >= np.median(values)


def _column_medians(xs: np.ndarray, fit: np.ndarray, fit_codes: np.ndarray, n_codes: int) -> np.ndarray:
    """(columns, classes) medians of the ``fit`` rows of each row of ``xs`` (one per column, sorted by
    class, then value); nan for a class with no fit rows. Which rows fit differs per column's order,
    but how many of each class does not, so the r-th fit row of every column is found at once."""
    cnt = np.bincount(fit_codes, minlength=n_codes)
    start = np.concatenate([[0], np.cumsum(cnt)[:-1]])
    flat = np.flatnonzero(fit).reshape(len(xs), -1)  # per column, where its fit rows lie in xs.ravel(), in order
    out = np.full((len(xs), n_codes), np.nan)
    ok = cnt > 0
    lo, hi = (start + (cnt - 1) // 2)[ok], (start + cnt // 2)[ok]
    values = xs.reshape(-1)
    out[:, ok] = (values[flat[:, lo]] + values[flat[:, hi]]) / 2
    return out


def _nearest_columns(medians: np.ndarray, xt: np.ndarray) -> np.ndarray:
    """The class whose median is nearest each value, for each row of ``xt`` (columns, values) against
    its row of ``medians`` (columns, classes): the class at the number of midpoints (between sorted
    medians) below the value. (columns, values), like ``xt``."""
    by = np.argsort(np.where(np.isnan(medians), np.inf, medians), axis=1, kind="stable")
    m = np.take_along_axis(medians, by, axis=1)  # classes with no rows last, as nan: their cuts never count
    cuts = (m[:, 1:] + m[:, :-1]) / 2  # sorted, nan last: searchsorted counts the cuts below a value
    if cuts.shape[1] <= CUT_BY_CUT:  # few classes: every value against each cut of its column, cut by cut
        index = np.zeros(xt.shape, np.intp)  # (a sum over a (columns, values, cuts) array is ~4x slower: short last axis)
        for c in range(cuts.shape[1]):
            index += xt > cuts[:, c: c + 1]  # NaN cuts compare False, as searchsorted puts them last
    else:
        index = np.stack([np.searchsorted(cuts[j], xt[j]) for j in range(len(xt))]) if len(xt) else np.zeros(xt.shape, np.int64)
    return np.take_along_axis(by, index, axis=1)


def _bin_means(x: np.ndarray, y: np.ndarray, x_new: np.ndarray) -> np.ndarray:
    edges = np.unique(np.quantile(x, np.linspace(0, 1, X_BINS + 1)[1:-1]))
    fit, new = np.searchsorted(edges, x, side="right"), np.searchsorted(edges, x_new, side="right")
    sums, counts = np.bincount(fit, y, len(edges) + 1), np.bincount(fit, minlength=len(edges) + 1)
    means = np.where(counts > 0, sums / np.maximum(counts, 1), y.mean())
    return means[new]


def _r2(y: np.ndarray, pred: np.ndarray) -> float:
    total = float(((y - y.mean()) ** 2).sum())
    return 1.0 - float(((y - pred) ** 2).sum()) / total if total > 0 else 0.0


def _val(X_val: np.ndarray | None, y_val: np.ndarray | None, d: int) -> tuple[np.ndarray | None, np.ndarray | None]:
    if X_val is None or y_val is None or X_val.ndim != 2 or X_val.shape[1] != d or len(X_val) != len(y_val):
        return None, None
    return X_val, y_val


def single_feature_leak(
    X_train: np.ndarray, y_train: np.ndarray, X_val: np.ndarray, y_val: np.ndarray, seed: int = 0
) -> FeatureLeak | None:
    """``no_epoch1_overfit``'s measurement: the column whose rule predicts train best relative to
    val (by the held-out train lift and the val lift's upper bound); None if not tabular."""
    if not _tabular(X_train, y_train):
        return None
    X_val, y_val = _val(X_val, y_val, X_train.shape[1])
    if X_val is None or y_val is None:
        return None
    t = _Table(X_train, y_train, "classification", seed)
    if t.n_codes < 2 or t.n < FOLDS:
        return None
    def leak(j: int, acc: float, hits: int, val: float) -> FeatureLeak:
        val_hi = float(_lift(binomial_bound(round(val * len(y_val)), len(y_val), ALPHA, upper=True), t.baseline))
        return FeatureLeak(int(j), acc, val, t.baseline, lift_bound=t.bound(hits, t.d), val_bound=val_hi, n=t.n,
                           needed=t.needed, tried=t.d)

    best: tuple[tuple[float, float], tuple[Any, ...]] | None = None
    screened = t.screen()
    for j, (acc, hits, val) in zip(screened, t.rules(screened, X_val, y_val)):
        lift = float(_lift(acc, t.baseline))
        # the lift's lower bound is below the lift itself: a column under MIN_LIFT_BOUND scores 0 unbounded
        key = (leak(j, acc, hits, val).score if lift >= MIN_LIFT_BOUND else 0.0, lift)
        if best is None or key > best[0]:
            best = key, (j, acc, hits, val)
    return None if best is None else leak(*best[1])


def target_columns(
    X_train: np.ndarray, y_train: np.ndarray, X_val: np.ndarray | None = None, y_val: np.ndarray | None = None,
    seed: int = 0, task: str = "classification",
) -> TargetSearch:
    """``no_leakage``'s measurement: the columns computed from the label (see the module docstring),
    strongest first, and how much data the verdict had."""
    if not _tabular(X_train, y_train):
        return TargetSearch(n=len(X_train), task=task)
    t = _Table(X_train, y_train, task, seed)
    if t.n_codes < 2:  # one class (a constant target): no column can predict it
        return TargetSearch(n=t.n, task=task)
    if t.n < max(t.needed, FOLDS):
        return TargetSearch(n=t.n, needed=max(t.needed, FOLDS), tried=t.d, task=task)
    X_val, y_val = _val(X_val, y_val, t.d)
    named = []
    screened = t.screen()
    for j, (score, hits, val) in zip(screened, t.rules(screened, X_val, y_val)):
        if _lift(score, t.baseline) < TARGET_LIFT:  # named only from this lift up: no bound to compute
            continue
        leak = FeatureLeak(int(j), score, val, t.baseline, lift_bound=t.bound(hits, t.d), n=t.n, needed=t.needed,
                           tried=t.d)
        if leak.supported:
            r, r_hi, others = t.residual_corr(int(j))
            leak = dataclasses.replace(leak, residual_corr=r, residual_bound=r_hi, others=others)
            if leak.computed_from_label:
                named.append(leak)
    named.sort(key=lambda f: -f.train_lift)
    return TargetSearch(named, t.n, t.needed, t.d, task)
