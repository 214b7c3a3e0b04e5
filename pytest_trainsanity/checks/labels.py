"""Labels as class ids (numpy only): shared by the checks and the adapters."""

from __future__ import annotations

import numpy as np


def class_ids(y: np.ndarray) -> np.ndarray:
    """Class indices from integer labels or one-hot / probability rows."""
    if y.ndim >= 2 and y.shape[-1] > 1:
        return np.argmax(y.reshape(len(y), -1), axis=1)
    return np.asarray(y).reshape(len(y)).astype(np.int64)


def class_shares(ids: np.ndarray, classes: int) -> np.ndarray:
    """Each class's share of ``ids`` (ids outside [0, classes) are not counted)."""
    ids = ids[(ids >= 0) & (ids < classes)]
    counts = np.bincount(ids, minlength=classes)[:classes].astype(np.float64)
    return counts / max(counts.sum(), 1.0)


def batch_tv(counts: np.ndarray, shares: np.ndarray) -> np.ndarray:
    """Per training batch (a row of label counts), the total-variation distance of its label mix
    from ``shares`` (the split's): 0 for a stratified batch, near 1 for a batch of one class."""
    if counts.size == 0:
        return np.zeros(len(counts))
    mix = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1.0)
    return 0.5 * np.abs(mix - shares[None, :]).sum(axis=1)
