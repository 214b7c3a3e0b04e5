"""Seed article 002: "why does model accuracy spike at a specific epoch?", in torch.

The article's three Keras snippets, translated one to one (same layers,
optimizers, rates, batch 32, 30 epochs, ``np.random.rand(1000, 10)`` inputs
with random labels 0-9; the article plots *training* accuracy, so the check
watches ``train_acc``), plus one scenario on digits where a spike does occur.

What measurement shows, against the article's claims:

- Example 1 as written: ``ExponentialDecay(0.01, decay_steps=10,
  decay_rate=0.5, staircase=True)`` counts optimizer *steps* (32 per epoch),
  so the lr halves 3.2 times per epoch and is below 1e-5 by epoch 4; there
  is no spike "around epochs 10 and 20", there is no training at all after
  epoch 3. The check fails with the lr-collapse diagnosis. (torch twin:
  ``LambdaLR(lambda step: 0.5 ** (step // 10))`` stepped per batch.)
- Example 1 as the text intends (halve every 10 epochs): no spike at the
  decays; train accuracy on random labels creeps up smoothly.
- Example 2 (batch norm) and Example 3 (SGD + momentum 0.9): no spike in 30
  epochs; the check passes even with ``allow=()``.
- A warm-up that ends (digits, Adam 1e-2 held at 1e-5 for five epochs) does
  make val accuracy jump, and replaying that epoch with the lr held removes
  the jump: it is attributed to ``lr_schedule``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.preprocessing import StandardScaler

from pytest_trainsanity import TrainSanityError, TrainSetup


def article_data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.RandomState(0)
    return rng.rand(1000, 10).astype("float32"), rng.randint(0, 10, 1000)


def dense_128() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(10, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10))


def setup(model: torch.nn.Module, optimizer: torch.optim.Optimizer, **kw) -> TrainSetup:
    X, y = article_data()
    return TrainSetup(model=model, train=(X, y), optimizer=optimizer, loss=torch.nn.CrossEntropyLoss(), batch_size=32, **kw)


@pytest.fixture
def decay_per_step() -> TrainSetup:
    model = dense_128()
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    return setup(model, opt, scheduler=torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 0.5 ** (step // 10)),
                 scheduler_step="batch")


@pytest.fixture
def decay_per_10_epochs() -> TrainSetup:
    model = dense_128()
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    return setup(model, opt, scheduler=torch.optim.lr_scheduler.StepLR(opt, step_size=10, gamma=0.5))


@pytest.fixture
def batchnorm() -> TrainSetup:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(10, 64), torch.nn.BatchNorm1d(64), torch.nn.ReLU(), torch.nn.Linear(64, 10))
    return setup(model, torch.optim.Adam(model.parameters(), lr=0.001))


@pytest.fixture
def sgd_momentum() -> TrainSetup:
    model = dense_128()
    return setup(model, torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9))


@pytest.fixture
def warmup_end(digits) -> TrainSetup:
    Xtr, ytr, Xv, yv = digits
    scaler = StandardScaler().fit(Xtr)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    return TrainSetup(
        model=model, train=(scaler.transform(Xtr).astype("float32"), ytr), val=(scaler.transform(Xv).astype("float32"), yv),
        optimizer=opt, loss=torch.nn.CrossEntropyLoss(),
        scheduler=torch.optim.lr_scheduler.LambdaLR(opt, lambda epoch: 1e-3 if epoch < 5 else 1.0),
    )


@pytest.mark.xfail(raises=TrainSanityError, strict=True, reason="the decay counts steps: the lr collapses by epoch 4")
@pytest.mark.lr_spike_explained(setup="decay_per_step", epochs=30, metric="train_acc")
def test_example1_exponential_decay_counted_in_steps():
    pass


@pytest.mark.lr_spike_explained(setup="decay_per_10_epochs", epochs=30, metric="train_acc", allow=())
def test_example1_as_intended_shows_no_spike_at_the_decays(trainsanity_report):
    assert trainsanity_report["lr_spike_explained"].metrics["spikes"] == 0


@pytest.mark.lr_spike_explained(setup="batchnorm", epochs=30, metric="train_acc", allow=())
def test_example2_batchnorm_shows_no_spike(trainsanity_report):
    assert trainsanity_report["lr_spike_explained"].metrics["spikes"] == 0


@pytest.mark.lr_spike_explained(setup="sgd_momentum", epochs=30, metric="train_acc", allow=())
def test_example3_momentum_shows_no_spike(trainsanity_report):
    assert trainsanity_report["lr_spike_explained"].metrics["spikes"] == 0


@pytest.mark.lr_spike_explained(setup="warmup_end", epochs=12)
def test_a_warmup_that_ends_is_a_spike_explained_by_the_schedule(trainsanity_report):
    (spike,) = trainsanity_report["lr_spike_explained"].causes
    assert (spike["epoch"], spike["cause"]) == (6, "lr_schedule")
    assert spike["removed_fraction"]["hold_lr"] > 0.9
