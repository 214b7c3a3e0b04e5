"""Value codes of table columns (pyarrow in, numpy out): equal values give equal codes whatever
the type or encoding, different values differ; and the readers of every table form."""

from __future__ import annotations

import numpy as np
import pytest

pa = pytest.importorskip("pyarrow")
pd = pytest.importorskip("pandas")
pq = pytest.importorskip("pyarrow.parquet")
ds = pytest.importorskip("pyarrow.dataset")

from pytest_trainsanity import SetupError, TrainSetup, check_leakage  # noqa: E402
from pytest_trainsanity.adapters.tables import TableSplit, column_codes, string_codes  # noqa: E402


def same(a, b) -> np.ndarray:
    ca, cb = column_codes(a), column_codes(b)
    return (ca == cb) | (np.isnan(ca) & np.isnan(cb))


def test_strings_by_bytes() -> None:
    words = ["", "a", "ab", "ba", "b" * 5000, "é", "a\x00", "x" * 4096 + "y", "x" * 4096 + "z"]
    codes = string_codes(pa.array(words))
    assert len(set(codes.tolist())) == len(words)  # every distinct string its own code (long ones too)
    again = string_codes(pa.array(list(reversed(words)), pa.large_string()))[::-1]
    assert np.array_equal(codes, again)  # string or large_string, any position in the array
    sliced = pa.array(["q", *words])[1:]  # an offset into the buffers
    assert np.array_equal(string_codes(sliced), codes)
    assert np.isnan(string_codes(pa.array(["a", None]))[1])


def test_categoricals_by_value_and_numbers_by_value() -> None:
    a = pa.DictionaryArray.from_arrays(pa.array([0, 1, 2, 0]), pa.array(["basic", "pro", "max"]))
    b = pa.DictionaryArray.from_arrays(pa.array([2, 1, 0, 2]), pa.array(["basic", "pro", "max"])[::-1])
    assert same(a, b).all() and same(a, pa.array(["basic", "pro", "max", "basic"])).all()
    assert same(pa.array([1, 2, -0], pa.int64()), pa.array([1.0, 2.0, -0.0])).all()
    big = pa.array([2**53 + 1, 2**62], pa.int64())
    assert not same(big, pa.array([2.0**53, 2.0**62])).any()  # a float is not the int it rounds
    assert same(big, pa.array([2**53 + 1, 2**62], pa.int64())).all()
    assert same(pa.array([None, 1.5]), pa.array([float("nan"), 1.5])).all()  # missing is missing
    t = pa.array(pd.to_datetime(["2024-01-01", "2024-01-02"]).as_unit("ns"))
    assert same(t, pa.array(pd.to_datetime(["2024-01-01", "2024-01-02"]).as_unit("s"))).all()
    assert same(pa.array([True, False]), pa.array([1, 0])).all()


def test_every_table_form(tmp_path) -> None:
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"x": rng.normal(size=300), "city": rng.choice(["a", "b", "c"], 300), "y": rng.integers(0, 2, 300)})
    val = df.iloc[:12].reset_index(drop=True)
    for i in range(3):
        pq.write_table(pa.Table.from_pandas(df.iloc[i * 100:(i + 1) * 100]), tmp_path / f"p{i}.parquet")
    forms = [df, str(tmp_path), str(tmp_path / "*.parquet"), ds.dataset(str(tmp_path)), pa.Table.from_pandas(df)]
    for form in forms:
        report = check_leakage(TrainSetup(train=form, val=val, target="y"))
        assert report.metrics["train_val_exact"] == 12, form
    split = TableSplit("train", str(tmp_path), "y")
    assert split.n_samples() == 300 and split.kind == "table stream" and split.columns == ["x", "city"]
    with pytest.raises(SetupError, match="matches no file"):
        check_leakage(TrainSetup(train=str(tmp_path / "nothing-*.parquet"), val=val, target="y"))
    with pytest.raises(SetupError, match=r"TrainSetup\(target='label'\) is not a column of the train split; its columns: x, city, y"):
        check_leakage(TrainSetup(train=df, val=val, target="label"))
    with pytest.raises(SetupError, match="has 300 rows but 299 labels"):
        check_leakage(TrainSetup(train=(df[["x"]], df["y"].to_numpy()[:-1]), val=val, target="y"))
