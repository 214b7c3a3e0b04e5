"""``no_leakage`` on digits, end to end: the issue's acceptance scenarios."""

from __future__ import annotations

import json

import pytest

from .conftest import run

SCENARIOS = """
import pytest

@pytest.mark.no_leakage(setup="copied")
def test_copied(): pass

@pytest.mark.no_leakage(setup="near_copies")
def test_near_copies(): pass

@pytest.mark.no_leakage(setup="near_copies", near_duplicates=False)
def test_near_copies_not_searched(): pass

@pytest.mark.no_leakage(setup="conflicts")
def test_conflicts(): pass

@pytest.mark.no_leakage(setup="shared_groups")
def test_shared_groups(): pass

@pytest.mark.no_leakage(setup="disjoint_groups")
def test_disjoint_groups(): pass

@pytest.mark.no_leakage(setup="overlapping_times")
def test_overlapping_times(): pass

@pytest.mark.no_leakage(setup="later_times")
def test_later_times(): pass

@pytest.mark.no_leakage(setup="loaders")
def test_loaders(): pass

@pytest.mark.no_leakage(setup="copied", max_overlap=0.25)
def test_fraction_allowed(): pass

@pytest.mark.no_leakage(setup="copied", max_overlap=71)
def test_count_one_short(): pass

@pytest.mark.no_leakage(setup="memorise")
def test_repeats_reported(): pass

@pytest.mark.no_leakage(setup="memorise", within_split=True)
def test_repeats_asked(): pass

@pytest.mark.no_leakage
def test_clean(trainsanity_report):
    assert trainsanity_report["no_leakage"].metrics["train_val_copies"] == 0
"""


def test_leakage_scenarios(project: pytest.Pytester) -> None:
    project.makepyfile(test_leak=SCENARIOS)
    res = run(project, "--trainsanity-report=r.json")
    checks = {c["nodeid"].split("::")[1]: c for c in json.loads((project.path / "r.json").read_text())["checks"]}
    verdicts = {name: c["passed"] for name, c in checks.items()}
    assert verdicts == {
        "test_copied": False, "test_near_copies": False, "test_near_copies_not_searched": True,
        "test_conflicts": False, "test_shared_groups": False, "test_disjoint_groups": True,
        "test_overlapping_times": False, "test_later_times": True, "test_loaders": False,
        "test_fraction_allowed": True, "test_count_one_short": False, "test_clean": True,
        "test_repeats_reported": True, "test_repeats_asked": False,
    }
    res.assert_outcomes(passed=6, failed=8)
    assert m_of(checks, "test_repeats_reported")["train_repeated_rows"] == 1920 - 64
    m = {name: c["metrics"] for name, c in checks.items()}
    assert (m["test_copied"]["train_val_exact"], m["test_copied"]["train_val_near"]) == (72, 0)
    assert (m["test_near_copies"]["train_val_exact"], m["test_near_copies"]["train_val_near"]) == (0, 50)
    assert m["test_near_copies_not_searched"]["train_val_copies"] == 0
    assert (m["test_conflicts"]["train_val_exact"], m["test_conflicts"]["train_val_label_conflicts"]) == (10, 10)
    assert m["test_loaders"]["train_val_exact"] == 72
    assert m["test_shared_groups"]["train_val_group_rows"] == 20
    assert m["test_overlapping_times"]["train_val_temporal_rows"] == 30
    res.stdout.fnmatch_lines([
        "*no_leakage FAILED: train/val: 72 copies (exact or near) of 360 val samples (20.0%; limit 0).",
        "*Limit: max_overlap 0 (a count); near copies: RMS difference <= 0.01 train standard deviations per feature*",
        "*train/val: 72 exact and 0 near copies of 360 val samples (20.0%); exact examples (train, val): [[](100, 0), (101, 1)*"
        "val accuracy can be inflated by up to 20 points*",
    ])
    res.stdout.fnmatch_lines(["*train/val: 0 exact and 50 near copies of 360 val samples (13.9%); near examples: (0, 0) at 0.00048*"])
    res.stdout.fnmatch_lines(["*also: train/val: 10 copies with a different label of 360 val samples (2.8%; limit 0)"])
    res.stdout.fnmatch_lines(["*no_leakage FAILED: train/val: 20 samples in groups shared with the other split of 360 val samples*",
                              "*5 shared group id(s) covering 20 val samples, e.g. [[]355, 356, 357, 358, 359]*"])
    res.stdout.fnmatch_lines(["*no_leakage FAILED: train/val: 30 samples earlier than the other split's latest time*",
                              "*30 val sample(s) earlier than the latest train time 2024-02-29 20*"])
    res.stdout.fnmatch_lines(["*no_leakage FAILED: train/val: 72 copies (exact or near) of 360 val samples (20.0%; limit 71)*"])
    res.stdout.fnmatch_lines(["*no_leakage FAILED: train: 1856 repeated row(s) of 1920 (96.7%; limit 0).",
                              "*Within splits: train 1856 repeated row(s) of 1920; val 0 repeated row(s) of 360"])


def m_of(checks: dict, name: str) -> dict:
    return checks[name]["metrics"]


DENSE = """
import numpy as np
import pytest
from pytest_trainsanity import TrainSetup


@pytest.fixture
def dense():
    r = np.random.default_rng(0)
    return TrainSetup(train=(r.standard_normal((50_000, 2)), r.integers(0, 2, 50_000)),
                      val=(r.standard_normal((5_000, 2)), r.integers(0, 2, 5_000)))


@pytest.mark.no_leakage(setup="dense")
def test_dense_chance_neighbours():
    pass
"""


CATEGORICAL = """
import numpy as np
import pandas as pd
import pytest
from pytest_trainsanity import TrainSetup


@pytest.fixture
def bands():
    r = np.random.default_rng(0)
    df = pd.DataFrame({"plan": r.choice(["basic", "pro", "max"], 3_000), "region": r.choice(list("nsew"), 3_000),
                       "age_band": r.integers(0, 6, 3_000), "churned": r.integers(0, 2, 3_000)})
    return TrainSetup(train=df.iloc[:2_500], val=df.iloc[2_500:], target="churned")


@pytest.mark.no_leakage(setup="bands")
def test_categorical_bands():
    pass
"""


DENSE_SAYS = ("*near copies are not counted: chance neighbours give as many at this density (* of 2048 sampled val rows "
              "have a near, non-identical val row, so about * val rows would have a near train row by chance among "
              "50,000, in about * near pairs; found *); a smaller threshold= tells true copies apart*")
CATEGORICAL_SAYS = ("*the 500 exact copies (and their label conflicts) are not counted: in so small a feature space equal "
                    "rows recur by chance (every feature takes at most * values, and * of 500 val rows equal another val "
                    "row, so about * val rows would equal a train row by chance among 2,500, in about * equal pairs; "
                    "found *); to find leakage here, give the entity ids (groups=) or times (timestamps=)*")


@pytest.mark.parametrize("source, says", [(DENSE, DENSE_SAYS), (CATEGORICAL, CATEGORICAL_SAYS)], ids=["dense", "categorical"])
def test_rows_equal_or_near_by_chance_pass_and_say_why(pytester: pytest.Pytester, source: str, says: str) -> None:
    """Rows that chance makes near or equal are not copies, and the gate says what it measured.
    dense: two features, 50,000 train rows, 5,000 fresh val rows: thousands of val rows have a train
    row within 0.01 train stds by chance. categorical: three categorical / banded columns (72
    possible rows): every val row equals some train row; this failed as "500 copies of 500 val
    samples (100.0%)". Exact copies in data with a continuous feature are still copies: tests/unit."""
    pytester.makepyfile(test_chance=source)
    res = run(pytester, "--trainsanity-explain")
    res.assert_outcomes(passed=1)
    res.stdout.fnmatch_lines(["*no_leakage passed*", says])
