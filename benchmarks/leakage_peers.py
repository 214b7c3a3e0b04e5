"""Peer tools for the train/val leakage benchmark (``benchmarks/leakage.py``).

Each function takes numpy arrays, times its own peer call with
``time.perf_counter`` and returns a dict with ``seconds`` and
``val_rows_found`` (0-based val row indices it reports as also in train).
The peers are optional: this module imports without them, and a function
whose peer is missing raises ImportError when called.

Install (newest combination found to work, Python 3.11)::

    pip install torch==2.13.0 "numpy<2" "pandas<3" "scikit-learn<1.8" \
        "setuptools<81" "pyarrow<26" deepchecks "cleanlab[datalab]"

deepchecks 0.19.1 needs numpy<2 (uses ``np.Inf``), pandas<3 (uses
``DataFrame.applymap``), scikit-learn<1.8 (the ``'max_error'`` scorer
name) and setuptools<81 (``pkg_resources``). ``cleanlab.Datalab`` needs the
``[datalab]`` extra (HuggingFace ``datasets``), whose pyarrow>=26 needs
numpy>=2, hence pyarrow<26.

deepchecks_exact: ``deepchecks.tabular.checks.TrainTestSamplesMix`` on two
``deepchecks.tabular.Dataset`` objects (columns f0..f{d-1} plus ``label``,
``cat_features=[]``). It is an *exact* match: both frames are grouped by
every feature column **plus the label column when the Dataset has a label**,
so a val row equal to a train row but with another label is not reported,
and a copy off by one ulp is not reported either. ``result.value`` is
``{"ratio": n_dup_val / n_val, "data": DataFrame}``; n_dup_val counts val
rows (with multiplicity) whose feature+label tuple occurs in train. The
frame has one row per duplicated tuple, its index a string
``"Train indices: i, j\\nTest indices: k"``, cut to 30 characters plus
``".. Tot. N"`` when there are many indices; we parse the val indices from
it (None when a cut string hides some). The default ``n_samples=10_000_000``
means no subsampling below that size.

cleanlab_near: cleanlab has no cross-split check; the recipe is to
concatenate train and val, run ``Datalab(data).find_issues(features=X,
issue_types={"near_duplicate": {...}})`` and keep the val rows whose
near-duplicate set holds a train row. Sets come from
``lab.get_issues("near_duplicate")["near_duplicate_sets"]`` (also
``lab.get_info("near_duplicate")["near_duplicate_sets"]``). Semantics (source
``cleanlab/datalab/internal/issue_manager/duplicate.py``): a k=10 nearest
neighbour graph of all rows is built with the default metric, which is
*cosine distance* when there are more than 3 columns (euclidean otherwise);
j is in i's set when j is among i's 10 nearest neighbours and
``dist(i, j) < threshold * median_i(dist to i's nearest neighbour)``, made
symmetric. Default ``threshold=0.13``: relative to the data set's typical
nearest-neighbour distance, not to the row norm. No labels are needed
(``label_name`` is optional); we pass a one-column dict ``{"split": ...}``.
The kNN search is brute force over all N=n_train+n_val rows (O(N^2 d)).

sklearn_kdtree_radius: ``KDTree(X_train).query_radius(X_val, r)`` with
``r_i = rel_threshold * ||X_val[i]||`` (euclidean); exact copies are found
(distance 0 <= r). Build time is included.
"""
from __future__ import annotations

import math
import sys
import time
import warnings

import numpy as np

try:
    import pandas as pd
except ImportError:  # pragma: no cover
    pd = None
try:
    with warnings.catch_warnings():  # deepchecks warns that pkg_resources is deprecated
        warnings.simplefilter("ignore")
        from deepchecks.tabular import Dataset as _DCDataset
        from deepchecks.tabular.checks import TrainTestSamplesMix as _DCSamplesMix
except Exception:  # ImportError, or a broken install (numpy/pandas too new)
    _DCDataset = _DCSamplesMix = None
try:
    from cleanlab import Datalab as _Datalab
except Exception:
    _Datalab = None
try:
    from sklearn.neighbors import KDTree as _KDTree
except Exception:
    _KDTree = None


def _need(obj, name):
    if obj is None:
        raise ImportError(f"{name} is not importable; see the install line in this module's docstring")


def _frame(X, y):
    df = pd.DataFrame(X, columns=[f"f{i}" for i in range(X.shape[1])])
    df["label"] = y
    return df


def _test_indices(index_text: str):
    part = next(p for p in index_text.split("\n") if p.startswith("Test indices: "))
    part = part[len("Test indices: "):]
    if ".. Tot." in part:
        return None
    return [int(s) for s in part.split(", ")]


def deepchecks_exact(X_train, y_train, X_val, y_val) -> dict:
    """TrainTestSamplesMix: exact (features + label) matches of val rows in train."""
    _need(_DCSamplesMix, "deepchecks")
    t0 = time.perf_counter()
    train = _DCDataset(_frame(X_train, y_train), label="label", cat_features=[])
    val = _DCDataset(_frame(X_val, y_val), label="label", cat_features=[])
    result = _DCSamplesMix().run(train, val, with_display=False)
    seconds = time.perf_counter() - t0
    found: set | None = set()
    for text in result.value["data"].index:
        idx = _test_indices(text)
        if idx is None:
            found = None
            break
        found.update(idx)
    return {
        "seconds": seconds,
        "val_rows_found": found,
        "value": {"ratio": result.value["ratio"], "n_dup_groups": len(result.value["data"])},
        "note": "exact equality of all features AND the label; ratio = duplicated val rows / val rows",
    }


def cleanlab_near(X_train, X_val, threshold=None) -> dict:
    """Datalab near_duplicate on train+val; val rows whose set contains a train row."""
    _need(_Datalab, "cleanlab[datalab]")
    n_train = len(X_train)
    t0 = time.perf_counter()
    features = np.concatenate([X_train, X_val])
    lab = _Datalab(data={"split": np.r_[np.zeros(n_train, int), np.ones(len(X_val), int)]}, verbosity=0)
    params = {} if threshold is None else {"threshold": threshold}
    lab.find_issues(features=features, issue_types={"near_duplicate": params})
    sets = lab.get_issues("near_duplicate")["near_duplicate_sets"]
    seconds = time.perf_counter() - t0
    found = {i - n_train for i in range(n_train, len(features)) if np.any(np.asarray(sets[i]) < n_train)}
    info = lab.get_info("near_duplicate")
    return {
        "seconds": seconds,
        "val_rows_found": found,
        "value": {"threshold": info["threshold"], "metric": info["metric"],
                  "median_nn_distance": info["median_distance_to_nearest_neighbor"]},
        "note": "cosine distance (d>3) < threshold * median nearest-neighbour distance, among 10 NN",
    }


def sklearn_kdtree_radius(X_train, X_val, rel_threshold, absolute=False) -> dict:
    """KDTree radius query, radius rel_threshold * ||val row|| (euclidean), or rel_threshold itself
    with ``absolute``."""
    _need(_KDTree, "scikit-learn")
    t0 = time.perf_counter()
    tree = _KDTree(X_train)
    radii = (np.full(len(X_val), float(rel_threshold)) if absolute else
             rel_threshold * np.linalg.norm(np.asarray(X_val, dtype=np.float64), axis=1))
    counts = tree.query_radius(X_val, r=radii, count_only=True)
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "val_rows_found": set(np.flatnonzero(counts > 0).tolist()),
            "note": f"some train row within {rel_threshold} * ||val row|| (euclidean)"}


def make_data(n_train, n_val, d=784, frac=0.01, rel_noise=1e-3, seed=0):
    """Uniform [0,1) float32 rows, labels 0-9; frac of val rows copied exactly
    from train (label too) and frac copied with gaussian noise of norm about
    rel_noise * ||row||. Returns X_train, y_train, X_val, y_val, exact, near."""
    rng = np.random.default_rng(seed)
    X_train = rng.random((n_train, d), dtype=np.float32)
    y_train = rng.integers(0, 10, n_train)
    X_val = rng.random((n_val, d), dtype=np.float32)
    y_val = rng.integers(0, 10, n_val)
    k = max(1, int(n_val * frac))
    dst = rng.permutation(n_val)[: 2 * k]
    src = rng.choice(n_train, 2 * k, replace=False)
    X_val[dst] = X_train[src]
    y_val[dst] = y_train[src]
    near_dst, near_src = dst[k:], src[k:]
    scale = rel_noise * np.linalg.norm(X_train[near_src], axis=1, keepdims=True) / math.sqrt(d)
    X_val[near_dst] = X_train[near_src] + (rng.standard_normal((k, d)) * scale).astype(np.float32)
    return X_train, y_train, X_val, y_val, set(dst[:k].tolist()), set(near_dst.tolist())


def _score(found, exact, near):
    if found is None:
        return "n/a (indices truncated)", "?"
    hits = len(found & (exact | near))
    return (f"{hits / (len(exact) + len(near)):.2f} ({len(found & exact)}/{len(exact)} exact, "
            f"{len(found & near)}/{len(near)} near)", str(len(found - exact - near)))


if __name__ == "__main__":
    warnings.filterwarnings("ignore")
    REL = 1e-2  # KDTree radius: 10x the planted relative noise
    LIMIT = 300.0  # skip a call whose power-law extrapolation exceeds this
    sizes = [(2_000, 400), (10_000, 2_000), (100_000, 20_000)]
    if len(sys.argv) > 1:  # e.g. `... 2` to run only the first two sizes
        sizes = sizes[: int(sys.argv[1])]
    peers = {
        "deepchecks TrainTestSamplesMix": lambda d: deepchecks_exact(d[0], d[1], d[2], d[3]),
        "cleanlab Datalab near_duplicate": lambda d: cleanlab_near(d[0], d[2]),
        f"sklearn KDTree r={REL}*|x|": lambda d: sklearn_kdtree_radius(d[0], d[2], REL),
    }
    times: dict = {name: [] for name in peers}
    print(f"{'train/val':>12} | {'peer':<33} | {'seconds':>8} | {'recall of planted':<34} | extra")
    for n_train, n_val in sizes:
        data = make_data(n_train, n_val)
        for name, call in peers.items():
            prev = times[name]
            if len(prev) >= 2:
                (n0, t0), (n1, t1) = prev[-2], prev[-1]
                est = t1 * (n_train / n1) ** (math.log(t1 / t0) / math.log(n1 / n0))
                if est > LIMIT:
                    print(f"{n_train:>6}/{n_val:<5} | {name:<33} | {'skipped':>8} | "
                          f"power-law estimate from smaller sizes: ~{est:.0f} s")
                    continue
            res = call(data)
            times[name].append((n_train, res["seconds"]))
            rec, extra = _score(res["val_rows_found"], data[4], data[5])
            print(f"{n_train:>6}/{n_val:<5} | {name:<33} | {res['seconds']:8.2f} | {rec:<34} | {extra}",
                  flush=True)
