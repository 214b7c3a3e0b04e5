"""Row matching for leakage: exact copies by hash + verification, near copies
by a projected pre-filter + exact distance. Streams: the reference splits
(val/test) are held in memory, the other side arrives in blocks of rows.

Exact matching hashes a canonical form of each row (one common dtype for all
splits, -0.0 folded into 0.0, every NaN one payload), one 64-bit integer dot
product of the row's 32-bit words with random odd weights. Every
hash match is verified on the canonical values, so a collision can never be
reported as a copy.

On wide rows the hash may cover only a *key window*: the aligned run of
``WINDOW_WORDS`` words that best separates a sample of the in-memory split.
Equal rows have equal windows, so no copy is missed, and every match is
verified on the full row anyway; reading 128 bytes of a 3 kB row is what
makes the exact search cheaper than one read of the data. When a window turns
out to separate rows badly (many candidates for a block, or many repeated
keys), the rows concerned are re-hashed in full, so the cost degrades to the
full hash, never to a quadratic comparison.

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
BLOCK_ROWS = 512
SUB_ROWS = 256  # stream rows per norm window
SEED = 0x5EED
FLOAT32_SLACK = 1e-4  # relative error of float32 norms, projections and squared distances, generously
WINDOW_WORDS = 32  # 128 bytes: two cache lines per row
WINDOW_SAMPLE = 1024
WINDOW_COLLISIONS = 0.01  # a window is used when it merges at most 1% more sample rows than the full rows do


class WidthMismatch(ValueError):
    """Samples of different sizes met in one comparison (e.g. batches padded to their own length)."""


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

    Hashing makes one canonical copy of each block (``x + 0.0`` folds -0.0;
    rows holding NaN, found by one BLAS row sum, get one NaN payload) and takes
    one 64-bit integer dot product of its 32-bit words with random odd weights.
    """

    def __init__(self, dtype: np.dtype, width: int, seed: int = SEED) -> None:
        self.dtype, self.width = np.dtype(dtype), width
        words = width * self.dtype.itemsize // 4
        self.k = np.random.default_rng(seed).integers(0, 2**63, words, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
        self.window: slice | None = None  # value columns the key hash covers; None: the whole row

    def choose_window(self, sample: np.ndarray) -> None:
        """Hash only the aligned run of values that separates ``sample`` (rows of an in-memory
        split) almost as well as the full rows do; keep full-row hashing when none does."""
        span = WINDOW_WORDS * 4 // self.dtype.itemsize  # values per window
        rows = sample[:WINDOW_SAMPLE].reshape(min(len(sample), WINDOW_SAMPLE), -1)
        if self.width < 4 * span or len(rows) < 64:
            return
        full = len(np.unique(self.hashes(rows)))
        best, best_distinct = None, -1
        for start in range(0, self.width - span + 1, span):
            self.window = slice(start, start + span)
            distinct = len(np.unique(self.hashes(rows)))
            if distinct > best_distinct:
                best, best_distinct = self.window, distinct
        self.window = best if full - best_distinct <= WINDOW_COLLISIONS * len(rows) else None

    def _rows_of(self, X: np.ndarray) -> np.ndarray:
        """One row per sample (a view), of this canon's width."""
        flat = X.reshape(len(X), -1)
        if flat.shape[1] != self.width:
            raise WidthMismatch(f"samples have {flat.shape[1]} values but the first split's have {self.width}")
        return flat

    def flat(self, X: np.ndarray) -> np.ndarray:
        """Rows in the common dtype, contiguous (no copy when they already are)."""
        return np.ascontiguousarray(self._rows_of(X), dtype=self.dtype)

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

    def hashes(self, X: np.ndarray, full: bool = False) -> np.ndarray:
        """64-bit row hashes (of the key window unless ``full``), computed in cache-sized blocks
        (a big block's temporaries would not fit)."""
        flat = self._rows_of(X)
        cols = slice(None) if full or self.window is None else self.window
        if len(flat) <= BLOCK_ROWS:
            return self._block_hashes(flat[:, cols])
        return np.concatenate([self._block_hashes(flat[i : i + BLOCK_ROWS, cols]) for i in range(0, len(flat), BLOCK_ROWS)])

    def _block_hashes(self, flat: np.ndarray) -> np.ndarray:
        flat = np.asarray(flat, dtype=self.dtype)  # a copy only when the dtype differs
        if self.dtype.kind != "f" or not len(flat):
            return self._dots(np.ascontiguousarray(flat))
        canon = flat + self.dtype.type(0.0)  # a contiguous copy of the block: -0.0 + 0.0 == +0.0
        bad = np.flatnonzero(np.isnan(canon @ np.ones(canon.shape[1], self.dtype)))  # rows holding NaN (BLAS)
        if len(bad):
            rows = canon[bad]
            rows[np.isnan(rows)] = np.nan  # one payload
            canon[bad] = rows
        return self._dots(canon)

    def _dots(self, scratch: np.ndarray) -> np.ndarray:
        """One integer dot product of each row's 32-bit words with random odd 64-bit weights,
        mod 2^64. In 64 bits a word's top (sign) bit lands on 33 random bits of the hash, so
        rows that differ only in signs, or in structured low bits, still hash apart."""
        words = scratch.view(np.uint32)
        return words @ self.k[: words.shape[1]]

    def equal(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Row-wise equality of raw rows by their canonical values (NaN equals NaN)."""
        return (self.rows(a).view(np.uint32) == self.rows(b).view(np.uint32)).all(axis=1)


class Reference:
    """An in-memory split that stream blocks are matched against."""

    def __init__(self, canon: Canon, X: np.ndarray, near: bool, seed: int = SEED) -> None:
        self.canon = canon
        self.rows = X.reshape(len(X), -1)  # the caller's array: read, never copied whole or written
        self.hashes = h = canon.hashes(self.rows)  # key hashes (the window's, when the canon has one)
        self.order, self.sorted = sort_hashes(h)
        self._full: tuple[np.ndarray, np.ndarray] | None = None  # (order, sorted) of full-row hashes, on demand
        self.near = near
        if near:
            self.proj = projection(canon.width, seed)
            self.sketch_dtype = np.float32 if canon.dtype == np.float32 else np.float64
            norm2, proj = [], []
            for begin in range(0, len(self.rows), BLOCK_ROWS):
                n2_block, p_block = self.sketch(self.rows[begin : begin + BLOCK_ROWS])
                norm2.append(n2_block)
                proj.append(p_block)
            n2 = np.concatenate(norm2) if norm2 else np.zeros(0)
            p = np.concatenate(proj) if proj else np.zeros((0, self.proj.shape[1]), self.sketch_dtype)
            # sorted by norm: a near copy has a norm within a factor (1 - t) of its original's,
            # so each block of stream rows only meets a window of reference rows
            self.by_norm = np.argsort(n2, kind="stable")
            self.norm = np.sqrt(n2[self.by_norm])
            p = p[self.by_norm]
            # augmented so one product gives squared projected distances: |p|^2 - 2 p.q + |q|^2
            self.aug = np.hstack([-2 * p, np.ones((len(p), 1), p.dtype), (p * p).sum(1, keepdims=True)])

    def sketch(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Squared norms and projections in float32 (BLAS, no float64 copy of the block); the
        pre-filter's slack covers their rounding, candidates are verified in float64."""
        dt = np.float32 if self.canon.dtype == np.float32 else np.float64  # wide data: no float32 overflow
        x = np.ascontiguousarray(rows, dtype=dt)
        bad = np.flatnonzero(~np.isfinite(x @ np.ones(x.shape[1], dt))) if len(x) else []
        if len(bad):
            x = x.copy()
            x[bad] = np.nan_to_num(x[bad], nan=0.0, posinf=0.0, neginf=0.0)
        return np.einsum("ij,ij->i", x, x).astype(np.float64), (x @ self.proj.astype(dt)).astype(self.sketch_dtype)

    def exact(self, rows: np.ndarray, h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Every verified (stream row, reference row) pair with equal canonical values; ``h`` are
        the rows' key hashes. A block whose keys meet too many candidates (a window that does not
        separate this data) is matched again on full-row hashes."""
        ia, ib = candidates(self.order, self.sorted, h)
        if self.canon.window is not None and len(ia) > 4 * len(h) + 64:
            if self._full is None:
                self._full = sort_hashes(self.canon.hashes(self.rows, full=True))
            ia, ib = candidates(*self._full, self.canon.hashes(rows, full=True))
        if not len(ia):
            return ia, ib
        ok = self.canon.equal(rows[ia], self.rows[ib])
        return ia[ok], ib[ok]

    def close(self, rows: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(stream row, reference row, relative distance) for pairs within ``threshold`` (exact copies included)."""
        n2, p = self.sketch(rows)
        norm = np.sqrt(n2)
        q = np.hstack([p, (p * p).sum(1, keepdims=True), np.ones((len(p), 1), p.dtype)])
        order = np.argsort(norm, kind="stable")
        out_a, out_b, out_d = [], [], []
        t2 = threshold * threshold
        for begin in range(0, len(order), SUB_ROWS):
            sub = order[begin : begin + SUB_ROWS]
            lo, hi = norm[sub[0]] * (1 - threshold), norm[sub[-1]] / max(1 - threshold, 1e-12)
            first = int(np.searchsorted(self.norm, lo * (1 - FLOAT32_SLACK), side="left"))
            last = int(np.searchsorted(self.norm, hi * (1 + FLOAT32_SLACK) + 1e-30, side="right"))
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


def sort_hashes(h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(h, kind="stable")
    return order, h[order]


def candidates(order: np.ndarray, sorted_h: np.ndarray, h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(index into h, index into the sorted table's split) for every equal hash."""
    none = np.zeros(0, np.int64), np.zeros(0, np.int64)
    if not len(sorted_h) or not len(h):
        return none
    lo = np.searchsorted(sorted_h, h, side="left")
    hit = np.flatnonzero(sorted_h[np.minimum(lo, len(sorted_h) - 1)] == h)
    if not len(hit):
        return none
    lo = lo[hit]
    count = np.searchsorted(sorted_h, h[hit], side="right") - lo
    ia = np.repeat(hit, count)
    offset = np.arange(len(ia)) - np.repeat(np.cumsum(count) - count, count)
    return ia, order[np.repeat(lo, count) + offset]


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
    """(an id per row shared by equal rows, the first row of each id). Only rows whose hash
    repeats are compared, exactly, by their canonical bytes, so a collision never merges
    different rows and never splits equal ones."""
    n = len(h)
    leader = np.arange(n)
    _, inverse, counts = np.unique(h, return_inverse=True, return_counts=True)
    suspects = np.flatnonzero(counts[inverse.reshape(-1)] > 1) if n else np.zeros(0, np.int64)
    if canon.window is not None and len(suspects) > n // 20 + 64:  # the key window separates badly here
        _, inv, cnt = np.unique(canon.hashes(rows[suspects], full=True), return_inverse=True, return_counts=True)
        suspects = suspects[cnt[inv.reshape(-1)] > 1]
    if len(suspects):
        c = np.ascontiguousarray(canon.rows(rows[suspects]))
        keys = c.view(np.dtype((np.void, c.dtype.itemsize * c.shape[1])))[:, 0]
        _, groups = np.unique(keys, return_inverse=True)
        groups = groups.reshape(-1)
        first = np.full(groups.max() + 1, n, dtype=np.int64)
        np.minimum.at(first, groups, suspects)
        leader[suspects] = first[groups]
    firsts, ids = np.unique(leader, return_inverse=True)
    return ids.reshape(-1), firsts
