"""``no_leakage``'s target columns end to end, on a tiny fixture and on real data (issue 11, items 7 and 11)."""

from __future__ import annotations

import json

import pytest

from pytest_trainsanity.checks.features import rows_needed
from pytest_trainsanity.checks.leakage.run import FIXES, TARGETS_NOT_JUDGED

from .conftest import run

CONFTEST = """
import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import train_test_split
from pytest_trainsanity import TrainSetup


@pytest.fixture
def tiny_noise():
    \"\"\"20 rows x 20 noise columns, balanced labels: the size of fixture users write.\"\"\"
    rng = np.random.default_rng(0)
    y = np.tile([0, 1], 10)
    return TrainSetup(train=(rng.standard_normal((20, 20)), y), val=(rng.standard_normal((8, 20)), np.tile([0, 1], 4)))


@pytest.fixture
def planted():
    \"\"\"Breast cancer with the label + N(0, 0.3) as column 30, split 80/20.\"\"\"
    X, y = load_breast_cancer(return_X_y=True)
    X = np.c_[X, y + 0.3 * np.random.default_rng(0).standard_normal(len(y))]
    Xt, Xv, yt, yv = train_test_split(X, y, test_size=0.2, random_state=0, stratify=y)
    return TrainSetup(train=(Xt, yt), val=(Xv, yv))


@pytest.fixture
def breast_cancer():
    X, y = load_breast_cancer(return_X_y=True)
    Xt, Xv, yt, yv = train_test_split(X, y, test_size=0.2, random_state=0, stratify=y)
    return TrainSetup(train=(Xt, yt), val=(Xv, yv))
"""

TESTS = """
import pytest

@pytest.mark.no_leakage(setup="tiny_noise")
def test_tiny_noise():
    pass

@pytest.mark.no_leakage(setup="planted")
def test_planted():
    pass

@pytest.mark.no_leakage(setup="breast_cancer")
def test_breast_cancer():
    pass
"""


def test_target_columns_on_small_and_real_data(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_small=TESTS)
    res = run(pytester, "-rA", "--trainsanity-report=r.json")
    res.assert_outcomes(passed=2, failed=1)
    checks = {c["nodeid"].split("::")[1]: c for c in json.loads((pytester.path / "r.json").read_text())["checks"]}

    tiny = checks["test_tiny_noise"]  # a passing message is in the report
    assert tiny["passed"] and tiny["metrics"]["target_columns_judged"] is False
    assert TARGETS_NOT_JUDGED.format(n=20, needed=rows_needed(0.5, 20), tried=20) in tiny["message"].splitlines()
    assert "Target columns: not judged, 20 train rows; a verdict needs >= 27 (20 columns tried)." in tiny["message"]

    planted = checks["test_planted"]
    assert not planted["passed"] and planted["metrics"]["target_columns"] == 1
    res.stdout.fnmatch_lines([
        "*no_leakage FAILED: 1 column(s) alone predict the label: 30*",
        ("*Target leakage: column 30 alone predicts the train label: held-out accuracy *; within each class it moves "
         "with no other column*, as a column computed from the label does*"),
        "*Fix (target columns): " + FIXES["target columns"].format(columns="30"),
    ])
    assert "Fix (copies)" not in res.stdout.str() and "GroupShuffleSplit" not in res.stdout.str()

    real = checks["test_breast_cancer"]
    assert real["passed"] and real["metrics"]["target_columns"] == 0 and real["metrics"]["target_columns_judged"]
    assert "Target columns: none among 30 columns (455 train rows; a verdict needs >= 39)." in real["message"]
