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
    # a value's length term is looked up in a table when values are short, computed directly when one is
    # long: the same code either way (each alone: the short ones by table; together: all directly)
    assert np.array_equal([string_codes(pa.array([w]))[0] for w in words], codes)


def test_string_codes_equal_exactly_when_bytes_are() -> None:
    """Eight-byte words from each value's own start: where a value lies in the buffer (order, slice,
    string or binary, 32- or 64-bit offsets) never changes its code; a value that differs in any
    byte, in its length only (trailing zero bytes) or past 32 KB gets another one."""
    rng = np.random.default_rng(1)
    values = [bytes(rng.integers(0, 3, int(n), dtype=np.uint8)) for n in rng.integers(0, 30, 20_000)]
    values += [b"x" * 70_000, b"x" * 69_999 + b"y", b"x" * 70_001, b"ab", b"ab\x00", b"ab\x00\x00"]
    codes = string_codes(pa.array(values, pa.large_binary()))
    by_value: dict[bytes, float] = {}
    for v, c in zip(values, codes.tolist()):
        assert by_value.setdefault(v, c) == c  # equal bytes, equal code
    assert len(set(by_value.values())) == len(by_value)  # distinct bytes, distinct codes
    order = rng.permutation(len(values))
    shuffled = pa.array([values[i] for i in order], pa.binary())
    assert np.array_equal(string_codes(shuffled), codes[order])
    assert np.array_equal(string_codes(pa.concat_arrays([pa.array([b"pad"] * 7, pa.binary()), shuffled])[7:]), codes[order])


@pytest.mark.parametrize("width", [1, 7, 8, 9, 14, 55, 64, 100])
def test_values_of_one_length_get_the_codes_mixed_lengths_get(width) -> None:
    """Values all ``width`` bytes long (ids, hashes, fixed formats), with nulls and empty strings
    among them, are read as whole words in place; their codes are the ones the general path gives
    the same values beside values of other lengths, bit for bit, at any offset into the buffers."""
    rng = np.random.default_rng(width)
    values = []
    for _ in range(3000):
        u = rng.random()
        values.append(None if u < 0.03 else "" if u < 0.06 else "".join(chr(c) for c in rng.integers(97, 123, width)))
    fixed = string_codes(pa.array(values))
    filler = "#" * (width + 3)  # another length: every chunk of this array takes the general path
    mixed = string_codes(pa.array([v for value in values for v in (value, filler)]))[::2]
    np.testing.assert_array_equal(fixed, mixed)
    np.testing.assert_array_equal(string_codes(pa.array(["pad", *values])[1:]), fixed)
    filled = [v for v in values if v]
    assert len(set(string_codes(pa.array(filled)).tolist())) == len(set(filled))


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


def test_streamed_repeats_and_their_label_conflicts_in_one_pass(tmp_path) -> None:
    """A Parquet train's repeats (across files, with strings and categoricals) and their label
    conflicts are found in the one pass that reads it (a 128-bit key per row)."""
    rng = np.random.default_rng(3)
    n = 900
    df = pd.DataFrame({"x": rng.normal(size=n), "s": [f"id-{i}" for i in rng.permutation(n)],
                       "c": pd.Categorical(rng.choice(["a", "b"], n)), "y": rng.integers(0, 3, n)})
    later = df.iloc[[5, 6, 7, 400]].copy()
    later["y"] = [df.y[5], df.y[6], (df.y[7] + 1) % 3, df.y[400]]  # three repeats with their label, one without
    df = pd.concat([df, later], ignore_index=True)
    for i, part in enumerate(np.array_split(np.arange(len(df)), 4)):
        pq.write_table(pa.Table.from_pandas(df.iloc[part], preserve_index=False), tmp_path / f"p{i}.parquet")
    report = check_leakage(TrainSetup(train=str(tmp_path / "*.parquet"), val=df.iloc[[1]], target="y"), within_split=True)
    assert report.metrics["train_repeated_rows"] == 4
    assert report.metrics["train_label_conflicts"] == 2  # row 7 and its repeat
    assert "train 4 repeated row(s) of 904" in report.message and "by 64-bit hash" not in report.message
