"""inputs_normalized's numpy core: what passes, what fails, and the words it uses."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from pytest_trainsanity.checks.normalization import (
    MAX_MEDIAN_SHIFT,
    check_fields,
    check_normalization,
    feature_axis,
    judge,
    split_stats,
)

rng = np.random.default_rng(0)


def standardise(train: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    """What sklearn's StandardScaler does: zero-variance columns stay 0."""
    mean, std = train.mean(axis=0), train.std(axis=0)
    std = np.where(std == 0, 1.0, std)
    return [(x - mean) / std for x in (train, *others)]


def pixels(n: int, shape=(1, 8, 8), high=16.0) -> np.ndarray:
    return np.round(rng.uniform(0, high, (n, *shape)) * (rng.random((n, *shape)) > 0.4))


def test_standardised_with_zero_variance_columns_passes() -> None:
    X = pixels(500, (64,))
    X[:, :3] = 0.0  # always-blank pixels, as in digits
    Xv = pixels(120, (64,))
    Xv[:, :3] = 0.0
    tr, va = standardise(X, Xv)
    result = check_normalization({"train": tr, "val": va})
    assert result.passed, result.findings
    assert int((~result.stats["train"].varying).sum()) == 3


@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
def test_per_channel_standardised_images_pass(layout: str) -> None:
    X = rng.uniform(0, 255, (200, 3, 16, 16)) * np.array([1.0, 0.5, 0.2])[None, :, None, None]
    mean = X.mean(axis=(0, 2, 3), keepdims=True)
    std = X.std(axis=(0, 2, 3), keepdims=True)
    Z = (X - mean) / std
    if layout == "nhwc":
        Z = Z.transpose(0, 2, 3, 1)
    assert feature_axis(Z) == (1 if layout == "nchw" else 3)
    result = check_normalization({"train": Z})
    assert result.passed and result.stats["train"].axis_label == "channel" and len(result.stats["train"].mean) == 3


def test_unit_scaled_and_globally_normalised_pass() -> None:
    X = pixels(300, high=255.0)
    assert check_normalization({"train": X / 255.0, "val": pixels(50, high=255.0) / 255.0}).passed
    g = (X / 255.0 - 0.1307) / 0.3081  # MNIST-style single mean/std
    assert check_normalization({"train": g}).passed


@pytest.mark.parametrize("high", [255.0, 16.0])
def test_raw_ranges_fail_naming_the_range(high: float) -> None:
    X = pixels(300, (64,), high=high)
    X[0, 0] = high
    result = check_normalization({"train": X})
    assert not result.passed
    (finding,) = result.findings
    assert finding.kind == "raw_scale" and finding.split == "train"
    assert f"values span [0, {high:g}]" in finding.text
    assert finding.fix.startswith(f"divide by {high:g}")


def test_val_scaled_differently_fails_naming_val() -> None:
    X, Xv = pixels(400, (64,)), pixels(100, (64,))
    tr, _ = standardise(X, Xv)
    result = check_normalization({"train": tr, "val": Xv, "test": standardise(X, Xv)[1]})
    assert [f.split for f in result.findings] == ["val"]
    assert result.findings[0].kind == "split_shift"
    assert f"(limit {MAX_MEDIAN_SHIFT})" in result.findings[0].text
    assert "scaler.transform(X_val)" in result.findings[0].fix


def test_both_raw_fails_for_both_splits() -> None:
    result = check_normalization({"train": pixels(200, (64,), 255), "val": pixels(50, (64,), 255)})
    assert [(f.split, f.kind) for f in result.findings] == [("train", "raw_scale"), ("val", "raw_scale")]


def test_nan_and_inf_are_counted_and_located() -> None:
    X = rng.standard_normal((100, 5))
    X[3, 2] = np.nan
    X[7, 2] = np.nan
    X[9, 4] = np.inf
    result = check_normalization({"train": X})
    assert not result.passed
    finding = result.findings[0]
    assert finding.kind == "nonfinite"
    assert "train holds 2 NaN and 1 Inf value(s), in feature(s) [2, 4]" in finding.text
    stats = result.stats["train"]
    assert np.isfinite(stats.mean).all() and stats.nan == 2 and stats.inf == 1


def test_table_features_are_named_by_column() -> None:
    """A table's features are named as its columns (where NaN lies, the worst feature), not by index."""
    X = np.random.default_rng(1).standard_normal((100, 3))
    X[:, 1] = X[:, 1] * 40 + 900
    X[5, 2] = np.nan
    stats = dataclasses.replace(split_stats("train", X), names=("age", "income", "z"))
    texts = [f.text for f in judge({None: {"train": stats}}, {"x": X.dtype}).findings]
    assert "in feature(s) ['z']" in texts[0] and "worst feature 'income': mean 898" in texts[1]


def test_integer_ids_pass_with_a_note() -> None:
    tokens = rng.integers(0, 30000, (100, 20))
    result = check_normalization({"train": tokens, "val": tokens[:10]})
    assert result.passed and result.integer_ids
    assert "not features to scale" in result.notes[0]


def test_integer_fields_the_model_reads_as_numbers_are_judged() -> None:
    """An int64 table (age, income) skipped as ids was a pass; named as numbers it is judged."""
    own = np.random.default_rng(1)  # its own generator: the module's shared one depends on the test order
    table = np.stack([own.integers(18, 90, 200), own.integers(20_000, 200_000, 200)], axis=1)
    assert check_fields({"train": {"x": table}}).integer_ids
    result = check_fields({"train": {"x": table}}, numbers=("x",))
    assert not result.passed and not result.integer_ids
    assert "values span [18, 1.99" in result.findings[0].text, result.findings[0].text


def test_uint8_images_are_pixels_not_ids() -> None:
    result = check_normalization({"train": pixels(100, (1, 8, 8), 255).astype(np.uint8)})
    assert not result.passed and not result.integer_ids


def test_tiny_scale_fails() -> None:
    result = check_normalization({"train": pixels(100, (64,), 255) / 255.0 / 255.0 / 255.0})
    assert [f.kind for f in result.findings] == ["tiny_scale"]


def test_chunked_statistics_match_numpy() -> None:
    X = rng.standard_normal((70000, 3)) * [1.0, 5.0, 0.1] + [0.0, 100.0, -3.0]
    s = split_stats("train", X.astype(np.float32))
    np.testing.assert_allclose(s.mean, X.mean(axis=0), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(s.std, X.std(axis=0), rtol=1e-4)


def test_streamed_blocks_give_the_statistics_of_the_whole() -> None:
    from pytest_trainsanity.checks.normalization import StatsAccumulator

    X = rng.standard_normal((3000, 3, 4, 4)) * np.array([1.0, 50.0, 0.01])[None, :, None, None] + 7.0
    X[5, 1, 0, 0] = np.nan
    acc = StatsAccumulator("train")
    for start in range(0, 3000, 701):  # uneven blocks
        acc.add(X[start : start + 701])
    streamed, whole = acc.result(), split_stats("train", X)
    np.testing.assert_allclose(streamed.mean, whole.mean, rtol=1e-12)
    np.testing.assert_allclose(streamed.std, whole.std, rtol=1e-9)
    finite = np.where(np.isnan(X), 7.0, X)
    np.testing.assert_allclose(streamed.std[[0, 2]], finite.transpose(1, 0, 2, 3).reshape(3, -1).std(axis=1)[[0, 2]], rtol=1e-9)
    assert streamed.nan == 1 and streamed.n == 3000 and streamed.axis_label == "channel"


def test_several_input_fields_are_judged_apart_and_ids_and_masks_skipped() -> None:
    from pytest_trainsanity.checks.normalization import check_fields

    def fields(scale: float) -> dict[str, np.ndarray]:
        return {"x_num": rng.standard_normal((200, 4)) * scale, "input_ids": rng.integers(0, 900, (200, 8)),
                "attention_mask": np.ones((200, 8), dtype=np.int64)}

    good = check_fields({"train": fields(1.0), "val": fields(1.0)})
    assert good.passed and good.skipped == {"input_ids": "integer ids", "attention_mask": "mask"}
    assert good.notes == ["not features to scale, skipped: input_ids (int64, integer ids); attention_mask (int64, mask)"]
    bad = check_fields({"train": fields(300.0), "val": fields(300.0)})
    assert [f.where for f in bad.findings] == ["train field 'x_num'", "val field 'x_num'"]
    assert bad.findings[0].text.startswith("train field 'x_num' inputs are not standardised")
    only_ids = check_fields({"train": {k: v for k, v in fields(1.0).items() if k != "x_num"}})
    assert only_ids.passed and only_ids.integer_ids
    assert "input_ids: int64 integer ids; attention_mask: int64 mask" in only_ids.notes[0]


def test_statistics_leave_float64_inputs_untouched_and_match_numpy_per_channel() -> None:
    from pytest_trainsanity.checks.normalization.measure import check_fields

    X = np.random.default_rng(3).normal(5.0, 2.0, (40, 3, 4, 4))
    before = X.copy()
    result = check_fields({"train": {"x": X}, "val": {"x": X}})
    assert np.array_equal(X, before)  # the fast path works in place on its own copy
    stats = result.stats["train"]
    np.testing.assert_allclose(stats.mean, X.mean(axis=(0, 2, 3)), rtol=1e-12)
    np.testing.assert_allclose(stats.std, X.std(axis=(0, 2, 3)), rtol=1e-10)
