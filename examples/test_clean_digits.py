"""A clean setup: standardised digits, a small MLP, Adam 1e-3. Both checks
pass, and the report still shows what was measured."""

from __future__ import annotations

import pytest
import torch
from sklearn.preprocessing import StandardScaler

from pytest_trainsanity import TrainSetup


@pytest.fixture
def train_setup(digits):
    Xtr, ytr, Xv, yv = digits
    scaler = StandardScaler().fit(Xtr)  # fitted on train only, applied to both
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10))
    return TrainSetup(
        model=model,
        train=(scaler.transform(Xtr).astype("float32"), ytr),
        val=(scaler.transform(Xv).astype("float32"), yv),
        optimizer=torch.optim.Adam(model.parameters(), lr=1e-3),
        loss=torch.nn.CrossEntropyLoss(),
    )


@pytest.mark.no_epoch1_overfit
@pytest.mark.inputs_normalized
def test_clean_setup_is_sane(trainsanity_report):
    overfit = trainsanity_report["no_epoch1_overfit"]
    assert overfit.metrics["val_metric"] > 0.7  # it learns in one epoch...
    assert overfit.metrics["noise_fit"] < 0.2  # ...without memorising noise
