"""The single-column target rules on real data, pure noise and planted columns, and their cost.

    python benchmarks/target_rules.py            # margins (the table in checks/features.py) and timings
    python benchmarks/target_rules.py --quick    # fewer seeds

Per data set: every column's held-out lift (classification: nearest class
median, 4-fold; regression: held-out R^2 of the binned-mean rule), its lower
bound and its largest within-class |correlation| with another column; which
columns ``target_columns`` names. Planted: the label + N(0, 0.3) (regression:
target + N(0, 0.3 sd)) appended as the last column, over seeds. Noise: the
false-alarm rate of both rules. Timing: ``target_columns`` and ``check_leakage``
on 100k x 784 float32 train / 20k val, 10 classes, against one read of the bytes.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path[:0] = [str(Path(__file__).resolve().parent.parent)]

from pytest_trainsanity.checks import features


def columns(X: np.ndarray, y: np.ndarray, task: str = "classification") -> np.ndarray:
    """(lift, lift bound, residual |r|, its upper bound) of every column, on all rows."""
    t = features._Table(X, y, task, 0)
    t.screen()
    out = []
    for j in range(X.shape[1]):
        score, hits, _ = t.rule(j, None, None)
        out.append((features._lift(score, t.baseline), t.bound(hits, t.d), *t.residual_corr(j)))
    return np.array(out)


def real(name: str, X: np.ndarray, y: np.ndarray, task: str = "classification", subsamples: int = 100) -> None:
    """Every column on all rows, and how often any column is named on random subsets of rows."""
    s = columns(X, y, task)
    strong = s[:, 0] >= features.TARGET_LIFT
    named = [c.column for c in features.target_columns(X, y, task=task).columns]
    alone = f"min {s[strong, 3].min():.2f} (|r| {s[strong, 2].min():.2f})" if strong.any() else "(none that strong)"
    sizes = [n for n in (30, 60, 100, 200, 400) if n < len(X)]
    false = []
    for n in sizes:
        hits = sum(bool(features.target_columns(X[idx], y[idx], seed=k, task=task).columns)
                   for k in range(subsamples) for idx in [np.random.default_rng(k).choice(len(X), n, replace=False)])
        false.append(f"{hits}/{subsamples} at {n}")
    print(f"{name:24s} best lift {s[:, 0].max():.2f} (col {int(s[:, 0].argmax())}), best lift bound {s[:, 1].max():.2f}; "
          f"residual |r| bound of columns with lift >= {features.TARGET_LIFT}: {alone}; named {named}; "
          f"named on row subsets: {', '.join(false)}")


def planted(name: str, X: np.ndarray, y: np.ndarray, seeds: int, task: str = "classification") -> None:
    """The label (target) + N(0, 0.3 sd) appended as the last column: its numbers on all rows and
    how often it is named (alone) on all rows and on random subsets."""
    lifts, rs, out = [], [], []
    for n in [len(X)] + [n for n in (455, 300, 200, 100) if n < len(X)]:
        hit = 0
        for s in range(seeds):
            rng = np.random.default_rng(1000 + s)
            idx = np.sort(rng.choice(len(X), n, replace=False))
            sd = 1.0 if task == "classification" else float(np.std(y))
            Xp = np.c_[X, y + 0.3 * sd * rng.standard_normal(len(y))][idx]
            if n == len(X):
                t = features._Table(Xp, y[idx], task, 0)
                t.screen()
                score, _, _ = t.rule(Xp.shape[1] - 1, None, None)
                lifts.append(features._lift(score, t.baseline))
                rs.append(t.residual_corr(Xp.shape[1] - 1))
            hit += [c.column for c in features.target_columns(Xp, y[idx], task=task).columns] == [Xp.shape[1] - 1]
        out.append(f"{hit}/{seeds} at {n}")
    rs = np.array(rs)
    print(f"{name:24s} planted lift {min(lifts):.2f}-{max(lifts):.2f}, residual |r| {rs[:, 0].min():.2f}-"
          f"{rs[:, 0].max():.2f} (bound <= {rs[:, 1].max():.2f}); named alone {', '.join(out)}")


def noise(runs_per_cell: int) -> None:
    named = blamed = runs = 0
    for n in (10, 15, 20, 30, 40, 60, 100, 200, 500):
        for d in (1, 2, 5, 10, 20, 50):
            for s in range(runs_per_cell):
                rng = np.random.default_rng([n, d, s])
                k = 2 + s % 3
                X, y = rng.standard_normal((n, d)), rng.integers(0, k, n)
                Xv, yv = rng.standard_normal((n, d)), rng.integers(0, k, n)
                named += bool(features.target_columns(X, y, Xv, yv, seed=s).columns)
                named += bool(features.target_columns(X, rng.standard_normal(n), seed=s, task="regression").columns)
                leak = features.single_feature_leak(X, y, Xv, yv, seed=s)
                blamed += leak is not None and leak.score > 0
                runs += 1
    print(f"pure noise, {runs} splits of 10-500 rows x 1-50 columns (classification and regression): target column "
          f"named {named}, feature blamed {blamed}")


def timing() -> None:
    """The search's parts, and check_leakage with and without it, against one read of the bytes."""
    from unittest import mock

    from pytest_trainsanity import TrainSetup, check_leakage

    rng = np.random.default_rng(0)
    X, y = rng.random((100_000, 784), dtype=np.float32), rng.integers(0, 10, 100_000)
    Xv, yv = rng.random((20_000, 784), dtype=np.float32), rng.integers(0, 10, 20_000)

    def best(fn, repeat: int = 7) -> float:
        out = float("inf")
        for _ in range(repeat):
            t0 = time.perf_counter()
            fn()
            out = min(out, time.perf_counter() - t0)
        return out

    def sample(total: int | None) -> features.RowSample:
        s = features.RowSample(total=total)
        for i in range(0, len(X), 4096):
            s.feed(X[i : i + 4096], y[i : i + 4096])
        return s

    floor = best(lambda: [np.bitwise_xor.reduce(a.reshape(-1).view(np.uint32)) for a in (X, Xv)])
    rows = sample(len(X)).arrays()
    t_known, t_stream = best(lambda: sample(len(X))), best(lambda: sample(None))
    t_rule = best(lambda: features.target_columns(*rows, Xv, yv))

    def check() -> None:
        check_leakage(TrainSetup(train=(X, y), val=(Xv, yv)), near_duplicates=False)

    t_check = best(check, 5)
    with mock.patch.object(features.RowSample, "feed", lambda *a: None):
        t_without = best(check, 5)
    print(f"100k x 784 float32 train, 20k val, 10 classes; one read of the bytes {1e3 * floor:.1f} ms")
    print(f"  row sample {1e3 * t_known:.1f} ms (in memory) / {1e3 * t_stream:.1f} ms (a stream); target_columns on it "
          f"{1e3 * t_rule:.1f} ms")
    print(f"  check_leakage(near_duplicates=False) {1e3 * t_check:.0f} ms = {t_check / floor:.1f}x the read; without the "
          f"target search {1e3 * t_without:.0f} ms = {t_without / floor:.1f}x")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    from sklearn import datasets

    seeds = 10 if args.quick else 50
    bc, dg = datasets.load_breast_cancer(), datasets.load_digits()
    real("breast cancer", bc.data, bc.target)
    real("iris", *datasets.load_iris(return_X_y=True))
    real("wine", *datasets.load_wine(return_X_y=True))
    real("digits", dg.data, dg.target)
    real("diabetes (regression)", *datasets.load_diabetes(return_X_y=True), task="regression")
    planted("breast cancer + planted", bc.data, bc.target, seeds)
    planted("digits + planted", dg.data, dg.target, seeds // 2)
    planted("diabetes + planted", *datasets.load_diabetes(return_X_y=True), seeds // 2, task="regression")
    noise(3 if args.quick else 40)
    timing()


if __name__ == "__main__":
    main()
