"""A churn table as tabular teams hold it: a pandas DataFrame with numeric, bool, categorical,
string and datetime columns, the label in a column (``TrainSetup(target="churned")``).

Three planted faults, each found and named by column:

- ``account_closed_date``: filled in when the account was closed, so only for customers who
  churned: the label, written in another column (a classic feature computed after the label);
- 40 val customers copied from train (a second export merged in), with the ``plan`` categorical
  re-coded in another category order: still the same rows by value;
- a "temporal" split drawn at random instead of by signup date: most val customers signed up
  before the last train customer.

The clean split (split by signup date, leaked column dropped, copies removed) passes every check.
"""

from __future__ import annotations

import numpy as np
import pytest

pd = pytest.importorskip("pandas")
pytest.importorskip("pyarrow")

from pytest_trainsanity import TrainSanityError, TrainSetup  # noqa: E402


def customers(n: int = 3000, seed: int = 0):
    r = np.random.default_rng(seed)
    tenure = r.integers(1, 72, n)
    monthly = r.normal(70, 20, n).round(2)
    plan = r.choice(["basic", "pro", "max"], n, p=[0.5, 0.3, 0.2])
    risk = 1.5 - 0.04 * tenure + 0.01 * (monthly - 70) + (plan == "basic") * 0.5
    churned = (r.random(n) < 1 / (1 + np.exp(-risk))).astype(int)
    signup = pd.Timestamp("2020-01-01") + pd.to_timedelta(r.integers(0, 1200, n), unit="D")
    closed = pd.Series(signup + pd.to_timedelta(tenure * 30, unit="D")).where(churned == 1)  # NaT unless churned
    return pd.DataFrame({
        "customer": [f"C{i:06d}" for i in range(n)], "tenure": tenure, "monthly": monthly,
        "plan": pd.Categorical(plan), "region": r.choice(["north", "south", "east", "west"], n).astype(object),
        "autopay": r.random(n) < 0.6, "signup": signup, "account_closed_date": closed, "churned": churned,
    })


def by_signup(df, cut: float = 0.8):
    df = df.sort_values("signup", kind="stable").reset_index(drop=True)
    k = int(len(df) * cut)
    return df.iloc[:k].reset_index(drop=True), df.iloc[k:].reset_index(drop=True)


@pytest.fixture
def clean():
    train, val = by_signup(customers().drop(columns="account_closed_date"))
    return TrainSetup(train=train.drop(columns="customer"), val=val.drop(columns="customer"), target="churned",
                      timestamps={"train": train["signup"].to_numpy(), "val": val["signup"].to_numpy()})


@pytest.fixture
def leaked_column():
    train, val = by_signup(customers())
    return TrainSetup(train=train.drop(columns="customer"), val=val.drop(columns="customer"), target="churned")


@pytest.fixture
def copied_rows():
    train, val = by_signup(customers().drop(columns="account_closed_date"))
    val = pd.concat([val.iloc[40:], train.iloc[:40]], ignore_index=True)  # a second export merged in
    val["plan"] = pd.Categorical(val["plan"].astype(str), categories=["max", "pro", "basic"])  # other codes
    return TrainSetup(train=train.drop(columns="customer"), val=val.drop(columns="customer"), target="churned")


@pytest.fixture
def random_split():
    df = customers().drop(columns="account_closed_date").sample(frac=1.0, random_state=0).reset_index(drop=True)
    train, val = df.iloc[:2400].reset_index(drop=True), df.iloc[2400:].reset_index(drop=True)
    return TrainSetup(train=train.drop(columns="customer"), val=val.drop(columns="customer"), target="churned",
                      timestamps={"train": train["signup"].to_numpy(), "val": val["signup"].to_numpy()})


@pytest.mark.no_leakage(setup="clean")
@pytest.mark.inputs_normalized(setup="clean", tol=100)  # raw tenure / monthly: the pipeline scales them
def test_clean_split_by_signup_date():
    pass


@pytest.mark.xfail(raises=TrainSanityError, strict=True, reason="account_closed_date is set only for churned customers")
@pytest.mark.no_leakage(setup="leaked_column")
def test_column_filled_after_the_label():
    pass


@pytest.mark.xfail(raises=TrainSanityError, strict=True, reason="40 val customers are train customers")
@pytest.mark.no_leakage(setup="copied_rows")
def test_customers_in_both_splits():
    pass


@pytest.mark.xfail(raises=TrainSanityError, strict=True, reason="a random split is not a temporal split")
@pytest.mark.no_leakage(setup="random_split")
def test_val_customers_signed_up_before_train_ended():
    pass
