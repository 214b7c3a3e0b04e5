"""``no_leakage``: every kind of split leakage, streaming (numpy only).

The first split (train) is streamed in blocks; the others (val, test) are
the references it is matched against and are held in memory. Per pair of
splits: exact copies (equal values, verified hashes), label conflicts among
them, near copies (RMS difference in train standard deviations per feature,
``..matching``), shared group ids, temporal overlap. Per split:
repeated rows. On tabular data: columns computed from the label (``..features``),
judged on a uniform sample of the streamed split's rows. Only hashes, one
block of rows and that sample of the streamed split are held.
"""

from __future__ import annotations

import dataclasses
import itertools
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping

import numpy as np

from ..features import FeatureLeak, RowSample, TargetSearch, target_columns
from ..labels import class_ids
from ..matching import (
    NEAR_THRESHOLD,
    WIDE,
    Canon,
    Chance,
    ChanceCounted,
    Reference,
    Scale,
    WidthMismatch,
    as_rows,
    chance_neighbours,
    common_dtype,
    few_values,
    group_ids,
    repeat_chance,
    sample_rows,
    stats_rows,
    width_of,
)

EXAMPLES = 5
PREFIX_BITS = 22  # the prefilter of repeated hash keys in a streamed split (_Repeats)

Blocks = Callable[[], Iterator[tuple[np.ndarray, np.ndarray]]]


@dataclass
class SplitInput:
    name: str
    blocks: Blocks  # (X, y) blocks; called once for the streamed split
    arrays: tuple[np.ndarray, np.ndarray] | None = None  # set when the split is in memory
    rows: int | None = None  # how many rows blocks() yields, when known up front (a table's metadata, a dataset's len)


@dataclass
class PairLeak(ChanceCounted):
    a: str
    b: str
    n_a: int
    n_b: int
    exact_b: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    exact_pairs: list[tuple[int, int]] = field(default_factory=list)
    conflicts: int = 0
    conflict_pairs: list[tuple[int, int]] = field(default_factory=list)
    near_b: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # near and not exact
    near_pairs: list[tuple[int, int, float]] = field(default_factory=list)
    shared_groups: int = 0
    group_rows_b: int = 0
    group_examples: list[Any] = field(default_factory=list)
    temporal_rows_b: int = 0
    missing_time_a: int = 0  # samples without a time (NaT, NaN, None): left out of the comparison, counted
    missing_time_b: int = 0
    missing_group_a: int = 0  # samples without a group id (None, NaN): in no group, counted
    missing_group_b: int = 0
    latest_a: Any = None
    earliest_b: Any = None

    near_pair_count: int = 0  # (a row, b row) near pairs, b not an exact copy
    chance: Chance = field(default_factory=Chance)  # what b's density gives (measured when near copies are found)
    exact_pair_count: int = 0  # (a row, b row) pairs of equal rows
    exact_chance: Chance = field(default_factory=Chance)  # equal rows by chance: set only when b's features take few values
    few_values: int = 0  # the most distinct values a feature of b takes (in a sample), when all take few

    @property
    def copies(self) -> int:
        return len(self.counted_b())

    def counts(self) -> dict[str, int]:
        return {"copies": self.copies, "label_conflicts": self.conflicts if self.exact_counted else 0,
                "group_rows": self.group_rows_b, "temporal_rows": self.temporal_rows_b}


@dataclass
class Within:
    n: int
    unique: int
    conflicts: int = 0  # rows whose inputs repeat within the split with a different label

    @property
    def repeats(self) -> int:
        return self.n - self.unique


@dataclass
class LeakageResult:
    pairs: list[PairLeak]
    within: dict[str, Within]
    targets: list[FeatureLeak]
    threshold: float | None
    failures: list[str]
    target_search: TargetSearch = field(default_factory=TargetSearch)
    kinds: list[str] = field(default_factory=list)  # the kind of each failure (KIND_WORDS keys, "targets", "repeats")

    @property
    def passed(self) -> bool:
        return not self.failures


def allowed(max_overlap: int | float, n: int) -> int:
    """The largest count that still passes: an int is a count, a float a fraction of ``n``."""
    return int(max_overlap) if isinstance(max_overlap, int) else int(np.floor(max_overlap * n))


class _KeyedNear:
    """Near copies in a table with non-numeric columns: the numeric columns within the threshold
    (standardised with train statistics), among rows whose other columns are equal (by a 64-bit
    hash of their value codes: the groups the reference's near search is confined to)."""

    def __init__(self, X: np.ndarray, numeric: list[int], scale: Scale | None, dtype: np.dtype, seed: int) -> None:
        self.numeric, self.rows = numeric, X  # every column's rows (what chance is measured on), not copied
        chosen = set(numeric)
        self.others = [j for j in range(X.shape[1]) if j not in chosen]
        self.key = Canon(dtype, len(self.others), seed=seed ^ 0x6EED)
        self.ref = Reference(Canon(dtype, len(numeric), seed=seed ^ 0x5EED), np.ascontiguousarray(X[:, numeric]), scale,
                             groups=self.key.hashes(np.ascontiguousarray(X[:, self.others])))

    def close(self, rows: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        rows = np.asarray(rows)
        return self.ref.close(np.ascontiguousarray(rows[:, self.numeric]), threshold,
                              self.key.hashes(np.ascontiguousarray(rows[:, self.others])))


class _Match:
    """Accumulates one pair's matches as the stream goes by."""

    def __init__(self, ref_name: str, ref: Reference, y_ref: np.ndarray, near: Reference | _KeyedNear | None = None) -> None:
        self.ref_name, self.ref, self.y_ref = ref_name, ref, y_ref
        self.near_search = ref if near is None else near
        self.exact_a: list[np.ndarray] = []
        self.exact_b: list[np.ndarray] = []
        self.conflict: list[np.ndarray] = []
        self.near: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []

    def feed(self, offset: int, rows: np.ndarray, h: np.ndarray, y: np.ndarray, near: float | None) -> None:
        ia, ib = self.ref.exact(rows, h)
        self.exact_a.append(ia + offset)
        self.exact_b.append(ib)
        if len(ia):
            ya, yb = y[ia].reshape(len(ia), -1), self.y_ref[ib].reshape(len(ib), -1)
            self.conflict.append(np.any(ya != yb, axis=1))
        if near is not None:
            na, nb, d = self.near_search.close(rows, near)
            self.near.append((na + offset, nb, d))

    def result(self, a: str, n_a: int, n_b: int, threshold: float | None) -> PairLeak:
        cat = lambda xs, dt=np.int64: np.concatenate(xs) if xs else np.zeros(0, dt)  # noqa: E731
        ea, eb, conflict = cat(self.exact_a), cat(self.exact_b), cat(self.conflict, bool)
        order = np.lexsort((ea, eb))
        ea, eb, conflict = ea[order], eb[order], conflict[order]
        first = np.unique(eb, return_index=True)[1]
        leak = PairLeak(a, self.ref_name, n_a, n_b, exact_b=eb[first],
                        exact_pairs=list(zip(ea[first][:EXAMPLES].tolist(), eb[first][:EXAMPLES].tolist())),
                        exact_pair_count=len(eb))
        bad = np.unique(eb[conflict])
        leak.conflicts = len(bad)
        pos = np.flatnonzero(conflict)
        leak.conflict_pairs = list(zip(ea[pos][:EXAMPLES].tolist(), eb[pos][:EXAMPLES].tolist()))
        if threshold is not None and self.near:
            near_copies(leak, *(np.concatenate([n[i] for n in self.near]) for i in range(3)))
        return leak


def near_copies(leak: PairLeak, na: np.ndarray, nb: np.ndarray, d: np.ndarray) -> None:
    """``leak``'s near copies from its near pairs (a row, b row, distance): the b rows that are not
    exact copies, their pair count, and the closest pair of the first ``EXAMPLES`` of them."""
    fresh = ~np.isin(nb, leak.exact_b)
    na, nb, d = na[fresh], nb[fresh], d[fresh]
    leak.near_pair_count = len(nb)
    order = np.lexsort((d, nb))
    na, nb, d = na[order], nb[order], d[order]
    first = np.unique(nb, return_index=True)[1]
    leak.near_b = nb[first]
    leak.near_pairs = [(int(x), int(z), float(w)) for x, z, w in zip(na[first], nb[first], d[first])][:EXAMPLES]


NUMERIC_KINDS = ("numeric", "bool")  # table column kinds a distance is taken over


def near_columns_of(kinds: Mapping[str, str], columns: list[str]) -> list[int] | None:
    """The columns near copies are judged on: None (every column) when all are numeric or bool, else
    the numeric and bool ones, among rows whose other columns are equal ([] when there are none: exact
    copies only). The one rule of the in-memory, Dask and Spark checks."""
    if all(kinds[c] in NUMERIC_KINDS for c in columns):
        return None
    return [j for j, c in enumerate(columns) if kinds[c] in NUMERIC_KINDS]


def find_leakage(
    splits: list[SplitInput],
    *,
    near: bool = True,
    threshold: float | None = None,
    groups: Mapping[str, Any] | None = None,
    timestamps: Mapping[str, Any] | None = None,
    classification: bool = True,
    max_overlap: int | float = 0,
    within_split: bool = False,
    seed: int = 0,
    column_names: list[str] | None = None,
    near_columns: list[int] | None = None,
) -> LeakageResult:
    """``near_columns`` (a table with non-numeric columns): near copies over those columns only,
    among rows whose other columns are equal; None: over every column."""
    near = near and near_columns != []
    t = (threshold if threshold is not None else NEAR_THRESHOLD) if near else None
    head, refs = splits[0], splits[1:]
    # the references first: a streamed split's reader, once started, holds its read-ahead while they are read
    ref_arrays = {s.name: s.arrays if s.arrays is not None else _read(s) for s in refs}
    stream = head.blocks()
    if classification:  # labels compared as class ids: one-hot in one split, ids in another, still agree
        stream = ((X, class_ids(y)) for X, y in stream)
    first_blocks = _start(stream, statistics=near and head.arrays is None)
    if classification:
        ref_arrays = {name: (X, class_ids(y)) for name, (X, y) in ref_arrays.items()}
    dtypes = [a[0].dtype for a in ref_arrays.values()] + [X.dtype for X, _ in first_blocks]
    widths = {width_of(a[0]) for a in ref_arrays.values()} | {width_of(X) for X, _ in first_blocks}
    if len(widths) > 1:
        raise WidthMismatch(f"the splits' samples have different sizes: {sorted(widths)} values")
    canon = Canon(common_dtype(dtypes or [np.float64]), widths.pop() if widths else 0, seed=seed ^ 0x5EED)
    if head.arrays is not None and ref_arrays:  # every key-hash match can be verified on the rows
        canon.choose_window(next(iter(ref_arrays.values()))[0])
    scale = _train_scale(head, first_blocks, canon, seed, near_columns) if near else None
    keyed = near and near_columns is not None and len(near_columns) < canon.width
    references = {name: Reference(canon, X, None if keyed else scale) for name, (X, _) in ref_arrays.items()}
    searches = {name: _KeyedNear(X, near_columns, scale, canon.dtype, seed) if keyed and near_columns else references[name]
                for name, (X, _) in ref_arrays.items()}
    pairs, within = [], {}

    # the streamed split against every reference
    matches = [_Match(name, references[name], ref_arrays[name][1], searches[name]) for name in references]
    head_hashes, head_labels = _Filled(head.rows), _Filled(head.rows)
    # a streamed split's own repeats are confirmed by a second, independent row hash instead of a second read
    check = Canon(canon.dtype, canon.width, seed=seed ^ 0xC4EC) if head.arrays is None else None
    assert check is None or canon.window is None  # a streamed split's key hashes cover the full row, as val's do
    head_checks = _Filled(head.rows)
    n_head, sample = 0, RowSample(seed=seed, total=len(head.arrays[0]) if head.arrays is not None else None)
    label_dtype = np.dtype(np.int8)
    for X, y in itertools.chain(_drain(first_blocks), stream):
        flat = as_rows(X)
        if check is not None:  # a streamed split: no key window
            h, h2 = canon.hashes_and_checks(flat, check)
            head_checks.add(_top_words(h2))  # its top 32 bits: as strong against structured differences as all 64
        else:
            h = canon.hashes(flat)
        head_hashes.add(h)
        keys = _label_keys(y)
        need = _narrowest(keys) if keys.dtype.kind in "iu" and len(keys) else None
        if need is not None and need.kind == "i":  # class ids in the narrowest int that has held them so far:
            label_dtype = np.promote_types(label_dtype, need)  # 20 MB for 20M 10-class labels, not 160
            keys = keys.astype(label_dtype, copy=False)
        head_labels.add(keys)
        for match in matches:
            match.feed(n_head, flat, h, y, t)
        sample.feed(X, y)
        n_head += len(X)
    pairs += [m.result(head.name, n_head, len(ref_arrays[m.ref_name][0]), t) for m in matches]
    # the streamed split's own repeats (kept: only the suspects' hashes); for millions of rows, found in a
    # thread while the references are compared below (its sort runs beside their work)
    repeats_of = (head_hashes.array(np.uint64), head_labels.array(np.float64),
                  head_checks.array(np.uint32) if check is not None else None)
    head_hashes = head_labels = head_checks = None  # type: ignore[assignment]
    repeats_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="trainsanity-repeats") if n_head >= PARALLEL_SORT else None
    try:
        head_repeats = repeats_pool.submit(_Repeats, *repeats_of) if repeats_pool is not None else _Repeats(*repeats_of)
        repeats_of = None  # type: ignore[assignment]
        search = _compare_references(pairs, references, ref_arrays, searches, canon, within, n_head, t, groups,
                                     timestamps, seed, classification, column_names, sample)
        repeats = head_repeats.result() if repeats_pool is not None else head_repeats  # type: ignore[union-attr]
    finally:
        if repeats_pool is not None:
            repeats_pool.shutdown(wait=True)
    within = {head.name: repeats.verify(head, canon), **within}
    failures, kinds = _failures(pairs, search.columns, max_overlap)
    if within_split:  # asked for: repeated rows and conflicting labels inside a split fail too
        failures, kinds = within_failures(within, max_overlap, failures, kinds)
    return LeakageResult(pairs, within, search.columns, t, failures, search, kinds)


def _compare_references(pairs: list[PairLeak], references: dict[str, Reference],
                        ref_arrays: dict[str, tuple[np.ndarray, np.ndarray]], searches: dict[str, Any], canon: Canon,
                        within: dict[str, Within], n_head: int, t: float | None, groups: Mapping[str, Any] | None,
                        timestamps: Mapping[str, Any] | None, seed: int, classification: bool,
                        column_names: list[str] | None, sample: RowSample) -> TargetSearch:
    """After the stream: what chance gives, each reference's own repeats, the references against the later
    ones (val -> test, all in memory), groups and times, and the target-column search (returned);
    ``pairs`` and ``within`` are filled in place."""
    ref_groups = {name: group_ids(ref.hashes, ref.rows, canon) for name, ref in references.items()}
    for pair in pairs:
        _chance(pair, searches[pair.b], references[pair.b].rows, ref_groups[pair.b][0], t, seed)

    # references against the later references (val -> test), all in memory
    names = list(references)
    for i, name in enumerate(names):
        rows, h = references[name].rows, references[name].hashes
        ids, firsts = ref_groups[name]
        within[name] = Within(len(rows), int(firsts.size), _conflicting(ids, _label_keys(ref_arrays[name][1])))
        y = ref_arrays[name][1]
        for later in names[i + 1 :]:
            m = _Match(later, references[later], ref_arrays[later][1], searches[later])
            for start in range(0, len(rows), 4096):
                m.feed(start, rows[start : start + 4096], h[start : start + 4096], y[start : start + 4096], t)
            pairs.append(m.result(name, len(rows), len(references[later].rows), t))
            _chance(pairs[-1], searches[later], references[later].rows, ref_groups[later][0], t, seed)

    for pair in pairs:
        _groups_and_time(pair, groups, timestamps)
    return _target_search(sample, ref_arrays.get(names[0]) if names else None, n_head, seed, classification,
                          column_names)


def within_failures(within: dict[str, Within], max_overlap: int | float, failures: list[str],
                    kinds: list[str]) -> tuple[list[str], list[str]]:
    """``failures`` / ``kinds`` with each split's repeated rows and conflicting labels over the limit added."""
    repeats = [f"{name}: {w.repeats} repeated row(s) of {w.n} ({100 * w.repeats / w.n:.1f}%; limit "
               f"{allowed(max_overlap, w.n)})" for name, w in within.items() if w.repeats > allowed(max_overlap, w.n)]
    conflicts = [f"{name}: {w.conflicts} row(s) whose inputs repeat with a different label (limit "
                 f"{allowed(max_overlap, w.n)})" for name, w in within.items() if w.conflicts > allowed(max_overlap, w.n)]
    return failures + repeats + conflicts, kinds + ["repeats"] * len(repeats) + ["within_conflicts"] * len(conflicts)


def _chance(pair: PairLeak, search: Reference | _KeyedNear, rows_b: Any, ids_b: np.ndarray, threshold: float | None,
            seed: int) -> None:
    """What chance gives, measured only where there is something to explain: b's density
    (``chance_neighbours``) when near copies were found; b's own repeats (``repeat_chance``) when
    exact copies were found and every feature of b takes few values."""
    if threshold is not None and len(pair.near_b):
        pair.chance = chance_neighbours(search, rows_b, threshold, pair.n_b, pair.n_a, seed)
    if len(pair.exact_b) and len(ids_b) >= 2:
        pair.few_values = few_values(rows_b, seed)
        if pair.few_values:
            pair.exact_chance = repeat_chance(ids_b, pair.n_b, pair.n_a)


def _target_search(sample: RowSample, val: tuple[np.ndarray, np.ndarray] | None, n: int, seed: int,
                   classification: bool, column_names: list[str] | None) -> TargetSearch:
    rows = sample.arrays()
    if rows is None:  # not a table of columns with one label per row
        return TargetSearch(n=n)
    search = target_columns(*rows, val[0] if val else None, val[1] if val else None, seed,
                            "classification" if classification else "regression")
    if column_names is not None and len(column_names) == rows[0].shape[1]:  # a table: columns by name
        search = dataclasses.replace(search, columns=[dataclasses.replace(t, name=column_names[t.column])
                                                      for t in search.columns])
    return search


def _read(split: SplitInput) -> tuple[np.ndarray, np.ndarray]:
    """A reference split in memory: blocks of one dtype and shape written in place into one array when
    the row count is known (1M table rows: 0.3 s less than joining the blocks, and half the peak memory)."""
    X_all, y_all = _Filled(split.rows), _Filled(split.rows)
    shapes, dtypes = set(), set()
    for X, y in split.blocks():
        shapes.add(X.shape[1:])
        dtypes.add(X.dtype)
        X_all.add(X)
        y_all.add(y)
    if not X_all.n:
        raise ValueError(f"{split.name} is empty")
    if len(shapes) > 1:
        raise WidthMismatch(f"the {split.name} split's samples have different sizes: {sorted(shapes)}")
    dtype = common_dtype(dtypes) if len(dtypes) > 1 else None  # one that holds every block's values, when one does
    return X_all.array(np.float64, dtype if dtype != WIDE else None), y_all.array(np.float64)


def _start(stream: Iterator[tuple[np.ndarray, np.ndarray]], statistics: bool) -> list[tuple[np.ndarray, np.ndarray]]:
    """The streamed split's first block; with ``statistics``, its first blocks up to the rows the
    train statistics are taken from (held until the references are built, then streamed on: memory
    stays bounded by a block and the statistics sample, even for a one-shot generator)."""
    out, n = [], 0
    for X, y in stream:
        out.append((X, y))
        n += len(X)
        if not statistics or n >= stats_rows(width_of(X)):
            break
    return out


def _drain(blocks: list[tuple[np.ndarray, np.ndarray]]) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    while blocks:  # each block released once matched
        yield blocks.pop(0)


def _train_scale(head: SplitInput, first_blocks: list[tuple[np.ndarray, np.ndarray]], canon: Canon, seed: int,
                 columns: list[int] | None = None) -> Scale:
    """The train statistics near copies are judged in (of ``columns`` only, when given): from a
    seeded sample of the rows when train is in memory, else from its first rows (``_start``)."""
    def pick(rows: np.ndarray) -> np.ndarray:
        return rows if columns is None else rows[:, columns]

    if head.arrays is not None and len(head.arrays[0]):
        return Scale(pick(np.asarray(sample_rows(head.arrays[0], seed ^ 0x5EED))), canon.dtype)
    parts, n, k = [], 0, stats_rows(canon.width)
    for X, _ in first_blocks:
        if n < k and len(X):
            parts.append(np.asarray(as_rows(X)[: k - n]))
            n += len(parts[-1])
    return Scale(pick(np.concatenate(parts) if parts else np.zeros((0, canon.width))), canon.dtype)


def _narrowest(ints: np.ndarray) -> np.dtype:
    """The narrowest signed int dtype that holds every value of ``ints`` (int64 beyond int32, uint64 beyond that)."""
    lo, hi = int(ints.min()), int(ints.max())
    for dtype in (np.int8, np.int16, np.int32, np.int64):
        info = np.iinfo(dtype)
        if info.min <= lo and hi <= info.max:
            return np.dtype(dtype)
    return ints.dtype


def _label_keys(y: np.ndarray) -> np.ndarray:
    """One comparable value per sample's label (a row of several outputs becomes its row id)."""
    y = np.asarray(y)
    if y.ndim <= 1:
        return y.reshape(-1)
    flat = np.ascontiguousarray(y.reshape(len(y), -1))
    return np.unique(flat.view(np.dtype((np.void, flat.dtype.itemsize * flat.shape[1])))[:, 0], return_inverse=True)[1]


def _conflicting(ids: np.ndarray, labels: np.ndarray) -> int:
    """Rows in groups of equal inputs (``ids``) that hold more than one label."""
    if not len(ids) or len(labels) != len(ids):
        return 0
    order = np.lexsort((labels, ids))
    g, lab = ids[order], labels[order]
    bad_groups = np.unique(g[1:][(g[1:] == g[:-1]) & (lab[1:] != lab[:-1])])  # sorted by label within a group
    return int(np.isin(ids, bad_groups).sum()) if len(bad_groups) else 0


class _Filled:
    """One array filled block by block (along the first axis): written in place when the total is known
    up front (a 20M-row split's hashes then take 160 MB once, not again as the blocks they are joined
    from, which the allocator keeps), else joined at the end. A 2-D block in Fortran order (a table's
    codes) is filled into a Fortran-order array, so its columns stay contiguous."""

    def __init__(self, total: int | None) -> None:
        self.total, self.n = total, 0
        self.whole: np.ndarray | None = None
        self.parts: list[np.ndarray] = []

    def add(self, a: np.ndarray) -> None:
        if self.whole is None and not self.parts and self.total:
            fortran = a.ndim == 2 and a.flags.f_contiguous and not a.flags.c_contiguous
            self.whole = np.empty((self.total,) + a.shape[1:], a.dtype, order="F" if fortran else "C")
        if (self.whole is not None and self.whole.dtype == a.dtype and self.whole.shape[1:] == a.shape[1:]
                and self.n + len(a) <= len(self.whole)):
            self.whole[self.n: self.n + len(a)] = a
        else:  # more rows than announced, another dtype or shape: joined at the end
            if self.whole is not None:
                self.parts, self.whole = [self.whole[: self.n]], None
            # a strided view (a hash's high words) is copied, so it does not hold the larger array; a
            # contiguous block (a Fortran-order table block too) is kept as it is, and joins in its order
            self.parts.append(a if a.flags.c_contiguous or a.flags.f_contiguous else a.copy())
        self.n += len(a)

    def array(self, empty: type, dtype: Any = None) -> np.ndarray:
        """The filled array (joined in ``dtype`` when given and the blocks had to be joined)."""
        if self.whole is not None:
            return self.whole[: self.n]
        return np.concatenate(self.parts, dtype=dtype) if self.parts else np.zeros(0, empty)


PARALLEL_SORT = 1 << 21  # keys from which _repeated_keys sorts two halves on two threads


def _top_words(h: np.ndarray) -> np.ndarray:
    """The top 32 bits of each 64-bit hash, as a strided view of its high words (no 64-bit temporary)."""
    return h.view(np.uint32)[1 if sys.byteorder == "little" else 0:: 2]


def _repeated_keys(h: np.ndarray) -> np.ndarray:
    """The top-32-bit keys of ``h`` that occur more than once, sorted: 32-bit keys sorted in place
    (cheaper than sorting the hashes). A split of millions of rows is cut at key 2**31 and its halves
    sorted on two threads (numpy's sort releases the GIL; 20M keys: ~0.9 -> ~0.6 s on 2 cores), each
    half taken straight from the hashes' high words (fresh memory is slow to fault in on a VM)."""
    top = _top_words(h)

    def repeated(keys: np.ndarray) -> np.ndarray:
        keys.sort()
        return np.unique(keys[1:][keys[1:] == keys[:-1]])

    if len(top) < PARALLEL_SORT:
        return repeated(top.copy())
    low = top < np.uint32(1 << 31)
    halves = [top[low], top[~low]]
    del low
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="trainsanity-sort") as pool:
        return np.concatenate(list(pool.map(repeated, halves)))  # every low key is below every high one


class _Repeats:
    """Repeats in the streamed split, by hash: rows whose 64-bit key hash repeats are the suspects,
    confirmed on their values when the split is in memory, else by a second, independent 64-bit
    hash of every row taken in the same pass, of which the top 32 bits are kept (two different rows
    share the key and those bits with probability about 2**-64 when their difference is structured,
    such as flipped signs, where each linear hash collides with probability 2**-32 in all 64 bits and
    in its top 32 alike, and about 2**-96 otherwise: see the README; reading a 20M-row Parquet split a second time to
    compare a thousand rows cost as much as the whole first pass). Built from every row's hashes, it
    keeps only the suspects', so the caller frees the rest."""

    def __init__(self, h: np.ndarray, labels: np.ndarray | None = None, checks: np.ndarray | None = None) -> None:
        n = self.n = len(h)
        dups = _repeated_keys(h)
        shared = np.zeros(0, np.int64)
        if len(dups):  # which rows hold a repeated key, 1M rows at a time (np.isin would sort all n keys again)
            # a 4 MB table of the repeated keys' top 22 bits lets through ~1% of the rows (~50k repeated keys among
            # 20M rows), and only those are looked up in the repeated keys: a binary search of every row took 16x longer
            table = np.zeros(1 << PREFIX_BITS, bool)
            table[dups >> np.uint32(32 - PREFIX_BITS)] = True
            parts = []
            for i in range(0, n, 1 << 20):
                block = h[i: i + (1 << 20)]
                maybe = np.flatnonzero(table[block >> np.uint64(64 - PREFIX_BITS)])
                key = (block[maybe] >> np.uint64(32)).astype(np.uint32)
                at = np.minimum(np.searchsorted(dups, key), len(dups) - 1)
                parts.append(maybe[dups[at] == key] + i)
            shared = np.concatenate(parts)
        _, inverse, counts = np.unique(h[shared], return_inverse=True, return_counts=True)
        self.unique_by_hash = n - len(shared) + len(counts)
        self.suspects = shared[counts[inverse.reshape(-1)] > 1] if len(counts) < len(shared) else np.zeros(0, np.int64)
        self.h = h[self.suspects]
        self.labels = labels[self.suspects] if labels is not None and len(labels) == n else None
        self.checks = checks[self.suspects] if checks is not None and len(checks) == n else None

    def verify(self, head: SplitInput, canon: Canon) -> Within:
        n, suspects = self.n, self.suspects
        if not len(suspects):
            return Within(n, self.unique_by_hash)
        if head.arrays is not None:
            ids, firsts = group_ids(self.h, as_rows(head.arrays[0])[suspects], canon)
        else:  # (key hash, check hash) pairs as the rows' keys
            assert self.checks is not None
            ids, firsts = group_ids(self.h, np.stack([self.h, self.checks], axis=1), canon, keyed=True)
        conflicts = _conflicting(ids, self.labels) if self.labels is not None else 0
        return Within(n, n - len(suspects) + int(firsts.size), conflicts)


def _groups_and_time(pair: PairLeak, groups: Mapping[str, Any] | None, timestamps: Mapping[str, Any] | None) -> None:
    if groups and pair.a in groups and pair.b in groups:
        (ga, pair.missing_group_a), (gb, pair.missing_group_b) = known_values(groups[pair.a]), known_values(groups[pair.b])
        if ga.dtype == object or gb.dtype == object:  # Python objects (str ids, mixed types): compared by ==, not order
            shared_set = set(ga.tolist()) & set(gb.tolist())
            pair.group_rows_b = sum(1 for g in gb.tolist() if g in shared_set)
            shared = _sorted_ids(shared_set)
        else:
            shared = np.intersect1d(ga, gb).tolist()
            pair.group_rows_b = int(np.isin(gb, shared).sum())
        pair.shared_groups = len(shared)
        pair.group_examples = shared[:EXAMPLES]
    if timestamps and pair.a in timestamps and pair.b in timestamps:
        (ta, pair.missing_time_a), (tb, pair.missing_time_b) = known_values(timestamps[pair.a]), known_values(timestamps[pair.b])
        if len(ta) and len(tb):
            pair.latest_a, pair.earliest_b = ta.max(), tb.min()
            pair.temporal_rows_b = int((tb < pair.latest_a).sum())


def _sorted_ids(ids: set[Any]) -> list[Any]:
    """Group ids in order (examples are the first few); ids of mixed types by type name, then value."""
    try:
        return sorted(ids)
    except TypeError:
        return sorted(ids, key=lambda v: (type(v).__name__, repr(v)))


def known_values(values: Any) -> tuple[np.ndarray, int]:
    """(the times or group ids that are present, how many are missing): NaT, NaN and None are missing.
    One missing time must not make the latest time NaT and every comparison False (the check silently
    off); a missing group id is no group, shared with nobody."""
    t = np.asarray(values)
    if t.dtype.kind in "mM":
        missing = np.isnat(t)
    elif t.dtype.kind in "fc":
        missing = np.isnan(t)
    elif t.dtype.kind == "O":
        missing = np.fromiter((_missing(v) for v in t.reshape(-1)), bool, t.size).reshape(t.shape)
    else:
        missing = np.zeros(t.shape, bool)
    return t[~missing], int(missing.sum())


def none_present_error(what: str, name: str, missing: int) -> str:
    """The paragraph for ``groups=`` or ``timestamps=`` of a split that holds no value at all (every
    one missing): the check would run on nothing and pass, in memory, on Dask and on Spark."""
    times = what == "timestamps"
    item, kinds = ("time", "NaT, NaN or None") if times else ("group id", "None or NaN")
    return (f"TrainSetup({what}={{{name!r}: ...}}) holds no {item} at all ({missing} missing: {kinds}), so the "
            f"{'temporal' if times else 'group'} leakage check cannot run. Fill in the {item}s, or leave the {name} "
            f"split out of {what}.")


def not_times(values: np.ndarray) -> str | None:
    """What the present ``values`` hold instead of times, or None: text (numpy str/bytes, or str
    objects, as pandas' str columns give), with an example; or booleans."""
    flat = values.reshape(-1)
    if values.dtype.kind in "US" and values.size:
        return f"text ({flat[0].item()!r})"
    if values.dtype.kind == "b":
        return "booleans"
    if values.dtype.kind == "O":
        text = next((v for v in flat if isinstance(v, (str, bytes))), None)
        if text is not None:
            return f"text ({text!r})"
        if any(isinstance(v, (bool, np.bool_)) for v in flat):
            return "booleans"
    return None


def not_times_error(name: str, held: str) -> str:
    """The paragraph for times given as text or booleans, the same in memory, on Dask and on Spark."""
    why = ("Text compares letter by letter ('9/1/2024' comes after '12/1/2024'), so the temporal leakage check "
           "cannot order it." if held.startswith("text") else "The temporal leakage check orders samples by time.")
    return (f"TrainSetup(timestamps={{{name!r}: ...}}) holds {held}, not times. {why} Give datetimes or numbers: "
            f"pd.to_datetime(column, format=...), np.array(column, dtype='datetime64[s]') for ISO 8601 text, "
            f"dd.to_datetime(...) on Dask, or F.to_timestamp(column, fmt) on Spark.")


def time_kind(values: np.ndarray) -> str:
    """How a split's present times are held, for a message: numpy's dtype, or the objects' type
    (and whether they carry a time zone)."""
    if values.dtype.kind != "O" or not values.size:
        return str(values.dtype)
    first = values.reshape(-1)[0]
    zone = getattr(first, "tzinfo", None)
    return f"{type(first).__name__} objects" + (f" with time zone {zone}" if zone is not None else
                                                (" without a time zone" if hasattr(first, "tzinfo") else ""))


def _missing(value: Any) -> bool:
    """None, NaN, NaT, or pandas' NA (whose ``!=`` is NA, and NA's truth a TypeError)."""
    if value is None:
        return True
    try:
        return bool(value != value)
    except TypeError:
        return True


def _failures(pairs: list[PairLeak], targets: list[FeatureLeak], max_overlap: int | float) -> tuple[list[str], list[str]]:
    """(each failure's line, its kind), so the message can give one fix per kind present."""
    out, kinds = [], []
    for p in pairs:
        limit = allowed(max_overlap, p.n_b)
        for kind, count in p.counts().items():
            if count > limit:
                out.append(f"{p.a}/{p.b}: {count} {KIND_WORDS[kind]} of {p.n_b} {p.b} samples "
                           f"({100 * count / p.n_b:.1f}%; limit {limit})")
                kinds.append(kind)
    limit = max_overlap if isinstance(max_overlap, int) else 0
    if len(targets) > limit:
        out.append(f"{len(targets)} column(s) alone predict the label: {', '.join(t.label for t in targets[:EXAMPLES])}")
        kinds.append("targets")
    return out, kinds


KIND_WORDS = {
    "copies": "copies (exact or near)",
    "label_conflicts": "copies with a different label",
    "group_rows": "samples in groups shared with the other split",
    "temporal_rows": "samples earlier than the other split's latest time",
}
