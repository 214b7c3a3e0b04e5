"""Labels as class ids (numpy only): shared by the checks and the adapters."""

from __future__ import annotations

import math
from dataclasses import dataclass

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


@dataclass(frozen=True)
class Sorting:
    """How sorted by class the training batches are. The raw distance cannot be judged alone: random
    batches of b samples from C classes stray about 1 - b/C when b < C (a shuffled loader over 100
    classes in batches of 32: 0.72), and batches of one class each reach only sum_k p_k (1 - p_k)
    (two balanced classes: 0.5). ``score`` places the batches between the two: 0 as mixed as a
    shuffled loader, 1 one class per batch."""

    tv: float  # mean total-variation distance of the batches' label mix from the split's
    shuffled: float  # what batches of the same sizes drawn at random give
    one_class: float  # what batches of one class each give

    @property
    def score(self) -> float:
        span = self.one_class - self.shuffled
        return float(np.clip((self.tv - self.shuffled) / span, 0.0, 1.0)) if span > 1e-9 else 0.0

    def words(self) -> str:
        return (f"{self.score:.2f} between 0 (as mixed as a shuffled loader) and 1 (one class per batch): mean "
                f"total-variation distance {self.tv:.2f} from the split's label mix, where random batches of these "
                f"sizes give {self.shuffled:.2f} and batches of one class {self.one_class:.2f}")


def sorting(counts: np.ndarray, shares: np.ndarray | None = None) -> Sorting:
    """``Sorting`` of the batches (rows of label counts) against ``shares`` (the split's; default the
    batches' own total). The shuffled baseline is exact for batches drawn with replacement: by linearity
    the expected distance is half the sum over classes of E|X - b p| / b, X ~ Binomial(b, p), in closed
    form (de Moivre). Drawing without replacement from a large split gives the same, a small one a little less."""
    counts = np.asarray(counts, dtype=np.float64)
    if shares is None:
        shares = counts.sum(axis=0)
    p = np.clip(np.asarray(shares, dtype=np.float64), 0.0, None)
    p = p / p.sum() if p.sum() > 0 else p
    tv = batch_tv(counts, p)
    sizes = counts.sum(axis=1).round().astype(np.int64)
    shuffled = np.zeros(len(sizes))
    for size in np.unique(sizes[sizes > 0]):
        shuffled[sizes == size] = 0.5 * sum(_binomial_mad(int(size), float(q)) for q in p) / size
    return Sorting(float(tv.mean()) if len(tv) else 0.0, float(shuffled.mean()) if len(sizes) else 0.0,
                   float(np.sum(p * (1.0 - p))))


def _binomial_mad(n: int, p: float) -> float:
    """E|X - n p| for X ~ Binomial(n, p): 2 (m + 1) C(n, m + 1) p^(m + 1) (1 - p)^(n - m), m = floor(n p)."""
    if p <= 0.0 or p >= 1.0:
        return 0.0
    m = math.floor(n * p)
    return math.exp(math.log(2 * (m + 1)) + math.lgamma(n + 1) - math.lgamma(m + 2) - math.lgamma(n - m)
                    + (m + 1) * math.log(p) + (n - m) * math.log1p(-p))
