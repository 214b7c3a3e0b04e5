"""no_leakage against its peers and the memory-bandwidth floor, in one run.

    python benchmarks/leakage.py                 # full: 100k x 784 train vs 20k val
    python benchmarks/leakage.py --rows 20000    # smaller synthetic set (peers are slow)
    python benchmarks/leakage.py --skip-stream   # without the 2M-row streaming run

Run it in an environment with the peers installed (never runtime dependencies
of the plugin); the install line is in benchmarks/leakage_peers.py, and
``tox -e leakbench`` builds it. Every ratio is measured in this run on the
same arrays:

Ours is always the public ``check_leakage`` as a user calls it (default
arguments, 10-class labels, so the target-column search runs too).

1. exact overlap: ``check_leakage(setup, near_duplicates=False)`` vs deepchecks
   ``TrainTestSamplesMix`` and vs one read of the same bytes (the floor; target <= 5x);
2. exact + near duplicates (the default check) vs scikit-learn's KD-tree radius
   search with our rule (rows divided by the train std, radius 0.01 * sqrt(D):
   RMS difference <= 0.01 train standard deviations; target >= 10x) and, on a
   smaller set (its cost grows with the square of the rows), cleanlab
   ``Datalab`` near_duplicate;
3. recall/precision of the planted copies (1% exact, 1% with 1e-3 relative
   noise) for every tool, and on digits with 5% of val copied from train;
5. 10,000 x 64 vs 2,000 (a tabular suite's size): exact check vs deepchecks
   ``TrainTestSamplesMix`` (target >= 50x);
4. a 2M x 784 float32 train split streamed from a generator: wall time and
   peak RSS of a child process (VmHWM: ru_maxrss survives exec on Linux and
   would report this process's peak instead) (target <= 1 GB).
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

import leakage_peers as peers  # noqa: E402

from pytest_trainsanity import TrainSetup, check_leakage  # noqa: E402
from pytest_trainsanity.checks.leakage import SplitInput, find_leakage  # noqa: E402


def best_of(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def floor_read(*arrays: np.ndarray) -> float:
    """One pass over the same bytes: an integer xor-reduce reads every byte and does almost nothing."""
    return best_of(lambda: [np.bitwise_xor.reduce(a.reshape(-1).view(np.uint32)) for a in arrays], 5)[0]


def ours(Xtr: np.ndarray, ytr: np.ndarray, Xv: np.ndarray, yv: np.ndarray, near: bool) -> tuple[float, set[int]]:
    """The public check as a user calls it: ``check_leakage(TrainSetup(train=(X, y), val=(X, y)))``
    with default arguments (classification, 10-class labels: the target-column search runs too),
    ``near_duplicates=False`` for the exact-only figure. The val rows it found are read from the
    same measurement untimed (the report carries counts and examples, not every index), and the
    counts are checked to agree."""
    setup = TrainSetup(train=(Xtr, ytr), val=(Xv, yv))
    kwargs = {} if near else {"near_duplicates": False}
    seconds, report = best_of(lambda: check_leakage(setup, **kwargs), 3)
    splits = [SplitInput("train", lambda: iter([(Xtr, ytr)]), (Xtr, ytr)), SplitInput("val", lambda: iter([(Xv, yv)]), (Xv, yv))]
    pair = find_leakage(splits, near=near).pairs[0]
    found = set(np.union1d(pair.exact_b, pair.near_b).tolist())
    assert report.metrics["train_val_copies"] == len(found), (report.metrics, len(found))
    return seconds, found


def standardised(Xtr: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    """Rows divided by the train standard deviation of each feature (constant features by 1), so a
    euclidean radius of t * sqrt(D) is our rule: RMS difference <= t train standard deviations."""
    std = Xtr.std(axis=0, dtype=np.float64)
    std[std == 0] = 1.0
    return [(X / std).astype(np.float32) for X in (Xtr, *others)]


def score(found: set[int] | None, truth: set[int]) -> str:
    if found is None:
        return "recall n/a (indices truncated by the tool), precision n/a"
    hits = len(found & truth)
    recall = hits / len(truth) if truth else 1.0
    precision = hits / len(found) if found else 1.0
    return f"recall {recall:.3f}, precision {precision:.3f} ({hits} of {len(truth)} found, {len(found) - hits} extra)"


def line(name: str, seconds: float, ours_s: float, target: str, extra: str = "") -> None:
    print(f"   {name:<34} {seconds:9.3f} s   ours {ours_s:7.3f} s   ratio {seconds / ours_s:8.1f}x   {target}   {extra}")


def synthetic(rows: int) -> None:
    n_train, n_val = rows, rows // 5
    Xtr, ytr, Xv, yv, exact, near = peers.make_data(n_train, n_val)
    print(f"\nsynthetic float32 {n_train} x 784 train vs {n_val} val; planted {len(exact)} exact + {len(near)} near copies")
    floor = floor_read(Xtr, Xv)
    ex_s, ex_found = ours(Xtr, ytr, Xv, yv, near=False)
    print(f"1. exact overlap: ours {ex_s:.3f} s, {score(ex_found, exact)}")
    print(f"   bandwidth floor (one read of {(Xtr.nbytes + Xv.nbytes) / 2**20:.0f} MiB)  {floor:.3f} s   ours / floor {ex_s / floor:.1f}x   target <= 5x   {'PASS' if ex_s / floor <= 5 else 'MISS'}")
    try:
        dc = peers.deepchecks_exact(Xtr, ytr, Xv, yv)
        line("deepchecks TrainTestSamplesMix", dc["seconds"], ex_s, "target >= 200x", score(dc["val_rows_found"], exact))
    except ImportError as exc:
        print(f"   deepchecks: not run ({exc})")
    nr_s, nr_found = ours(Xtr, ytr, Xv, yv, near=True)
    print(f"2. exact + near duplicates (the default check): ours {nr_s:.3f} s, {score(nr_found, exact | near)}")
    try:
        Ztr, Zv = standardised(Xtr, Xv)  # untimed for the peer: it gets our metric for free
        radius = 0.01 * np.sqrt(Xtr.shape[1])
        out = peers.sklearn_kdtree_radius(Ztr, Zv, radius, absolute=True)
        line(f"sklearn KDTree radius {radius:.3g} (std units)", out["seconds"], nr_s, "target >= 10x",
             score(out["val_rows_found"], exact | near))
        print(f"   (ratio >= 10x: {'PASS' if out['seconds'] / nr_s >= 10 else 'MISS'})")
    except ImportError as exc:
        print(f"   sklearn KDTree: not run ({exc})")


def small_tabular() -> None:
    """10k x 64 train vs 2k val, 10 classes: the size of a typical tabular suite's split."""
    Xtr, ytr, Xv, yv, exact, near = peers.make_data(10_000, 2_000, d=64, seed=2)
    ex_s, ex_found = ours(Xtr, ytr, Xv, yv, near=False)
    print(f"\n5. 10,000 x 64 vs 2,000, 10 classes: ours (check_leakage, near_duplicates=False) {ex_s:.4f} s, "
          f"{score(ex_found, exact)}")
    try:
        dc = peers.deepchecks_exact(Xtr, ytr, Xv, yv)
        line("deepchecks TrainTestSamplesMix", dc["seconds"], ex_s, "target >= 50x", score(dc["val_rows_found"], exact))
        print(f"   (ratio >= 50x: {'PASS' if dc['seconds'] / ex_s >= 50 else 'MISS'})")
    except ImportError as exc:
        print(f"   deepchecks: not run ({exc})")


def cleanlab_run(rows: int) -> None:
    """cleanlab's kNN graph grows with the square of all rows (about 2,000 s at 100k/20k here),
    so it runs on a smaller set, with ours measured on the same arrays."""
    Xtr, ytr, Xv, yv, exact, near = peers.make_data(rows, rows // 5, seed=1)
    nr_s, nr_found = ours(Xtr, ytr, Xv, yv, near=True)
    print(f"   on {rows} x 784 vs {rows // 5}: ours {nr_s:.3f} s, {score(nr_found, exact | near)}")
    try:
        out = peers.cleanlab_near(Xtr, Xv)
        line("cleanlab Datalab near_duplicate", out["seconds"], nr_s, "target >= 10x", score(out["val_rows_found"], exact | near))
    except ImportError as exc:
        print(f"   cleanlab: not run ({exc})")


def digits() -> None:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    Xtr, Xv, ytr, yv = train_test_split(d.data.astype(np.float32), d.target, test_size=360, random_state=0, stratify=d.target)
    rng = np.random.default_rng(0)
    dst, src = rng.choice(len(Xv), 18, replace=False), rng.choice(len(Xtr), 18, replace=False)
    Xv, yv = Xv.copy(), yv.copy()
    Xv[dst], yv[dst] = Xtr[src], ytr[src]
    truth = set(dst.tolist())
    print(f"\n3. digits 1437/360 with 5% of val ({len(truth)} rows) copied from train")
    t0 = time.perf_counter()
    report = check_leakage(TrainSetup(train=(Xtr, ytr), val=(Xv, yv)))
    seconds = time.perf_counter() - t0
    res = find_leakage([SplitInput("train", lambda: iter([(Xtr, ytr)]), (Xtr, ytr)), SplitInput("val", lambda: iter([(Xv, yv)]), (Xv, yv))])
    found = set(np.union1d(res.pairs[0].exact_b, res.pairs[0].near_b).tolist())
    print(f"   ours (check_leakage)                {seconds:.3f} s   verdict {'passed' if report.passed else 'FAILED'}   {score(found, truth)}")
    for name, run in (
        ("deepchecks TrainTestSamplesMix", lambda: peers.deepchecks_exact(Xtr, ytr, Xv, yv)),
        ("cleanlab Datalab near_duplicate", lambda: peers.cleanlab_near(Xtr, Xv)),
    ):
        try:
            out = run()
            print(f"   {name:<34} {out['seconds']:.3f} s   {score(out['val_rows_found'], truth)}")
        except ImportError as exc:
            print(f"   {name}: not run ({exc})")


STREAM_CHILD = r'''
import resource, sys, time
import numpy as np
sys.path.insert(0, sys.argv[1])
from pytest_trainsanity import TrainSetup, check_leakage
N, D, B = int(sys.argv[2]), 784, 4096
def block(i):
    rng = np.random.default_rng(i)
    return rng.random((B, D), dtype=np.float32), rng.integers(0, 10, B)
def train():
    for i in range(N // B):
        yield block(i)
rng = np.random.default_rng(10**6)
Xv, yv = rng.random((20000, D), dtype=np.float32), rng.integers(0, 10, 20000)
Xv[:100], yv[:100] = block(7)[0][:100], block(7)[1][:100]
Xv[100:200] = block(300)[0][:100] * (1 + 1e-3 * rng.standard_normal((100, D))).astype(np.float32)
t0 = time.perf_counter()
report = check_leakage(TrainSetup(train=train(), val=(Xv, yv)))
m = report.metrics
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM")]  # this process image's own peak
rss = int(hwm[0].split()[1]) / 1024 if hwm else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(f"{time.perf_counter() - t0:.1f} {rss:.0f} "
      f"{m['train_val_exact']} {m['train_val_near']}")
'''


def stream(rows: int) -> None:
    print(f"\n4. {rows} x 784 float32 train streamed from a generator (blocks of 4096) vs 20k val in memory")
    out = subprocess.run([sys.executable, "-c", STREAM_CHILD, str(HERE.parent), str(rows)], capture_output=True, text=True)
    if out.returncode:
        print("   failed:", out.stderr[-2000:])
        return
    seconds, rss, n_exact, n_near = out.stdout.split()
    print(f"   {seconds} s, peak RSS {rss} MiB (target <= 1024 MiB: {'PASS' if float(rss) <= 1024 else 'MISS'}); "
          f"found {n_exact}/100 exact and {n_near}/100 near copies")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000, help="synthetic train rows (val is a fifth)")
    parser.add_argument("--cleanlab-rows", type=int, default=10_000, help="synthetic train rows for cleanlab (O(N^2))")
    parser.add_argument("--stream-rows", type=int, default=2_000_000)
    parser.add_argument("--skip-stream", action="store_true")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    print(f"pytest-trainsanity leakage benchmark | python {sys.version.split()[0]} | numpy {np.__version__} | "
          f"{os.cpu_count()} CPU(s) | load average {os.getloadavg()[0]:.2f}")
    synthetic(args.rows)
    cleanlab_run(args.cleanlab_rows)
    digits()
    small_tabular()
    if not args.skip_stream:
        stream(args.stream_rows)
    print(f"\n(peak RSS of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
