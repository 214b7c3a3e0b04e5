"""Seed article 000, example 2: "a learning rate of 0.1 overfits in one epoch".

The article's SimpleRNN (RNN 32 units + linear head, Adam lr=0.1,
weight_decay=0.01), reading each 8x8 digit as 8 time steps of 8 unit-scaled
pixels. What measurement shows: no over-fitting (train and val agree); the
lr probe shows lr=0.1 is too high to learn at all: at lr=0.01 the same pass
reaches far higher train and val accuracy. The check passes, and its report
says under-fitting.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from pytest_trainsanity import TrainSetup


class SimpleRNN(nn.Module):
    def __init__(self, input_size: int, hidden_size: int, output_size: int) -> None:
        super().__init__()
        self.rnn = nn.RNN(input_size, hidden_size, batch_first=True)
        self.fc = nn.Linear(hidden_size, output_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(x)
        return self.fc(out[:, -1, :])


@pytest.fixture
def train_setup(digits):
    Xtr, ytr, Xv, yv = digits
    as_rows = lambda X: (X.reshape(-1, 8, 8) / 16).astype("float32")  # noqa: E731 - 8 steps x 8 pixels
    torch.manual_seed(0)
    model = SimpleRNN(8, 32, 10)
    return TrainSetup(
        model=model, train=(as_rows(Xtr), ytr), val=(as_rows(Xv), yv),
        optimizer=torch.optim.Adam(model.parameters(), lr=0.1, weight_decay=0.01),
        loss=nn.CrossEntropyLoss(), batch_size=16,
    )


@pytest.mark.no_epoch1_overfit
@pytest.mark.inputs_normalized
def test_high_lr_underfits_rather_than_overfits(trainsanity_report):
    report = trainsanity_report["no_epoch1_overfit"]
    assert report.metrics["low_lr_train"] > report.metrics["train_metric"] + 0.3
    assert "under-fitting, not over-fitting" in report.message
