"""Exact and near-duplicate rows within and across splits (numpy only).

Exact matching works on a canonical byte form of each row (float64, with
-0.0 folded to 0.0 and every NaN to one payload) so equal values match
whatever their dtype; it is exact (no hashing), so it never reports a
false match. Near duplicates use blocked BLAS distances.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

NEAR_THRESHOLD = 0.02  # relative L2 distance ||a - b|| / max(||a||, ||b||)
NEAR_MAX_PAIRS = 4e8  # above this many train x val pairs, near search samples val rows
BLOCK = 2048


def canonical_rows(X: np.ndarray) -> np.ndarray:
    """Rows as float64 with -0.0 -> 0.0 and one NaN payload: equal values give equal bytes."""
    rows = np.array(X.reshape(len(X), -1), dtype=np.float64, copy=True)
    rows += 0.0  # folds -0.0 into 0.0
    rows[np.isnan(rows)] = np.nan
    return np.ascontiguousarray(rows)


def _row_ids(*splits: np.ndarray) -> list[np.ndarray]:
    """An id per row such that rows with equal canonical bytes share it, across all given splits."""
    rows = [canonical_rows(X) for X in splits]
    width = rows[0].shape[1]
    if any(r.shape[1] != width for r in rows):
        raise ValueError(f"splits have different sample sizes: {[r.shape[1] for r in rows]}")
    allrows = np.concatenate(rows) if len(rows) > 1 else rows[0]
    void = allrows.view(np.dtype((np.void, allrows.dtype.itemsize * max(width, 1))))[:, 0]
    _, inverse = np.unique(void, return_inverse=True)
    bounds = np.cumsum([0] + [len(r) for r in rows])
    return [inverse[bounds[i] : bounds[i + 1]] for i in range(len(rows))]


@dataclass(frozen=True)
class WithinSplit:
    n: int
    n_unique: int

    @property
    def duplicate_fraction(self) -> float:
        """Share of rows that repeat an earlier row."""
        return 1.0 - self.n_unique / self.n if self.n else 0.0

    @property
    def mean_copies(self) -> float:
        return self.n / self.n_unique if self.n_unique else 0.0


def within_split(X: np.ndarray) -> WithinSplit:
    (ids,) = _row_ids(X)
    return WithinSplit(len(X), int(len(np.unique(ids))))


@dataclass(frozen=True)
class CrossSplit:
    """Rows of ``b`` (e.g. val) that also occur in ``a`` (e.g. train)."""

    n_b: int
    exact_b: np.ndarray  # indices into b with an exact copy in a
    exact_pairs: list[tuple[int, int]]  # a few (a_index, b_index) examples
    label_conflicts: int  # exact copies whose labels differ
    near_b: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # near, not exact
    near_pairs: list[tuple[int, int]] = field(default_factory=list)
    near_threshold: float = NEAR_THRESHOLD
    near_sampled: float = 1.0  # fraction of b rows searched for near copies

    @property
    def overlap_b(self) -> np.ndarray:
        return np.union1d(self.exact_b, self.near_b)

    @property
    def fraction(self) -> float:
        return len(self.overlap_b) / self.n_b if self.n_b else 0.0


def cross_split(
    Xa: np.ndarray,
    Xb: np.ndarray,
    ya: np.ndarray | None = None,
    yb: np.ndarray | None = None,
    near: bool = True,
    threshold: float = NEAR_THRESHOLD,
    examples: int = 5,
) -> CrossSplit:
    ids_a, ids_b = _row_ids(Xa, Xb)
    order = np.argsort(ids_a, kind="stable")
    uniq, starts = np.unique(ids_a[order], return_index=True)
    exact_b = np.flatnonzero(np.isin(ids_b, uniq))
    a_of_b = order[starts][np.searchsorted(uniq, ids_b[exact_b])]  # first row of a with that content
    conflicts = 0
    if ya is not None and yb is not None and len(exact_b):
        conflicts = int(np.sum(np.any(ya[a_of_b].reshape(len(a_of_b), -1) != yb[exact_b].reshape(len(exact_b), -1), axis=1)))
    pairs = list(zip(a_of_b[:examples].tolist(), exact_b[:examples].tolist()))
    result = CrossSplit(len(Xb), exact_b, pairs, conflicts, near_threshold=threshold)
    if not near:
        return result
    near_b, near_pairs, sampled = near_duplicates(Xa, Xb, threshold, exclude_b=exact_b, examples=examples)
    return CrossSplit(len(Xb), exact_b, pairs, conflicts, near_b, near_pairs, threshold, sampled)


def near_duplicates(
    Xa: np.ndarray, Xb: np.ndarray, threshold: float, exclude_b: np.ndarray, examples: int = 5, seed: int = 0
) -> tuple[np.ndarray, list[tuple[int, int]], float]:
    """Rows of b within ``threshold`` relative L2 of some row of a (exact copies excluded).

    ||a-b||^2 = ||a||^2 + ||b||^2 - 2 a.b in float64 blocks; when the pair count
    is huge a seeded sample of b is searched and the fraction is reported.
    """
    A = Xa.reshape(len(Xa), -1).astype(np.float64)
    B = Xb.reshape(len(Xb), -1).astype(np.float64)
    candidates = np.setdiff1d(np.arange(len(B)), exclude_b)
    sampled = 1.0
    if len(A) * len(candidates) > NEAR_MAX_PAIRS:
        keep = max(1, int(NEAR_MAX_PAIRS // max(len(A), 1)))
        candidates = np.sort(np.random.default_rng(seed).choice(candidates, keep, replace=False))
        sampled = keep / max(len(B) - len(exclude_b), 1)
    a2 = np.einsum("ij,ij->i", A, A)
    found, pairs = [], []
    for start in range(0, len(candidates), BLOCK):
        rows = candidates[start : start + BLOCK]
        Bb = B[rows]
        b2 = np.einsum("ij,ij->i", Bb, Bb)
        d2 = np.maximum(b2[:, None] + a2[None, :] - 2.0 * (Bb @ A.T), 0.0)
        scale = np.maximum(b2[:, None], a2[None, :])
        close = d2 <= (threshold**2) * scale
        close &= scale > 0
        idx = np.flatnonzero(close.any(axis=1))
        found.append(rows[idx])
        for i in idx[: max(0, examples - len(pairs))]:
            pairs.append((int(np.argmin(np.where(close[i], d2[i], np.inf))), int(rows[i])))
    near_b = np.concatenate(found) if found else np.zeros(0, dtype=np.int64)
    return near_b.astype(np.int64), pairs, sampled


def shuffle_labels_by_input(X: np.ndarray, y: np.ndarray, seed: int) -> np.ndarray:
    """Labels permuted across unique inputs: copies of one input keep sharing a label.

    Shuffling per row would give copies of one input conflicting labels and
    under-state how well a model memorises duplicated data; shuffling per
    unique input keeps the data exactly as memorisable while the labels
    carry no information (Zhang et al. 2017, adapted to duplicates).
    """
    (ids,) = _row_ids(X)
    _, first = np.unique(ids, return_index=True)
    group_labels = y[first]
    permuted = group_labels[np.random.default_rng(seed).permutation(len(group_labels))]
    return permuted[ids]
