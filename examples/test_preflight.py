"""Pre-flight checks before a long run, on digits: one planted bug per marker, and a clean model.

The checks people run by hand before launching a long job ("verify the loss at
init, overfit one batch, check that samples do not mix, that every parameter
trains, watch for NaN, shuffle your data"), as markers. Each planted bug below
is a real mistake from real code; its test is expected to fail (xfail, strict)
with the diagnosis printed (``--trainsanity-explain``), and the clean model
passes all six at once with ``@pytest.mark.preflight``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pytest_trainsanity import TrainSanityError, TrainSetup


def _mlp(softmax: bool = False, hidden_layers: int = 1) -> torch.nn.Sequential:
    torch.manual_seed(0)
    layers: list[torch.nn.Module] = []
    for _ in range(hidden_layers):
        layers += [torch.nn.Linear(64, 64), torch.nn.ReLU()]
    layers.append(torch.nn.Linear(64, 10))
    if softmax:
        layers.append(torch.nn.Softmax(dim=1))  # planted: CrossEntropyLoss applies softmax again
    return torch.nn.Sequential(*layers)


class BatchMixer(torch.nn.Module):
    """A "flatten" written as a transpose and reshape: it moves features of other samples into each row."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.encoder = torch.nn.Linear(64, 64)
        self.head = torch.nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.encoder(x))
        h = h.t().reshape(h.shape[0], -1)  # planted: the batch axis is mixed into the features
        return self.head(h)


def _setup(digits, model=None, lr=1e-3, optimizer=None, train=None, scaled=True):
    Xtr, ytr, Xv, yv = digits
    if scaled:
        Xtr, Xv = Xtr / 16.0, Xv / 16.0
    model = model if model is not None else _mlp()
    return TrainSetup(
        model=model, train=train if train is not None else (Xtr, ytr), val=(Xv, yv), batch_size=32,
        optimizer=optimizer if optimizer is not None else torch.optim.Adam(model.parameters(), lr=lr),
        loss=torch.nn.CrossEntropyLoss(),
    )


@pytest.fixture
def clean(digits):
    return _setup(digits)


@pytest.fixture
def double_softmax(digits):
    return _setup(digits, model=_mlp(softmax=True))


@pytest.fixture
def tiny_lr(digits):
    return _setup(digits, lr=1e-9)


@pytest.fixture
def mixes_batch(digits):
    return _setup(digits, model=BatchMixer())


@pytest.fixture
def head_only_optimizer(digits):
    model = _mlp()
    return _setup(digits, model=model, optimizer=torch.optim.Adam(model[2].parameters(), lr=1e-3))  # planted: layer 0 left out


@pytest.fixture
def huge_lr_raw_pixels(digits):
    Xtr, ytr, Xv, yv = digits
    model = _mlp(hidden_layers=3)
    return _setup((Xtr * 255 / 16, ytr, Xv * 255 / 16, yv), model=model, scaled=False,
                  optimizer=torch.optim.SGD(model.parameters(), lr=1e4))  # planted: raw 0-255 pixels, lr 1e4


@pytest.fixture
def sorted_loader(digits):
    Xtr, ytr, _, _ = digits
    order = np.argsort(ytr, kind="stable")  # planted: the split sorted by class, read without shuffle
    data = torch.utils.data.TensorDataset(torch.from_numpy(Xtr[order] / 16.0), torch.from_numpy(ytr[order]))
    return _setup(digits, train=torch.utils.data.DataLoader(data, batch_size=32, shuffle=False))


@pytest.mark.preflight(setup="clean")
def test_clean_model_passes_every_preflight_check():
    pass


@pytest.mark.xfail(raises=TrainSanityError, strict=True, reason="softmax before CrossEntropyLoss")
@pytest.mark.loss_at_init(setup="double_softmax")
def test_double_softmax():
    pass


@pytest.mark.xfail(raises=TrainSanityError, strict=True, reason="lr 1e-9 cannot fit even one batch")
@pytest.mark.overfits_one_batch(setup="tiny_lr")
def test_learning_rate_too_small():
    pass


@pytest.mark.xfail(raises=TrainSanityError, strict=True, reason="transpose-reshape mixes the batch")
@pytest.mark.batch_independent(setup="mixes_batch")
def test_samples_mix_across_the_batch():
    pass


@pytest.mark.xfail(raises=TrainSanityError, strict=True, reason="layer 0 is not in the optimizer")
@pytest.mark.params_update(setup="head_only_optimizer")
def test_layer_left_out_of_the_optimizer():
    pass


@pytest.mark.xfail(raises=TrainSanityError, strict=True, reason="lr 1e4 on raw pixels diverges")
@pytest.mark.finite_training(setup="huge_lr_raw_pixels")
def test_training_goes_non_finite():
    pass


@pytest.mark.xfail(raises=TrainSanityError, strict=True, reason="class-sorted split read with shuffle=False")
@pytest.mark.batches_mixed(setup="sorted_loader")
def test_batches_sorted_by_class():
    pass
