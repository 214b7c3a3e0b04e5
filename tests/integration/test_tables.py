"""Issue 13 (first part): tabular splits as users hold them. pandas, polars and pyarrow frames and
Parquet globs; rows compared by value over numeric, bool, categorical (whatever its codes or
category order), string and datetime columns; within-split label conflicts; target columns by
name; inputs_normalized on the numeric columns, naming the rest; training checks on numeric
frames, and one paragraph naming the other columns."""

from __future__ import annotations

import pytest

from .conftest import run

pytest.importorskip("pandas")
pytest.importorskip("pyarrow")

FRAMES = r'''
import numpy as np
import pandas as pd
import pytest
from pytest_trainsanity import TrainSetup


def churn(n, seed, closed_leak=False):
    r = np.random.default_rng(seed)
    churned = r.integers(0, 2, n)
    df = pd.DataFrame({
        "tenure": r.integers(1, 72, n), "monthly": r.normal(70, 20, n).round(2),
        "plan": pd.Categorical(r.choice(["basic", "pro", "max"], n)),
        "region": r.choice(["north", "south", "east", "west"], n).astype(object),
        "signup": pd.Timestamp("2021-01-01") + pd.to_timedelta(r.integers(0, 900, n), unit="D"),
        "autopay": r.random(n) > 0.4, "churned": churned})
    if closed_leak:  # filled in only after the customer left
        df["account_closed_days"] = np.where(churned == 1, r.integers(10, 40, n), 0)
    return df


def copied(library):
    train, val = churn(1200, 0), churn(300, 1)
    val.iloc[:25] = train.iloc[:25].values
    val["plan"] = pd.Categorical(val["plan"].astype(str), categories=["max", "pro", "basic"])  # other codes and order
    if library == "polars":
        import polars as pl
        return TrainSetup(train=pl.from_pandas(train), val=pl.from_pandas(val), target="churned")
    if library == "pyarrow":
        import pyarrow as pa
        return TrainSetup(train=(pa.Table.from_pandas(train.drop(columns="churned")), train["churned"].to_numpy()),
                          val=(pa.Table.from_pandas(val.drop(columns="churned")), val["churned"].to_numpy()))
    return TrainSetup(train=train, val=val, target="churned")


def _copies_test(library):
    def test():
        pass
    test.__name__ = f"test_{library}_copies"
    return pytest.mark.no_leakage(setup=f"copied_{library}")(test)


for _library in ("pandas", "polars", "pyarrow"):
    globals()[f"copied_{_library}"] = pytest.fixture(lambda _l=_library: copied(_l), name=f"copied_{_library}")
    globals()[f"test_{_library}_copies"] = _copies_test(_library)


@pytest.fixture
def near_mixed():
    """15 val rows are train rows with 'monthly' off by a cent (5e-4 of its std): near copies over the
    numeric columns, their plan, region and signup equal; 5 more the same, but in another region."""
    train, val = churn(1200, 0), churn(300, 1)
    val.iloc[:20] = train.iloc[100:120].values
    val.loc[:19, "monthly"] += 0.01
    val.loc[15:19, "region"] = val.loc[15:19, "region"].map({"north": "south", "south": "east", "east": "west",
                                                             "west": "north"})
    return TrainSetup(train=train, val=val, target="churned")


@pytest.mark.no_leakage(setup="near_mixed")
def test_mixed_near_copies():
    pass


@pytest.fixture
def parquet_glob(tmp_path):
    import pyarrow as pa, pyarrow.parquet as pq
    train, val = churn(1200, 0), churn(300, 1)
    val.iloc[:10] = train.iloc[500:510].values
    for i in range(4):
        pq.write_table(pa.Table.from_pandas(train.iloc[i * 300:(i + 1) * 300]), tmp_path / f"part-{i}.parquet")
    return TrainSetup(train=str(tmp_path / "part-*.parquet"), val=val, target="churned")


@pytest.mark.no_leakage(setup="parquet_glob")
def test_parquet_glob_copies():
    pass


@pytest.fixture
def conflicts():
    train = churn(600, 0)
    dup = train.iloc[:30].copy()
    dup["churned"] = 1 - dup["churned"]  # the same customers, the other label
    return TrainSetup(train=pd.concat([train, dup], ignore_index=True), val=churn(200, 1), target="churned")


@pytest.mark.no_leakage(setup="conflicts", within_split=True)
def test_within_split_conflicts():
    pass


@pytest.fixture
def leaked_column():
    return TrainSetup(train=churn(1500, 0, True), val=churn(400, 1, True), target="churned")


@pytest.mark.no_leakage(setup="leaked_column")
def test_target_column_by_name():
    pass


@pytest.fixture
def regression_leak():
    r = np.random.default_rng(3)
    def frame(n):
        price = r.normal(300, 80, n)
        return pd.DataFrame({"rooms": r.integers(1, 6, n), "area": r.normal(90, 25, n),
                             "district": pd.Categorical(r.choice(list("abcdef"), n)),
                             "price_per_m2_x_area": price + r.normal(0, 5, n), "price": price})
    return TrainSetup(train=frame(1500), val=frame(400), target="price", task="regression")


@pytest.mark.no_leakage(setup="regression_leak")
def test_regression_target_column_by_name():
    pass


@pytest.fixture
def clean_frames():
    return TrainSetup(train=churn(1200, 0), val=churn(300, 1), target="churned")


@pytest.mark.inputs_normalized(setup="clean_frames")
def test_normalization_names_skipped_columns():
    pass


@pytest.fixture
def numeric_model():
    import torch
    r = np.random.default_rng(0)
    def frame(n):
        x = r.normal(size=(n, 4)).astype(np.float32)
        return pd.DataFrame({"a": x[:, 0], "b": x[:, 1], "c": x[:, 2], "flag": x[:, 3] > 0, "y": (x[:, 0] + x[:, 1] > 0).astype(int)})
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))
    return TrainSetup(model=model, train=frame(800), val=frame(200), target="y",
                      optimizer=torch.optim.Adam(model.parameters(), 1e-2), loss=torch.nn.CrossEntropyLoss())


@pytest.mark.no_epoch1_overfit(setup="numeric_model", probes=False)
def test_training_on_a_numeric_frame():
    pass


@pytest.mark.inputs_normalized(setup="numeric_model")
def test_float32_frame_normalized():
    pass


@pytest.fixture
def leaked_column_model():
    import torch
    r = np.random.default_rng(0)
    def frame(n, leak):
        x, y = r.normal(size=(n, 3)).astype(np.float32), r.integers(0, 2, n)
        closed = y * 3.0 + r.normal(0, 0.1, n) if leak else r.normal(size=n)  # filled in from the label on train only
        return pd.DataFrame({"a": x[:, 0], "b": x[:, 1], "c": x[:, 2], "closed_days": closed.astype(np.float32), "y": y})
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))
    return TrainSetup(model=model, train=frame(600, True), val=frame(200, False), target="y",
                      optimizer=torch.optim.Adam(model.parameters(), 1e-2), loss=torch.nn.CrossEntropyLoss())


@pytest.mark.no_epoch1_overfit(setup="leaked_column_model", probes=False)
def test_training_names_a_leaked_column():
    pass


@pytest.fixture
def mixed_model():
    import torch
    model = torch.nn.Linear(6, 2)
    return TrainSetup(model=model, train=churn(200, 0), val=churn(50, 1), target="churned",
                      optimizer=torch.optim.Adam(model.parameters()), loss=torch.nn.CrossEntropyLoss())


@pytest.mark.no_epoch1_overfit(setup="mixed_model")
def test_training_names_non_numeric_columns():
    pass


@pytest.fixture
def no_target():
    return TrainSetup(train=churn(100, 0), val=churn(50, 1))


@pytest.mark.no_leakage(setup="no_target")
def test_frame_without_labels():
    pass
'''


def test_tables_end_to_end(pytester: pytest.Pytester) -> None:
    pytest.importorskip("polars")
    pytester.makepyfile(test_frames=FRAMES)
    res = run(pytester, "--trainsanity-explain")
    res.assert_outcomes(passed=2, failed=10, errors=2)
    out = res.stdout.str()
    for library in ("pandas", "polars", "pyarrow"):
        res.stdout.fnmatch_lines([f"*test_{library}_copies no_leakage FAILED: max_copy_fraction=0.083*"])
    assert out.count("train/val: 25 exact and 0 near copies of 300 val samples (8.3%)") == 6  # each in the error and the summary
    res.stdout.fnmatch_lines(["*rows are compared by value over every column (strings exactly, categoricals by value, "
                              "datetimes, bools, numbers); near copies are judged on the numeric and bool columns among "
                              "rows whose other columns ('plan', 'region', 'signup') are equal."])
    res.stdout.fnmatch_lines(["*test_mixed_near_copies no_leakage FAILED*",
                              "*train/val: 0 exact and 15 near copies of 300 val samples (5.0%); near examples: (100, 0) at *"])
    res.stdout.fnmatch_lines(["*test_parquet_glob_copies no_leakage FAILED*",
                              "*train/val: 10 exact and 0 near copies of 300 val samples*"])
    res.stdout.fnmatch_lines(["*no_leakage FAILED: train: 30 repeated row(s) of 630 (4.8%; limit 0).",
                              "*also: train: 60 row(s) whose inputs repeat with a different label (limit 0)",
                              "*Fix (conflicts): resolve the rows whose identical inputs carry different labels*"])
    res.stdout.fnmatch_lines(["*no_leakage FAILED: 1 column(s) alone predict the label: 'account_closed_days'.",
                              "*Target leakage: column 'account_closed_days' alone predicts the train label*",
                              "*Fix (target columns): drop column(s) 'account_closed_days' or rebuild them*"])
    res.stdout.fnmatch_lines(["*Target leakage: column 'price_per_m2_x_area' alone predicts the train target: "
                              "held-out R^2 *"])
    res.stdout.fnmatch_lines(["*inputs_normalized FAILED for train, val: train inputs are not standardised: *"
                              "(limit 5; worst feature 'monthly': mean 69.6, std 20.5).",  # named as the column, not its index
                              "*Fix:", "*  - train, val: standardise per feature with statistics fitted on train only*",
                              "*Columns: feature 0 = 'tenure', feature 1 = 'monthly'.",
                              "*Skipped (not numeric features to scale): 'plan' (categorical), 'region' (string), "
                              "'signup' (datetime), 'autopay' (bool)*"])
    res.stdout.fnmatch_lines(["*test_training_on_a_numeric_frame no_epoch1_overfit passed*"])
    # the columns' own types, not the float64 they are read as ("dtype float64" for a float32 frame)
    res.stdout.fnmatch_lines(["*train: 1200 samples, 2 feature(s), dtype mixed (int64 x1, float64 x1 columns), range *"])
    res.stdout.fnmatch_lines(["*test_float32_frame_normalized inputs_normalized passed*",
                              "*train: 800 samples, 3 feature(s), dtype float32, range *"])
    res.stdout.fnmatch_lines(["*no_epoch1_overfit FAILED: *; column 'closed_days' alone predicts the train label*",
                              "*single-feature leak*: column 'closed_days' alone predicts the train label*",
                              "*fix: drop column 'closed_days' (df.drop(columns=[[]'closed_days'])) or rebuild it*"])
    res.stdout.fnmatch_lines(["*Training checks need numeric or bool feature columns; TrainSetup(train=...) also has "
                              "'plan' (categorical), 'region' (string), 'signup' (datetime). Encode them first*"])
    res.stdout.fnmatch_lines(["*TrainSetup(train=...) is a table without labels: give (features, y), or name the label "
                              "column with TrainSetup(target='column'). Its columns: tenure, monthly, plan, region, "
                              "signup, autopay, churned.*"])
    assert "Traceback" not in out


BY_COLUMN = r"""
import numpy as np
import pandas as pd
import pytest
from pytest_trainsanity import TrainSetup


def frames():
    r = np.random.default_rng(0)
    def frame(n, ids, start):
        return pd.DataFrame({"customer": ids, "signup": pd.date_range(start, periods=n, freq="h"),
                             "monthly": r.normal(70, 20, n), "churned": r.integers(0, 2, n)})
    train = frame(600, [f"c{i}" for i in range(600)], "2023-01-01")
    val = frame(200, [f"v{i}" for i in range(200)], "2023-02-01")
    val.loc[:19, "customer"] = train.loc[100:119, "customer"].to_numpy()  # 20 customers on both sides
    train.loc[5, "customer"] = val.loc[30, "customer"] = None  # no id: in no group, counted
    val.loc[50:56, "signup"] = pd.Timestamp("2023-01-02")  # 7 val rows before train's latest time
    train.loc[7, "signup"] = pd.NaT
    return train, val


BY_NAME = dict(target="churned", groups={"train": "customer", "val": "customer"},
               timestamps={"train": "signup", "val": "signup"})


def by_column(form, tmp_path):
    train, val = frames()
    if form == "arrays":  # the reference: the same ids and times given as arrays
        return TrainSetup(train=train, val=val, target="churned",
                          groups={"train": train["customer"].to_numpy(), "val": val["customer"].to_numpy()},
                          timestamps={"train": train["signup"].to_numpy(), "val": val["signup"].to_numpy()})
    if form == "polars":
        import polars as pl
        return TrainSetup(train=pl.from_pandas(train), val=pl.from_pandas(val), **BY_NAME)
    if form == "pyarrow":
        import pyarrow as pa
        return TrainSetup(train=pa.Table.from_pandas(train), val=pa.Table.from_pandas(val), **BY_NAME)
    if form == "parquet":
        import pyarrow as pa, pyarrow.parquet as pq
        for i in range(3):
            pq.write_table(pa.Table.from_pandas(train.iloc[i * 200:(i + 1) * 200]), tmp_path / f"part-{i}.parquet")
        return TrainSetup(train=str(tmp_path / "part-*.parquet"), val=val, **BY_NAME)
    return TrainSetup(train=train, val=val, **BY_NAME)


for _form in ("pandas", "polars", "pyarrow", "parquet", "arrays"):
    globals()[f"by_{_form}"] = pytest.fixture(lambda tmp_path, _f=_form: by_column(_f, tmp_path), name=f"by_{_form}")

    def _test():
        pass
    _test.__name__ = f"test_groups_and_times_{_form}"
    globals()[_test.__name__] = pytest.mark.no_leakage(setup=f"by_{_form}", near_duplicates=False)(_test)


@pytest.fixture
def not_a_column():
    train, val = frames()
    return TrainSetup(train=train, val=val, target="churned", groups={"train": "user_id", "val": "customer"})


@pytest.mark.no_leakage(setup="not_a_column")
def test_a_name_that_is_not_a_column():
    pass


@pytest.fixture
def name_on_arrays():
    train, val = frames()
    return TrainSetup(train=(train[["monthly"]].to_numpy(), train["churned"].to_numpy()),
                      val=(val[["monthly"]].to_numpy(), val["churned"].to_numpy()),
                      groups={"train": "customer", "val": "customer"})


@pytest.mark.no_leakage(setup="name_on_arrays")
def test_a_name_on_arrays():
    pass
"""


def test_groups_and_timestamps_name_a_column_of_a_table_split(pytester: pytest.Pytester) -> None:
    """``groups=`` / ``timestamps=`` may name a column of a table split, as with Dask and Spark; it
    read as one entry and stopped with "has 1 entries but the train split has 600 samples". pandas,
    polars, pyarrow and a Parquet glob (the column read alone) find what the same ids and times as
    arrays find: 20 val rows of customers also in train, 7 val rows before train's latest time. A
    missing id (None) is in no group and is counted, as missing times are (None ids among strings
    crashed the comparison with a TypeError). A name that is not a column, or a name given with
    array splits, is one paragraph."""
    pytest.importorskip("polars")
    pytester.makepyfile(test_by_column=BY_COLUMN)
    res = run(pytester, "--trainsanity-explain")
    res.assert_outcomes(failed=7)
    out = res.stdout.str()
    for form in ("pandas", "polars", "pyarrow", "parquet", "arrays"):
        res.stdout.fnmatch_lines([f"*test_groups_and_times_{form} no_leakage FAILED: max_copy_fraction=0, target_columns=0"])
    failed = ("no_leakage FAILED: train/val: 20 samples in groups shared with the other split of 200 val samples "
              "(10.0%; limit 0).")
    assert out.count(failed) == 10, out  # each form's in its failure and in the explain section
    assert out.count("also: train/val: 7 samples earlier than the other split's latest time of 200 val samples "
                     "(3.5%; limit 0)") == 10
    assert out.count("20 shared group id(s) covering 20 val samples, e.g. ['c100', 'c101', 'c102', 'c103', 'c104']; "
                     "7 val sample(s) earlier than the latest train time 2023-01-25 23:00;") == 10
    assert out.count("samples without a group id (None/NaN), left out of the group comparison: 1 train, 1 val; "
                     "samples without a time (NaT/NaN/None), left out of the time comparison: 1 train, 0 val") == 10
    res.stdout.fnmatch_lines(["*TrainSetup(groups={'train': 'user_id'}) is not a feature column of the train split; "
                              "its columns: customer, signup, monthly.*"])
    res.stdout.fnmatch_lines(["*TrainSetup(groups={'train': 'customer'}) names a column, but the train split is arrays "
                              "(600 samples), not a table; give one group per sample (an array or list), or a DataFrame "
                              "/ Parquet split that holds the column.*"])
    assert "Traceback" not in out
