"""Row matching for leakage: exact copies by hash + verification, near copies
by a projected pre-filter + exact distance. Streams: the reference splits
(val/test) are held in memory, the other side arrives in blocks of rows.

Exact matching hashes a canonical form of each row (one common dtype for all
splits, -0.0 folded into 0.0, every NaN one payload), two 32-bit integer dot
products with random odd weights over the row's bits (64 bits in all). Every
hash match is verified on the canonical values, so a collision can never be
reported as a copy.

Near matching: relative L2 distance ||a - b|| / max(||a||, ||b||) <= t. Rows
are projected onto ``PROJ`` orthonormal random directions; a projection never
lengthens a vector, so ||P(a - b)|| <= ||a - b|| and the pre-filter in the
projected space (one BLAS product per block, distances folded into it) drops
no true pair. Candidates are verified in float64 on the full rows.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np

NEAR_THRESHOLD = 0.01  # natural digits pairs are >= 0.1 apart; 1e-3-noise copies are ~1e-3 apart
PROJ = 16
BLOCK_ROWS = 1024
SUB_ROWS = 256  # stream rows per norm window
SEED = 0x5EED
FLOAT32_SLACK = 1e-4  # relative error of float32 norms, projections and squared distances, generously


def common_dtype(dtypes: Iterable[np.dtype]) -> np.dtype:
    """float32 when every split is float32 (or narrower ints), float64 when any split needs it, int64 for ids."""
    dts = [np.dtype(d) for d in dtypes]
    if all(d.kind in "biu" for d in dts):
        return np.dtype(np.int64)
    if all(d == np.float32 or d.kind in "biu" and d.itemsize <= 2 or d == np.float16 for d in dts):
        return np.dtype(np.float32)
    return np.dtype(np.float64)


class Canon:
    """The canonical row form and the row hash shared by every split of one check.

    Hashing reads the raw block once per integer dot product: the weights are
    even, so every 32-bit word's top bit (a float32's sign) drops out and -0.0
    hashes like 0.0 with no canonical copy; rows holding NaN (found by one BLAS
    row sum) are re-hashed from their canonical form. Sign-only differences
    collide and are told apart by verification. ``wide`` adds a second dot for
    64 bits: for streams that cannot be re-read to verify.
    """

    def __init__(self, dtype: np.dtype, width: int, seed: int = SEED, wide: bool = False) -> None:
        self.dtype, self.width, self.wide = np.dtype(dtype), width, wide
        words = width * self.dtype.itemsize // 4
        rng = np.random.default_rng(seed)
        self.k = (rng.integers(1, 2**31, (2, words), dtype=np.uint64) * 2).astype(np.uint32)

    def flat(self, X: np.ndarray) -> np.ndarray:
        """Rows in the common dtype, contiguous (no copy when they already are)."""
        flat = X.reshape(len(X), -1)
        if flat.shape[1] != self.width:
            raise ValueError(f"samples have {flat.shape[1]} values but the first split's have {self.width}")
        return np.ascontiguousarray(flat, dtype=self.dtype)

    def rows(self, X: np.ndarray) -> np.ndarray:
        """A canonical copy: -0.0 -> 0.0 and one NaN payload, so equal values give equal bits."""
        flat = self.flat(X)
        if self.dtype.kind in "iu":
            return flat.copy()
        rows = flat + self.dtype.type(0.0)  # -0.0 + 0.0 == +0.0
        nan = np.isnan(rows)
        if nan.any():
            rows[nan] = np.nan
        return rows

    def hashes(self, X: np.ndarray) -> np.ndarray:
        flat = self.flat(X)
        h = self._dots(flat)
        if self.dtype.kind == "f" and len(flat):
            bad = np.flatnonzero(np.isnan(flat @ np.ones(self.width, self.dtype)))
            if len(bad):
                h[bad] = self._dots(self.rows(flat[bad]))
        return h

    def _dots(self, flat: np.ndarray) -> np.ndarray:
        bits = flat.view(np.uint32)
        h = (bits @ self.k[0]).astype(np.uint64)
        if self.wide:
            h = h << np.uint64(32) | (bits @ self.k[1]).astype(np.uint64)
        return h

    def equal(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Row-wise equality of raw rows by their canonical values (NaN equals NaN)."""
        return (self.rows(a).view(np.uint32) == self.rows(b).view(np.uint32)).all(axis=1)


class Reference:
    """An in-memory split that stream blocks are matched against."""

    def __init__(self, canon: Canon, X: np.ndarray, near: bool, seed: int = SEED) -> None:
        self.canon = canon
        self.rows = X.reshape(len(X), -1)  # the caller's array: read, never copied whole or written
        h = np.concatenate([canon.hashes(self.rows[i : i + BLOCK_ROWS]) for i in range(0, len(X), BLOCK_ROWS)]) if len(X) else np.zeros(0, np.uint64)
        self.hashes = h
        self.order = np.argsort(h, kind="stable")
        self.sorted = h[self.order]
        self.near = near
        if near:
            self.proj = projection(canon.width, seed)
            self.proj32 = self.proj.astype(np.float32)
            norm2, proj = [], []
            for begin in range(0, len(self.rows), BLOCK_ROWS):
                n2_block, p_block = self.sketch(self.rows[begin : begin + BLOCK_ROWS])
                norm2.append(n2_block)
                proj.append(p_block)
            n2 = np.concatenate(norm2) if norm2 else np.zeros(0)
            p = np.concatenate(proj) if proj else np.zeros((0, self.proj.shape[1]), np.float32)
            # sorted by norm: a near copy has a norm within a factor (1 - t) of its original's,
            # so each block of stream rows only meets a window of reference rows
            self.by_norm = np.argsort(n2, kind="stable")
            self.norm = np.sqrt(n2[self.by_norm])
            p = p[self.by_norm]
            # augmented so one product gives squared projected distances: |p|^2 - 2 p.q + |q|^2
            self.aug = np.hstack([-2 * p, np.ones((len(p), 1), np.float32), (p * p).sum(1, keepdims=True)])

    def sketch(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Squared norms and projections in float32 (BLAS, no float64 copy of the block); the
        pre-filter's slack covers their rounding, candidates are verified in float64."""
        x = np.ascontiguousarray(rows, dtype=np.float32)
        bad = np.flatnonzero(~np.isfinite(x @ np.ones(x.shape[1], np.float32))) if len(x) else []
        if len(bad):
            x = x.copy()
            x[bad] = np.nan_to_num(x[bad], nan=0.0, posinf=0.0, neginf=0.0)
        return np.einsum("ij,ij->i", x, x).astype(np.float64), x @ self.proj32

    def exact(self, rows: np.ndarray, h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Every verified (stream row, reference row) pair with equal canonical values."""
        lo = np.searchsorted(self.sorted, h, side="left")
        hi = np.searchsorted(self.sorted, h, side="right")
        count = hi - lo
        if not count.any():
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        ia = np.repeat(np.arange(len(h)), count)
        starts = np.repeat(lo, count)
        offset = np.arange(len(ia)) - np.repeat(np.cumsum(count) - count, count)
        ib = self.order[starts + offset]
        ok = self.canon.equal(rows[ia], self.rows[ib])
        return ia[ok], ib[ok]

    def close(self, rows: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(stream row, reference row, relative distance) for pairs within ``threshold`` (exact copies included)."""
        n2, p = self.sketch(rows)
        norm = np.sqrt(n2)
        q = np.hstack([p, (p * p).sum(1, keepdims=True), np.ones((len(p), 1), np.float32)])
        order = np.argsort(norm, kind="stable")
        out_a, out_b, out_d = [], [], []
        t2 = threshold * threshold
        for begin in range(0, len(order), SUB_ROWS):
            sub = order[begin : begin + SUB_ROWS]
            lo, hi = norm[sub[0]] * (1 - threshold), norm[sub[-1]] / max(1 - threshold, 1e-12)
            first = int(np.searchsorted(self.norm, lo * (1 - 1e-6), side="left"))
            last = int(np.searchsorted(self.norm, hi * (1 + 1e-6) + 1e-30, side="right"))
            if first >= last:
                continue
            d2 = q[sub] @ self.aug[first:last].T  # squared projected distances: lower bounds of the true ones
            cut = (t2 + FLOAT32_SLACK) * max(float(norm[sub[-1]]), float(self.norm[last - 1])) ** 2
            hit = np.flatnonzero(d2.min(axis=1) <= cut)  # almost always empty
            if not len(hit):
                continue
            i, j = np.nonzero(d2[hit] <= cut)
            ia, ib = sub[hit[i]], self.by_norm[first + j]
            diff = as_float(rows[ia]) - as_float(self.rows[ib])
            dist2 = np.einsum("ij,ij->i", diff, diff)
            denom = np.maximum(exact_norm2(rows[ia]), exact_norm2(self.rows[ib]))
            keep = (dist2 <= t2 * denom) & (denom > 0)
            out_a.append(ia[keep])
            out_b.append(ib[keep])
            out_d.append(np.sqrt(dist2[keep] / denom[keep]))
        if not out_a:
            return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
        return np.concatenate(out_a), np.concatenate(out_b), np.concatenate(out_d)


def as_float(rows: np.ndarray) -> np.ndarray:
    """float64 for distances; NaN/Inf as 0 so one bad value does not hide a near copy."""
    return np.nan_to_num(rows.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)


def exact_norm2(rows: np.ndarray) -> np.ndarray:
    f = as_float(rows)
    return np.einsum("ij,ij->i", f, f)


def projection(width: int, seed: int = SEED) -> np.ndarray:
    """``width x k`` with orthonormal columns: projecting never lengthens a vector."""
    k = min(PROJ, width)
    q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((width, k)))
    return q


def group_ids(h: np.ndarray, rows: np.ndarray, canon: Canon) -> tuple[np.ndarray, np.ndarray]:
    """(an id per row shared by equal rows, the first row of each id). Rows whose hash repeats
    are verified against the first row of their hash run; a colliding row gets an id of its own."""
    order = np.argsort(h, kind="stable")
    hs = h[order]
    new_run = np.r_[True, hs[1:] != hs[:-1]] if len(hs) else np.zeros(0, bool)
    run_first = order[np.maximum.accumulate(np.where(new_run, np.arange(len(hs)), 0))] if len(hs) else order
    leader = run_first.copy()
    repeated = np.flatnonzero(order != run_first)  # rows that claim to repeat an earlier one
    if len(repeated):
        same = canon.equal(rows[order[repeated]], rows[run_first[repeated]])
        leader[repeated[~same]] = order[repeated[~same]]
    ids = np.empty(len(h), np.int64)
    ids[order] = leader
    firsts, inverse = np.unique(ids, return_inverse=True)
    return inverse, firsts
