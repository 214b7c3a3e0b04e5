from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from pytest_trainsanity.checks import features
from pytest_trainsanity.checks.features import (
    MAX_RESIDUAL_CORR,
    TARGET_LIFT,
    FeatureLeak,
    RowSample,
    rows_needed,
    single_feature_leak,
    target_columns,
)


def test_label_column_in_train_only_is_found() -> None:
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((800, 20)), rng.integers(0, 5, 800)
    Xv, yv = rng.standard_normal((200, 20)), rng.integers(0, 5, 200)
    X[:, 7] = y
    Xv[:, 7] = rng.integers(0, 5, 200)
    leak = single_feature_leak(X, y, Xv, yv)
    assert leak is not None and leak.column == 7
    assert leak.train_acc == 1.0 and leak.val_acc < 0.4 and leak.score > 0.9


def test_a_column_that_predicts_both_splits_is_not_a_leak() -> None:
    rng = np.random.default_rng(1)
    y, yv = rng.integers(0, 2, 600), rng.integers(0, 2, 200)
    X = np.c_[rng.standard_normal((600, 5)), y + 0.3 * rng.standard_normal(600)]
    Xv = np.c_[rng.standard_normal((200, 5)), yv + 0.3 * rng.standard_normal(200)]
    leak = single_feature_leak(X, y, Xv, yv)
    # the most suspicious column is some noise column with a small score: column 5 predicts val too
    assert leak is not None and leak.score < 0.2


def test_images_are_not_tabular() -> None:
    X = np.zeros((10, 1, 4, 4))
    assert single_feature_leak(X, np.zeros(10, int), X, np.zeros(10, int)) is None


# Small fixtures (issue 11, item 7): the rule is scored on held-out rows and names a column only with
# evidence that holds for the sample size, corrected for the columns tried.


def test_tiny_noise_fixtures_blame_no_feature() -> None:
    for n in (10, 20, 40):
        for seed in range(10):
            rng = np.random.default_rng(seed)
            X, y = rng.standard_normal((n, 20)), rng.integers(0, 2, n)
            Xv, yv = rng.standard_normal((n, 20)), rng.integers(0, 2, n)
            leak = single_feature_leak(X, y, Xv, yv)
            assert leak is not None and leak.score == 0.0, (n, seed, leak)
            assert not target_columns(X, y, Xv, yv).columns


def test_below_the_rows_a_verdict_needs_the_search_says_so() -> None:
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((18, 20)), np.tile([0, 1], 9)
    X[:, 3] = y  # even the label itself cannot be told from luck in 18 rows over 20 columns
    search = target_columns(X, y)
    assert (search.judged, search.n, search.needed) == (False, 18, rows_needed(0.5, 20))
    assert rows_needed(0.5, 20) == 27  # 0.75 ** 27 < 0.01 / 20: a column right on every row is named
    leak = single_feature_leak(X, y, X, y)
    assert leak is not None and not leak.judged and leak.score == 0.0
    assert [t.column for t in target_columns(np.tile(X, (2, 1)), np.tile(y, 2)).columns] == [3]


def test_a_recoded_label_is_named_from_few_rows() -> None:
    rng = np.random.default_rng(3)
    y = rng.integers(0, 3, 60)
    X = np.c_[rng.standard_normal((60, 8)), np.array([5.0, -2.0, 9.0])[y]]
    (found,) = target_columns(X, y).columns
    assert (found.column, found.train_acc, found.residual_bound) == (8, 1.0, 0.0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_recoded_label_beside_large_columns_is_named_in_either_precision(dtype: type) -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 1000)
    X = (1000 * rng.random((1000, 30))).astype(dtype)
    X[:, 5] = np.array([3.3, 7.1, 100.7], dtype)[y]  # its within-class spread is rounding, not a correlation
    assert [t.column for t in target_columns(X, y).columns] == [5]


# A leaked target with moderate noise on real data (issue 11, item 11), and real columns left alone.


def breast_cancer() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_breast_cancer

    return load_breast_cancer(return_X_y=True)


def test_label_plus_noise_is_named_on_breast_cancer_and_real_columns_are_not() -> None:
    X, y = breast_cancer()
    assert target_columns(X, y).columns == []  # "worst perimeter" alone: lift 0.78, but it moves with radius and area
    for seed in range(5):
        planted = np.c_[X, y + 0.3 * np.random.default_rng(seed).standard_normal(len(y))]
        train = np.random.default_rng(seed).permutation(len(y))[:455]  # an 80% train split
        (found,) = target_columns(planted[train], y[train]).columns
        assert found.column == 30 and found.train_lift >= TARGET_LIFT
        assert found.residual_bound is not None and found.residual_bound <= MAX_RESIDUAL_CORR


def test_strong_real_features_are_not_target_columns() -> None:
    from sklearn.datasets import load_digits, load_iris, load_wine

    for load in (load_iris, load_wine, load_digits):
        X, y = load(return_X_y=True)
        assert target_columns(X, y).columns == [], load.__name__  # iris petal width alone: lift 0.95
        for seed in range(20):  # small samples of them neither: the evidence must hold for the sample size
            rows = np.random.default_rng(seed).choice(len(y), 60, replace=False)
            assert target_columns(X[rows], y[rows], seed=seed).columns == [], (load.__name__, seed)


def test_one_strong_real_column_alone_is_not_called_computed_from_the_label() -> None:
    """With no other column to move with, "moves with no other column" is no evidence: iris petal
    width alone (lift 0.95, short of the near-perfect bound) is a measurement, not a leak."""
    from sklearn.datasets import load_iris

    X, y = load_iris(return_X_y=True)
    for cols in ([3], [2], [3, 0]):
        assert target_columns(X[:, cols], y).columns == [], cols
    recoded = np.repeat(np.array([[5.0], [-1.0], [7.0]]), 40, axis=0)  # the label itself, one column: still named
    assert target_columns(recoded, np.repeat([0, 1, 2], 40)).columns != []


def test_overfit_rule_names_a_noisy_label_column_in_train_only() -> None:
    X, y = breast_cancer()
    rng = np.random.default_rng(0)
    order = rng.permutation(len(y))
    tr, va = order[:455], order[455:]
    Xt = np.c_[X[tr], y[tr] + 0.3 * rng.standard_normal(len(tr))]
    Xv = np.c_[X[va], rng.permutation(y[va]) + 0.3 * rng.standard_normal(len(va))]
    leak = single_feature_leak(Xt, y[tr], Xv, y[va])
    assert leak is not None and leak.column == 30 and leak.score >= 0.5
    Xv[:, 30] = y[va] + 0.3 * rng.standard_normal(len(va))  # in val as well: not a train/val gap
    assert single_feature_leak(Xt, y[tr], Xv, y[va]).score == 0.0


def test_regression_target_plus_noise_is_named() -> None:
    from sklearn.datasets import load_diabetes

    X, y = load_diabetes(return_X_y=True)
    assert target_columns(X, y, task="regression").columns == []  # bmi alone: R^2 0.32
    planted = np.c_[X, y + 0.3 * y.std() * np.random.default_rng(0).standard_normal(len(y))]
    (found,) = target_columns(planted, y, task="regression").columns
    assert found.column == 10 and found.train_acc >= 0.85


# Speed: a uniform sample of the rows, a screen, the exact rule on a few columns.


def test_the_exact_rule_runs_on_a_few_screened_columns(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(0)
    X, y = rng.random((30_000, 784), dtype=np.float32), rng.integers(0, 10, 30_000)
    X[:, 500] = y + 0.3 * rng.standard_normal(30_000)
    calls: list[int] = []
    rules = features._Table.rules
    monkeypatch.setattr(features._Table, "rules", lambda self, cols, *a: calls.extend(cols) or rules(self, cols, *a))
    search = target_columns(X, y)
    assert [t.column for t in search.columns] == [500] and search.n == features.ROWS
    assert len(calls) <= features.MAX_CANDIDATES and 500 in calls


def test_row_sample_is_uniform_over_a_class_sorted_stream() -> None:
    y = np.repeat(np.arange(10), 3000)
    X = y[:, None] + np.zeros((1, 3))
    for total in (None, len(y)):
        sample = RowSample(size=1000, seed=1, total=total)
        for start in range(0, len(y), 512):
            sample.feed(X[start : start + 512], y[start : start + 512])
        rows = sample.arrays()
        assert rows is not None and len(rows[0]) == 1000 and sample.n == len(y)
        assert np.array_equal(rows[0][:, 0], rows[1])  # rows stay whole
        assert np.bincount(rows[1], minlength=10).min() > 60  # every class, about 100 each
    images = RowSample()
    images.feed(np.zeros((4, 2, 2)), np.zeros(4))
    assert images.arrays() is None


def test_the_overfit_diagnosis_says_how_many_rows_a_verdict_needs() -> None:
    from pytest_trainsanity.checks import overfit

    from .test_overfit_diagnose import CLEAN

    tiny = FeatureLeak(3, 1.0, 0.1, 0.5, lift_bound=1.0, val_bound=0.0, n=18, needed=27, tried=20)
    result = overfit.diagnose(dataclasses.replace(CLEAN, leak=tiny, train=0.99, val=0.5), 0.15, None)
    cause = next(c for c in result.ruled_out if c.name == overfit.CAUSE_FEATURE)
    assert cause.score == 0 and cause.evidence == overfit.FEATURE_NOT_JUDGED.format(n=18, needed=27, tried=20)
    assert not any("column 3" in f for f in result.failures)


def _brute_rules(t: features._Table, columns: np.ndarray, X_val: np.ndarray, y_val: np.ndarray) -> list[tuple[int, float]]:
    """The classification rule written out per column, fold and row: the nearest fit-class median
    (ties to the lower median; a class without fit rows never predicted)."""
    out = []
    for j in columns:
        x = np.nan_to_num(t.X[:, j].astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)

        def nearest(fit: np.ndarray, values: np.ndarray) -> np.ndarray:
            meds = {c: np.median(x[fit & (t.codes == c)]) for c in range(t.n_codes) if (fit & (t.codes == c)).any()}
            ordered = sorted(meds, key=lambda c: (meds[c], c))
            cuts = [(meds[a] + meds[b]) / 2 for a, b in zip(ordered, ordered[1:])]
            return np.array([ordered[sum(cut < v for cut in cuts)] for v in values])

        hits = sum(int((nearest(t.folds != k, x[t.folds == k]) == t.codes[t.folds == k]).sum()) for k in range(features.FOLDS))
        val = float(np.mean(t.classes[nearest(np.ones(t.n, bool), X_val[:, j])] == y_val))
        out.append((hits, val))
    return out


@pytest.mark.parametrize("seed", range(6))
def test_the_vectorised_rule_matches_a_per_column_reference(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n, d, k = int(rng.integers(20, 300)), int(rng.integers(1, 12)), int(rng.integers(2, 7))
    X = rng.standard_normal((n, d))
    X[:, ::2] = np.round(X[:, ::2] * 2)  # ties: a few values per column
    y = rng.integers(0, k, n)
    y[y == k - 1] = 0 if seed % 2 else y[y == k - 1]  # sometimes a class label left unused
    X[:, 0] = y + rng.normal(0, 0.4, n)
    t = features._Table(X[: n * 4 // 5], y[: n * 4 // 5], "classification", seed)
    columns = np.arange(d)
    got = t.rules(columns, X[n * 4 // 5 :], y[n * 4 // 5 :])
    want = _brute_rules(t, columns, X[n * 4 // 5 :], y[n * 4 // 5 :])
    assert [(h, v) for _, h, v in got] == [(h, pytest.approx(v)) for h, v in want]


def test_the_overfit_search_bounds_only_the_columns_that_can_score(monkeypatch: pytest.MonkeyPatch) -> None:
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    calls: list[int] = []
    bound = features.binomial_bound
    monkeypatch.setattr(features, "binomial_bound", lambda *a, **k: calls.append(1) or bound(*a, **k))
    leak = single_feature_leak(X[:1400], y[:1400], X[1400:], y[1400:])
    assert leak is not None and leak.lift_bound is not None and leak.val_bound is not None and leak.score == 0.0
    assert len(calls) == 2  # the best column's two bounds: no digits column reaches MIN_LIFT_BOUND's lift
    X[:1400, 5] = y[:1400] + np.random.default_rng(0).normal(0, 0.3, 1400)  # a label copy in train only
    calls.clear()
    leak = single_feature_leak(X[:1400], y[:1400], X[1400:], y[1400:])
    assert leak is not None and leak.column == 5 and leak.score > 0.5 and 2 <= len(calls) <= 2 * features.MAX_CANDIDATES


@pytest.mark.parametrize("dtype", [np.float32, np.int16, np.float64])
def test_values_sort_by_class_then_value_packed_or_not(dtype: type) -> None:
    """The rules' sort by (class, value): float32-exact values (float32, small ints) go through one
    sort of packed keys, other values through two argsorts; both give, per column, every class's
    values in order and each value's own fold (checked against a lexsort, with ties, -0.0, negative
    values and 300 classes)."""
    rng = np.random.default_rng(4)
    n, d = 700, 5
    y = rng.integers(0, 300, n)
    X = rng.integers(-40, 40, (n, d)).astype(dtype)
    if dtype != np.int16:
        X[:, 1] = rng.standard_normal(n).astype(dtype)  # no ties
        X[::7, 2] = -0.0
    if dtype == np.float64:
        X[:, 3] += 0.1  # not float32-exact: the argsort path
    t = features._Table(X, y, "classification", seed=1)
    xt = np.ascontiguousarray(X.astype(np.float64).T)
    xs, fs = t._by_class_then_value(xt)
    for j in range(d):
        order = np.lexsort((xt[j], t.codes))
        np.testing.assert_array_equal(xs[j], xt[j][order])
        for c in np.unique(t.codes):  # per class, each fold's values: the same multisets
            for k in range(features.FOLDS):
                mine = xs[j][(t.codes[order] == c) & (fs[j] == k)]
                want = xt[j][(t.codes == c) & (t.folds == k)]
                np.testing.assert_array_equal(np.sort(mine), np.sort(want))
