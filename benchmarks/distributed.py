"""no_leakage on Dask DataFrames: 50,000,000 generated rows on a LocalCluster against a 2,000,000-row val.

    python benchmarks/distributed.py                      # full: 50M x 16 train, 2M val, 2 workers
    python benchmarks/distributed.py --rows 5000000 --val-rows 500000   # a smaller run

It prints every number and a PASS or MISS per target, and always exits 0
(``tox -e distbench``). Ours is the public call, on the active
``distributed.Client``: ``check_leakage(TrainSetup(train=ddf, val=ddf_val,
target="label"), near_duplicates=False)``.

The data: each partition (``--partition-rows``, 500,000) is generated on a
worker by ``dask.dataframe.from_map`` from its own seeds (every column has
its own generator, so a partition's first rows can be drawn alone). 16
feature columns and an int64 ``label`` (10 classes, independent of the
features): f0..f7 float64 normal (continuous: no two generated rows are
equal by chance); i0 int64 0..999, i1 ids 0..10**12, i2 +-1e9; c0, c1
categoricals of 12 and 1,000 values; s0 string ``user_<digits>`` (pyarrow
strings, from 100,000 values); b0 bool; t0 timestamp (2020-2024); n0
float64 with 1% nulls. Planted: each train partition after the first
repeats (in its rows 0..4) rows 10..14 of the previous one (1 of them with
another label: 2 rows in a group of conflicting labels); each val partition
copies rows 20..29 of the train partition of the same number (2 with
another label). Expected:
``train_val_exact`` 10 x val partitions, ``train_val_label_conflicts`` 2 x
val partitions, ``train_repeated_rows`` 5 x (train partitions - 1),
``train_label_conflicts`` 2 x (train partitions - 1).

Printed: the wall time of the call (cluster started and warm before the
clock), the client process's peak RSS (``VmHWM``: the client and the
scheduler run in this process; the workers are their own processes; target
<= 1 GB), the counts against the planted ones, what came back to the client
(the check's ``pulled_*`` metrics), and the in-memory check
(``check_leakage`` on pandas frames) on a ``--slice`` (5,000,000-row) prefix of
train against val's matching prefix, beside the Dask check on the same
slice: the same counts, and both times.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from typing import Any

import numpy as np

# this file's name is the package's: its folder off the path, so ``import distributed`` finds dask's
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]

RSS_TARGET_MIB = 1024
VOCAB = np.array([f"user_{i:06d}" for i in range(100_000)], dtype=object)
C1 = [f"sku{i:04d}" for i in range(1000)]
C0 = [f"region_{i}" for i in range(12)]


def columns(part: int, n: int, seed: int) -> dict[str, Any]:
    """The first ``n`` rows of partition ``part`` (one generator per column: a prefix is drawn alone)."""
    import pandas as pd

    def rng(col: int) -> np.random.Generator:
        return np.random.default_rng([seed, part, col])

    out: dict[str, Any] = {f"f{j}": rng(j).standard_normal(n) for j in range(8)}
    out["i0"] = rng(8).integers(0, 1000, n)
    out["i1"] = rng(9).integers(0, 10**12, n)
    out["i2"] = rng(10).integers(-10**9, 10**9, n)
    out["c0"] = pd.Categorical.from_codes(rng(11).integers(0, 12, n), C0)
    out["c1"] = pd.Categorical.from_codes(rng(12).integers(0, 1000, n), C1)
    out["s0"] = pd.array(VOCAB[rng(13).integers(0, len(VOCAB), n)], dtype="string[pyarrow]")
    out["b0"] = rng(14).random(n) < 0.5
    out["t0"] = pd.Timestamp("2020-01-01") + pd.to_timedelta(rng(15).integers(0, 5 * 365 * 86400, n), "s")
    n0 = rng(16).standard_normal(n)
    n0[rng(17).random(n) < 0.01] = np.nan
    out["n0"] = n0
    out["label"] = rng(18).integers(0, 10, n)
    return out


def train_partition(part: int, rows: int, seed: int) -> Any:
    import pandas as pd

    df = pd.DataFrame(columns(part, rows, seed))
    if part > 0:  # 5 repeats of the previous partition's rows 10..14; the first with another label
        prev = pd.DataFrame(columns(part - 1, 15, seed)).iloc[10:15].reset_index(drop=True)
        prev.loc[0, "label"] = (prev.loc[0, "label"] + 1) % 10
        df.iloc[:5] = prev.to_numpy()
        df = df.astype(dict(zip(prev.columns, prev.dtypes)))
    return df


def val_partition(part: int, rows: int, seed: int) -> Any:
    import pandas as pd

    df = pd.DataFrame(columns(part, rows, seed + 1))
    src = pd.DataFrame(columns(part, 30, seed)).iloc[20:30].reset_index(drop=True)  # train partition ``part``'s rows 20..29
    src.loc[:1, "label"] = (src.loc[:1, "label"] + 1) % 10
    df.iloc[:10] = src.to_numpy()
    return df.astype(dict(zip(src.columns, src.dtypes)))


def frames(rows: int, val_rows: int, per: int, seed: int) -> tuple[Any, Any]:
    import dask.dataframe as dd

    def parts(total: int) -> list[int]:
        return [per] * (total // per) + ([total % per] if total % per else [])

    tp, vp = parts(rows), parts(val_rows)
    meta = train_partition(1, 20, seed).iloc[:0]
    train = dd.from_map(train_partition, range(len(tp)), tp, [seed] * len(tp), meta=meta, enforce_metadata=False)
    val = dd.from_map(val_partition, range(len(vp)), vp, [seed] * len(vp), meta=meta, enforce_metadata=False)
    return train, val


def vmhwm_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM"):
                return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


KEYS = ("train_val_exact", "train_val_label_conflicts", "train_repeated_rows", "train_label_conflicts",
        "val_repeated_rows", "target_columns")


def expected(train_parts: int, val_parts: int) -> dict[str, int]:
    return {"train_val_exact": 10 * val_parts, "train_val_label_conflicts": 2 * val_parts,
            "train_repeated_rows": 5 * (train_parts - 1), "train_label_conflicts": 2 * (train_parts - 1),
            "val_repeated_rows": 0, "target_columns": 0}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=50_000_000)
    ap.add_argument("--val-rows", type=int, default=2_000_000)
    ap.add_argument("--partition-rows", type=int, default=500_000)
    ap.add_argument("--slice", type=int, default=5_000_000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(line_buffering=True)
    import logging

    import dask
    import distributed
    from distributed import Client, LocalCluster

    from pytest_trainsanity import TrainSetup, check_leakage

    logging.getLogger("distributed.shuffle").setLevel(logging.ERROR)  # one WARNING line per shuffle otherwise
    print(f"python {platform.python_version()}, dask {dask.__version__}, distributed {distributed.__version__}, "
          f"{os.cpu_count()} CPUs; LocalCluster({args.workers} workers x 1 thread)")
    per = args.partition_rows
    with LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True, dashboard_address=None,
                      memory_limit=None) as cluster, Client(cluster):
        def run(train: Any, val: Any) -> tuple[Any, float]:
            t0 = time.perf_counter()
            report = check_leakage(TrainSetup(train=train, val=val, target="label"), near_duplicates=False)
            return report, time.perf_counter() - t0

        warm_t, warm_v = frames(4 * per // 100, per // 100, per // 100, args.seed)
        run(warm_t, warm_v)  # workers warm: imports, the first shuffle
        base_rss = vmhwm_mib()
        train, val = frames(args.rows, args.val_rows, per, args.seed)
        report, seconds = run(train, val)
        rss = vmhwm_mib()
        want = expected(train.npartitions, val.npartitions)
        print(f"1. Dask check: {args.rows:,} x 16 train ({train.npartitions} partitions) vs {args.val_rows:,} val "
              f"({val.npartitions})")
        print(f"   wall time {seconds:8.1f} s   ({args.rows / seconds / 1e6:.2f} M train rows/s on {args.workers} workers)")
        print(f"   client peak RSS {rss:7.0f} MiB (before the call {base_rss:.0f} MiB)   target <= {RSS_TARGET_MIB} MiB   "
              f"{'PASS' if rss <= RSS_TARGET_MIB else 'MISS'}")
        same = all(report.metrics.get(k) == v for k, v in want.items())
        for k in KEYS:
            print(f"   {k:28s} {report.metrics.get(k)!s:>8}   planted {want[k]}")
        print(f"   counts {'match' if same else 'DIFFER from'} the planted ones; passed={report.passed}")
        print("   came back to the client: " + ", ".join(f"{k[7:]} {v:,}" for k, v in report.metrics.items()
                                                     if k.startswith("pulled_")))

        k = min(args.slice, args.rows) // per
        vk = max(1, min(val.npartitions, k))
        st, sv = train.partitions[:k], val.partitions[:vk]
        dreport, dseconds = run(st, sv)
        t0 = time.perf_counter()
        pt, pv = st.compute(), sv.compute()
        load = time.perf_counter() - t0
        t0 = time.perf_counter()
        mreport = check_leakage(TrainSetup(train=pt, val=pv, target="label"), near_duplicates=False)
        mseconds = time.perf_counter() - t0
        print(f"2. the slice: {len(pt):,} train rows ({k} partitions) vs {len(pv):,} val rows ({vk})")
        print(f"   Dask check {dseconds:7.1f} s;  in-memory check on pandas frames {mseconds:7.1f} s "
              f"(+ {load:.1f} s to bring the slice to this process)")
        agree = all(dreport.metrics.get(k) == mreport.metrics.get(k) for k in KEYS)
        for key in KEYS:
            print(f"   {key:28s} dask {dreport.metrics.get(key)!s:>6}   in memory {mreport.metrics.get(key)!s:>6}")
        print(f"   counts {'agree' if agree else 'DIFFER'}")
    print("(this script reports and always exits 0)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
