"""Issue 14 (Spark): no_leakage on Spark DataFrames, computed by a local Spark session, counts the
same copies, conflicts, repeats, shared groups and earlier times as the in-memory check. Runs where
pyspark and a Java runtime are installed; skipped with the reason elsewhere."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

pd = pytest.importorskip("pandas")
pytest.importorskip("pyarrow")
pytest.importorskip("pyspark", reason="pyspark is not installed (pip install 'pytest-trainsanity[spark]')")
if not (shutil.which("java") or os.environ.get("JAVA_HOME")):
    pytest.skip("Spark needs a Java runtime (java on PATH or JAVA_HOME); none is installed here", allow_module_level=True)

from pytest_trainsanity import TrainSetup, check_leakage  # noqa: E402
from pytest_trainsanity.errors import SetupError  # noqa: E402

from .test_dask import KEYS, _planted  # noqa: E402 - the same planted frames as the Dask tests

pytestmark = pytest.mark.filterwarnings("ignore:PySpark does not yet fully support pandas:FutureWarning")


@pytest.fixture(scope="module")
def spark():  # type: ignore[no-untyped-def]
    from pyspark.sql import SparkSession

    session = (SparkSession.builder.master("local[2]").appName("trainsanity-tests")
               .config("spark.ui.enabled", "false").config("spark.sql.shuffle.partitions", "4")
               .config("spark.sql.session.timeZone", "UTC").getOrCreate())
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


def _for_spark(df):  # type: ignore[no-untyped-def]
    """Spark has no categoricals or pyarrow strings: the same values as plain strings."""
    out = df.copy()
    out["plan"] = out["plan"].astype(str)
    out["user"] = out["user"].astype(object)
    return out


def test_the_spark_session_counts_what_the_in_memory_check_counts(spark) -> None:  # type: ignore[no-untyped-def]
    (train, val), _ = _planted()
    val.loc[40:59, "user"] = train.loc[500:519, "user"].to_numpy()
    val.loc[60:64, "signup"] = pd.Timestamp("2020-06-01")
    train.loc[7, "signup"] = pd.NaT
    train, val = _for_spark(train), _for_spark(val)
    st, sv = spark.createDataFrame(train), spark.createDataFrame(val)
    on_spark = check_leakage(TrainSetup(train=st, val=sv, target="label", groups={"train": "user", "val": sv["user"]},
                                        timestamps={"train": "signup", "val": "signup"}), near_duplicates=False)
    in_memory = check_leakage(TrainSetup(train=train, val=val, target="label",
                                         groups={"train": train["user"].to_numpy(), "val": val["user"].to_numpy()},
                                         timestamps={"train": train["signup"].to_numpy(), "val": val["signup"].to_numpy()}),
                              near_duplicates=False)
    assert {k: on_spark.metrics[k] for k in KEYS} == {k: in_memory.metrics[k] for k in KEYS}
    assert on_spark.metrics["train_val_exact"] == 40 and on_spark.metrics["train_val_label_conflicts"] == 10
    assert on_spark.metrics["train_repeated_rows"] == 20 and on_spark.metrics["train_label_conflicts"] == 10
    assert on_spark.metrics["pulled_train_val_matched_val_rows"] == 40
    assert "computed by the Spark session" in on_spark.message and "1 train, 0 val" in on_spark.message
    assert "near copies not searched" in on_spark.message


def test_spark_misuse_is_one_paragraph(spark) -> None:  # type: ignore[no-untyped-def]
    (train, val), _ = _planted()
    train, val = _for_spark(train), _for_spark(val)
    with pytest.raises(SetupError, match="every split as a Spark DataFrame"):
        check_leakage(TrainSetup(train=spark.createDataFrame(train), val=val, target="label"))
    with pytest.raises(SetupError, match="name its label column"):
        check_leakage(TrainSetup(train=spark.createDataFrame(train), val=spark.createDataFrame(val)))
    assert np.isfinite(train["amount"].iloc[0])  # the user's frame untouched


def test_spark_nan_groups_and_times_are_missing_and_nan_labels_a_paragraph(spark) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(2)
    train = pd.DataFrame({"x": rng.standard_normal(300), "g": np.r_[np.full(10, np.nan), np.arange(290.0)],
                          "t": np.r_[np.nan, np.arange(299.0)], "label": rng.integers(0, 2, 300)})
    val = pd.DataFrame({"x": rng.standard_normal(80), "g": np.r_[np.full(5, np.nan), 1000.0 + np.arange(75)],
                        "t": np.r_[np.nan, np.nan, 500.0 + np.arange(78)], "label": rng.integers(0, 2, 80)})
    setup = dict(target="label", groups={"train": "g", "val": "g"}, timestamps={"train": "t", "val": "t"})
    on_spark = check_leakage(TrainSetup(train=spark.createDataFrame(train), val=spark.createDataFrame(val), **setup),
                             near_duplicates=False)
    in_memory = check_leakage(TrainSetup(train=train, val=val, target="label",
                                         groups={"train": train["g"].to_numpy(), "val": val["g"].to_numpy()},
                                         timestamps={"train": train["t"].to_numpy(), "val": val["t"].to_numpy()}),
                              near_duplicates=False)
    assert on_spark.passed and in_memory.passed  # NaN ids share no group; NaN times are missing, not the latest
    assert on_spark.metrics["train_val_group_rows"] == 0 and on_spark.metrics["train_val_temporal_rows"] == 0
    assert "1 train, 2 val" in on_spark.message and "1 train, 2 val" in in_memory.message
    missing = "samples without a group id (None/NaN), left out of the group comparison: 10 train, 5 val"
    assert missing in on_spark.message and missing in in_memory.message  # counted on the cluster too
    train.loc[3, "label"] = np.nan
    with pytest.raises(SetupError, match="label"):
        check_leakage(TrainSetup(train=spark.createDataFrame(train), val=spark.createDataFrame(val), target="label"))


def test_spark_near_copies_as_in_memory(spark) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(0)
    train = pd.DataFrame(rng.standard_normal((3000, 5)) * [1, 10, 100, 1, 1e3] + [0, 0, 2019, 0, 0], columns=list("abcde"))
    train["y"] = rng.integers(0, 3, 3000)
    val = pd.DataFrame(rng.standard_normal((600, 5)) * [1, 10, 100, 1, 1e3] + [0, 0, 2019, 0, 0], columns=list("abcde"))
    val["y"] = rng.integers(0, 3, 600)
    val.iloc[:25, :5] = train.iloc[:25, :5].to_numpy() * (1 + rng.normal(0, 1e-5, (25, 5)))  # re-typed: near
    val.iloc[25:30] = train.iloc[25:30].to_numpy()  # exact
    keys = ("train_val_exact", "train_val_near", "train_val_copies", "train_val_near_pairs", "near_threshold")
    on_spark = check_leakage(TrainSetup(train=spark.createDataFrame(train).repartition(3), val=spark.createDataFrame(val),
                                        target="y"))
    in_memory = check_leakage(TrainSetup(train=train, val=val, target="y"))
    assert {k: on_spark.metrics[k] for k in keys} == {k: in_memory.metrics[k] for k in keys}
    assert on_spark.metrics["train_val_near"] == 25 and "near copies searched by Spark in buckets" in on_spark.message
    # dense two-feature data: chance neighbours, measured as in memory (train's first rows as the scale)
    dense = pd.DataFrame(rng.standard_normal((6000, 2)), columns=["a", "b"])
    dense["y"] = rng.integers(0, 2, 6000)
    keys += ("train_val_near_chance", "train_val_near_counted", "train_val_near_pairs_expected")
    on_spark = check_leakage(TrainSetup(train=spark.createDataFrame(dense.iloc[:5000]),
                                        val=spark.createDataFrame(dense.iloc[5000:]), target="y"))
    in_memory = check_leakage(TrainSetup(train=dense.iloc[:5000], val=dense.iloc[5000:], target="y"))
    assert {k: on_spark.metrics[k] for k in keys} == {k: in_memory.metrics[k] for k in keys}
    assert on_spark.metrics["train_val_near"] > 0 and not on_spark.metrics["train_val_near_counted"]


def test_spark_times_given_as_text_are_one_paragraph(spark) -> None:  # type: ignore[no-untyped-def]
    """A string time column was ordered letter by letter by Spark's min/max; it is now the
    paragraph the in-memory check gives."""
    rng = np.random.default_rng(4)
    us = [f"{m}/1/2024" for m in range(1, 13)]
    train = pd.DataFrame({"x": rng.standard_normal(90), "t": [us[i % 9] for i in range(90)], "label": rng.integers(0, 2, 90)})
    val = pd.DataFrame({"x": rng.standard_normal(20), "t": [us[11]] * 20, "label": rng.integers(0, 2, 20)})
    with pytest.raises(SetupError, match=r"holds text, not times\. Text compares letter by letter"):
        check_leakage(TrainSetup(train=spark.createDataFrame(train), val=spark.createDataFrame(val), target="label",
                                 timestamps={"train": "t", "val": "t"}), near_duplicates=False)
