"""deepchecks on pandas frames, for the tabular leakage benchmark (``benchmarks/tabular.py``).

``deepchecks_tabular(train, val, label, cat_features)`` runs the three
deepchecks checks that together cover what one ``no_leakage`` call reports
on a table, times them with ``time.perf_counter`` (building the two
``deepchecks.tabular.Dataset`` objects included: a user has to) and returns
their counts as row counts. deepchecks is optional: this module imports
without it, and the function raises ImportError when it is missing.
Install line and version pins (deepchecks 0.19.1: numpy<2, pandas<3,
scikit-learn<1.8, setuptools<81) are in ``benchmarks/leakage_peers.py``;
``tox -e leakbench`` builds that environment.

What each check counts (source: ``deepchecks/tabular/checks/...``):

- ``TrainTestSamplesMix`` (train_test_validation/train_test_samples_mix.py):
  both frames grouped by every feature **and the label**; ``value["ratio"]``
  is the number of val rows whose (features, label) tuple occurs in train,
  divided by the val rows. A val copy of a train row with another label is
  not counted. Returned as ``val_in_train`` = round(ratio * n_val).
- ``DataDuplicates`` (data_integrity/data_duplicates.py), on train: grouped
  by every column of the frame, the label included; ``value`` is
  ``1 - n_unique / n``. Returned as ``train_duplicates`` = round(value * n):
  rows that repeat an earlier (features, label) row. Repeats whose label
  differs are not duplicates here (they are ConflictingLabels').
- ``ConflictingLabels`` (data_integrity/conflicting_labels.py), on train:
  grouped by the features; ``value["percent_of_conflicting_samples"]`` is the
  rows in groups holding more than one label divided by n. Returned as
  ``train_conflicting`` = round(percent * n): every row of such a group.

All three default to ``n_samples=10_000_000`` (no subsampling below that)
and run with ``with_display=False`` (no HTML tables built).
"""
from __future__ import annotations

import time
import warnings

try:
    with warnings.catch_warnings():  # deepchecks warns that pkg_resources is deprecated
        warnings.simplefilter("ignore")
        from deepchecks.tabular import Dataset as _Dataset
        from deepchecks.tabular.checks import ConflictingLabels as _Conflicting
        from deepchecks.tabular.checks import DataDuplicates as _Duplicates
        from deepchecks.tabular.checks import TrainTestSamplesMix as _Mix
except Exception:  # ImportError, or a broken install (numpy/pandas too new)
    _Dataset = _Mix = _Duplicates = _Conflicting = None


def available() -> bool:
    return _Dataset is not None


def deepchecks_tabular(train, val, label: str, cat_features: list[str]) -> dict:
    """The three checks on pandas frames; seconds of each (Dataset construction as its own entry)."""
    if _Dataset is None:
        raise ImportError("see benchmarks/leakage_peers.py for the install line")
    seconds = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t0 = time.perf_counter()
        dtrain = _Dataset(train, label=label, cat_features=cat_features)
        dval = _Dataset(val, label=label, cat_features=cat_features)
        seconds["Dataset x2"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        mix = _Mix().run(dtrain, dval, with_display=False)
        seconds["TrainTestSamplesMix"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        dups = _Duplicates().run(dtrain, with_display=False)
        seconds["DataDuplicates"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        conf = _Conflicting().run(dtrain, with_display=False)
        seconds["ConflictingLabels"] = time.perf_counter() - t0
    n, n_val = len(train), len(val)
    return {
        "seconds": sum(seconds.values()),
        "parts": seconds,
        "val_in_train": round(mix.value["ratio"] * n_val),
        "train_duplicates": round(dups.value * n),
        "train_conflicting": round(conf.value["percent_of_conflicting_samples"] * n),
    }
