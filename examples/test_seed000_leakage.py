"""Seed article 000, example 3: validation rows copied from train.

The article builds ``X_val = X_train[:50]``. On digits: the val split is the
first 50 train samples (with their labels). Measurement agrees with the
article here: every val sample occurs in train, so the val accuracy says
nothing about unseen data; the check fails and names the overlap.
"""

from __future__ import annotations

import pytest
import torch
from sklearn.preprocessing import StandardScaler

from pytest_trainsanity import TrainSanityError, TrainSetup


@pytest.fixture
def train_setup(digits):
    Xtr, ytr, _, _ = digits
    Xtr = StandardScaler().fit_transform(Xtr).astype("float32")
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10))
    return TrainSetup(
        model=model, train=(Xtr, ytr), val=(Xtr[:50], ytr[:50]),  # leakage: val is part of train
        optimizer=torch.optim.Adam(model.parameters(), lr=0.001), loss=torch.nn.CrossEntropyLoss(), batch_size=16,
    )


@pytest.mark.xfail(raises=TrainSanityError, strict=True, reason="val is a copy of train rows")
@pytest.mark.no_epoch1_overfit
def test_val_copied_from_train():
    pass
