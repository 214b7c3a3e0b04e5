"""no_leakage's numpy core: streaming, target columns, within-split repeats, limits."""

from __future__ import annotations

import numpy as np
import pytest

from pytest_trainsanity import TrainSetup, check_leakage
from pytest_trainsanity.checks.leakage import SplitInput, allowed, find_leakage

rng = np.random.default_rng(0)


def arrays(name: str, X: np.ndarray, y: np.ndarray, block: int = 64) -> SplitInput:
    return SplitInput(name, lambda: ((X[i : i + block], y[i : i + block]) for i in range(0, len(X), block)), (X, y))


def test_target_column_is_found_and_fails() -> None:
    X, y = rng.standard_normal((400, 6)), rng.integers(0, 4, 400)
    Xv, yv = rng.standard_normal((100, 6)), rng.integers(0, 4, 100)
    X[:, 2], Xv[:, 2] = y * 1.5, yv * 1.5
    result = find_leakage([arrays("train", X, y), arrays("val", Xv, yv)])
    assert [t.column for t in result.targets] == [2]
    assert result.failures == ["1 column(s) alone predict the label: 2"]
    assert find_leakage([arrays("train", X, y), arrays("val", Xv, yv)], max_overlap=1).passed


def test_within_split_repeats_are_reported_not_failed() -> None:
    X = np.repeat(rng.standard_normal((50, 8)), 3, axis=0)
    y = np.repeat(rng.integers(0, 2, 50), 3)
    result = find_leakage([arrays("train", X, y), arrays("val", rng.standard_normal((20, 8)), rng.integers(0, 2, 20))],
                          classification=False)
    assert result.passed
    assert result.within["train"].repeats == 100
    asked = find_leakage([arrays("train", X, y), arrays("val", rng.standard_normal((20, 8)), rng.integers(0, 2, 20))],
                         classification=False, within_split=True)
    assert asked.failures == ["train: 100 repeated row(s) of 150 (66.7%; limit 0)"]


def test_a_one_shot_generator_streams_and_its_repeats_are_confirmed_in_the_same_pass() -> None:
    X = np.repeat(rng.standard_normal((300, 16)).astype(np.float32), 2, axis=0)
    y = rng.integers(0, 3, 600)
    Xv, yv = X[:40:2].copy(), y[:40:2].copy()
    gen = ((X[i : i + 100], y[i : i + 100]) for i in range(0, 600, 100))
    report = check_leakage(TrainSetup(train=gen, val=(Xv, yv)), near_duplicates=False)
    assert not report.passed
    assert report.metrics["train_val_exact"] == 20 and report.metrics["train_repeated_rows"] == 300
    assert "train 300 repeated row(s) of 600 (" in report.message and "64-bit" not in report.message
    assert "val accuracy can be inflated by up to 100 points" in report.message


def test_val_test_pair_and_fraction_limits() -> None:
    X, y = rng.standard_normal((200, 5)), rng.integers(0, 2, 200)
    Xv, yv = rng.standard_normal((50, 5)), rng.integers(0, 2, 50)
    Xt, yt = rng.standard_normal((40, 5)), rng.integers(0, 2, 40)
    Xt[:4], yt[:4] = Xv[:4], yv[:4]
    result = find_leakage([arrays("train", X, y), arrays("val", Xv, yv), arrays("test", Xt, yt)], classification=False)
    by_pair = {(p.a, p.b): p for p in result.pairs}
    assert set(by_pair) == {("train", "val"), ("train", "test"), ("val", "test")}
    assert by_pair[("val", "test")].copies == 4 and by_pair[("train", "test")].copies == 0
    assert result.failures == ["val/test: 4 copies (exact or near) of 40 test samples (10.0%; limit 0)"]
    assert allowed(0.1, 40) == 4 and allowed(3, 40) == 3
    assert find_leakage([arrays("train", X, y), arrays("val", Xv, yv), arrays("test", Xt, yt)],
                        classification=False, max_overlap=0.1).passed


def test_users_arrays_are_not_written() -> None:
    X = rng.standard_normal((100, 4)).astype(np.float32)
    X[0, 0] = -0.0
    X[1, 1] = np.nan
    before = X.copy()
    find_leakage([arrays("train", X, np.zeros(100, int)), arrays("val", X[:10], np.zeros(10, int))])
    assert np.array_equal(X.view(np.uint32), before.view(np.uint32))


def test_empty_blocks_are_skipped() -> None:
    X, y = rng.standard_normal((30, 4)), rng.integers(0, 2, 30)
    blocks = [(X[:10], y[:10]), (X[10:10], y[10:10]), (X[10:], y[10:]), (X[:0], y[:0])]
    report = check_leakage(TrainSetup(train=iter(blocks), val=(X[:3], y[:3])), near_duplicates=False)
    assert report.metrics["train_val_exact"] == 3


def test_one_hot_labels_in_one_split_and_ids_in_another_do_not_conflict() -> None:
    X = rng.standard_normal((10, 4))
    Y = np.eye(10)[np.arange(10) % 3]  # one-hot train labels
    result = find_leakage([arrays("train", X, Y), arrays("val", X[:3].copy(), np.arange(3))], classification=True)
    (pair,) = result.pairs
    assert len(pair.exact_b) == 3 and pair.conflicts == 0


# --- the row matcher (issue 11): layouts, the near-copy metric, magnitudes, values not bits ---


def stream(name: str, blocks: list[tuple[np.ndarray, np.ndarray]]) -> SplitInput:
    """A one-shot generator of blocks: read once, never held whole."""
    return SplitInput(name, lambda: iter(blocks))


def leak(train: SplitInput, val: SplitInput, **kw) -> tuple[list[int], list[int]]:
    (pair,) = find_leakage([train, val], classification=False, **kw).pairs
    return pair.exact_b.tolist(), pair.near_b.tolist()


def planted(X: np.ndarray) -> tuple[np.ndarray, list[int], list[int]]:
    """Val rows of the same shape: 4 exact copies of train rows, 4 with noise of 1e-3 train std, 12 new."""
    rows = np.ascontiguousarray(X).reshape(len(X), -1).astype(np.float64)
    std = rows.std(axis=0)
    val = np.random.default_rng(1).standard_normal((20, rows.shape[1])) * std + rows.mean(axis=0)
    val[:4] = rows[10:14]
    val[4:8] = rows[20:24] + 1e-3 * std * np.random.default_rng(2).standard_normal((4, rows.shape[1]))
    return val.reshape((20,) + X.shape[1:]).astype(X.dtype), [0, 1, 2, 3], [4, 5, 6, 7]


def layouts() -> dict[str, np.ndarray]:
    base = np.random.default_rng(3).standard_normal((600, 8, 12))
    flat = base.reshape(600, -1)
    return {
        "fortran": np.asfortranarray(flat[:, :24]),  # what DataFrame.to_numpy() gives for several float columns
        "strided columns": flat[:, ::4],
        "strided rows": base.reshape(200, -1)[:, :30].repeat(3, axis=0)[::3] + np.arange(200)[:, None],
        "transposed": np.ascontiguousarray(flat[:, :20].T).T,
        "3-D odd strides": base[:, 1::3, ::5],
        "3-D transposed": base.transpose(0, 2, 1),
        "3-D fortran": np.asfortranarray(base[:, :3, :5]),
        "float32 fortran": np.asfortranarray(flat[:, :16].astype(np.float32)),
    }


def test_every_memory_layout_is_matched_in_memory_and_streamed() -> None:
    """Fortran order (DataFrame.to_numpy()) crashed the matcher ("last axis must be contiguous")."""
    for name, X in layouts().items():
        y = np.zeros(len(X), int)
        val, exact, near = planted(X)
        odd_val = np.asfortranarray(val) if val.ndim == 2 else val.transpose(0, 2, 1).copy().transpose(0, 2, 1)
        for train in (arrays("train", X, y), stream("train", [(X[i : i + 100], y[i : i + 100]) for i in range(0, len(X), 100)])):
            assert leak(train, arrays("val", val, y[:20])) == (exact, near), name
            assert leak(train, arrays("val", odd_val, y[:20])) == (exact, near), name


def test_a_strided_split_is_read_block_by_block_never_copied_whole() -> None:
    import tracemalloc

    X = np.random.default_rng(4).standard_normal((16000, 32, 32)).astype(np.float32).transpose(0, 2, 1)  # axes do not merge
    y = np.zeros(len(X), int)
    val, exact, near = planted(X[:2000])
    for near_search in (False, True):
        tracemalloc.start()
        found = leak(arrays("train", X, y, block=len(X)), arrays("val", val, y[:20]), near=near_search)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert found == (exact, near if near_search else [])
        assert peak < X.nbytes / 2, (near_search, peak, X.nbytes)


def test_near_copies_are_judged_in_train_standard_deviations() -> None:
    """Relative L2 flagged rows that share a large offset and missed copies near the origin."""
    years = np.random.default_rng(5).integers(2000, 2024, 500)
    X = np.column_stack([years, rng.normal(40, 10, 500), rng.normal(50, 15, 500)])
    X[0] = [2019, 35, 50]
    assert leak(arrays("train", X, np.zeros(500, int)), arrays("val", np.array([[2019, 36, 52.0]]), np.zeros(1, int))) == ([], [])
    Z = rng.standard_normal((500, 8))
    Z[:5] *= 1e-4  # rows near the origin ...
    V = Z[:5] + 1e-4 * rng.standard_normal((5, 8))  # ... and copies 1e-4 train std away
    assert leak(arrays("train", Z, np.zeros(500, int)), arrays("val", V, np.zeros(5, int))) == ([], [0, 1, 2, 3, 4])
    report = check_leakage(TrainSetup(train=(Z, np.zeros(500, int)), val=(V, np.zeros(5, int))))
    assert "near copies: RMS difference <= 0.01 train standard deviations per feature" in report.message
    assert report.metrics["train_val_near"] == 5


def test_constant_columns_and_a_one_row_train_neither_blow_up_nor_make_everything_a_copy() -> None:
    X = np.column_stack([np.zeros(300), np.full(300, 7.0), rng.standard_normal((300, 4))])
    V = X[:20].copy()
    V[:10, 2:] += 0.5  # distinct rows
    V[10:, 2:] += 1e-4  # near copies
    V[:5, 0] = 1.0  # a value the constant column never takes in train: measured in the median std
    with np.errstate(all="raise"):
        assert leak(arrays("train", X, np.zeros(300, int)), arrays("val", V, np.zeros(20, int))) == ([], list(range(10, 20)))
        one = np.array([[3.0, 4.0, 5.0]])
        assert leak(arrays("train", one, np.zeros(1, int)), arrays("val", np.array([[3.0, 4.0, 5.00001], [3.0, 5.0, 5.0]]), np.zeros(2, int))) == ([], [0])
        zeros = np.zeros((1, 3))
        assert leak(arrays("train", zeros, np.zeros(1, int)), arrays("val", np.array([[0, 0, 1e-3], [0, 0, 1.0]]), np.zeros(2, int))) == ([], [0])


def test_extreme_magnitudes_neither_overflow_nor_underflow() -> None:
    big = (rng.random((300, 8)) * 1e20).astype(np.float32)  # squares overflow float32
    tiny = rng.random((300, 8)) * 1e-170  # squares underflow float64
    for X in (big, tiny):
        V = (X[:5] * (1 + 1e-4 * rng.standard_normal((5, 8)))).astype(X.dtype)
        assert leak(arrays("train", X, np.zeros(300, int)), arrays("val", V, np.zeros(5, int))) == ([], [0, 1, 2, 3, 4])
    huge = np.array([[1e300]])
    assert leak(arrays("train", huge, np.zeros(1, int)), arrays("val", -huge, np.zeros(1, int))) == ([], [])
    spread = np.array([[1e308], [-1e308], [0.0]])
    assert leak(arrays("train", spread, np.zeros(3, int)), arrays("val", np.array([[-1e308], [5e307]]), np.zeros(2, int))) == ([0], [])


def test_exact_copies_are_equal_values_never_equal_bits() -> None:
    one = np.zeros(1, int)
    cases = [
        (np.array([[2**64 - 1]], np.uint64), np.array([[-1]], np.int64), []),
        (np.array([[2**53 + 1]], np.int64), np.array([[2.0**53]]), []),
        (np.array([[2**63 - 1]], np.int64), np.array([[2.0**63]]), []),
        (np.array([[2**64 - 1, 3]], np.uint64), np.array([[2**64 - 1, 3]], np.uint64), [0]),
        (np.array([[1, 2]], np.int64), np.array([[1.0, 2.0]], np.float32), [0]),
        (np.array([[-0.0, np.nan]]), np.array([[0.0, np.nan]], np.float16), [0]),
    ]
    for a, b, expected in cases:
        assert leak(arrays("train", a, one), arrays("val", b, one), near=False) == (expected, []), (a, b)
        assert leak(stream("train", [(a, one)]), arrays("val", b, one), near=False) == (expected, []), (a, b)


def test_a_stream_that_changes_dtype_matches_values_it_holds_only() -> None:
    """A later float64 block was cast to the first block's float32 and matched values it does not hold."""
    val = np.array([[np.float32(0.1), 1.0], [0.25, 1.0], [7.0, 8.0]], np.float32)
    blocks = [(np.array([[7.0, 8.0]], np.float32), np.zeros(1, int)),
              (np.array([[0.1, 1.0], [0.25, 1.0], [0.1, 1.0]], np.float64), np.zeros(3, int))]
    result = find_leakage([stream("train", blocks), arrays("val", val, np.zeros(3, int))], near=False, classification=False)
    assert result.pairs[0].exact_b.tolist() == [1, 2]  # 0.1 (float64) is not float32(0.1); 0.25 is 0.25
    assert result.within["train"].repeats == 1  # the two float64 0.1 rows are one value
    ints = [(np.array([[1, 2]], np.int64), np.zeros(1, int)), (np.array([[2**63 + 5, 2]], np.uint64), np.zeros(1, int)),
            (np.array([[1.0, 2.0], [1.5, 2.0]]), np.zeros(2, int))]
    val = np.array([[1, 2], [-9223372036854775803, 2]], np.int64)  # the uint64 row's bits, as int64
    assert find_leakage([stream("train", ints), arrays("val", val, np.zeros(2, int))], near=False,
                        classification=False).pairs[0].exact_b.tolist() == [0]


def test_chance_neighbours_in_dense_data_are_not_counted_as_near_copies() -> None:
    """A fixed threshold in a large table of two features finds distinct rows that close by chance:
    50,000 train rows, 5,000 fresh val rows from the same distribution, no copy planted, yet
    thousands of val rows have a train row within 0.01 train stds. val's own density (its rows'
    near neighbours within val) predicts that many: they are not counted and the check passes. A
    copy planted in sparse data is still counted (one val row of 300, 8 features)."""
    rng = np.random.default_rng(0)
    train, val = rng.standard_normal((50_000, 2)), rng.standard_normal((5_000, 2))
    yt, yv = rng.integers(0, 2, 50_000), rng.integers(0, 2, 5_000)
    report = check_leakage(TrainSetup(train=(train, yt), val=(val, yv)))
    m = report.metrics
    assert m["train_val_near"] > 1_000 and not m["train_val_near_counted"]
    assert 0.5 * m["train_val_near"] < m["train_val_near_chance"] < 2 * m["train_val_near"]
    assert report.passed, report.message
    assert "near copies are not counted: chance neighbours give as many at this density" in report.message
    assert f"0 exact and {m['train_val_near']} near copies of 5000 val samples (0 counted, 0.0%)" in report.message

    val[:30] = train[:30]  # exact copies are still copies
    report = check_leakage(TrainSetup(train=(train, yt), val=(val, yv)))
    assert not report.passed and m["train_val_near"] > 1_000 and report.metrics["train_val_copies"] == 30

    sparse = rng.standard_normal((1_200, 8))
    near_val = rng.standard_normal((300, 8))
    near_val[0] = sparse[7] + 1e-4
    report = check_leakage(TrainSetup(train=(sparse, rng.integers(0, 2, 1_200)), val=(near_val, rng.integers(0, 2, 300))))
    assert report.metrics["train_val_near"] == 1 and report.metrics["train_val_near_counted"]
    assert not report.passed and report.metrics["train_val_near_chance"] == 0.0


def test_equal_rows_in_a_small_feature_space_are_not_counted_as_copies() -> None:
    """Five binary features (32 possible rows): every one of 200 val rows equals some train row, and
    none is a copy. val's own repeats predict as many, so they are not counted; the same exact
    copies with one continuous feature beside them are copies again (there, equal rows are
    duplication, not chance), and so are planted copies in that data."""
    rng = np.random.default_rng(0)
    X, y = rng.integers(0, 2, (1_200, 5)).astype(float), rng.integers(0, 2, 1_200)
    report = check_leakage(TrainSetup(train=(X[:1_000], y[:1_000]), val=(X[1_000:], y[1_000:])))
    m = report.metrics
    assert report.passed and m["train_val_exact"] == 200 and not m["train_val_exact_counted"], report.message
    assert m["train_val_copies"] == 0 and 150 < m["train_val_exact_chance"] <= 200
    assert ("the 200 exact copies (and their label conflicts) are not counted: in so small a feature space equal rows "
            "recur by chance (every feature takes at most 2 values") in report.message
    assert "200 exact and 0 near copies of 200 val samples (0 counted, 0.0%)" in report.message
    assert report.message.split("\n")[1].endswith(" (not counted, with the exact copies)")
    Z = np.column_stack([X, rng.standard_normal(1_200)])
    Z[1_000:1_030] = Z[:30]
    report = check_leakage(TrainSetup(train=(Z[:1_000], y[:1_000]), val=(Z[1_000:], y[1_000:])))
    assert not report.passed and report.metrics["train_val_copies"] == 30 and report.metrics["train_val_exact_counted"]


def test_overfit_overlap_leaves_out_equal_rows_of_a_small_feature_space() -> None:
    """The same for no_epoch1_overfit's train/val overlap (``cross_split``): one-hot rows recur by
    chance; train's own repeats say so."""
    from pytest_trainsanity.checks.duplicates import cross_split

    rng = np.random.default_rng(2)
    onehot = np.eye(6)[rng.integers(0, 6, 1_500)]
    c = cross_split(onehot[:1_200], onehot[1_200:])
    assert len(c.exact_b) == 300 and not c.exact_counted and c.fraction == 0.0 and c.few_values == 2
    wide = np.column_stack([onehot, rng.standard_normal(1_500)])
    wide[1_200:1_210] = wide[:10]
    c = cross_split(wide[:1_200], wide[1_200:])
    assert c.exact_counted and c.overlap_b.tolist() == list(range(10))


def test_group_ids_of_any_python_type_and_missing_ids() -> None:
    """Group ids as Python objects: strings with None among them (a pandas column with gaps) raised
    "'<' not supported between instances of 'NoneType' and 'str'", and ids of mixed types (an int 7
    and a str "7" are different ids) as well. Missing ids (None, NaN) are in no group, shared with
    nobody, and counted; float ids with NaN the same."""
    X, Xv = rng.standard_normal((6, 3)), rng.standard_normal((5, 3))
    y, yv = np.zeros(6, int), np.zeros(5, int)
    cases = {
        "strings with None": (np.array(["a", None, "b", "c", None, "d"], object),
                              np.array(["b", None, "x", "d", "d"], object), ["b", "d"], 3, (2, 1)),
        "mixed types": (np.array([7, "7", 3.5, None, "z", 8], object),
                        np.array(["7", 8.0, float("nan"), "q", 9], object), ["7", 8], 2, (1, 1)),
        "floats with NaN": (np.array([1.0, np.nan, 2.0, 3.0, 4.0, 5.0]),
                            np.array([np.nan, np.nan, 2.0, 6.0, 5.0]), [2.0, 5.0], 2, (1, 2)),
    }
    for name, (ga, gb, shared, rows, missing) in cases.items():
        result = find_leakage([arrays("train", X, y), arrays("val", Xv, yv)], near=False, groups={"train": ga, "val": gb})
        pair = result.pairs[0]
        assert (pair.shared_groups, pair.group_rows_b, sorted(pair.group_examples, key=repr)) == (
            len(shared), rows, sorted(shared, key=repr)), name
        assert (pair.missing_group_a, pair.missing_group_b) == missing, name
        assert not result.passed and result.failures[0].startswith(f"train/val: {rows} samples in groups shared"), name


def test_pandas_missing_values_in_group_ids_and_times() -> None:
    """A pandas ``string`` / ``object`` column with gaps holds ``pd.NA``, whose ``!=`` is NA and NA's
    truth a TypeError: group ids and times from such a column raised "boolean value of NA is
    ambiguous". NA is missing, like None and NaN."""
    pd = pytest.importorskip("pandas")
    X, Xv = rng.standard_normal((4, 2)), rng.standard_normal((3, 2))
    groups = {"train": pd.Series(["a", None, "b", "c"], dtype="string"), "val": pd.Series(["b", pd.NA, "z"], dtype="string")}
    times = {"train": pd.Series([1.0, 2.0, None, 4.0], dtype="Float64").astype(object),
             "val": pd.array([3.0, pd.NA, 5.0], dtype=object)}
    result = find_leakage([arrays("train", X, np.zeros(4, int)), arrays("val", Xv, np.zeros(3, int))], near=False,
                          groups=groups, timestamps=times)
    pair = result.pairs[0]
    assert (pair.shared_groups, pair.group_rows_b, pair.group_examples) == (1, 1, ["b"])
    assert (pair.missing_group_a, pair.missing_group_b, pair.missing_time_a, pair.missing_time_b) == (1, 1, 1, 1)
    assert (pair.latest_a, pair.temporal_rows_b) == (4.0, 1)


def test_fortran_order_blocks_hash_as_row_major_ones() -> None:
    """A Fortran-order float block (a table's codes, DataFrame.to_numpy()) is hashed column by column;
    the hashes must be the row-major path's bit for bit (-0.0, NaN payloads, inf, a key window), or a
    train block would never match a val row held the other way."""
    from pytest_trainsanity.checks.matching import Canon

    rng = np.random.default_rng(3)
    for dtype in (np.float64, np.float32):
        X = rng.standard_normal((3000, 40)).astype(dtype)
        X[rng.random(X.shape) < 0.05] = -0.0
        X[rng.random(X.shape) < 0.05] = np.inf
        X[rng.random(X.shape) < 0.05] = np.nan
        other_nan = np.array([0xFFC01234], np.uint32).view(np.float32)[0] if dtype == np.float32 else \
            np.array([0xFFF8000000001234], np.uint64).view(np.float64)[0]
        X[rng.random(X.shape) < 0.05] = other_nan  # a NaN with another sign and payload
        canon = Canon(dtype, 40)
        F = np.asfortranarray(X)
        assert canon._by_columns(F) and not canon._by_columns(X)
        for window in (None, slice(8, 24)):
            canon.window = window
            row_major = canon.hashes(X)
            assert np.array_equal(canon.hashes(F), row_major)
            assert np.array_equal(canon.hashes(F[100:2100]), row_major[100:2100])  # a row slice: columns still contiguous
        negated_zero = F.copy(order="F")
        negated_zero[negated_zero == 0] = 0.0
        assert np.array_equal(canon.hashes(negated_zero), canon.hashes(F))


def test_repeats_of_a_streamed_split_are_the_rows_whose_full_hash_repeats() -> None:
    """The streamed split's repeats (by hash, before verification): a prefilter of the repeated keys'
    top bits lets ~1% of rows through to a search among the repeated keys. Against brute force, on
    hashes built so that many rows share their top 32 bits (and so pass the prefilter) without being
    equal, with true repeats among them. 3M keys: the repeated keys are found by two threads, each
    sorting one half of the key range."""
    from pytest_trainsanity.checks.leakage.measure import PARALLEL_SORT, _Repeats

    rng = np.random.default_rng(4)
    n = 3_000_000
    assert n >= PARALLEL_SORT
    top = rng.integers(0, 2**32, n, dtype=np.uint64)  # rows whose top 32 bits are their own (most of them)...
    pooled = rng.random(n) < 0.3  # ... and rows sharing their top 32 bits with ~45 others without being equal
    top[pooled] = rng.integers(0, 2**32, 20_000, dtype=np.uint64)[rng.integers(0, 20_000, int(pooled.sum()))]
    h = (top << np.uint64(32)) | rng.integers(0, 2**32, n, dtype=np.uint64)
    h[rng.choice(n, 500, replace=False)] = h[rng.choice(n, 500, replace=False)]  # true repeats
    _, inverse, counts = np.unique(h, return_inverse=True, return_counts=True)
    expected = np.flatnonzero(counts[inverse] > 1)
    r = _Repeats(h)
    assert 500 <= len(expected) <= 1000
    assert np.array_equal(r.suspects, expected)
    assert r.unique_by_hash == len(counts)


def test_a_streamed_splits_repeats_need_both_hashes_equal() -> None:
    """Rows of a streamed split whose key hashes collide are repeats only if their independent check
    hashes agree too (the 128-bit key); labels are compared within the confirmed groups only."""
    from pytest_trainsanity.checks.leakage.measure import _Repeats
    from pytest_trainsanity.checks.matching import Canon

    h = np.array([5, 9, 5, 5, 7, 9], np.uint64)
    checks = np.array([1, 4, 1, 2, 3, 4], np.uint64)  # row 3 collides with rows 0 and 2 on the key hash only
    labels = np.array([0, 1, 0, 1, 0, 2], np.float64)  # rows 1 and 5 repeat with different labels; row 3 is no repeat
    streamed = SplitInput("train", lambda: iter(()))
    within = _Repeats(h, labels, checks).verify(streamed, Canon(np.float64, 1))
    assert (within.n, within.repeats, within.conflicts) == (6, 2, 2)


def test_a_long_fortran_order_block_is_hashed_in_row_chunks_with_the_same_hashes() -> None:
    from pytest_trainsanity.checks.matching import COLUMN_ROWS, Canon

    X = np.random.default_rng(5).standard_normal((COLUMN_ROWS + 1234, 3))
    canon, check = Canon(np.float64, 3), Canon(np.float64, 3, seed=11)
    h, h2 = canon.hashes_and_checks(np.asfortranarray(X), check)
    assert np.array_equal(h, canon.hashes(X)) and np.array_equal(h2, check.hashes(X))


def test_a_streamed_reference_is_read_into_one_array_as_its_blocks_come() -> None:
    """``_read``: blocks of one dtype fill one array of the announced row count (Fortran order stays
    Fortran order); another dtype, or more rows than announced, falls back to joining the blocks."""
    from pytest_trainsanity.checks.leakage.measure import _read

    rng = np.random.default_rng(9)
    X = rng.standard_normal((1000, 4))
    y = rng.integers(0, 3, 1000)
    blocks = [(np.asfortranarray(X[i: i + 300]), y[i: i + 300]) for i in range(0, 1000, 300)]
    for rows in (1000, 700, None):  # known, too few announced, unknown
        Xr, yr = _read(SplitInput("val", lambda: iter(blocks), rows=rows))
        assert np.array_equal(Xr, X) and np.array_equal(yr, y)
    Xr, _ = _read(SplitInput("val", lambda: iter(blocks), rows=1000))
    assert Xr.flags.f_contiguous
    mixed = [(X[:500].astype(np.float32), y[:500]), (X[500:], y[500:])]
    Xr, yr = _read(SplitInput("val", lambda: iter(mixed), rows=1000))
    assert Xr.dtype == np.float64 and np.array_equal(Xr[500:], X[500:]) and np.array_equal(Xr[:500], X[:500].astype(np.float32))
    with pytest.raises(ValueError, match="empty"):
        _read(SplitInput("val", lambda: iter(()), rows=10))


def test_a_streamed_splits_labels_are_kept_in_the_narrowest_int_without_losing_one() -> None:
    """Class ids are held as int8 while they fit, widened when a later block needs it; conflicts
    among the repeats are counted the same (ids 0..9, then ids that a wrapping cast to int8 / int16
    would turn back into the repeated rows' own labels)."""
    from pytest_trainsanity.checks.leakage.measure import _narrowest

    assert [_narrowest(np.array(v)) for v in ([0, 9], [-1, 300], [0, 70_000], [0, 2**40])] == [
        np.int8, np.int16, np.int32, np.int64]
    rng = np.random.default_rng(12)
    X = rng.standard_normal((900, 3))
    y = rng.integers(0, 10, 900)
    X[300:310], y[300:310] = X[:10], y[:10] + 256  # repeats of rows 0..9 with a label int8 cannot hold
    X[600:610], y[600:610] = X[10:20], y[10:20] + 65_536
    X[610:620], y[610:620] = X[20:30], y[20:30]  # repeats with their own label: no conflict
    blocks = [(X[i: i + 300], y[i: i + 300]) for i in range(0, 900, 300)]
    result = find_leakage([stream("train", blocks)], near=False, classification=False, within_split=True)
    within = result.within["train"]
    assert (within.repeats, within.conflicts) == (30, 40)
