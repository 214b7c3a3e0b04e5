"""no_leakage's numpy core: streaming, target columns, within-split repeats, limits."""

from __future__ import annotations

import numpy as np

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
    assert result.failures == ["1 column(s) alone predict the label: [2]"]
    assert find_leakage([arrays("train", X, y), arrays("val", Xv, yv)], max_overlap=1).passed


def test_within_split_repeats_are_reported_not_failed() -> None:
    X = np.repeat(rng.standard_normal((50, 8)), 3, axis=0)
    y = np.repeat(rng.integers(0, 2, 50), 3)
    result = find_leakage([arrays("train", X, y), arrays("val", rng.standard_normal((20, 8)), rng.integers(0, 2, 20))],
                          classification=False)
    assert result.passed
    assert (result.within["train"].repeats, result.within["train"].verified) == (100, True)
    asked = find_leakage([arrays("train", X, y), arrays("val", rng.standard_normal((20, 8)), rng.integers(0, 2, 20))],
                         classification=False, within_split=True)
    assert asked.failures == ["train: 100 repeated row(s) of 150 (66.7%; limit 0)"]


def test_a_one_shot_generator_streams_and_says_its_repeats_are_by_hash() -> None:
    X = np.repeat(rng.standard_normal((300, 16)).astype(np.float32), 2, axis=0)
    y = rng.integers(0, 3, 600)
    Xv, yv = X[:40:2].copy(), y[:40:2].copy()
    gen = ((X[i : i + 100], y[i : i + 100]) for i in range(0, 600, 100))
    report = check_leakage(TrainSetup(train=gen, val=(Xv, yv)), near_duplicates=False)
    assert not report.passed
    assert report.metrics["train_val_exact"] == 20 and report.metrics["train_repeated_rows"] == 300
    assert "(by 64-bit hash: a one-shot stream cannot be re-read to verify)" in report.message
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
