"""Labels as class ids (numpy only): shared by the checks and the adapters."""

from __future__ import annotations

import numpy as np


class NonFiniteLabels(ValueError):
    """Labels holding NaN/Inf: cast to class ids they would become -9223372036854775808."""


def require_finite(y: np.ndarray) -> None:
    if y.dtype.kind in "fc":
        bad = int(y.size - np.count_nonzero(np.isfinite(y)))
        if bad:
            nan = int(np.count_nonzero(np.isnan(y)))
            raise NonFiniteLabels(f"the labels hold {nan} NaN and {bad - nan} Inf value(s) (of {y.size}); drop or "
                                  f"fill those samples, a label must be a number")


def class_ids(y: np.ndarray) -> np.ndarray:
    """Class indices from integer labels or one-hot / probability rows."""
    require_finite(y)
    if y.ndim >= 2 and y.shape[-1] > 1:
        return np.argmax(y.reshape(len(y), -1), axis=1)
    return np.asarray(y).reshape(len(y)).astype(np.int64)


def target_ids(y: np.ndarray, n_outputs: int) -> np.ndarray:
    """The class ids a classification target holds, whatever its form: ids per sample; one-hot or
    probability rows (as wide as the outputs); or ids per position (token-level targets, -100 at
    ignored positions, which are dropped)."""
    if y.ndim >= 2 and y.shape[-1] > 1:
        flat = y.reshape(len(y), -1)
        one_hot = y.shape[-1] == n_outputs and (y.dtype.kind == "f" or (
            flat.size > 0 and flat.min() >= 0 and flat.max() <= 1 and bool((y.sum(axis=-1) == 1).all())))
        if not one_hot and y.dtype.kind in "iu":
            ids = y.reshape(-1).astype(np.int64)
            return ids[ids != -100]
    return class_ids(y)


def per_position(y: np.ndarray, n_outputs: int) -> bool:
    """Whether a classification target holds a label per position (tokens, pixels), not per sample."""
    return len(target_ids(y, n_outputs)) != len(y) or (y.ndim >= 2 and y.dtype.kind in "iu" and y.shape[-1] > 1
                                                         and y.shape[-1] != n_outputs)


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
