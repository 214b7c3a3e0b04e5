"""Shared data for the adapter tests: the 1437/360 stratified digits split, standardised on train."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler


@pytest.fixture(scope="session")
def digits() -> tuple[np.ndarray, ...]:
    d = load_digits()
    Xtr, Xv, ytr, yv = train_test_split(d.data.astype(np.float32), d.target, test_size=360, random_state=0, stratify=d.target)
    sc = StandardScaler().fit(Xtr)
    return sc.transform(Xtr).astype(np.float32), ytr, sc.transform(Xv).astype(np.float32), yv
