"""Single-feature target leakage on tabular inputs (numpy only).

For every column, the best one-feature rule (the majority label in each of
``BINS`` quantile bins of that column, fitted on train) is scored on train
and applied unchanged to val. A column that alone predicts the train label
far above the majority baseline but not the val label was built from the
label (or from information only train has).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

BINS = 16
MAX_ROWS = 20000
MAX_COLUMNS = 4096
COLUMN_BLOCK = 64


@dataclass(frozen=True)
class FeatureLeak:
    column: int
    train_acc: float  # one-feature rule on train
    val_acc: float  # the same rule on val
    baseline: float  # majority-class accuracy on train

    @property
    def train_lift(self) -> float:
        return _lift(self.train_acc, self.baseline)

    @property
    def val_lift(self) -> float:
        return _lift(self.val_acc, self.baseline)

    @property
    def score(self) -> float:
        """How much better the column predicts train than val, in [0, 1]."""
        return float(np.clip(self.train_lift - max(self.val_lift, 0.0), 0.0, 1.0))


def _lift(acc: Any, base: float) -> Any:
    return (acc - base) / (1.0 - base) if base < 1 else acc * 0.0


def _bins(X: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Bin index per (row, column) against per-column inner edges (n_edges x d)."""
    out = np.zeros(X.shape, dtype=np.int64)
    for k in range(edges.shape[0]):
        out += X > edges[k][None, :]
    return out


def single_feature_rules(
    X_train: np.ndarray, y_train: np.ndarray, X_val: np.ndarray | None, y_val: np.ndarray | None, seed: int = 0
) -> tuple[np.ndarray, np.ndarray | None, float] | None:
    """Per column: accuracy of its one-feature rule on train and (applied unchanged) on val, and the
    majority baseline; None when the inputs are not tabular."""
    if X_train.ndim != 2 or X_train.shape[1] > MAX_COLUMNS or X_train.dtype.kind not in "biuf":
        return None
    if len(X_train) > MAX_ROWS:
        keep = np.random.default_rng(seed).choice(len(X_train), MAX_ROWS, replace=False)
        X_train, y_train = X_train[keep], y_train[keep]
    classes, yt = np.unique(y_train, return_inverse=True)
    n_classes, (n, d) = len(classes), X_train.shape
    with_val = X_val is not None and y_val is not None and X_val.ndim == 2 and X_val.shape[1] == d
    train_acc, val_acc = np.zeros(d), np.zeros(d)
    for lo in range(0, d, COLUMN_BLOCK):  # column blocks bound the memory of the bin tables
        cols = slice(lo, min(lo + COLUMN_BLOCK, d))
        Xt = np.nan_to_num(np.asarray(X_train[:, cols], dtype=np.float64))
        w = Xt.shape[1]
        edges = np.quantile(Xt, np.linspace(0, 1, BINS + 1)[1:-1], axis=0)  # (BINS-1) x w
        counts = np.bincount(
            (np.arange(w)[None, :] * BINS * n_classes + _bins(Xt, edges) * n_classes + yt[:, None]).ravel(),
            minlength=w * BINS * n_classes,
        ).reshape(w, BINS, n_classes)
        train_acc[cols] = counts.max(axis=2).sum(axis=1) / n
        if with_val:
            rule = counts.argmax(axis=2)  # w x BINS: predicted class index per bin
            Xv = np.nan_to_num(np.asarray(X_val[:, cols], dtype=np.float64))
            pred_v = classes[rule[np.arange(w)[None, :], _bins(Xv, edges)]]  # n_val x w
            val_acc[cols] = (pred_v == np.asarray(y_val).reshape(-1, 1)).mean(axis=0)
    baseline = float(np.bincount(yt).max() / n)
    return train_acc, val_acc if with_val else None, baseline


def single_feature_leak(
    X_train: np.ndarray, y_train: np.ndarray, X_val: np.ndarray, y_val: np.ndarray, seed: int = 0
) -> FeatureLeak | None:
    """The column whose one-feature rule predicts train best relative to val; None if not tabular."""
    rules = single_feature_rules(X_train, y_train, X_val, y_val, seed)
    if rules is None or rules[1] is None:
        return None
    train_acc, val_acc, baseline = rules
    best = int(np.argmax(_lift(train_acc, baseline) - np.maximum(_lift(val_acc, baseline), 0)))
    return FeatureLeak(best, float(train_acc[best]), float(val_acc[best]), baseline)


def target_columns(
    X_train: np.ndarray, y_train: np.ndarray, X_val: np.ndarray | None, y_val: np.ndarray | None,
    min_lift: float, seed: int = 0,
) -> list[FeatureLeak]:
    """Columns that alone predict the train label at least ``min_lift`` of the way from the
    majority baseline to perfect: the label (or a function of it) is among the features."""
    rules = single_feature_rules(X_train, y_train, X_val, y_val, seed)
    if rules is None:
        return []
    train_acc, val_acc, baseline = rules
    hits = np.flatnonzero(_lift(train_acc, baseline) >= min_lift)
    return [FeatureLeak(int(j), float(train_acc[j]), float(val_acc[j]) if val_acc is not None else float("nan"), baseline)
            for j in hits[np.argsort(-train_acc[hits])]]
