"""A model with two inputs, as tabular teams write it: ``forward(x_num, x_cat)`` takes four
numeric columns (age, income, tenure, monthly spend) and two category ids (plan, region) that
go through embeddings; the Dataset yields ``(x_num, x_cat, churned)``. The checks call the
model with both inputs, judge the numbers' scale and name the ids they skip.

The planted fault: the StandardScaler was fitted on train and applied to train only; val went
to the model in raw units (ages in years, incomes in dollars). ``inputs_normalized`` names the
field and the split, and the fix.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from sklearn.preprocessing import StandardScaler  # noqa: E402
from torch.utils.data import DataLoader, Dataset  # noqa: E402

from pytest_trainsanity import TrainSanityError, TrainSetup  # noqa: E402


def customers(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    age = rng.uniform(18, 80, n)
    income = rng.lognormal(10.8, 0.5, n)
    tenure = rng.integers(0, 120, n).astype(float)
    spend = rng.uniform(10, 300, n)
    plan, region = rng.integers(0, 4, n), rng.integers(0, 6, n)
    score = -0.03 * tenure + 0.01 * spend + 0.8 * (plan == 0) - 0.5 * (plan == 3) + rng.normal(0, 0.5, n)
    return np.c_[age, income, tenure, spend], np.c_[plan, region], (score > np.median(score)).astype(np.int64)


class Customers(Dataset):
    def __init__(self, x_num: np.ndarray, x_cat: np.ndarray, churned: np.ndarray) -> None:
        self.x_num, self.x_cat, self.churned = x_num.astype(np.float32), x_cat, churned

    def __len__(self) -> int:
        return len(self.churned)

    def __getitem__(self, i: int):
        return self.x_num[i], self.x_cat[i], self.churned[i]


class ChurnModel(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.plan, self.region = torch.nn.Embedding(4, 3), torch.nn.Embedding(6, 3)
        self.head = torch.nn.Sequential(torch.nn.Linear(4 + 6, 32), torch.nn.ReLU(), torch.nn.Linear(32, 2))

    def forward(self, x_num, x_cat):
        return self.head(torch.cat([x_num, self.plan(x_cat[:, 0]), self.region(x_cat[:, 1])], dim=1))


def churn_setup(scale_val: bool = True) -> TrainSetup:
    rng = np.random.default_rng(0)
    (num_tr, cat_tr, y_tr), (num_v, cat_v, y_v) = customers(3000, rng), customers(600, rng)
    scaler = StandardScaler().fit(num_tr)
    num_tr = scaler.transform(num_tr)
    if scale_val:
        num_v = scaler.transform(num_v)
    torch.manual_seed(0)
    model = ChurnModel()
    return TrainSetup(
        model=model,
        train=DataLoader(Customers(num_tr, cat_tr, y_tr), batch_size=64, shuffle=True),
        val=DataLoader(Customers(num_v, cat_v, y_v), batch_size=256),
        optimizer=torch.optim.Adam(model.parameters(), lr=3e-3), loss=torch.nn.CrossEntropyLoss(),
    )


@pytest.fixture
def train_setup():
    return churn_setup()


@pytest.fixture
def raw_val():
    return churn_setup(scale_val=False)


@pytest.mark.no_epoch1_overfit(epochs=3)
@pytest.mark.inputs_normalized
@pytest.mark.no_leakage
def test_churn_model_is_sane(trainsanity_report):
    assert trainsanity_report["no_epoch1_overfit"].metrics["val_metric"] > 0.75
    assert trainsanity_report["inputs_normalized"].metrics["skipped_fields"] == 1  # x_cat: ids, not features


@pytest.mark.xfail(raises=TrainSanityError, strict=True, reason="val numbers were never scaled")
@pytest.mark.inputs_normalized(setup="raw_val")
def test_val_left_in_raw_units():
    pass
