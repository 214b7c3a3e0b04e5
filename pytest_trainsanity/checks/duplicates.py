"""Exact and near-duplicate rows of in-memory splits, for ``no_epoch1_overfit``.

A thin layer over ``matching`` (the one matcher, also used streaming by
``no_leakage``), on the same definitions: exact copies are equal values
(verified hashes), near copies are within ``matching.NEAR_THRESHOLD`` of RMS
difference in train standard deviations per feature, train being the first
split given (``a``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .matching import (
    NEAR_THRESHOLD,
    Canon,
    Chance,
    ChanceCounted,
    Reference,
    Scale,
    as_rows,
    chance_neighbours,
    common_dtype,
    few_values,
    group_ids,
    repeat_chance,
    sample_rows,
    width_of,
)

EXAMPLES = 5


def canon_for(*splits: np.ndarray) -> Canon:
    widths = {width_of(X) for X in splits}
    if len(widths) != 1:
        raise ValueError(f"splits have different sample sizes: {sorted(widths)}")
    return Canon(common_dtype(X.dtype for X in splits), widths.pop())


def canonical_rows(X: np.ndarray) -> np.ndarray:
    """Rows in canonical form (-0.0 -> 0.0, one NaN payload): equal values give equal bytes."""
    return canon_for(X).rows(X)


def row_ids(X: np.ndarray) -> np.ndarray:
    """An id per row, shared by rows with equal values."""
    canon = canon_for(X)
    rows = as_rows(X)
    return group_ids(canon.hashes(rows), rows, canon)[0]


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
    return WithinSplit(len(X), int(row_ids(X).max(initial=-1) + 1))


@dataclass(frozen=True)
class CrossSplit(ChanceCounted):
    """Rows of ``b`` (e.g. val) that also occur in ``a`` (e.g. train)."""

    n_b: int
    exact_b: np.ndarray  # indices into b with an exact copy in a
    exact_pairs: list[tuple[int, int]]  # a few (a_index, b_index) examples
    label_conflicts: int  # exact copies whose labels differ
    near_b: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # near, not exact
    near_pairs: list[tuple[int, int]] = field(default_factory=list)
    near_threshold: float = NEAR_THRESHOLD  # RMS difference in train (a) standard deviations per feature
    near_sampled: float = 1.0  # fraction of b rows searched for near copies
    near_pair_count: int = 0  # (b row, a row) near pairs, b not an exact copy
    n_a: int = 0  # rows of a searched
    chance: Chance = field(default_factory=Chance)  # what a's density gives (measured when near copies are found)
    exact_pair_count: int = 0  # (b row, a row) pairs of equal rows
    exact_chance: Chance = field(default_factory=Chance)  # equal rows by chance: set only when a's features take few values
    few_values: int = 0  # the most distinct values a feature of a takes (in a sample), when all take few

    @property
    def overlap_b(self) -> np.ndarray:
        return self.counted_b()

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
    examples: int = EXAMPLES,
) -> CrossSplit:
    canon = canon_for(Xa, Xb)
    ref = Reference(canon, Xa, Scale(sample_rows(Xa), canon.dtype) if near else None)
    rows = as_rows(Xb)
    ib, ia = ref.exact(rows, canon.hashes(rows))  # b streams against a
    first = np.unique(ib, return_index=True)[1]
    exact_b, a_of_b = ib[first], ia[first]
    conflicts = 0
    if ya is not None and yb is not None and len(exact_b):
        conflicts = int(np.sum(np.any(
            ya[a_of_b].reshape(len(a_of_b), -1) != yb[exact_b].reshape(len(exact_b), -1), axis=1)))
    pairs = list(zip(a_of_b[:examples].tolist(), exact_b[:examples].tolist()))
    few = few_values(Xa) if len(exact_b) else 0
    exact = {"exact_pair_count": len(ib), "few_values": few, "n_a": len(Xa),
             "exact_chance": repeat_chance(group_ids(ref.hashes, ref.rows, canon)[0], len(Xb), len(Xa)) if few else Chance()}
    if not near:
        return CrossSplit(len(Xb), exact_b, pairs, conflicts, near_threshold=threshold, **exact)
    nb, na, dist = ref.close(rows, threshold)
    fresh = ~np.isin(nb, exact_b)
    nb, na, dist = nb[fresh], na[fresh], dist[fresh]
    best = np.lexsort((dist, nb))  # per b row, its closest a row first
    nb, na = nb[best], na[best]
    first = np.unique(nb, return_index=True)[1]
    near_b = nb[first]
    near_pairs = list(zip(na[first][:examples].tolist(), near_b[:examples].tolist()))
    chance = chance_neighbours(ref, Xa, threshold, len(Xb), len(Xa)) if len(near_b) else Chance()
    return CrossSplit(len(Xb), exact_b, pairs, conflicts, near_b, near_pairs, threshold,
                      near_pair_count=len(nb), chance=chance, **exact)
