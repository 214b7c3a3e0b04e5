"""Exact and near duplicate matching, checked against brute force."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_trainsanity.checks.duplicates import (
    canonical_rows,
    cross_split,
    within_split,
)


def brute_force_exact(A: np.ndarray, B: np.ndarray) -> set[int]:
    a = [tuple(np.where(np.isnan(r), np.inf * 0, r) + 0.0) for r in A.reshape(len(A), -1).astype(np.float64)]
    rows = {tuple(map(lambda v: "nan" if v != v else v, r)) for r in a}
    out = set()
    for j, r in enumerate(B.reshape(len(B), -1).astype(np.float64)):
        key = tuple("nan" if v != v else v + 0.0 for v in r)
        if key in rows:
            out.add(j)
    return out


@settings(max_examples=60, deadline=None)
@given(
    n_a=st.integers(1, 40), n_b=st.integers(1, 40), d=st.integers(1, 6), planted=st.integers(0, 10),
    seed=st.integers(0, 10_000), dtype=st.sampled_from([np.float32, np.float64, np.int64]),
)
def test_exact_matches_equal_brute_force(n_a: int, n_b: int, d: int, planted: int, seed: int, dtype: type) -> None:
    rng = np.random.default_rng(seed)
    A = rng.integers(0, 3, (n_a, d)).astype(dtype)  # small alphabet: natural collisions too
    B = rng.integers(0, 3, (n_b, d)).astype(dtype)
    for _ in range(planted):
        B[rng.integers(n_b)] = A[rng.integers(n_a)]
    result = cross_split(A, B, near=False)
    assert set(result.exact_b.tolist()) == brute_force_exact(A, B)
    for ia, ib in result.exact_pairs:
        np.testing.assert_array_equal(A[ia], B[ib])


def test_sign_of_zero_nan_and_dtype_variants_match() -> None:
    A = np.array([[0.0, 1.5], [np.nan, 2.0], [3.0, 4.0]], dtype=np.float64)
    B = np.array([[-0.0, 1.5], [np.float32("nan"), 2.0], [3.0, 4.001]], dtype=np.float32)
    result = cross_split(A, B, near=False)
    assert result.exact_b.tolist() == [0, 1]
    rows = canonical_rows(np.array([[-0.0, np.nan]]))
    assert not np.signbit(rows[0, 0])


def test_label_conflicts_and_examples() -> None:
    A = np.arange(20.0).reshape(10, 2)
    B = A[[1, 3, 5]].copy()
    ya, yb = np.arange(10), np.array([1, 0, 5])
    result = cross_split(A, B, ya, yb, near=False)
    assert result.label_conflicts == 1 and result.exact_pairs == [(1, 0), (3, 1), (5, 2)]
    assert result.fraction == 1.0


def test_near_duplicates_caught_and_natural_neighbours_not() -> None:
    rng = np.random.default_rng(1)
    A = rng.standard_normal((500, 64))
    B = rng.standard_normal((100, 64))
    B[:20] = A[:20] * (1 + 1e-3 * rng.standard_normal((20, 64)))
    B[20:25] = A[20:25]
    result = cross_split(A, B)
    assert result.exact_b.tolist() == [20, 21, 22, 23, 24]
    assert result.near_b.tolist() == list(range(20))
    assert len(result.overlap_b) == 25
    assert cross_split(A, B, near=False).near_b.size == 0


def test_within_split_counts() -> None:
    X = np.repeat(np.arange(12.0).reshape(4, 3), [1, 2, 3, 4], axis=0)
    w = within_split(X)
    assert (w.n, w.n_unique) == (10, 4)
    assert w.duplicate_fraction == pytest.approx(0.6)


def _nan_payload(payload: int) -> np.float64:
    return np.array([0x7FF8000000000000 | payload], dtype=np.uint64).view(np.float64)[0]


@settings(max_examples=60, deadline=None)
@given(
    n_a=st.integers(1, 30), n_b=st.integers(1, 30), d=st.integers(1, 5), planted=st.integers(0, 8),
    seed=st.integers(0, 10_000), block=st.integers(1, 7),
    dtype_a=st.sampled_from([np.float32, np.float64]), dtype_b=st.sampled_from([np.float32, np.float64]),
)
def test_streamed_matcher_equals_brute_force_with_zero_sign_nan_and_dtype_variants(
    n_a: int, n_b: int, d: int, planted: int, seed: int, block: int, dtype_a: type, dtype_b: type
) -> None:
    from pytest_trainsanity.checks.leakage import SplitInput, find_leakage

    rng = np.random.default_rng(seed)
    values = np.array([0.0, -0.0, 0.5, 1.0, np.nan, _nan_payload(1234)], dtype=np.float64)  # float32-exact values
    A = values[rng.integers(0, len(values), (n_a, d))]
    B = values[rng.integers(0, len(values), (n_b, d))]
    for _ in range(planted):
        B[rng.integers(n_b)] = A[rng.integers(n_a)]
    A, B = A.astype(dtype_a), B.astype(dtype_b)
    ya, yb = rng.integers(0, 2, n_a), rng.integers(0, 2, n_b)
    train = SplitInput("train", lambda: ((A[i : i + block], ya[i : i + block]) for i in range(0, n_a, block)))
    val = SplitInput("val", lambda: iter([(B, yb)]), (B, yb))
    (pair,) = find_leakage([train, val], near=False, classification=False).pairs
    assert set(pair.exact_b.tolist()) == brute_force_exact(A, B)
    expected_conflicts = {
        j for j in brute_force_exact(A, B)
        if any(ya[i] != yb[j] for i in range(n_a) if brute_force_exact(A[i : i + 1], B[j : j + 1]))
    }
    assert pair.conflicts == len(expected_conflicts)


def test_sign_only_differences_group_and_hash_apart() -> None:
    A, B = [1.0, 2.0], [-1.0, 2.0]
    assert within_split(np.array([A, B, B, B], np.float32)) .n_unique == 2
    rng = np.random.default_rng(0)
    pm1 = np.sign(rng.standard_normal((6, 32))).astype(np.float32)
    X = np.repeat(pm1, 2, axis=0)
    assert within_split(X).n_unique == 6
    from pytest_trainsanity.adapters.base import LabelNoise

    shuffled = LabelNoise(np.arange(12), seed=1).targets([X])  # the random-label probe: copies share a label
    assert np.all(shuffled[::2] == shuffled[1::2]) and len(set(shuffled[::2].tolist())) > 1
    from pytest_trainsanity.checks.matching import Canon

    h = Canon(np.dtype(np.float32), 32).hashes(np.sign(rng.standard_normal((2000, 32))).astype(np.float32))
    assert len(np.unique(h)) > 1990  # sign patterns hash apart: no quadratic verification


def test_near_copies_of_huge_float64_values_are_found() -> None:
    rng = np.random.default_rng(2)
    A = rng.random((300, 200)) * 1e20
    B = A[:10] * (1 + 1e-3 * rng.standard_normal((10, 200)))
    assert cross_split(A, B).near_b.tolist() == list(range(10))


@settings(max_examples=40, deadline=None)
@given(
    n_a=st.integers(70, 200), n_b=st.integers(70, 120), d=st.integers(128, 300), planted=st.integers(0, 20),
    twins=st.integers(0, 20), seed=st.integers(0, 10_000), dtype=st.sampled_from([np.float32, np.float64]),
)
def test_key_window_matches_equal_brute_force_on_wide_rows(
    n_a: int, n_b: int, d: int, planted: int, twins: int, seed: int, dtype: type
) -> None:
    """Wide in-memory rows hash only a key window: copies, repeats, and rows that differ from a
    copy in one value (inside or outside the window) are still counted exactly."""
    from pytest_trainsanity.checks.leakage import SplitInput, find_leakage

    rng = np.random.default_rng(seed)
    A = rng.standard_normal((n_a, d)).astype(dtype)
    B = rng.standard_normal((n_b, d)).astype(dtype)
    for _ in range(planted):
        B[rng.integers(n_b)] = A[rng.integers(n_a)]
        A[rng.integers(n_a)] = A[rng.integers(n_a)]  # repeats inside train
    for _ in range(twins):  # equal except one value: the same key window, or not
        j = rng.integers(n_b)
        B[j] = A[rng.integers(n_a)]
        B[j, rng.integers(d)] += 1
    B[:3] *= -0.0  # zero signs and a NaN: canonical values still match
    A[:3] = B[:3]
    A[3, 5] = B[3, 5] = np.nan
    A[3] = B[3]
    ya, yb = rng.integers(0, 2, n_a), rng.integers(0, 2, n_b)
    train = SplitInput("train", lambda: ((A[i : i + 50], ya[i : i + 50]) for i in range(0, n_a, 50)), (A, ya))
    val = SplitInput("val", lambda: iter([(B, yb)]), (B, yb))
    result = find_leakage([train, val], near=False, classification=False)
    assert set(result.pairs[0].exact_b.tolist()) == brute_force_exact(A, B)
    assert result.within["train"].unique == len({tuple("nan" if v != v else v + 0.0 for v in r) for r in A.astype(np.float64)})


def test_a_key_window_that_stops_separating_falls_back_to_full_rows() -> None:
    """The window is chosen on the reference; a stream that is constant there is matched on full
    rows (correct, and no candidate explosion)."""
    from pytest_trainsanity.checks.matching import Canon, Reference, group_ids

    rng = np.random.default_rng(3)
    ref = rng.standard_normal((500, 256)).astype(np.float32)
    canon = Canon(np.dtype(np.float32), 256)
    canon.choose_window(ref)
    assert canon.window is not None
    stream = rng.standard_normal((2000, 256)).astype(np.float32)
    ref[:50, canon.window] = ref[0, canon.window]  # 50 reference rows share one key ...
    stream[:, canon.window] = ref[0, canon.window]  # ... and so does every stream row: 100k candidates
    stream[[10, 20]] = ref[[0, 7]]
    reference = Reference(canon, ref)
    ia, ib = reference.exact(stream, canon.hashes(stream))
    assert sorted(zip(ia.tolist(), ib.tolist())) == [(10, 0), (20, 7)]
    assert reference._full is not None  # the fallback ran
    stream[1] = stream[2]
    ids, firsts = group_ids(canon.hashes(stream), stream, canon)
    assert len(firsts) == 1999 and ids[1] == ids[2]


def test_narrow_or_poorly_separating_data_keeps_full_row_hashing() -> None:
    from pytest_trainsanity.checks.matching import Canon

    canon = Canon(np.dtype(np.float32), 64)
    canon.choose_window(np.random.default_rng(0).standard_normal((500, 64)).astype(np.float32))
    assert canon.window is None  # too narrow to be worth a window
    rows = np.zeros((500, 256), np.float32)
    rows[:, -1] = np.arange(500)  # only the last window tells every row apart
    rows[:, :32] = np.arange(500)[:, None] % 3
    canon = Canon(np.dtype(np.float32), 256)
    canon.choose_window(rows)
    assert canon.window == slice(224, 256)
    spread = np.zeros((500, 256), np.float32)
    spread[:, 0], spread[:, 100] = np.arange(500) % 20, np.arange(500) // 20  # no window alone separates
    canon = Canon(np.dtype(np.float32), 256)
    canon.choose_window(spread)
    assert canon.window is None


def test_cross_and_within_split_use_no_leakages_definitions() -> None:
    """``no_epoch1_overfit`` measures overlap with the same matcher: values not bits, any layout,
    near copies in the first split's (train's) standard deviations."""
    assert cross_split(np.array([[2**64 - 1]], np.uint64), np.array([[-1]], np.int64), near=False).exact_b.size == 0
    assert cross_split(np.array([[2**53 + 1]], np.int64), np.array([[2.0**53]]), near=False).exact_b.size == 0
    assert cross_split(np.array([[1, 2]]), np.array([[1.0, 2.0]]), near=False).exact_b.tolist() == [0]
    rng = np.random.default_rng(7)
    A = np.asfortranarray(rng.standard_normal((200, 6)))  # DataFrame.to_numpy()
    assert cross_split(A, A[:3]).exact_b.tolist() == [0, 1, 2]
    assert within_split(np.asfortranarray(np.repeat(A, 2, axis=0))).n_unique == 200
    years = np.column_stack([rng.integers(2000, 2024, 300), rng.normal(40, 10, 300), rng.normal(50, 15, 300)])
    years[0] = [2019, 35, 50]
    offset = cross_split(years, np.array([[2019, 36, 52.0], [2019, 35.001, 50.001]]))
    assert offset.near_b.tolist() == [1] and offset.near_threshold == 0.01
    tiny = A * 1e-170
    assert cross_split(tiny, tiny[:4] * (1 + 1e-4)).near_b.tolist() == [0, 1, 2, 3]


def test_cross_split_near_copies_that_train_density_explains_are_not_overlap() -> None:
    """10,000 train and 5,000 fresh val points in 2 features: thousands of val points lie within
    0.01 train stds of a train point by chance. Train's own density predicts as many (rows and
    pairs), so they are not overlap; an exact copy still is, and so is a near copy in sparse data."""
    rng = np.random.default_rng(1)
    train, val = rng.standard_normal((10_000, 2)), rng.standard_normal((5_000, 2))
    val[:3] = train[:3]
    c = cross_split(train, val)
    assert len(c.near_b) > 500 and not c.near_counted
    assert 0.5 * len(c.near_b) < c.chance.rows < 2 * len(c.near_b) and 0.5 * c.near_pair_count < c.chance.pairs
    assert c.overlap_b.tolist() == [0, 1, 2] and c.fraction == 3 / 5_000
    sparse = rng.standard_normal((2_000, 8))
    near = rng.standard_normal((300, 8))
    near[5] = sparse[9] + 1e-4
    c = cross_split(sparse, near)
    assert c.near_b.tolist() == [5] and c.near_counted and c.overlap_b.tolist() == [5]
