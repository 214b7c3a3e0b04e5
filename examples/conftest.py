"""Shared data for the example suites: scikit-learn's digits (ships with
scikit-learn, nothing is downloaded), split 1437/360 stratified."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split


@pytest.fixture(scope="session")
def digits() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Raw digits: 64 pixel features in [0, 16], labels 0-9."""
    d = load_digits()
    Xtr, Xv, ytr, yv = train_test_split(
        d.data.astype(np.float32), d.target, test_size=360, random_state=0, stratify=d.target
    )
    return Xtr, ytr, Xv, yv
