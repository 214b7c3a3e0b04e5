"""Row matching for leakage: exact copies by hash + verification, near copies
by a projected pre-filter + exact distance. Streams: the reference splits
(val/test) are held in memory, the other side arrives in blocks of rows.

Rows are read in any memory layout (C, Fortran, strided views, N-D arrays
whose axes do not merge): a split is never copied whole, only blocks of it
(``as_rows``).

Exact copies are equal *values*, not equal bits: NaN equals NaN, -0.0 equals
0.0, the int 1 equals the float 1.0, and uint64 2**64-1 is not int64 -1.
Exact matching hashes a canonical form of each row, one 64-bit integer dot
product of its 32-bit words with random odd weights. The canonical form is
one dtype that holds every split's values exactly (int64, uint64, float32 or
float64: -0.0 folded into 0.0, every NaN one payload); when no such dtype
exists (uint64 beside signed ints, 64-bit ints beside floats) it is the
*wide* form, each value as its float64 rounding plus an int64 residual (the
integer minus that rounding), which holds every value exactly. A stream block
of a dtype the canonical form does not hold (a generator whose later block is
float64 after a float32 first block) is converted row by row: a row whose
values survive the round trip is hashed like any other, a row whose values do
not can equal no reference row (every reference row is held) and is hashed in
the wide form, apart. Every hash match is verified on the values, so a
collision can never be reported as a copy.

On wide rows the hash may cover only a *key window*: the aligned run of
``WINDOW_WORDS`` words that best separates a sample of the in-memory split.
Equal rows have equal windows, so no copy is missed, and every match is
verified on the full row anyway; reading 128 bytes of a 3 kB row is what
makes the exact search cheaper than one read of the data. When a window turns
out to separate rows badly (many candidates for a block, or many repeated
keys), the rows concerned are re-hashed in full, so the cost degrades to the
full hash, never to a quadratic comparison.

Near copies are judged on features standardised with *train* statistics
(``Scale``): d(a, b) = sqrt(mean_j ((a_j - b_j) / s_j)^2), the RMS difference
in train standard deviations per feature, and a pair is a near copy when
d <= t (``NEAR_THRESHOLD``). A shared offset (a year column) cancels, and
copies near the origin are found at any magnitude. Rows are mapped to
z = (x - mean) / (s sqrt(D)), so that d(a, b) = ||z_a - z_b||, and projected onto
``PROJ`` orthonormal directions (the first along the widest spread of the
standardised train sample, its first principal component; the others random);
a projection never lengthens a vector, so ||P(z_a - z_b)|| <= d(a, b). Rows are
sorted by a key that moves by at most d(a, b) too, the norm ||z|| or the first
projected coordinate, whichever spreads the reference more, so each block of
stream rows meets only a window of reference rows. The pre-filter (one BLAS
product per block, distances folded into it, a generous bound on float32
rounding added to the window and the cut) drops no true pair. Candidates are
verified in float64 on the full rows.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

NEAR_THRESHOLD = 0.01  # measured: nearest distinct train/val rows of digits and breast_cancer >= 0.18; 1e-3-std noise copies ~1e-3
PROJ = 16
BLOCK_ROWS = 512
COLUMN_ROWS = 1 << 16  # rows a Fortran-order block is hashed in at a time (Canon._column_dots)
BLOCK_BYTES = 1 << 20  # hashing reads key windows in blocks of about this many bytes (narrow keys: more rows per block)
SUB_ROWS = 256  # stream rows per norm window
WINDOW_CAP = 8192  # reference rows a grouped window may span before its run of stream rows is cut
SEED = 0x5EED
WINDOW_WORDS = 32  # 128 bytes: two cache lines per row
WINDOW_SAMPLE = 1024
WINDOW_COLLISIONS = 0.01  # a window is used when it merges at most 1% more sample rows than the full rows do
STATS_ROWS = 2048  # train rows the statistics are taken from ...
STATS_BYTES = 32 << 20  # ... at most this much as float64 (wide rows: fewer rows)
DIRECTION_ROWS = 1024  # rows of that sample the widest direction is found on
# Sketch rounding, generously: relative error of z, its norm and projections (PROJ_ERR, at 1024
# features; it grows as the square root of the width) and of the squared projected distance folded
# into one product (DOT_ERR), as fractions of the larger norm. float32 worst cases at 784 features:
# 784 * 2**-24 = 4.7e-5 for a sum, 18 * 4 * 2**-24 = 4.3e-6 for the folded product.
PROJ_ERR = {np.dtype(np.float32): 1e-4, np.dtype(np.float64): 1e-12}
DOT_ERR = {np.dtype(np.float32): 1e-5, np.dtype(np.float64): 1e-14}
# |z| beyond this is clipped (a contraction: it never lengthens a difference) so squares cannot overflow
CLIP = {np.dtype(np.float32): 1e15, np.dtype(np.float64): 1e150}
TINY_STD = 1e-300  # standard deviations are at least this, so 1 / std stays finite

# The wide canonical form: a value's float64 rounding and the int64 residual (value - rounding).
WIDE = np.dtype([("value", "<f8"), ("residual", "<i8")])


def near_words(threshold: float) -> str:
    """The near-copy rule as a message states it."""
    return f"RMS difference <= {threshold:g} train standard deviations per feature"


NEAR_DEFINITION = ("RMS difference = sqrt(mean over features of ((a - b) / train std)^2); a feature constant "
                   "in train is measured in the median train std of the others")


class WidthMismatch(ValueError):
    """Samples of different sizes met in one comparison (e.g. batches padded to their own length)."""


# --- rows in any layout -------------------------------------------------------------------------


class Rows:
    """One row per sample of an N-D array whose trailing axes cannot be merged without a copy
    (a strided 3-D view): indexing copies only the rows asked for."""

    ndim = 2

    def __init__(self, X: np.ndarray) -> None:
        self.X = X
        self.dtype = X.dtype
        self.shape = (len(X), int(np.prod(X.shape[1:], dtype=np.int64)))

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index: Any) -> np.ndarray:
        part = self.X[index]
        return part.reshape(len(part), self.shape[1])


def as_rows(X: np.ndarray) -> np.ndarray | Rows:
    """``X`` as one row per sample: a 2-D view when the trailing axes merge (C order, Fortran
    order 2-D, strided 2-D views, most slices), else ``Rows`` (block-wise copies, never a copy
    of the whole split)."""
    X = np.asarray(X)
    if X.ndim == 2:
        return X
    dims = [(n, s) for n, s in zip(X.shape[1:], X.strides[1:]) if n != 1]
    if X.ndim < 2 or all(dims[i][1] == dims[i + 1][1] * dims[i + 1][0] for i in range(len(dims) - 1)):
        return X.reshape(len(X), width_of(X))  # a view
    return Rows(X)


def width_of(X: np.ndarray) -> int:
    return int(np.prod(np.shape(X)[1:], dtype=np.int64))


def sample_rows(X: np.ndarray, seed: int = SEED) -> np.ndarray:
    """A seeded sample of rows of an in-memory split, for its statistics (sorted, a copy)."""
    rows = as_rows(X)
    n, k = len(rows), stats_rows(rows.shape[1])
    if n <= k:
        return rows[:]
    return rows[np.sort(np.random.default_rng(seed).choice(n, k, replace=False))]


def stats_rows(width: int) -> int:
    return max(2, min(STATS_ROWS, STATS_BYTES // (8 * max(width, 1))))


# --- canonical values -----------------------------------------------------------------------------


def holds(canonical: np.dtype, d: np.dtype) -> bool:
    """Whether every value of dtype ``d`` is a value of the canonical dtype (so it converts exactly)."""
    c, d = np.dtype(canonical), np.dtype(d)
    if d == c or d.kind == "b" or d.kind not in "iuf" or d.itemsize > 8:  # other kinds: cast as numpy does (lossy)
        return True
    if c == WIDE:
        return True
    if c.kind == "f":
        if d.kind == "f":
            return d.itemsize <= c.itemsize
        return d.itemsize <= {4: 2, 8: 4}.get(c.itemsize, 0)  # float32 holds 16-bit ints, float64 32-bit ints
    if c.kind == "i":
        return d.kind == "i" or (d.kind == "u" and d.itemsize < 8)
    return c.kind == "u" and d.kind == "u"


def common_dtype(dtypes: Iterable[np.dtype]) -> np.dtype:
    """The narrowest canonical dtype that holds every split's values exactly: int64 for ids, uint64
    for unsigned ids, float32 when every split is float32 (or narrower), float64 when any split needs
    it; ``WIDE`` when none holds them all (uint64 beside signed ints, 64-bit ints beside floats)."""
    dts = [np.dtype(d) for d in dtypes] or [np.dtype(np.float64)]
    if any(d.kind not in "biuf" or d.itemsize > 8 for d in dts):
        return np.dtype(np.float64)  # complex, long double: compared as float64, as numpy casts them
    for c in (np.int64, np.uint64, np.float32, np.float64):
        if all(holds(c, d) for d in dts):
            return np.dtype(c)
    return WIDE


def residual(x: np.ndarray, v: np.ndarray) -> np.ndarray:
    """x - v exactly, as int64, for 64-bit integers ``x`` and their float64 roundings ``v``
    (|x - v| <= 1024), without overflow at the ends of the range."""
    if x.dtype.kind == "u":
        vi = np.where(v >= 2.0**64, 0.0, v).astype(np.uint64)
        return (x - vi).view(np.int64)  # modulo 2**64: the small signed difference
    big = v >= 2.0**63  # rounded up past the int64 range
    r = x - np.where(big, 0.0, v).astype(np.int64)
    if big.any():
        r[big] = (x[big] - np.int64(2**62)) - np.int64(2**62)
    return r


def _big_ints(d: np.dtype) -> bool:
    return d.kind in "iu" and d.itemsize == 8


def _one_nan(rows: np.ndarray) -> None:
    """Every NaN one payload, in place; rows holding NaN are found by one BLAS row sum."""
    if not rows.size:
        return
    with np.errstate(invalid="ignore", over="ignore"):  # inf - inf flags a row too: it is only a suspect
        bad = np.flatnonzero(np.isnan(rows @ np.ones(rows.shape[1], rows.dtype)))
    if len(bad):
        part = rows[bad]
        part[np.isnan(part)] = np.nan
        rows[bad] = part


def wide_form(flat: np.ndarray) -> np.ndarray:
    """(n, 2 * width) int64: each value's float64 rounding (-0.0 as 0.0, one NaN payload) and its
    int64 residual. Equal exactly when the values are, whatever the dtypes."""
    v = np.array(flat, dtype=np.float64, order="C")
    r = residual(np.asarray(flat), v) if _big_ints(flat.dtype) else np.zeros(v.shape, np.int64)
    v += 0.0  # -0.0 + 0.0 == +0.0
    _one_nan(v)
    return np.concatenate([v.view(np.int64), r], axis=1)


def _narrow(flat: np.ndarray, c: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    """(``flat`` in the canonical dtype ``c`` that does not hold its dtype, per row: whether every
    value survived the conversion exactly)."""
    d = flat.dtype
    with np.errstate(invalid="ignore", over="ignore"):
        if c.kind == "f":
            v = np.array(flat, dtype=np.float64)
            exact = residual(flat, v) == 0 if _big_ints(d) else np.ones(v.shape, bool)
            out = np.array(v, dtype=c, order="C")
            exact &= (out == v) | np.isnan(v)
            out += 0.0
            _one_nan(out)
        elif d.kind == "f":  # floats into int64 / uint64: integral and in range
            lo, hi = (-(2.0**63), 2.0**63) if c.kind == "i" else (0.0, 2.0**64)
            exact = np.isfinite(flat) & (np.floor(flat) == flat) & (flat >= lo) & (flat < hi)
            out = np.ascontiguousarray(np.where(exact, flat, 0), dtype=c)
        else:  # int64 <-> uint64
            exact = (flat >= 0) if c.kind == "u" else (flat <= np.iinfo(np.int64).max)
            out = np.ascontiguousarray(flat.astype(c))
    return out, exact.all(axis=1)


class Canon:
    """The canonical row form and the row hash shared by every split of one check.

    Hashing makes one canonical copy of each block (``x + 0.0`` folds -0.0;
    rows holding NaN, found by one BLAS row sum, get one NaN payload) and takes
    one 64-bit integer dot product of its 32-bit words with random odd weights.
    """

    def __init__(self, dtype: np.dtype, width: int, seed: int = SEED) -> None:
        self.dtype, self.width = np.dtype(dtype), width
        self.wide = self.dtype == WIDE
        words = width * self.dtype.itemsize // 4
        self.k = np.random.default_rng(seed).integers(0, 2**63, words, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
        self.seed = seed
        self._k_wide: np.ndarray | None = None  # weights of the wide form, for rows the canonical dtype does not hold
        self.window: slice | None = None  # value columns the key hash covers; None: the whole row

    def choose_window(self, sample: np.ndarray) -> None:
        """Hash only the aligned run of values that separates ``sample`` (rows of an in-memory
        split) almost as well as the full rows do; keep full-row hashing when none does."""
        span = WINDOW_WORDS * 4 // self.dtype.itemsize  # values per window
        rows = as_rows(sample)[:WINDOW_SAMPLE]
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

    def _rows_of(self, X: np.ndarray | Rows) -> np.ndarray | Rows:
        """One row per sample (a view, or block-wise ``Rows``), of this canon's width."""
        flat = X if isinstance(X, Rows) else as_rows(X)
        if flat.shape[1] != self.width:
            raise WidthMismatch(f"samples have {flat.shape[1]} values but the first split's have {self.width}")
        return flat

    def canonical(self, flat: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """(a C-contiguous canonical form of the 2-D block, None or per row: whether the canonical
        dtype holds its values). Equal canonical bytes <=> equal values, for rows that are held."""
        d = flat.dtype
        if self.wide:
            return wide_form(flat), None
        if not holds(self.dtype, d):
            return _narrow(flat, self.dtype)
        if self.dtype.kind != "f":
            return np.ascontiguousarray(flat, dtype=self.dtype), None
        if d.kind not in "biuf":
            flat = np.asarray(flat, dtype=self.dtype)
        out = np.add(flat, self.dtype.type(0.0), dtype=self.dtype, order="C")  # a copy: -0.0 + 0.0 == +0.0
        _one_nan(out)
        return out, None

    def rows(self, X: np.ndarray) -> np.ndarray:
        """A canonical copy: -0.0 -> 0.0 and one NaN payload, so equal values give equal bits
        (the wide form for rows the canonical dtype does not hold)."""
        return self.keys(self._rows_of(X)[:])

    def keys(self, rows: np.ndarray) -> np.ndarray:
        """Rows as canonical bytes, equal exactly when the values are: the canonical form, or the
        wide form for all of them when some row's values are not held by the canonical dtype."""
        out, held = self.canonical(rows)
        if held is not None and not held.all():
            return wide_form(rows)
        return out.copy() if np.may_share_memory(out, rows) else out

    def hashes(self, X: np.ndarray | Rows, full: bool = False) -> np.ndarray:
        """64-bit row hashes (of the key window unless ``full``), computed in cache-sized blocks
        (a big block's temporaries would not fit)."""
        flat = self._rows_of(X)
        cols = slice(None) if full or self.window is None else self.window
        if self._by_columns(flat):  # no row-major copy: column by column
            return self._column_dots(flat[:, cols], self.k)[0]
        width = self.width if cols.start is None else cols.stop - cols.start
        step = max(BLOCK_ROWS, BLOCK_BYTES // max(1, width * self.dtype.itemsize))
        if len(flat) <= step:
            return self._block_hashes(flat[:][:, cols])
        return np.concatenate([self._block_hashes(flat[i : i + step][:, cols]) for i in range(0, len(flat), step)])

    def _block_hashes(self, flat: np.ndarray) -> np.ndarray:
        if not len(flat):
            return np.zeros(0, np.uint64)
        canon, held = self.canonical(flat)
        h = self._dots(canon, self.k)
        if held is not None and not held.all():  # values no reference row holds: hashed apart, in the wide form
            if self._k_wide is None:
                rng = np.random.default_rng(self.seed ^ 0xA5A5)
                self._k_wide = rng.integers(0, 2**63, 4 * self.width, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
            h[~held] = self._dots(wide_form(flat[~held]), self._k_wide)
        return h

    def _by_columns(self, flat: np.ndarray | Rows) -> bool:
        """Whether ``flat`` is a float block of the canonical dtype whose columns are each contiguous
        (Fortran order), which ``_column_dots`` hashes without a row-major copy."""
        return (isinstance(flat, np.ndarray) and flat.dtype == self.dtype and self.dtype in (np.float32, np.float64)
                and flat.ndim == 2 and flat.shape[1] > 1 and flat.strides[0] == flat.itemsize)

    def hashes_and_checks(self, X: np.ndarray | Rows, check: "Canon") -> tuple[np.ndarray, np.ndarray]:
        """(``hashes(X, full=True)``, ``check.hashes(X, full=True)``) for ``check``, a canon of the same
        dtype and width with other weights: one pass over the canonical columns of a Fortran-order block."""
        flat = self._rows_of(X)
        if self._by_columns(flat) and check.dtype == self.dtype:
            h, h2 = self._column_dots(flat, self.k, check.k)
            return h, h2
        return self.hashes(flat, full=True), check.hashes(flat, full=True)

    def _column_dots(self, flat: np.ndarray, *weights: np.ndarray) -> list[np.ndarray]:
        """``_dots`` of the canonical form of a Fortran-order float block (a DataFrame's ``to_numpy()``,
        a table's value codes) with each of ``weights``, summed column by column: each column is
        contiguous there, and the row-major copy the canonical form needs costs more than the hashing
        (2.3 vs 5.2 ms for 65,536 x 20 float64). The same hashes, bit for bit. ``COLUMN_ROWS`` rows at a
        time, so the temporaries stay a few MB however long the block."""
        out = [np.zeros(len(flat), np.uint64) for _ in weights]
        for start in range(0, len(flat), COLUMN_ROWS):
            part = [h[start: start + COLUMN_ROWS] for h in out]  # views: summed in place
            self._add_column_dots(flat[start: start + COLUMN_ROWS], weights, part)
        return out

    def _add_column_dots(self, flat: np.ndarray, weights: tuple[np.ndarray, ...], out: list[np.ndarray]) -> None:
        """Each column's canonical words times its weights, added into ``out`` (one hash per weights)."""
        words = self.dtype.itemsize // 4
        for j in range(flat.shape[1]):
            v = np.add(flat[:, j], self.dtype.type(0.0))  # a copy: -0.0 + 0.0 == +0.0
            nan = np.isnan(v)
            if nan.any():
                v[nan] = np.nan  # one payload, as _one_nan gives
            if words == 1:
                w = v.view(np.uint32).astype(np.uint64)
                for h, k in zip(out, weights):
                    h += w * k[j]
                continue
            w = v.view(np.uint64)  # little-endian: the value's first 32-bit word is the low half
            lo, hi = w & np.uint64(0xFFFFFFFF), w >> np.uint64(32)
            for h, k in zip(out, weights):
                h += lo * k[2 * j]
                h += hi * k[2 * j + 1]

    @staticmethod
    def _dots(scratch: np.ndarray, k: np.ndarray) -> np.ndarray:
        """One integer dot product of each row's 32-bit words with random odd 64-bit weights,
        mod 2^64. In 64 bits a word's top (sign) bit lands on 33 random bits of the hash, so
        rows that differ only in signs, or in structured low bits, still hash apart."""
        words = scratch.view(np.uint32)
        return words @ k[: words.shape[1]]

    def equal(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Row-wise equality of raw rows by their values (NaN equals NaN, -0.0 equals 0.0)."""
        ca, ha = self.canonical(a)
        cb, hb = self.canonical(b)
        same = (ca.view(np.uint32) == cb.view(np.uint32)).all(axis=1)
        for held in (ha, hb):
            if held is not None:
                same &= held
        return same


# --- train statistics and the near-copy distance ----------------------------------------------------


def _float_values(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """(the rows in float64, the int64 residuals of 64-bit ints or None)."""
    v = np.array(rows, dtype=np.float64)
    return v, residual(np.asarray(rows), v) if _big_ints(rows.dtype) else None


def sketch_dtype(canonical: np.dtype) -> np.dtype:
    """float32 sketches for float32 data (BLAS in float32, no float64 copy), float64 otherwise."""
    return np.dtype(np.float32 if np.dtype(canonical) == np.float32 else np.float64)


def _column_stats(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(half the mean, half the std, the largest |value|, the count of finite values) of each column,
    from half-deviations from one of its values, scaled by the largest: nothing overflows or
    underflows, and a large shared offset costs no precision."""
    n, w = rows.shape
    v, r = _float_values(rows)
    if r is None and n:  # ordinary data (finite, |values| in 1e-100..1e100 or all 0): the plain two-pass statistics
        magnitude = np.abs(v).max(axis=0)
        if np.isfinite(magnitude).all() and ((magnitude == 0) | ((magnitude >= 1e-100) & (magnitude <= 1e100))).all():
            mean = v.mean(axis=0)
            v -= mean
            return mean * 0.5, np.sqrt(np.einsum("ij,ij->j", v, v) / n) * 0.5, magnitude, np.full(w, n, np.int64)
    finite = np.isfinite(v)
    count = finite.sum(axis=0)
    c = v[finite.argmax(axis=0), np.arange(w)] if n else np.zeros(w)  # a value of each column (not NaN)
    c = np.where(count > 0, c, 0.0)
    half = v * 0.5 - c * 0.5
    if r is not None:
        half += r * 0.5
    half = np.where(finite, half, 0.0)
    top = np.abs(half).max(axis=0, initial=0.0)
    y = half / np.where(top > 0, top, 1.0)
    mean_y = y.sum(axis=0) / np.maximum(count, 1)
    var_y = (np.where(finite, y - mean_y, 0.0) ** 2).sum(axis=0) / np.maximum(count, 1)
    magnitude = np.abs(np.where(finite, v, 0.0)).max(axis=0, initial=0.0)
    return c * 0.5 + top * mean_y, top * np.sqrt(var_y), magnitude, count


class Scale:
    """Train statistics of each feature j: centre mu_j and unit s_j (its train standard deviation).

    The near-copy distance is d(a, b) = sqrt(mean_j ((a_j - b_j) / s_j)^2). A feature constant
    in the train sample (or varying only at the rounding level of its dtype) has no unit of its
    own and takes the median s of the features that vary; when none varies (a train of fewer than
    two rows, or of constant rows) every feature takes the largest train |value|, or 1 when train is
    all zeros (or empty). NaN/Inf values count as the train mean of their feature.

    Robust at any magnitude: statistics are taken on half-deviations from a train value, scaled by
    their column's largest one, so nothing overflows or underflows between 1e-300 and 1e308.
    """

    def __init__(self, sample: np.ndarray, canonical: np.dtype | type = np.float64) -> None:
        rows = sample if isinstance(sample, np.ndarray) and sample.ndim == 2 else as_rows(sample)[:]
        n, w = rows.shape
        self.width = w
        self.mid, half_std, magnitude, count = np.zeros(w), np.zeros(w), np.zeros(w), np.zeros(w, np.int64)
        step = max(16, (1 << 18) // max(n, 1))  # columns at a time: float64 temporaries of about 2 MB
        for lo in range(0, w, step):
            cols = slice(lo, lo + step)
            self.mid[cols], half_std[cols], magnitude[cols], count[cols] = _column_stats(rows[:, cols])
        eps = np.finfo(rows.dtype).eps if rows.dtype.kind == "f" else 0.0
        varies = (count >= 2) & (half_std > 0) & (half_std > eps * magnitude)  # std above 2 ulps: not rounding noise
        if varies.any():
            unit = float(np.median(half_std[varies]))
        else:
            unit = float(magnitude.max(initial=0.0)) * 0.5 or 0.5
        self.half_std = np.maximum(np.where(varies, half_std, unit), TINY_STD)
        root = np.sqrt(max(w, 1))
        self.sketch_dtype = sketch_dtype(canonical)
        with np.errstate(over="ignore", invalid="ignore"):
            if self.sketch_dtype == np.float32 and np.isfinite(self.mid * 2.0).all():
                # float32 sketches centre on a float32 value, and so must every other use of the mean
                # (rows redone carefully, NaN imputed): one centre, or rows would shift apart
                self.mid = (self.mid * 2.0).astype(np.float32).astype(np.float64) * 0.5
            self.center = self.mid * 2.0
            self.inv = 0.5 / self.half_std / root  # z = (x - mean) * inv
            self.fast64 = bool(np.isfinite(self.center).all() and (self.inv > 1e-290).all())
            self.center32, self.inv32 = self.center.astype(np.float32), self.inv.astype(np.float32)
        self.fast32 = bool(np.isfinite(self.center32).all() and np.isfinite(self.inv32).all() and (self.inv32 > 1e-30).all())
        self.root = root
        self.direction = self._widest(rows[:DIRECTION_ROWS])

    def _widest(self, rows: np.ndarray) -> np.ndarray:
        """The direction along which the standardised sample spreads most (its first principal
        component, by power iteration): the coordinate the near search sorts on."""
        v = np.random.default_rng(SEED).standard_normal(self.width)
        if len(rows) < 2 or not self.width:
            return v / max(float(np.linalg.norm(v)), 1e-300)
        z = self.z(rows, self.sketch_dtype)[0]
        for _ in range(8):
            u = z.T @ (z @ v.astype(z.dtype))
            size = float(np.linalg.norm(u))
            if not np.isfinite(size) or size == 0:
                break
            v = u.astype(np.float64) / size
        return v / max(float(np.linalg.norm(v)), 1e-300)

    @property
    def std(self) -> np.ndarray:
        """The unit of each feature (its train standard deviation, or the fallback)."""
        with np.errstate(over="ignore"):
            return self.half_std * 2.0

    def z(self, block: np.ndarray, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
        """(z = (x - mean) / (s sqrt(D)) of a 2-D block in ``dtype``, C-contiguous; its squared
        norms). Rows that overflow, hold NaN/Inf or lie beyond ``CLIP`` are redone in float64
        carefully (NaN/Inf as the mean) and clipped."""
        dtype = np.dtype(dtype)
        d = block.dtype
        with np.errstate(over="ignore", invalid="ignore"):
            if dtype == np.float32 and self.fast32 and holds(np.float32, d) and d.kind in "biuf":
                z = np.subtract(block, self.center32, dtype=np.float32, order="C")
                z *= self.inv32
            elif self.fast64 and d.kind in "biuf" and not _big_ints(d):
                z = np.subtract(block, self.center, dtype=np.float64, order="C")
                z *= self.inv
                if dtype != np.float64:
                    z = z.astype(dtype)
            else:
                z = self._careful(block, dtype)
            n2 = np.einsum("ij,ij->i", z, z).astype(np.float64)
        bad = np.flatnonzero(~(n2 <= 0.25 * CLIP[dtype] ** 2))  # NaN, Inf, or some |z_j| near the clip
        if len(bad):
            z[bad] = self._careful(block[bad], dtype)
            n2[bad] = np.einsum("ij,ij->i", z[bad], z[bad])
        return z, n2

    def _careful(self, rows: np.ndarray, dtype: np.dtype) -> np.ndarray:
        v, r = _float_values(rows)
        finite = np.isfinite(v)
        with np.errstate(over="ignore", invalid="ignore"):
            half = v * 0.5 - self.mid
            if r is not None:
                half += r * 0.5
            z = half / self.half_std / self.root
        z = np.where(finite, z, 0.0)
        np.clip(z, -CLIP[np.dtype(dtype)], CLIP[np.dtype(dtype)], out=z)
        return np.ascontiguousarray(z, dtype=dtype)

    def distance(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """d(a, b) row by row, in float64 from the values (64-bit ints with their residuals): the
        difference is taken before scaling, so large shared offsets cancel exactly."""
        va, ra = _float_values(a)
        vb, rb = _float_values(b)
        with np.errstate(over="ignore", invalid="ignore"):
            ha = np.where(np.isfinite(va), va * 0.5, self.mid)
            hb = np.where(np.isfinite(vb), vb * 0.5, self.mid)
            half = ha - hb
            if ra is not None or rb is not None:
                half += ((ra if ra is not None else 0) - (rb if rb is not None else 0)) * 0.5
            z = half / self.half_std
            d2 = np.einsum("ij,ij->i", z, z) / max(self.width, 1)
        return np.sqrt(d2)


# --- references -------------------------------------------------------------------------------------


class Reference:
    """An in-memory split that stream blocks are matched against; near copies are searched when
    a ``Scale`` (the train statistics) is given."""

    def __init__(self, canon: Canon, X: np.ndarray, scale: Scale | None = None, seed: int = SEED,
                 groups: np.ndarray | None = None) -> None:
        """``groups`` (a hash per row, e.g. of a table's non-numeric columns): near copies are then
        searched only among rows of equal group, each row's window confined to its group."""
        self.canon = canon
        self.rows = canon._rows_of(X)  # the caller's array: read, never copied whole or written
        self.hashes = h = canon.hashes(self.rows)  # key hashes (the window's, when the canon has one)
        self.order, self.sorted = sort_hashes(h)
        # a bitmap of the hashes' top bits (about 1 set bit in 64), 8 to a byte: most stream rows leave at one
        # lookup (1M val rows: 1.5% of stream rows go on to the binary search; a byte per bit let 6% through)
        nbits = min(max(int(len(h)).bit_length() + 6, 12), 27)  # at most 2**27 bits: 16 MB
        self._shift = np.uint64(64 - nbits)
        top = h >> self._shift
        self._bits = np.zeros(1 << (nbits - 3), np.uint8)
        np.bitwise_or.at(self._bits, (top >> np.uint64(3)).astype(np.intp), np.left_shift(1, top & np.uint64(7)).astype(np.uint8))
        self._full: tuple[np.ndarray, np.ndarray] | None = None  # (order, sorted) of full-row hashes, on demand
        self.scale = scale
        if scale is not None:
            self.sketch_dtype = scale.sketch_dtype
            self.proj = projection(canon.width, seed, scale.direction).astype(self.sketch_dtype)
            n2, p = self.sketch(self.rows)
            # sorted by a key within t of a near copy's key: its norm (| |a| - |b| | <= |a - b|) or its
            # coordinate along the train's widest direction (| a.v - b.v | <= |a - b|), whichever spreads more
            norm = np.sqrt(n2)
            self.by_coordinate = bool(len(p) and p.shape[1] and _spread(p[:, 0]) >= _spread(norm))
            key = p[:, 0].astype(np.float64) if self.by_coordinate else norm
            self.group_values: np.ndarray | None = None
            if groups is not None:  # sorted by group, then key: key + rank * span keeps each group apart
                self.group_values, rank = np.unique(groups, return_inverse=True)
                self.key_min = float(key.min(initial=0.0))
                self.span = float(key.max(initial=0.0)) - self.key_min + 2.0  # windows of reach < 1 stay in their group
                self.rank = rank.reshape(-1)
                key = self._grouped(key, self.rank)
            self.by_key = np.argsort(key, kind="stable")
            self.key = key[self.by_key]
            p = p[self.by_key]
            # augmented so one product gives squared projected distances: |p|^2 - 2 p.q + |q|^2
            self.aug = np.hstack([-2 * p, np.ones((len(p), 1), p.dtype), (p * p).sum(1, keepdims=True)])

    def sketch(self, rows: np.ndarray | Rows) -> tuple[np.ndarray, np.ndarray]:
        """Squared norms of the standardised rows and their projections, block by block in the
        sketch dtype (float32 for float32 data: BLAS, no float64 copy); the pre-filter's slack
        covers the rounding, candidates are verified in float64."""
        assert self.scale is not None
        n = len(rows)
        n2, p = np.empty(n), np.empty((n, self.proj.shape[1]), self.sketch_dtype)
        for begin in range(0, n, BLOCK_ROWS):
            z, n2[begin : begin + BLOCK_ROWS] = self.scale.z(rows[begin : begin + BLOCK_ROWS], self.sketch_dtype)
            p[begin : begin + BLOCK_ROWS] = z @ self.proj
        return n2, p

    def _has(self, h: np.ndarray) -> np.ndarray:
        """Per hash, whether its top bits are set in the bitmap (a superset of the hashes the split holds)."""
        top = h >> self._shift
        return (self._bits[(top >> np.uint64(3)).astype(np.intp)] >> (top & np.uint64(7)).astype(np.uint8)) & np.uint8(1)

    def exact(self, rows: np.ndarray | Rows, h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Every verified (stream row, reference row) pair with equal values; ``h`` are the rows'
        key hashes. A block whose keys meet too many candidates (a window that does not separate
        this data) is matched again on full-row hashes."""
        maybe = np.flatnonzero(self._has(h))
        ia, ib = candidates(self.order, self.sorted, h[maybe])
        ia = maybe[ia]
        if self.canon.window is not None and len(ia) > 4 * len(h) + 64:
            if self._full is None:
                self._full = sort_hashes(self.canon.hashes(self.rows, full=True))
            ia, ib = candidates(*self._full, self.canon.hashes(rows, full=True))
        if not len(ia):
            return ia, ib
        ok = self.canon.equal(rows[ia], self.rows[ib])
        return ia[ok], ib[ok]

    def _grouped(self, key: np.ndarray, rank: np.ndarray) -> np.ndarray:
        return (key - self.key_min) + rank * self.span

    def close(self, rows: np.ndarray | Rows, threshold: float,
              groups: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(stream row, reference row, distance) for pairs with d <= ``threshold`` (exact copies
        included); with ``groups`` (the rows' group hashes, for a reference built with groups), only
        pairs of equal group."""
        none = np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
        if self.scale is None or not self.canon.width or not len(rows) or not len(self.key):
            return none
        if self.group_values is not None:
            assert groups is not None
            at = np.minimum(np.searchsorted(self.group_values, groups), len(self.group_values) - 1)
            present = np.flatnonzero(self.group_values[at] == groups)  # a row whose group val lacks has no near copy
            if not len(present):
                return none
            ia, ib, d = self._close(rows[present], threshold, at[present])
            return present[ia], ib, d
        return self._close(rows, threshold, None)

    def _close(self, rows: np.ndarray | Rows, threshold: float,
               rank: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        none = np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
        n2, p = self.sketch(rows)
        norm = np.sqrt(n2)
        q = np.hstack([p, (p * p).sum(1, keepdims=True), np.ones((len(p), 1), p.dtype)])
        key = p[:, 0].astype(np.float64) if self.by_coordinate else norm
        if rank is not None:
            key = self._grouped(key, rank)
        order = np.argsort(key, kind="stable")
        err = PROJ_ERR[self.sketch_dtype] * max(1.0, np.sqrt(self.canon.width / 1024))
        dot_err = DOT_ERR[self.sketch_dtype]
        out_a, out_b, out_d = [], [], []
        for sub, first, last, reach, big in self._windows(order, key, norm, threshold, err, rank):
            # a true pair's rows have norms within t, so each computed key, norm and projection is off
            # by at most err * (2 |a| + t): the window and the cut widen by that, and drop no true pair
            d2 = q[sub] @ self.aug[first:last].T  # squared projected distances: lower bounds of the true ones
            cut = reach * reach + dot_err * big * big
            hit = np.flatnonzero(d2.min(axis=1) <= cut)  # almost always empty
            if not len(hit):
                continue
            i, j = np.nonzero(d2[hit] <= cut)
            ia, ib = sub[hit[i]], self.by_key[first + j]
            if rank is not None:  # a window may reach into the next group: equal groups only
                same = rank[ia] == self.rank[ib]
                ia, ib = ia[same], ib[same]
            dist = self.scale.distance(rows[ia], self.rows[ib])
            keep = dist <= threshold
            out_a.append(ia[keep])
            out_b.append(ib[keep])
            out_d.append(dist[keep])
        if not out_a:
            return none
        return np.concatenate(out_a), np.concatenate(out_b), np.concatenate(out_d)

    def _windows(self, order: np.ndarray, key: np.ndarray, norm: np.ndarray, threshold: float,
                 err: float, rank: np.ndarray | None) -> Iterator[tuple[np.ndarray, int, int, float, float]]:
        """Stream rows in key order, ``SUB_ROWS`` at a time, with the reference rows within reach of
        them (``first``..``last`` in key order). Grouped, a run of rows of several groups is halved
        while its window passes ``WINDOW_CAP`` reference rows (the groups between its rows are not
        searched; one group's window is as wide as its data makes it)."""
        begin = 0
        while begin < len(order):
            end = min(begin + SUB_ROWS, len(order))
            while True:
                sub = order[begin:end]
                big = 2 * float(norm[sub].max()) * (1 + err) + threshold
                reach = threshold + err * big
                first = int(np.searchsorted(self.key, key[sub[0]] - reach, side="left"))
                last = int(np.searchsorted(self.key, key[sub[-1]] + reach, side="right"))
                if rank is None or rank[sub[0]] == rank[sub[-1]] or last - first <= WINDOW_CAP:
                    break
                end = begin + max(1, (end - begin) // 2)
            if first < last:
                yield sub, first, last, reach, big
            begin = end


CHANCE_SAMPLE = 2048  # reference rows searched against their own split for the chance-neighbour rate
CHANCE_MIN_HITS = 5  # sampled rows with a near neighbour in their own split before density is believed


@dataclass(frozen=True)
class Chance:
    """Near neighbours that density alone gives: a fixed threshold in a large table of few
    features finds distinct rows that close by chance. Measured on a seeded sample of a split's
    rows searched against that split itself (``chance_neighbours``)."""

    hits: int = 0  # sampled rows with a near, non-identical other row in their split
    sampled: int = 0
    rows: float = 0.0  # query rows expected to have a near row by chance
    pairs: float = 0.0  # near pairs expected by chance

    def explains(self, near_rows: int, near_pairs: int) -> bool:
        """Whether density explains ``near_rows`` query rows with a near copy (in ``near_pairs``
        pairs): enough sampled rows have such a neighbour to say the data is that dense; the pairs
        found are about as many as density gives (a tight cluster of copied rows gives far fewer
        than its own closeness predicts); and the rows are not clearly more than chance gives."""
        dense = self.hits >= CHANCE_MIN_HITS and near_pairs >= 0.25 * self.pairs
        return dense and near_rows <= self.rows + 3 * math.sqrt(self.rows) + 1

    def words(self, split: str, queries: str, other: str, population: int, found_pairs: int) -> str:
        """The evidence as a message gives it (density measured on ``split``; ``queries`` rows matched
        against ``population`` rows of ``other``)."""
        return (f"{self.hits} of {self.sampled} sampled {split} rows have a near, non-identical {split} row, so about "
                f"{self.rows:,.0f} {queries} rows would have a near {other} row by chance among {population:,}, in "
                f"about {self.pairs:,.0f} near pairs; found {found_pairs:,}")


class ChanceCounted:
    """The copies of b in a that count, for a result holding ``exact_b`` / ``near_b`` (b rows with an
    equal / near a row), their pair counts and what chance gives (``exact_chance``: set only when
    every feature takes few values; ``chance``: measured when near copies are found)."""

    exact_b: np.ndarray
    near_b: np.ndarray
    exact_pair_count: int
    near_pair_count: int
    exact_chance: Chance
    chance: Chance

    @property
    def exact_counted(self) -> bool:
        """Whether the exact copies (and their label conflicts) count: not when every feature takes few
        values and the split's own repeats explain them (equal rows recur by chance in a small feature space)."""
        return not self.exact_chance.explains(len(self.exact_b), self.exact_pair_count)

    @property
    def near_counted(self) -> bool:
        """Whether the near copies count: not when the split's own density explains them."""
        return not self.chance.explains(len(self.near_b), self.near_pair_count)

    def counted_b(self) -> np.ndarray:
        exact = self.exact_b if self.exact_counted else self.exact_b[:0]
        return np.union1d(exact, self.near_b) if self.near_counted else exact


def chance_neighbours(search: Any, rows: np.ndarray | Rows, threshold: float, queries: int, population: int,
                      seed: int = SEED) -> Chance:
    """``Chance`` for ``queries`` rows matched against ``population`` rows, from the density of
    ``rows`` (the split ``search`` holds): a seeded sample of them searched against it. Its rate r
    of rows with a near, non-identical other row among n - 1, and its mean count c of them, give
    ``queries * (1 - (1 - r)^(population / (n - 1)))`` rows and ``queries * c * population / (n - 1)``
    pairs for the same density."""
    n = len(rows)
    if n < 2:
        return Chance()
    pick = chance_pick(n, seed)
    ia, ib, d = search.close((rows if isinstance(rows, Rows) else as_rows(rows))[pick], threshold)
    return chance_of_pairs(n, len(pick), pick[ia], ib, d, queries, population)


def chance_pick(n: int, seed: int = SEED) -> np.ndarray:
    """The rows of an n-row split whose near neighbours in that split measure its density (sorted)."""
    return np.sort(np.random.default_rng(seed ^ 0xC4A7CE).choice(n, min(n, CHANCE_SAMPLE), replace=False))


def chance_of_pairs(n: int, picked: int, query: np.ndarray, other_row: np.ndarray, d: np.ndarray, queries: int,
                    population: int) -> Chance:
    """``chance_neighbours`` from the near pairs (``query`` row, ``other_row``, distance; both rows by their
    place in the n-row split) of its ``picked`` sampled rows searched against the split itself."""
    if n < 2 or not picked:
        return Chance()
    other = (query != other_row) & (d > 0)  # not itself, not an identical row (a repeat, not density)
    hits = len(np.unique(query[other]))
    rate, scale = hits / picked, population / (n - 1)
    expected = queries * (1.0 - (1.0 - rate) ** scale) if rate < 1 else float(queries)
    return Chance(hits, picked, expected, queries * float(other.sum()) / picked * scale)


FEW_VALUES = 32  # a feature with at most this many distinct values (in a sample of the split) takes few values
FEW_VALUES_SAMPLE = 4096


def few_values(rows: np.ndarray | Rows, seed: int = SEED) -> int:
    """The most distinct values any feature takes in a seeded sample of ``rows`` when every feature
    takes at most ``FEW_VALUES`` (one-hot, binary, a handful of categories or bands); 0 otherwise."""
    n = len(rows)
    if not n:
        return 0
    pick = np.sort(np.random.default_rng(seed ^ 0xFE3).choice(n, min(n, FEW_VALUES_SAMPLE), replace=False))
    sample = np.asarray((rows if isinstance(rows, Rows) else as_rows(rows))[pick])
    if sample.ndim != 2 or not sample.shape[1]:
        return 0
    widest, lo, step = 0, 0, 4
    while lo < sample.shape[1]:  # a few columns first: a continuous one (the usual case) ends it at once
        widest = max(widest, int(distinct_per_column(sample[:, lo : lo + step]).max()))
        if widest > FEW_VALUES:
            return 0
        lo, step = lo + step, step * 8
    return widest


def distinct_per_column(block: np.ndarray) -> np.ndarray:
    """How many distinct values each column of a 2-D block holds, as ``len(np.unique(column))``
    counts them (NaNs as one value, -0.0 equal to 0.0), for all columns in one sort."""
    s = np.sort(block.T, axis=1)  # one row per column: the sort runs along contiguous memory
    if s.shape[1] < 2:
        return np.full(len(s), s.shape[1], np.int64)
    new = s[:, 1:] != s[:, :-1]
    if s.dtype.kind in "fc":
        new &= ~(np.isnan(s[:, 1:]) & np.isnan(s[:, :-1]))  # NaNs sort last and count once
    return 1 + np.count_nonzero(new, axis=1)


def repeat_chance(ids: np.ndarray, queries: int, population: int) -> Chance:
    """Equal rows by chance in a small feature space, as ``chance_neighbours`` for near ones: the rate
    of a split's rows with an equal other row (``ids``: one per row, shared by equal rows) and their
    mean count give the ``queries`` rows and the pairs equal to one of ``population`` rows by chance.
    Meaningful only where every feature takes few values (``few_values``): with a continuous
    feature, equal rows are duplication, not chance."""
    if len(ids) < 2:
        return Chance()
    size = np.bincount(ids)  # each group of equal rows
    return repeat_chance_counts(int(size[size > 1].sum()), int((size * (size - 1)).sum()), len(ids), queries, population)


def repeat_chance_counts(twins: int, pair_sum: int, n: int, queries: int, population: int) -> Chance:
    """``repeat_chance`` from a split's counts (what a cluster's group-by gives): ``twins`` of its ``n``
    rows equal another of its rows, and its groups of equal rows (sizes s) sum s * (s - 1) to ``pair_sum``."""
    if n < 2:
        return Chance()
    rate, scale = twins / n, population / (n - 1)
    rows = queries * (1.0 - (1.0 - rate) ** scale) if rate < 1 else float(queries)
    return Chance(twins, n, rows, queries * pair_sum / n * scale)


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


def projection(width: int, seed: int = SEED, lead: np.ndarray | None = None) -> np.ndarray:
    """``width x k`` with orthonormal columns (the first along ``lead`` when given, the others
    random): projecting never lengthens a vector."""
    k = min(PROJ, width)
    g = np.random.default_rng(seed).standard_normal((width, k))
    if lead is not None and k:
        g[:, 0] = lead
    q, _ = np.linalg.qr(g)
    return q


def _spread(x: np.ndarray) -> float:
    """A robust width of a key's distribution (its interquartile range)."""
    return float(np.subtract(*np.percentile(x, [75, 25]))) if len(x) else 0.0


def group_ids(h: np.ndarray, rows: np.ndarray | Rows, canon: Canon, keyed: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(an id per row shared by equal rows, the first row of each id). Only rows whose hash
    repeats are compared, exactly, by their canonical bytes, so a collision never merges
    different rows and never splits equal ones. ``keyed``: ``rows`` are already canonical bytes
    (``Canon.keys``)."""
    n = len(h)
    leader = np.arange(n)
    _, inverse, counts = np.unique(h, return_inverse=True, return_counts=True)
    suspects = np.flatnonzero(counts[inverse.reshape(-1)] > 1) if n else np.zeros(0, np.int64)
    if not keyed and canon.window is not None and len(suspects) > n // 20 + 64:  # the key window separates badly here
        _, inv, cnt = np.unique(canon.hashes(rows[suspects], full=True), return_inverse=True, return_counts=True)
        suspects = suspects[cnt[inv.reshape(-1)] > 1]
    if len(suspects):
        c = np.ascontiguousarray(rows[suspects] if keyed else canon.keys(rows[suspects]))
        keys = c.view(np.dtype((np.void, c.dtype.itemsize * c.shape[1])))[:, 0]
        _, groups = np.unique(keys, return_inverse=True)
        groups = groups.reshape(-1)
        first = np.full(groups.max() + 1, n, dtype=np.int64)
        np.minimum.at(first, groups, suspects)
        leader[suspects] = first[groups]
    firsts, ids = np.unique(leader, return_inverse=True)
    return ids.reshape(-1), firsts
