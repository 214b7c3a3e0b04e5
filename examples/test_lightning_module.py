"""A Lightning project as its users write it: a ``LightningModule`` with its own
``training_step`` (label smoothing, ``self.log``) and ``configure_optimizers`` (Adam and a
StepLR in an lr-scheduler config), and a ``LightningDataModule``. No Trainer is created: the
checks take the optimizer and scheduler from ``configure_optimizers()``, the loss from
``training_step`` and the loaders from the datamodule.

The planted fault: the scheduler config says ``"interval": "step"`` for a StepLR written to
halve the rate every epoch, so the rate halves 45 times an epoch and training stops after a
few steps. ``lr_spike_explained`` names the collapse and the fix.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
L = pytest.importorskip("lightning")

from sklearn.preprocessing import StandardScaler  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

from pytest_trainsanity import TrainSanityError, TrainSetup  # noqa: E402


class DigitsClassifier(L.LightningModule):
    def __init__(self, interval: str = "epoch") -> None:
        super().__init__()
        self.interval = interval
        self.net = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10))

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = torch.nn.functional.cross_entropy(self(x), y, label_smoothing=0.1)
        self.log("train_loss", loss)
        return loss

    def configure_optimizers(self):
        optimizer = torch.optim.Adam(self.parameters(), lr=1e-3)
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": self.interval}}


class DigitsData(L.LightningDataModule):
    def __init__(self, digits) -> None:
        super().__init__()
        self.digits = digits

    def setup(self, stage: str) -> None:
        Xtr, ytr, Xv, yv = self.digits
        scaler = StandardScaler().fit(Xtr)
        as_set = lambda X, y: TensorDataset(torch.as_tensor(scaler.transform(X).astype(np.float32)), torch.as_tensor(y))  # noqa: E731
        self.train_set, self.val_set = as_set(Xtr, ytr), as_set(Xv, yv)

    def train_dataloader(self):
        return DataLoader(self.train_set, batch_size=32, shuffle=True)

    def val_dataloader(self):
        return DataLoader(self.val_set, batch_size=64)


@pytest.fixture
def train_setup(digits):
    torch.manual_seed(0)
    return TrainSetup(model=DigitsClassifier(), datamodule=DigitsData(digits))


@pytest.fixture
def per_step_decay(digits):
    torch.manual_seed(0)
    return TrainSetup(model=DigitsClassifier(interval="step"), datamodule=DigitsData(digits))


@pytest.mark.no_epoch1_overfit
@pytest.mark.no_leakage
@pytest.mark.lr_spike_explained(epochs=8)
def test_module_and_datamodule_are_sane(trainsanity_report):
    assert trainsanity_report["no_epoch1_overfit"].metrics["val_metric"] > 0.8


@pytest.mark.xfail(raises=TrainSanityError, strict=True, reason="interval='step' halves the rate every step")
@pytest.mark.lr_spike_explained(setup="per_step_decay", epochs=8)
def test_scheduler_interval_counted_in_steps():
    pass
