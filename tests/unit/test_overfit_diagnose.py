"""The overfit verdict and cause ranking from plain measurements."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from pytest_trainsanity.checks import overfit
from pytest_trainsanity.checks.causes import Cause
from pytest_trainsanity.checks.duplicates import CrossSplit, WithinSplit
from pytest_trainsanity.checks.features import FeatureLeak
from pytest_trainsanity.checks.normalization import check_normalization

CLEAN = overfit.OverfitMeasurements(
    task="classification", epochs=1, steps=45, truncated=False, train=0.93, val=0.91, n_params=9610,
    n_train=1437, n_val=360, lr=1e-3, chance=0.1, majority=0.1, n_classes=10, noise_train=0.15,
    noise_chance=0.1, low_lr_train=0.6, low_lr_val=0.6, within=WithinSplit(1437, 1437),
    cross=CrossSplit(360, np.zeros(0, np.int64), [], 0),
    leak=FeatureLeak(3, 0.25, 0.2, 0.1),
    scale=check_normalization({"train": np.random.default_rng(0).standard_normal((100, 4))}),
)


def names(causes: list[Cause]) -> list[str]:
    return [c.name for c in causes]


def test_clean_passes_and_still_reports_measurements() -> None:
    result = overfit.diagnose(CLEAN, 0.15, None)
    assert result.passed and result.failures == [] and result.likely == []
    assert set(names(result.ruled_out)) == {
        overfit.CAUSE_DUPLICATION, overfit.CAUSE_OVERLAP, overfit.CAUSE_FEATURE,
        overfit.CAUSE_MEMORISATION, overfit.CAUSE_LR, overfit.CAUSE_SCALE,
    }
    assert result.metrics["noise_fit"] == pytest.approx((0.15 - 0.1) / 0.9)


def test_high_accuracy_alone_is_not_a_failure() -> None:
    easy = dataclasses.replace(CLEAN, train=0.99, val=0.985)
    result = overfit.diagnose(easy, 0.15, None)
    assert result.passed
    assert any(overfit.HIGH_BUT_FINE in n for n in result.notes)


def test_gap_and_max_train_acc_fail() -> None:
    gap = dataclasses.replace(CLEAN, train=0.99, val=0.5)
    result = overfit.diagnose(gap, 0.15, 0.95)
    assert result.failures == [
        overfit.GAP_FAILED.format(gap="0.490", max_gap="0.150"),
        overfit.TRAIN_FAILED.format(metric="accuracy", train="0.990", limit="0.950"),
    ]



def test_a_gap_that_cannot_be_measured_fails() -> None:
    """Constant val targets make val R^2 undefined (NaN), and a NaN gap compared False with max_gap:
    the check passed with "gap n/a <= max_gap 0.150"."""
    constant = dataclasses.replace(CLEAN, task="regression", train=0.4, val=float("nan"))
    result = overfit.diagnose(constant, 0.15, None)
    assert not result.passed and result.failures == [
        "the gap cannot be measured: val R^2 is undefined (the targets do not vary, and R^2 measures the error "
        "against their variance; give a split whose targets vary)"]
    unlabelled = dataclasses.replace(CLEAN, train=float("nan"), val=float("nan"))
    assert overfit.diagnose(unlabelled, 0.15, None).failures == [
        "the gap cannot be measured: train and val accuracy are undefined (no sample carries a label: every target "
        "is the ignore index -100; give labelled samples)"]


def test_duplication_outranks_memorisation_when_most_rows_repeat() -> None:
    m = dataclasses.replace(CLEAN, train=0.72, val=0.05, within=WithinSplit(1920, 64), noise_train=0.78, noise_chance=0.156)
    result = overfit.diagnose(m, 0.15, None)
    assert names(result.likely)[:2] == [overfit.CAUSE_DUPLICATION, overfit.CAUSE_MEMORISATION]
    assert result.likely[0].score == pytest.approx(1 - 64 / 1920)


def test_lr_is_credited_only_when_val_holds() -> None:
    helped = dataclasses.replace(CLEAN, train=0.99, val=0.70, low_lr_train=0.90, low_lr_val=0.88)
    assert overfit.diagnose(helped, 0.15, None).likely[0].name == overfit.CAUSE_LR
    slower = dataclasses.replace(CLEAN, train=0.99, val=0.70, low_lr_train=0.30, low_lr_val=0.30)
    lr = next(c for c in overfit.diagnose(slower, 0.15, None).ruled_out if c.name == overfit.CAUSE_LR)
    assert lr.score < 0.1 and "learns less" in lr.evidence
    chance = dataclasses.replace(CLEAN, train=0.7, val=0.1, low_lr_train=0.3, low_lr_val=0.1)
    lr = next(c for c in overfit.diagnose(chance, 0.15, None).ruled_out if c.name == overfit.CAUSE_LR)
    assert lr.score == 0 and "val is at chance either way" in lr.evidence


def test_overlap_fails_even_without_a_gap() -> None:
    cross = CrossSplit(360, np.arange(72), [(0, 0)], 3)
    m = dataclasses.replace(CLEAN, cross=cross, val_clean=0.9, val_on_overlap=1.0, val=0.92)
    result = overfit.diagnose(m, 0.15, None)
    assert not result.passed
    assert result.failures[0].startswith(overfit.OVERLAP_FAILED.format(n=72, n_val=360, frac="20.0%"))
    top = result.likely[0]
    assert top.name == overfit.CAUSE_OVERLAP and "3 with a different label" in top.evidence
    assert "inflated by 0.020" in top.evidence


def test_feature_leak_fails_and_ranks_first() -> None:
    m = dataclasses.replace(CLEAN, leak=FeatureLeak(64, 1.0, 0.1, 0.1), train=0.91, val=0.78)
    result = overfit.diagnose(m, 0.15, None)
    assert result.failures == [overfit.FEATURE_FAILED.format(column=64, train="1.000", val="0.100", base="0.100")]
    assert result.likely[0].name == overfit.CAUSE_FEATURE and "X[:, 64]" in result.likely[0].fix


def test_extra_causes_join_and_replace_by_name() -> None:
    m = dataclasses.replace(CLEAN, train=0.99, val=0.5, low_lr_train=None, low_lr_val=None)
    extra = [Cause("label noise", 0.95, "30% of labels disagree with a kNN vote", "relabel"),
             Cause(overfit.CAUSE_SCALE, 0.0, "overridden", "none")]
    result = overfit.diagnose(m, 0.15, None, extra)
    assert result.likely[0].name == "label noise"
    assert next(c for c in result.ruled_out if c.name == overfit.CAUSE_SCALE).evidence == "overridden"


def test_regression_uses_r2_words() -> None:
    m = dataclasses.replace(CLEAN, task="regression", chance=None, majority=None, train=0.9, val=0.2, noise_train=0.4)
    result = overfit.diagnose(m, 0.15, None)
    assert overfit.headline(m, result, 0.15).startswith("no_epoch1_overfit FAILED: after 1 epoch (45 steps) train R^2 0.900")
    mem = next(c for c in result.likely if c.name == overfit.CAUSE_MEMORISATION)
    assert "train R^2 0.400 on pure noise" in mem.evidence
