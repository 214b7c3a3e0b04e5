"""Issue 14: no_leakage on Dask DataFrames, computed on a LocalCluster(n_workers=2).

The same planted copies, label conflicts, repeats, shared groups and earlier times are counted on
the cluster as by the in-memory check on the same rows; the hashing ran on the workers (the task
stream); only the matched rows' keys and ids and counts came back."""

from __future__ import annotations

import numpy as np
import pytest

from .conftest import run

pd = pytest.importorskip("pandas")
pytest.importorskip("pyarrow")
dd = pytest.importorskip("dask.dataframe")
distributed = pytest.importorskip("distributed")

from pytest_trainsanity import TrainSetup, check_leakage
from pytest_trainsanity.errors import SetupError

FRAMES = r'''
import numpy as np
import pandas as pd


def frame(n, seed, start=0):
    r = np.random.default_rng(seed)
    return pd.DataFrame({
        "amount": r.normal(70, 20, n).round(2), "tenure": r.integers(1, 72, n),
        "plan": pd.Categorical(r.choice(["basic", "pro", "max"], n)),
        "user": pd.array([f"u{i:06d}" for i in r.integers(0, 10**6, n)], dtype="string[pyarrow]"),
        "signup": pd.Timestamp("2021-01-01") + pd.to_timedelta(start + r.integers(0, 900, n), unit="D"),
        "autopay": r.random(n) > 0.4, "label": r.integers(0, 3, n)})


def planted():
    """train 3000 / val 800 rows: 40 val copies of train rows (10 with another label, and val's plan
    categories in another order), 20 train rows repeated (5 with another label), val rows -0.0 / NaN."""
    train, val = frame(3000, 0), frame(800, 1, start=1000)
    train.loc[100:104, "amount"] = [0.0, np.nan, 1.5, np.nan, 2.5]
    val.iloc[:40] = train.iloc[100:140].to_numpy()
    val.loc[:1, "amount"] = [-0.0, np.nan]  # -0.0 equals 0.0; NaN equals NaN
    val.loc[30:39, "label"] = (val.loc[30:39, "label"] + 1) % 3
    val["plan"] = pd.Categorical(val["plan"].astype(str), categories=["max", "pro", "basic"])
    val["signup"] = pd.to_datetime(val["signup"])
    train.iloc[2000:2020] = train.iloc[10:30].to_numpy()
    train.loc[2015:2019, "label"] = (train.loc[2015:2019, "label"] + 1) % 3
    for df in (train, val):
        df["autopay"] = df["autopay"].astype(bool)
        df["tenure"] = df["tenure"].astype(np.int64)
        df["label"] = df["label"].astype(np.int64)
        df["amount"] = df["amount"].astype(np.float64)
    return train, val
'''

TESTS = r'''
import dask.dataframe as dd
import pytest
from distributed import Client, LocalCluster
from pytest_trainsanity import TrainSetup
from frames import frame, planted


@pytest.fixture(scope="session", autouse=True)
def cluster():
    with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as c, Client(c):
        yield


@pytest.fixture
def copied():
    train, val = planted()
    return TrainSetup(train=dd.from_pandas(train, npartitions=3), val=dd.from_pandas(val, npartitions=2), target="label")


@pytest.fixture
def repeated():
    train, _ = planted()
    return TrainSetup(train=dd.from_pandas(train, npartitions=3), val=dd.from_pandas(frame(500, 6, 2000), npartitions=1),
                      target="label")


@pytest.fixture
def clean():
    return TrainSetup(train=dd.from_pandas(frame(2000, 5), npartitions=2), val=dd.from_pandas(frame(500, 6, 2000), npartitions=1),
                      target="label")


@pytest.fixture
def grouped_and_timed():
    train, val = frame(2000, 5), frame(500, 6, start=2000)
    val.loc[:99, "signup"] = train.loc[:99, "signup"].to_numpy()  # 100 val rows earlier than train's latest
    dt, dv = dd.from_pandas(train, npartitions=2), dd.from_pandas(val, npartitions=2)
    return TrainSetup(train=dt, val=dv, target="label", groups={"train": dt["user"], "val": "user"},
                      timestamps={"train": dt["signup"], "val": dv["signup"]})


@pytest.mark.no_leakage(setup="copied", near_duplicates=False)
def test_copies():
    pass


@pytest.mark.no_leakage(setup="repeated", near_duplicates=False, within_split=True)
def test_within():
    pass


@pytest.mark.no_leakage(setup="clean")
def test_clean():
    pass


@pytest.mark.no_leakage(setup="grouped_and_timed", near_duplicates=False)
def test_groups_and_time():
    pass
'''


def test_dask_splits_end_to_end(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(frames=FRAMES, test_user=TESTS)
    result = run(pytester, "-q", "-W", "ignore::DeprecationWarning")
    result.assert_outcomes(passed=1, failed=3)  # clean passes; copies, repeats, groups + time fail
    out = result.stdout.str()
    assert "test_clean" not in out.split("short test summary")[-1]
    assert "no_leakage FAILED: train/val: 40 copies (exact or near) of 800 val samples (5.0%; limit 0)." in out
    assert "also: train/val: 10 copies with a different label of 800 val samples" in out
    assert "exact examples (train, val): [(100, 0), (101, 1), (102, 2), (103, 3), (104, 4)]" in out
    assert "computed on the Dask cluster (partitions: train 3, val 2)" in out
    assert "rows per split where it lies); near copies not searched." in out  # near_duplicates=False
    # within_split=True: train's repeats and the rows whose inputs repeat with another label fail
    assert "no_leakage FAILED: train: 20 repeated row(s) of 3000 (0.7%; limit 0)." in out
    assert "also: train: 10 row(s) whose inputs repeat with a different label (limit 0)" in out
    assert "train 20 repeated row(s) of 3000 (10 row(s) share their inputs with a row of another label)" in out
    assert "Fix (repeats)" in out and "Fix (conflicts)" in out
    assert "shared group id(s) covering" in out and "100 val sample(s) earlier than the latest train time" in out
    assert "Fix (groups)" in out and "Fix (time)" in out and "SetupError" not in out


@pytest.fixture(scope="module")
def client():  # type: ignore[no-untyped-def]
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as c, distributed.Client(c) as cl:
        yield cl


def _planted() -> tuple:
    namespace: dict = {}
    exec(FRAMES, namespace)
    return namespace["planted"](), namespace["frame"]


KEYS = ("train_val_exact", "train_val_label_conflicts", "train_val_copies", "train_repeated_rows", "train_label_conflicts",
        "val_repeated_rows", "val_label_conflicts", "train_val_group_rows", "train_val_temporal_rows", "target_columns",
        "max_copy_fraction")


def _in_memory(train, val):  # type: ignore[no-untyped-def]
    """The in-memory check on the same pandas frames, groups and times: the reference counts."""
    return check_leakage(TrainSetup(train=train, val=val, target="label",
                                    groups={"train": train["user"].to_numpy(), "val": val["user"].to_numpy()},
                                    timestamps={"train": train["signup"].to_numpy(), "val": val["signup"].to_numpy()}),
                         near_duplicates=False)


def test_the_cluster_counts_what_the_in_memory_check_counts(client) -> None:  # type: ignore[no-untyped-def]
    (train, val), _ = _planted()
    val.loc[40:59, "user"] = train.loc[500:519, "user"].to_numpy()  # 20 val rows of train's users
    val.loc[60:64, "signup"] = pd.Timestamp("2020-06-01")
    train.loc[7, "signup"] = pd.NaT
    dt, dv = dd.from_pandas(train, npartitions=4), dd.from_pandas(val, npartitions=3)
    with distributed.get_task_stream(client) as stream:
        on_cluster = check_leakage(TrainSetup(train=dt, val=dv, target="label", groups={"train": dt["user"], "val": dv["user"]},
                                              timestamps={"train": dt["signup"], "val": dv["signup"]}), near_duplicates=False)
    in_memory = _in_memory(train, val)
    assert {k: on_cluster.metrics[k] for k in KEYS} == {k: in_memory.metrics[k] for k in KEYS}
    assert on_cluster.metrics["train_val_exact"] == 40 and on_cluster.metrics["train_val_label_conflicts"] == 10
    assert on_cluster.metrics["train_repeated_rows"] == 20 and on_cluster.metrics["train_label_conflicts"] == 10
    assert on_cluster.metrics["train_val_group_rows"] >= 20 and on_cluster.metrics["train_val_temporal_rows"] >= 5
    assert "1 train, 0 val" in on_cluster.message and "1 train, 0 val" in in_memory.message
    # the rows were hashed where the partitions lie: on the two workers, one task per partition
    hashed = [t for t in stream.data if "hash_partition" in str(t["key"])]
    workers = {w.worker_address for w in client.cluster.workers.values()} if hasattr(client.cluster, "workers") else set()
    assert len(hashed) == 4 + 3 and {t["worker"] for t in hashed} <= set(client.scheduler_info()["workers"]) | workers
    # what came back: the matched rows only (40 val rows, their 40 train keys)
    assert on_cluster.metrics["pulled_train_val_matched_val_rows"] == 40
    assert on_cluster.metrics["pulled_train_val_matched_train_keys"] == 40
    assert sorted(k for k in on_cluster.metrics if k.startswith("pulled_")) == [
        "pulled_train_val_matched_train_keys", "pulled_train_val_matched_val_rows"]  # no sample: it was judged on a worker


def test_a_label_column_is_found_by_name_on_the_cluster(client) -> None:  # type: ignore[no-untyped-def]
    _, frame = _planted()
    train, val = frame(1500, 3), frame(400, 4)
    for df in (train, val):
        df["closed_days"] = np.where(df["label"] == 1, 30, 0) + df["label"] * 7
    report = check_leakage(TrainSetup(train=dd.from_pandas(train, npartitions=3), val=dd.from_pandas(val, npartitions=1),
                                      target="label"), near_duplicates=False)
    assert not report.passed and "column 'closed_days' alone predicts the train label" in report.message


def test_misuse_is_one_paragraph(client) -> None:  # type: ignore[no-untyped-def]
    (train, val), _ = _planted()
    with pytest.raises(SetupError, match="every split as a Dask DataFrame"):
        check_leakage(TrainSetup(train=dd.from_pandas(train, npartitions=2), val=val, target="label"))
    with pytest.raises(SetupError, match="name its label column"):
        check_leakage(TrainSetup(train=dd.from_pandas(train, npartitions=2), val=dd.from_pandas(val, npartitions=1)))
    with pytest.raises(SetupError, match="a Dask Series of that split"):
        check_leakage(TrainSetup(train=dd.from_pandas(train, npartitions=2), val=dd.from_pandas(val, npartitions=1),
                                 target="label", groups={"train": train["user"].to_numpy(), "val": "user"}))
    before = train.copy()
    check_leakage(TrainSetup(train=dd.from_pandas(train, npartitions=2), val=dd.from_pandas(val, npartitions=1), target="label"))
    pd.testing.assert_frame_equal(train, before)  # the user's frame is untouched


def test_near_copies_are_searched_on_the_workers_as_in_memory(client, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    from pytest_trainsanity.checks.leakage import on_dask

    keys = ("train_val_exact", "train_val_near", "train_val_copies", "train_val_near_pairs", "train_val_near_counted",
            "near_threshold")
    rng = np.random.default_rng(0)
    numeric = pd.DataFrame(rng.standard_normal((4000, 6)) * [1, 10, 100, 1, 1, 1e3] + [0, 0, 2019, 0, 0, 0], columns=list("abcdef"))
    numeric["y"] = rng.integers(0, 3, 4000)
    val = pd.DataFrame(rng.standard_normal((900, 6)) * [1, 10, 100, 1, 1, 1e3] + [0, 0, 2019, 0, 0, 0], columns=list("abcdef"))
    val["y"] = rng.integers(0, 3, 900)
    val.iloc[:30, :6] = numeric.iloc[:30, :6].to_numpy() * (1 + rng.normal(0, 1e-5, (30, 6)))  # re-typed: near
    val.iloc[30:40] = numeric.iloc[30:40].to_numpy()  # exact
    (mixed, mixed_val), _ = _planted()
    mixed_val.loc[:19, "amount"] += 0.01  # 20 of the 40 copies re-typed: near among rows whose other columns are equal
    for train, v in ((numeric, val), (mixed, mixed_val)):
        on_cluster = check_leakage(TrainSetup(train=dd.from_pandas(train, npartitions=3), val=dd.from_pandas(v, npartitions=2),
                                              target="label" if "label" in train else "y"))
        in_memory = check_leakage(TrainSetup(train=train, val=v, target="label" if "label" in train else "y"))
        assert {k: on_cluster.metrics[k] for k in keys} == {k: in_memory.metrics[k] for k in keys}
        assert on_cluster.metrics["train_val_near"] >= 15 and "near copies searched on the workers" in on_cluster.message
        assert on_cluster.metrics["pulled_train_val_near_pairs"] == on_cluster.metrics["train_val_near_pairs"] + (
            on_cluster.metrics["train_val_exact"])  # the pairs found, exact ones included: nothing else came back
    dense = pd.DataFrame(rng.standard_normal((6000, 2)), columns=["a", "b"])  # chance neighbours, as in memory
    dense["y"] = rng.integers(0, 2, 6000)
    dense_keys = keys + ("train_val_near_chance", "train_val_near_counted", "train_val_near_pairs_expected")
    on_cluster = check_leakage(TrainSetup(train=dd.from_pandas(dense.iloc[:5000], npartitions=3),
                                          val=dd.from_pandas(dense.iloc[5000:], npartitions=2), target="y"))
    in_memory = check_leakage(TrainSetup(train=dense.iloc[:5000], val=dense.iloc[5000:], target="y"))
    assert {k: on_cluster.metrics[k] for k in dense_keys} == {k: in_memory.metrics[k] for k in dense_keys}
    assert on_cluster.metrics["train_val_near"] > 0 and not on_cluster.metrics["train_val_near_counted"]
    monkeypatch.setattr(on_dask, "NEAR_ROWS", 100)
    capped = check_leakage(TrainSetup(train=dd.from_pandas(numeric, npartitions=3), val=dd.from_pandas(val, npartitions=2), target="y"))
    assert capped.metrics["near_threshold"] is None and capped.metrics["train_val_exact"] == 10
    assert "near copies not searched: val has 900 rows, more than the 100 a broadcast search holds" in capped.message


def test_three_splits_and_few_valued_features_as_in_memory(client) -> None:  # type: ignore[no-untyped-def]
    """val -> test is a pair too; with every feature binary, equal rows recur by chance and the copies
    of every second split (test included) are weighed against its own repeats, as in memory."""
    rng = np.random.default_rng(4)

    def binary(n: int) -> pd.DataFrame:
        df = pd.DataFrame(rng.integers(0, 2, (n, 5)), columns=[f"b{j}" for j in range(5)])
        df["label"] = rng.integers(0, 2, n)
        return df

    train, val, test = binary(600), binary(200), binary(150)
    continuous = pd.DataFrame({"x": rng.standard_normal(900), "label": rng.integers(0, 3, 900)})
    cval, ctest = continuous.iloc[600:750].reset_index(drop=True), continuous.iloc[750:].reset_index(drop=True)
    ctest.iloc[:12] = cval.iloc[:12].to_numpy()  # val -> test copies
    for tr, va, te in ((train, val, test), (continuous.iloc[:600], cval, ctest)):
        on_cluster = check_leakage(TrainSetup(train=dd.from_pandas(tr, npartitions=2), val=dd.from_pandas(va, npartitions=2),
                                              test=dd.from_pandas(te, npartitions=1), target="label"), near_duplicates=False)
        in_memory = check_leakage(TrainSetup(train=tr, val=va, test=te, target="label"), near_duplicates=False)
        keys = [k for k in in_memory.metrics if k.split("_")[0] in ("train", "val") and not k.endswith("_near_chance")]
        assert {k: on_cluster.metrics[k] for k in keys} == {k: in_memory.metrics[k] for k in keys}
    assert on_cluster.metrics["val_test_exact"] == 12 and not on_cluster.passed


def test_broken_input_is_one_paragraph_never_a_pass(client) -> None:  # type: ignore[no-untyped-def]
    (train, val), _ = _planted()
    empty = dd.from_pandas(val.iloc[:0], npartitions=1)
    with pytest.raises(SetupError, match=r"TrainSetup\(val=...\) is empty \(0 rows\)"):
        check_leakage(TrainSetup(train=dd.from_pandas(train, npartitions=2), val=empty, target="label"))
    bad = train.astype({"label": np.float64})
    bad.loc[17, "label"] = np.nan
    with pytest.raises(SetupError, match="label"):
        check_leakage(TrainSetup(train=dd.from_pandas(bad, npartitions=2), val=dd.from_pandas(val, npartitions=1), target="label"))
    no_times = val.assign(signup=pd.NaT)
    dt, dv = dd.from_pandas(train, npartitions=2), dd.from_pandas(no_times, npartitions=1)
    with pytest.raises(SetupError, match=r"timestamps=\{'val': ...\}\) holds no time at all"):
        check_leakage(TrainSetup(train=dt, val=dv, target="label", timestamps={"train": "signup", "val": "signup"}))


def test_times_held_as_objects_or_text_on_dask_are_one_paragraph(client) -> None:  # type: ignore[no-untyped-def]
    """Python datetime objects in an object column: with Dask's convert-string off the run failed deep in
    Dask ("cannot compare the splits on Dask: TypeError: '>=' not supported between instances of 'object'
    and 'object'"); with it on (the default) Dask had turned them into text, and the message did not say
    that Dask did it."""
    import dask

    (train, val), _ = _planted()
    for df in (train, val):
        df["signup"] = pd.Series(df["signup"].dt.to_pydatetime(), index=df.index, dtype=object)
    with dask.config.set({"dataframe.convert-string": False}):
        dt, dv = dd.from_pandas(train, npartitions=2), dd.from_pandas(val, npartitions=1)
        with pytest.raises(SetupError, match=r"timestamps=\{'train': ...\}\) is an object column on Dask .* Convert it "
                                             r"to datetimes first: dd.to_datetime\(frame\[column\]\)"):
            check_leakage(TrainSetup(train=dt, val=dv, target="label", timestamps={"train": "signup", "val": "signup"}))
    dt, dv = dd.from_pandas(train, npartitions=2), dd.from_pandas(val, npartitions=1)
    with pytest.raises(SetupError, match=r"holds text, not times\. .* object columns become text by default "
                                         r"\(dataframe.convert-string\), datetime objects included"):
        check_leakage(TrainSetup(train=dt, val=dv, target="label", timestamps={"train": "signup", "val": "signup"}))


def test_a_groups_or_timestamps_series_that_does_not_line_up_is_an_error(client) -> None:  # type: ignore[no-untyped-def]
    """Dask assigns a Series by index: one over other rows would leave rows of the split without a
    group or time (a shared group unseen: a silent pass). It is one paragraph instead; a Series with
    the split's own index lines up, whatever its name."""
    (train, val), _ = _planted()
    dt, dv = dd.from_pandas(train, npartitions=2), dd.from_pandas(val, npartitions=1)
    subset = dd.from_pandas(train["user"].iloc[:2500].rename("uid"), npartitions=2)
    with pytest.raises(SetupError, match=r"groups=\{'train': ...\}\) does not line up with the train split: the Dask "
                                         r"Series has 2,500 value\(s\) for the split's 3,000 rows, .* so 500 row\(s\) got no value"):
        check_leakage(TrainSetup(train=dt, val=dv, target="label", groups={"train": subset, "val": "user"}))
    elsewhere = dd.from_pandas(val["signup"].rename("t").set_axis(val.index + 10_000), npartitions=1)
    with pytest.raises(SetupError, match=r"timestamps=\{'val': ...\}\) does not line up with the val split: .* 800 row\(s\) "
                                         r"got no value and 800 of its value\(s\) matched no row"):
        check_leakage(TrainSetup(train=dt, val=dv, target="label", timestamps={"train": "signup", "val": elsewhere}))
    own = dd.from_pandas(train["user"].rename("uid"), npartitions=2)
    report = check_leakage(TrainSetup(train=dt, val=dv, target="label", groups={"train": own, "val": "user"}),
                           near_duplicates=False)
    assert report.metrics["train_val_group_rows"] == _in_memory(train, val).metrics["train_val_group_rows"] > 0


def test_parquet_read_by_dask_with_series_of_the_split(client, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """dd.read_parquet gives unknown divisions: group ids and times given as the split's own Series
    (taken before the label column is set aside) still line up with its rows."""
    (train, val), _ = _planted()
    val = val.iloc[36:].reset_index(drop=True)  # 4 of the 40 copies left: 4 of 764
    val["plan"] = val["plan"].astype(str)
    train["plan"] = train["plan"].astype(str)
    dd.from_pandas(train, npartitions=3).to_parquet(tmp_path / "train")
    dd.from_pandas(val, npartitions=2).to_parquet(tmp_path / "val")
    tr, va = dd.read_parquet(tmp_path / "train"), dd.read_parquet(tmp_path / "val")
    report = check_leakage(TrainSetup(train=tr, val=va, target="label", groups={"train": tr["user"], "val": va["user"]},
                                      timestamps={"train": tr["signup"], "val": va["signup"]}), near_duplicates=False)
    in_memory = _in_memory(train, val)
    assert {k: report.metrics[k] for k in KEYS} == {k: in_memory.metrics[k] for k in KEYS}
    assert report.metrics["train_val_exact"] == 4 and "val accuracy can be inflated by up to 0.5 points" in report.message


def test_missing_group_ids_are_counted_on_the_cluster_as_in_memory(client) -> None:  # type: ignore[no-untyped-def]
    """A row without a group id (NaN) is in no group and is counted in the message, as in memory
    and on Spark (the cluster dropped them without a word)."""
    rng = np.random.default_rng(2)
    train = pd.DataFrame({"x": rng.standard_normal(300), "g": np.r_[np.full(10, np.nan), np.arange(290.0)],
                          "label": rng.integers(0, 2, 300)})
    val = pd.DataFrame({"x": rng.standard_normal(80), "g": np.r_[np.full(5, np.nan), 1000.0 + np.arange(75)],
                        "label": rng.integers(0, 2, 80)})
    on_dask = check_leakage(TrainSetup(train=dd.from_pandas(train, npartitions=3), val=dd.from_pandas(val, npartitions=2),
                                       target="label", groups={"train": "g", "val": "g"}), near_duplicates=False)
    in_memory = check_leakage(TrainSetup(train=train, val=val, target="label",
                                         groups={"train": train["g"].to_numpy(), "val": val["g"].to_numpy()}),
                              near_duplicates=False)
    assert on_dask.passed and in_memory.passed  # NaN ids share no group
    missing = "samples without a group id (None/NaN), left out of the group comparison: 10 train, 5 val"
    assert missing in on_dask.message and missing in in_memory.message
    val["g"] = np.nan  # no group id at all: the group check would run on nothing and pass
    for frames in ((dd.from_pandas(train, npartitions=3), dd.from_pandas(val, npartitions=2)), (train, val)):
        with pytest.raises(SetupError, match=r"TrainSetup\(groups=\{'val': ...\}\) holds no group id at all \(80 missing"):
            check_leakage(TrainSetup(train=frames[0], val=frames[1], target="label", groups={"train": "g", "val": "g"}),
                          near_duplicates=False)


def test_zoned_times_read_the_same_on_the_cluster_as_in_memory(client) -> None:  # type: ignore[no-untyped-def]
    """A tz-aware time column: the cluster wrote the latest train time as numpy's repr of its UTC
    time ("2024-01-10T22:00:00.000000000"), in memory a Series of it as pandas' ("2024-01-10
    23:00:00+01:00"). Both now say the UTC time, and that it is UTC."""
    rng = np.random.default_rng(3)
    zone = "Europe/Berlin"
    train = pd.DataFrame({"x": rng.standard_normal(240), "label": rng.integers(0, 2, 240),
                          "t": pd.date_range("2024-01-01", periods=240, freq="h", tz=zone)})
    val = pd.DataFrame({"x": rng.standard_normal(60), "label": rng.integers(0, 2, 60),
                        "t": pd.date_range("2024-01-10", periods=60, freq="h", tz=zone)})
    on_dask = check_leakage(TrainSetup(train=dd.from_pandas(train, npartitions=3), val=dd.from_pandas(val, npartitions=2),
                                       target="label", timestamps={"train": "t", "val": "t"}), near_duplicates=False)
    in_memory = check_leakage(TrainSetup(train=train, val=val, target="label",
                                         timestamps={"train": train["t"], "val": val["t"]}), near_duplicates=False)
    said = "23 val sample(s) earlier than the latest train time 2024-01-10 22:00 UTC"
    assert not on_dask.passed and not in_memory.passed
    assert said in on_dask.message and said in in_memory.message


def test_times_given_as_text_are_one_paragraph_on_the_cluster(client) -> None:  # type: ignore[no-untyped-def]
    """A str time column was ordered letter by letter on the cluster ('9/1/2024' later than
    '12/1/2024') and the verdict came from that order; it is now the paragraph the in-memory check
    gives. (A column of Python objects is not checked: dates are objects too.)"""
    rng = np.random.default_rng(4)
    us = [f"{m}/1/2024" for m in range(1, 13)]
    train = pd.DataFrame({"x": rng.standard_normal(90), "t": [us[i % 9] for i in range(90)], "label": rng.integers(0, 2, 90)})
    val = pd.DataFrame({"x": rng.standard_normal(20), "t": [us[11]] * 20, "label": rng.integers(0, 2, 20)})
    with pytest.raises(SetupError, match=r"TrainSetup\(timestamps=\{'train': ...\}\) holds text, not times\. Text compares "
                                         r"letter by letter"):
        check_leakage(TrainSetup(train=dd.from_pandas(train, npartitions=2), val=dd.from_pandas(val, npartitions=1),
                                 target="label", timestamps={"train": "t", "val": "t"}), near_duplicates=False)
