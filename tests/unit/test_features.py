from __future__ import annotations

import numpy as np

from pytest_trainsanity.checks.features import single_feature_leak


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
