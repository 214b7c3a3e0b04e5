"""``no_leakage``: every kind of split leakage, streaming (numpy only).

The first split (train) is streamed in blocks; the others (val, test) are
the references it is matched against and are held in memory. Per pair of
splits: exact copies (verified hashes), label conflicts among them, near
copies (relative L2), shared group ids, temporal overlap. Per split:
repeated rows. On tabular classification data: columns that alone predict
the label. Only hashes and one block of rows of the streamed split are held.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping

import numpy as np

from ..labels import class_ids
from ..features import FeatureLeak, target_columns
from ..matching import NEAR_THRESHOLD, Canon, Reference, WidthMismatch, common_dtype, group_ids

EXAMPLES = 5
TARGET_LIFT = 0.95  # a column alone gets 95% of the way from the majority baseline to perfect
FEATURE_ROWS = 20000

Blocks = Callable[[], Iterator[tuple[np.ndarray, np.ndarray]]]


@dataclass
class SplitInput:
    name: str
    blocks: Blocks  # (X, y) blocks; called once for the streamed split
    arrays: tuple[np.ndarray, np.ndarray] | None = None  # set when the split is in memory
    rereadable: bool = False  # blocks() can be called again (a loader, a dataset), unlike a generator


@dataclass
class PairLeak:
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
    latest_a: Any = None
    earliest_b: Any = None

    @property
    def copies(self) -> int:
        return len(np.union1d(self.exact_b, self.near_b))

    def counts(self) -> dict[str, int]:
        return {"copies": self.copies, "label_conflicts": self.conflicts, "group_rows": self.group_rows_b,
                "temporal_rows": self.temporal_rows_b}


@dataclass
class Within:
    n: int
    unique: int
    verified: bool

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

    @property
    def passed(self) -> bool:
        return not self.failures


def allowed(max_overlap: int | float, n: int) -> int:
    """The largest count that still passes: an int is a count, a float a fraction of ``n``."""
    return int(max_overlap) if isinstance(max_overlap, int) else int(np.floor(max_overlap * n))


class _Match:
    """Accumulates one pair's matches as the stream goes by."""

    def __init__(self, ref_name: str, ref: Reference, y_ref: np.ndarray) -> None:
        self.ref_name, self.ref, self.y_ref = ref_name, ref, y_ref
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
            na, nb, d = self.ref.close(rows, near)
            self.near.append((na + offset, nb, d))

    def result(self, a: str, n_a: int, n_b: int, threshold: float | None) -> PairLeak:
        cat = lambda xs, dt=np.int64: np.concatenate(xs) if xs else np.zeros(0, dt)  # noqa: E731
        ea, eb, conflict = cat(self.exact_a), cat(self.exact_b), cat(self.conflict, bool)
        order = np.lexsort((ea, eb))
        ea, eb, conflict = ea[order], eb[order], conflict[order]
        first = np.unique(eb, return_index=True)[1]
        leak = PairLeak(a, self.ref_name, n_a, n_b, exact_b=eb[first],
                        exact_pairs=list(zip(ea[first][:EXAMPLES].tolist(), eb[first][:EXAMPLES].tolist())))
        bad = np.unique(eb[conflict])
        leak.conflicts = len(bad)
        pos = np.flatnonzero(conflict)
        leak.conflict_pairs = list(zip(ea[pos][:EXAMPLES].tolist(), eb[pos][:EXAMPLES].tolist()))
        if threshold is not None and self.near:
            na, nb, d = (np.concatenate([n[i] for n in self.near]) for i in range(3))
            fresh = ~np.isin(nb, leak.exact_b)
            na, nb, d = na[fresh], nb[fresh], d[fresh]
            order = np.lexsort((d, nb))
            na, nb, d = na[order], nb[order], d[order]
            first = np.unique(nb, return_index=True)[1]
            leak.near_b = nb[first]
            leak.near_pairs = [(int(x), int(z), float(w)) for x, z, w in zip(na[first], nb[first], d[first])][:EXAMPLES]
        return leak


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
) -> LeakageResult:
    t = (threshold if threshold is not None else NEAR_THRESHOLD) if near else None
    head, refs = splits[0], splits[1:]
    stream = head.blocks()
    first = next(stream, None)
    ref_arrays = {s.name: s.arrays if s.arrays is not None else _read(s) for s in refs}
    if classification:  # labels compared as class ids: one-hot in one split, ids in another, still agree
        ref_arrays = {name: (X, class_ids(y)) for name, (X, y) in ref_arrays.items()}
        first = (first[0], class_ids(first[1])) if first is not None else None
        stream = ((X, class_ids(y)) for X, y in stream)
    dtypes = [a[0].dtype for a in ref_arrays.values()] + ([first[0].dtype] if first is not None else [])
    widths = {int(np.prod(a[0].shape[1:], dtype=np.int64)) for a in ref_arrays.values()}
    if first is not None:
        widths.add(int(np.prod(first[0].shape[1:], dtype=np.int64)))
    if len(widths) > 1:
        raise WidthMismatch(f"the splits' samples have different sizes: {sorted(widths)} values")
    canon = Canon(common_dtype(dtypes or [np.float64]), widths.pop() if widths else 0, seed=seed ^ 0x5EED)
    if head.arrays is not None and ref_arrays:  # every key-hash match can be verified on the rows
        canon.choose_window(next(iter(ref_arrays.values()))[0])
    references = {name: Reference(canon, X, near) for name, (X, _) in ref_arrays.items()}
    pairs, within = [], {}

    # the streamed split against every reference
    matches = [_Match(name, references[name], ref_arrays[name][1]) for name in references]
    head_hashes: list[np.ndarray] = []
    n_head, sample_X, sample_y = 0, [], []
    for X, y in itertools.chain([first] if first is not None else [], stream):
        h = canon.hashes(X)
        head_hashes.append(h)
        for match in matches:
            match.feed(n_head, X.reshape(len(X), -1), h, y, t)
        if n_head < FEATURE_ROWS:
            sample_X.append(X[: FEATURE_ROWS - n_head])
            sample_y.append(y[: FEATURE_ROWS - n_head])
        n_head += len(X)
    pairs += [m.result(head.name, n_head, len(ref_arrays[m.ref_name][0]), t) for m in matches]
    within[head.name] = _within_head(np.concatenate(head_hashes) if head_hashes else np.zeros(0, np.uint64), head, canon)

    # references against the later references (val -> test), all in memory
    names = list(references)
    for i, name in enumerate(names):
        rows, h = references[name].rows, references[name].hashes
        within[name] = Within(len(rows), int(group_ids(h, rows, canon)[1].size), True)
        y = ref_arrays[name][1]
        for later in names[i + 1 :]:
            m = _Match(later, references[later], ref_arrays[later][1])
            for start in range(0, len(rows), 4096):
                m.feed(start, rows[start : start + 4096], h[start : start + 4096], y[start : start + 4096], t)
            pairs.append(m.result(name, len(rows), len(references[later].rows), t))

    for pair in pairs:
        _groups_and_time(pair, groups, timestamps)
    targets: list[FeatureLeak] = []
    if classification and sample_X:
        val = ref_arrays.get(names[0]) if names else None
        Xs, ys = np.concatenate(sample_X), np.concatenate(sample_y)
        if Xs.ndim == 2 and ys.ndim == 1:
            targets = target_columns(Xs, ys, val[0] if val else None, val[1] if val else None, TARGET_LIFT, seed)
    failures = _failures(pairs, targets, max_overlap)
    if within_split:  # asked for: repeated rows inside a split fail too
        failures += [f"{name}: {w.repeats} repeated row(s) of {w.n} ({100 * w.repeats / w.n:.1f}%; limit "
                     f"{allowed(max_overlap, w.n)})" for name, w in within.items() if w.repeats > allowed(max_overlap, w.n)]
    return LeakageResult(pairs, within, targets, t, failures)


def _read(split: SplitInput) -> tuple[np.ndarray, np.ndarray]:
    parts = list(split.blocks())
    if not parts:
        raise ValueError(f"{split.name} is empty")
    if len({p[0].shape[1:] for p in parts}) > 1:
        raise WidthMismatch(f"the {split.name} split's samples have different sizes: {sorted({p[0].shape[1:] for p in parts})}")
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def _within_head(h: np.ndarray, head: SplitInput, canon: Canon) -> Within:
    """Repeats in the streamed split: by hash, then verified on the values of only the suspects,
    from memory or by reading the split again (a one-shot stream cannot be, and says so)."""
    n = len(h)
    _, inverse, counts = np.unique(h, return_inverse=True, return_counts=True)
    checkable = head.arrays is not None or head.rereadable
    if not checkable or len(counts) == n:
        return Within(n, len(counts), checkable)
    suspects = np.flatnonzero(counts[inverse.reshape(-1)] > 1)
    if head.arrays is not None:
        rows = head.arrays[0].reshape(n, -1)[suspects]
    else:
        rows = _rows_at(head, suspects)
    distinct = group_ids(h[suspects], rows, canon)[1].size
    return Within(n, n - len(suspects) + int(distinct), True)


def _rows_at(split: SplitInput, index: np.ndarray) -> np.ndarray:
    """The rows at ``index`` (sorted) of a re-readable split, read again block by block."""
    out, start = [], 0
    for X, _ in split.blocks():
        rows = X.reshape(len(X), -1)
        lo, hi = np.searchsorted(index, [start, start + len(rows)])
        if hi > lo:
            out.append(rows[index[lo:hi] - start])
        start += len(rows)
    return np.concatenate(out)


def _groups_and_time(pair: PairLeak, groups: Mapping[str, Any] | None, timestamps: Mapping[str, Any] | None) -> None:
    if groups and pair.a in groups and pair.b in groups:
        ga, gb = np.asarray(groups[pair.a]), np.asarray(groups[pair.b])
        shared = np.intersect1d(ga, gb)
        pair.shared_groups = len(shared)
        pair.group_rows_b = int(np.isin(gb, shared).sum())
        pair.group_examples = shared[:EXAMPLES].tolist()
    if timestamps and pair.a in timestamps and pair.b in timestamps:
        ta, tb = np.asarray(timestamps[pair.a]), np.asarray(timestamps[pair.b])
        if len(ta) and len(tb):
            pair.latest_a, pair.earliest_b = ta.max(), tb.min()
            pair.temporal_rows_b = int((tb < pair.latest_a).sum())


def _failures(pairs: list[PairLeak], targets: list[FeatureLeak], max_overlap: int | float) -> list[str]:
    out = []
    for p in pairs:
        limit = allowed(max_overlap, p.n_b)
        for kind, count in p.counts().items():
            if count > limit:
                out.append(f"{p.a}/{p.b}: {count} {KIND_WORDS[kind]} of {p.n_b} {p.b} samples "
                           f"({100 * count / p.n_b:.1f}%; limit {limit})")
    limit = max_overlap if isinstance(max_overlap, int) else 0
    if len(targets) > limit:
        out.append(f"{len(targets)} column(s) alone predict the label: {[t.column for t in targets][:EXAMPLES]}")
    return out


KIND_WORDS = {
    "copies": "copies (exact or near)",
    "label_conflicts": "copies with a different label",
    "group_rows": "samples in groups shared with the other split",
    "temporal_rows": "samples earlier than the other split's latest time",
}
