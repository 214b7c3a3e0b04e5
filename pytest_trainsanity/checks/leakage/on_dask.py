"""``no_leakage`` on Dask DataFrames, computed on the cluster that holds them.

Each partition is coded where it lies, exactly as an in-memory table is
(``adapters.tables.column_codes``: strings by bytes, categoricals by value,
datetimes, bools, numbers canonically), and each row becomes a 128-bit key:
two independent 64-bit ``matching.Canon`` hashes of those codes (a false
match among 50,000,000 x 2,000,000 rows has probability below 1e-5, so keys
stand for values and no row is read twice). Then, with Dask's own operations:

- val's keys (distinct) are broadcast into train's partitions (an inner
  merge that never shuffles train); the train rows they match are reduced to
  one row per (key, label), and val rows are merged with those keys: exact
  copies, their pair count, label conflicts and examples;
- each split is grouped by key (a shuffle of keys and labels, 28 bytes a
  row): repeated rows and rows whose inputs repeat with another label come
  back as four numbers;
- group ids and times given as Dask Series of the split are reduced on the
  cluster (distinct ids merged, extremes, counts);
- target columns are searched on a uniform 4,096-row sample of each split,
  drawn by a tree reduction of random keys, in one task where the samples
  lie (``judge_samples``: the search and each split's ``few_values``).

Near copies (``_near``), when the pair's second split has at most
``NEAR_ROWS`` rows: its rows are coded and built into the in-memory check's
search (``matching.Reference``, or ``measure._KeyedNear`` for a table with
non-numeric columns) once, on a worker; every partition of the first split
is searched against it where it lies, standardised with the statistics of
train's first rows (as in memory); chance neighbours are measured there too.

What reaches the client: the matched val rows (keys, label, row id), the
matched train keys with their first row id, the near pairs (row ids and
distances), the partition lengths, counts, five example group ids, and the
samples' verdicts. Nothing here imports dask until a Dask split arrives.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import numpy as np

from ...errors import SetupError
from ..features import ROWS, RowSample
from ..labels import NonFiniteLabels, class_ids, require_finite
from ..matching import (
    NEAR_THRESHOLD,
    Canon,
    Reference,
    Scale,
    chance_neighbours,
    few_values,
    repeat_chance_counts,
    stats_rows,
)
from . import measure as leakage

LABEL = "__trainsanity_label__"
GROUP, TIME = "__trainsanity_group__", "__trainsanity_time__"
SEEDS = (0x5EED, 0xD15C)  # the two hashes of a key
ROW_BITS = 32  # a row id: partition << ROW_BITS | row in the partition


def is_dask(obj: Any) -> bool:
    return type(obj).__module__.startswith("dask.") and type(obj).__name__ in ("DataFrame", "Series")


def is_dask_split(source: Any) -> bool:
    if isinstance(source, (tuple, list)) and len(source) == 2:
        return is_dask(source[0])
    return is_dask(source) and type(source).__name__ == "DataFrame"


class DaskSplit:
    """One split as a Dask DataFrame of its feature columns and its label (``LABEL``)."""

    def __init__(self, name: str, source: Any, target: str | None) -> None:
        self.name = name
        if isinstance(source, (tuple, list)):
            X, y = source
            if not (is_dask(X) and type(X).__name__ == "DataFrame" and is_dask(y) and type(y).__name__ == "Series"):
                raise SetupError(f"TrainSetup({name}=(X, y)) on Dask takes a Dask DataFrame and a Dask Series of its "
                                 f"labels; got {type(X).__name__} and {type(y).__name__}.")
            self.columns = [str(c) for c in X.columns]
            self.target = str(getattr(y, "name", None) or "y")
            frame = X.assign(**{LABEL: y})
        else:
            cols = [str(c) for c in source.columns]
            if target is None or target not in cols:
                raise SetupError(
                    f"TrainSetup({name}=...) is a Dask DataFrame; name its label column with TrainSetup(target='column') "
                    f"(its columns: {', '.join(cols[:12])}{', ...' if len(cols) > 12 else ''}), or give (X, y).")
            self.columns = [c for c in cols if c != target]
            self.target = target
            frame = source.rename(columns={target: LABEL})
        if not self.columns:
            raise SetupError(f"TrainSetup({name}=...) has no feature column besides its label.")
        self.frame, self.npartitions = frame, frame.npartitions
        self.kinds = _kinds(frame._meta[self.columns])

    def own_column(self, series: Any) -> bool:
        """A Dask Series named like one of the split's columns: taken as that column, by name."""
        return is_dask(series) and type(series).__name__ == "Series" and series.name in self.columns

    def with_column(self, frame: Any, key: str, series: Any, what: str) -> Any:
        """``frame`` with the split's group ids or times as column ``key`` (a Dask Series of the split, or
        the name of one of its columns)."""
        if self.own_column(series):
            series = series.name  # the split's own column (ddf["user_id"]): taken by name, so dask need not align
            # two expressions (a Series of the frame before the label was renamed fails to, on unknown divisions)
        if isinstance(series, str):
            if series not in self.columns:
                raise SetupError(f"TrainSetup({what}={{{self.name!r}: {series!r}}}) is not a column of the {self.name} split.")
            return frame.assign(**{key: frame[series]})
        if not (is_dask(series) and type(series).__name__ == "Series"):
            raise SetupError(
                f"TrainSetup({what}={{{self.name!r}: ...}}) with a Dask split takes a Dask Series of that split (e.g. "
                f"ddf['user_id']) or a column name; got {type(series).__name__}.")
        return frame.assign(**{key: series})


def _kinds(meta: Any) -> dict[str, str]:
    import pyarrow as pa

    from ...adapters.tables import kind_of_type

    out = {}
    for c in meta.columns:
        if meta[c].dtype == object:  # an empty object column has no arrow type yet: Dask's strings
            out[str(c)] = "string"
            continue
        try:
            out[str(c)] = kind_of_type(pa.Schema.from_pandas(meta[[c]], preserve_index=False).field(0).type)
        except Exception:
            out[str(c)] = "other"
    return out


def engine_splits(setup: Any, engine: str, found: Any, make: Any, small: str) -> dict[str, Any] | None:
    """The splits as ``make(name, source, target)`` when any is ``found`` to be the engine's DataFrame
    (then every one must be); else None. ``small``: how to make a small frame one."""
    given = setup.splits()
    ours = [n for n, s in given.items() if found(s)]
    if not ours:
        return None
    other = [n for n in given if n not in ours]
    if other:
        raise SetupError(
            f"no_leakage on {engine}: {', '.join(ours)} {'is a' if len(ours) == 1 else 'are'} {engine} DataFrame(s) but "
            f"{', '.join(other)} {'is' if len(other) == 1 else 'are'} not; give every split as a {engine} DataFrame "
            f"({small} for a small one).")
    return {n: make(n, s, getattr(setup, "target", None)) for n, s in given.items()}


def dask_splits(setup: Any) -> dict[str, DaskSplit] | None:
    return engine_splits(setup, "Dask", is_dask_split, DaskSplit, "dask.dataframe.from_pandas(df, npartitions=1)")


def same_columns(splits: dict[str, Any], engine: str) -> list[str]:
    """The feature columns every split shares (in order), or one paragraph naming each split's."""
    first = next(iter(splits.values()))
    if any(s.columns != first.columns for s in splits.values()):
        raise SetupError(f"no_leakage on {engine}: the splits' feature columns differ: "
                         + "; ".join(f"{n}: {', '.join(s.columns[:8])}" for n, s in splits.items()))
    return first.columns


# ---------------------------------------------------------------------- partition work (runs on the workers)


def _codes(pdf: Any, columns: list[str]) -> np.ndarray:
    import pyarrow as pa

    from ...adapters.tables import column_codes

    table = pa.Table.from_pandas(pdf[columns], preserve_index=False)  # a Table: arrow-backed columns may be chunked
    if not table.num_rows:
        return np.zeros((0, len(columns)))
    return np.column_stack([column_codes(table.column(i)) for i in range(table.num_columns)])


def _labels(pdf: Any, classification: bool, target: str = "label") -> np.ndarray:
    """A partition's labels as the in-memory check holds them; null, NaN or Inf labels are one paragraph."""
    import pyarrow as pa

    from ...adapters.tables import _labels as table_labels

    y = table_labels(pa.Table.from_pandas(pdf[[LABEL]], preserve_index=False).column(0), target) if len(pdf) else np.zeros(0)
    try:
        require_finite(y)
    except NonFiniteLabels as exc:
        raise SetupError(f"no_leakage: the label column {target!r}: {exc}.") from None
    return class_ids(y) if classification else np.asarray(y, dtype=np.float64)


def hash_partition(pdf: Any, columns: list[str], seed: int, classification: bool, extra: tuple[str, ...] = (),
                   partition_info: dict[str, Any] | None = None, start: int = 0, target: str = "label") -> Any:
    """One partition as (h1, h2: the row's 128-bit key; y: its label; rid: its row id), plus ``extra``
    columns passed through (group ids, times). ``start``: the first row's place in its partition (an
    engine that hands a partition over in batches)."""
    import pandas as pd

    codes = _codes(pdf, columns)
    h1, h2 = (Canon(np.float64, len(columns), seed=seed ^ s).hashes(codes) for s in SEEDS)
    part = int((partition_info or {}).get("number", 0))
    out = pd.DataFrame({"h1": h1, "h2": h2, "y": _labels(pdf, classification, target),
                        "rid": (np.int64(part) << np.int64(ROW_BITS)) + start + np.arange(len(pdf), dtype=np.int64)})
    for key in extra:
        out[key] = pdf[key].array  # its dtype kept (categorical, tz-aware), by position
    return out


def _meta(classification: bool, extra: dict[str, Any]) -> Any:
    import pandas as pd

    cols = {"h1": np.zeros(0, np.uint64), "h2": np.zeros(0, np.uint64),
            "y": np.zeros(0, np.int64 if classification else np.float64), "rid": np.zeros(0, np.int64)}
    out = pd.DataFrame(cols)
    for key, dtype in extra.items():
        out[key] = pd.Series([], dtype=dtype)
    return out


def _sample_chunk(pdf: Any, columns: list[str], seed: int, classification: bool, size: int, target: str = "label",
                  partition_info: dict[str, Any] | None = None) -> Any:
    """A partition's ``size`` rows with the smallest random keys (seeded by partition), as codes + label."""

    part = int((partition_info or {}).get("number", 0))
    keys = np.random.default_rng([seed, part]).random(len(pdf))
    keep = np.sort(np.argsort(keys)[:size])
    return coded_sample(pdf.iloc[keep], columns, classification, target, keys[keep])


def coded_sample(pdf: Any, columns: list[str], classification: bool, target: str, keys: np.ndarray) -> Any:
    """Sample rows as ``judge_samples`` reads them: value codes c0.., label y, and their random ``key``."""
    import pandas as pd

    out = pd.DataFrame(_codes(pdf, columns), columns=[f"c{j}" for j in range(len(columns))])
    out["y"] = _labels(pdf, classification, target)
    out["key"] = keys
    return out


def _smallest(df: Any, size: int) -> Any:
    import pandas as pd

    df = pd.concat(df) if isinstance(df, list) else df
    return df.nsmallest(size, "key")


# ---------------------------------------------------------------------- the check


def find_leakage_dask(
    splits: dict[str, DaskSplit],
    *,
    groups: Mapping[str, Any] | None = None,
    timestamps: Mapping[str, Any] | None = None,
    classification: bool = True,
    max_overlap: int | float = 0,
    within_split: bool = False,
    seed: int = 0,
    near: bool = True,
    threshold: float | None = None,
) -> tuple[leakage.LeakageResult, dict[str, Any]]:
    """``measure.find_leakage``'s result for Dask splits, and what the run brought to the client
    (``pulled``: rows of each kind; ``near``: how near copies were judged, or why not)."""
    import pickle

    import dask
    import dask.dataframe as dd
    import pandas as pd

    names = list(splits)
    first = splits[names[0]]
    columns = same_columns(splits, "Dask")
    hashed, lengths, within_parts, group_of, time_of, frames, aligned = {}, {}, {}, {}, {}, {}, {}
    for name, split in splits.items():
        frame, extra = split.frame, {}
        for key, given, what in ((GROUP, groups, "groups"), (TIME, timestamps, "timestamps")):
            if given and name in given:
                frame = split.with_column(frame, key, given[name], what)
                extra[key] = frame._meta[key].dtype
                if key == TIME and (isinstance(extra[key], pd.StringDtype) or extra[key] == np.dtype("O")
                                    or getattr(extra[key], "kind", "") in "US"):
                    raise SetupError(_dask_times_error(name, extra[key]))
                if not isinstance(given[name], str):
                    aligned[(name, what)] = _alignment(frame, key, given[name], split)
        frames[name] = frame  # near copies number their rows on this same frame
        h = frame.map_partitions(hash_partition, columns, seed, classification, tuple(extra), target=split.target,
                                 meta=_meta(classification, extra), enforce_metadata=False)
        hashed[name] = h
        lengths[name] = h.map_partitions(len, meta=(None, np.int64), enforce_metadata=False)
        by_key = h[["h1", "h2", "y"]].groupby(["h1", "h2"]).y.agg(["min", "max", "count"], split_out=max(1, h.npartitions // 4))
        size = by_key["count"]
        within_parts[name] = (size.count(), by_key[by_key["min"] != by_key["max"]]["count"].sum(),
                              size[size > 1].sum(), (size * (size - 1)).sum())
        if GROUP in extra:
            group_of[name] = h[GROUP].dropna().drop_duplicates(split_out=max(1, h.npartitions // 4))
        if TIME in extra:
            time_of[name] = h[TIME]

    lazy: dict[str, Any] = {"lengths": lengths, "within": within_parts, "pairs": {}, "groups": {}, "times": {},
                            "aligned": aligned}
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            keys_b = hashed[b][["h1", "h2"]].drop_duplicates(split_out=1)
            matched_a = hashed[a][["h1", "h2", "y", "rid"]].merge(keys_b, on=["h1", "h2"], how="inner", broadcast=True)
            per_label = matched_a.groupby(["h1", "h2", "y"]).rid.agg(["min", "count"]).reset_index()
            matched_b = hashed[b][["h1", "h2", "y", "rid"]].merge(per_label[["h1", "h2"]].drop_duplicates(), on=["h1", "h2"],
                                                                 how="inner", broadcast=True)
            lazy["pairs"][(a, b)] = (per_label, matched_b)
            if a in group_of and b in group_of:
                shared = group_of[a].to_frame("g").merge(group_of[b].to_frame("g"), on="g", how="inner")
                rows_b = hashed[b][[GROUP]].merge(shared.rename(columns={"g": GROUP}), on=GROUP, how="inner")
                lazy["groups"][(a, b)] = (shared["g"].count(), rows_b[GROUP].count(),
                                          shared["g"].map_partitions(_first_sorted, meta=shared._meta["g"]),
                                          hashed[a][GROUP].isna().sum(), hashed[b][GROUP].isna().sum())
            if a in time_of and b in time_of:
                ta, tb = time_of[a], time_of[b]
                latest = ta.max()
                lazy["times"][(a, b)] = (latest, ta.isna().sum(), tb.min(), tb.isna().sum(), (tb < latest).sum())
    samples = dd.concat([hashed_sample(splits[name], columns, seed, classification).assign(**{TAG: i})
                         for i, name in enumerate(names)]).repartition(npartitions=1)
    lazy["judged"] = samples.map_partitions(_judge_frame, names, columns, seed, classification,
                                            meta=pd.DataFrame({"blob": pd.Series([], dtype=object)}), enforce_metadata=False)
    (out,) = dask.compute(lazy)
    _check_aligned(out)
    out["judged"] = pickle.loads(out["judged"]["blob"].iloc[0])
    t, near_columns = near_rule(first.kinds, columns, near, threshold)
    return _result(out, names, columns, classification, max_overlap, within_split, seed,
                   lambda n, offsets: _near(frames, names, columns, n, offsets, t, near_columns, seed))


def near_rule(kinds: dict[str, str], columns: list[str], near: bool,
              threshold: float | None) -> tuple[float | None, list[int] | None]:
    """(the near-copy threshold, or None: not searched; the columns a distance is taken over, None for
    all): in a table with non-numeric columns, its numeric and bool ones (among rows whose others are
    equal, as in memory); none at all when it has no numeric column."""
    near_columns = leakage.near_columns_of(kinds, columns)
    return (threshold if threshold is not None else NEAR_THRESHOLD) if near and near_columns != [] else None, near_columns


def _first_sorted(s: Any) -> Any:
    """A partition's ``EXAMPLES`` smallest values (the client sorts the few that come back)."""
    return s.sort_values().head(leakage.EXAMPLES)


def hashed_sample(split: DaskSplit, columns: list[str], seed: int, classification: bool) -> Any:
    """A uniform sample of up to ``ROWS`` rows as codes and labels: the smallest of a random key per row
    (seeded per partition), by a tree reduction (each step keeps ``ROWS`` rows)."""
    import pandas as pd

    meta = pd.DataFrame({**{f"c{j}": np.zeros(0) for j in range(len(columns))},
                         "y": np.zeros(0, np.int64 if classification else np.float64), "key": np.zeros(0)})
    chunks = split.frame.map_partitions(_sample_chunk, columns, seed ^ 0x5A3, classification, ROWS, split.target,
                                        meta=meta, enforce_metadata=False)
    return chunks.reduction(lambda d: d, lambda d: _smallest(d, ROWS), combine=lambda d: _smallest(d, ROWS), meta=meta)


TAG = "__trainsanity_split__"


def _judge_frame(pdf: Any, names: list[str], columns: list[str], seed: int, classification: bool) -> Any:
    """``judge_samples`` of the tagged samples of every split (one partition), pickled in one cell."""
    import pickle

    import pandas as pd

    samples = [pdf[pdf[TAG] == i] for i in range(len(names))]
    return pd.DataFrame({"blob": [pickle.dumps(judge_samples(samples, names, columns, seed, classification))]})


def judge_samples(samples: list[Any], names: list[str], columns: list[str], seed: int,
                  classification: bool) -> tuple[Any, dict[str, int], dict[str, int]]:
    """(the target-column search, each split's ``few_values``, each sample's size), from each split's
    sample (``hashed_sample``; as codes, label and key): run where the samples lie, on a worker or an
    executor, so that no row comes back."""
    arrays = {}
    for name, df in zip(names, samples):
        df = df.sort_values("key")
        arrays[name] = (df[[f"c{j}" for j in range(len(columns))]].to_numpy(np.float64), df["y"].to_numpy())
    sample = RowSample(seed=seed)
    sample.feed(*arrays[names[0]])
    search = leakage._target_search(sample, arrays.get(names[1]) if len(names) > 1 else None, 0, seed, classification,
                                    columns)  # a split that is not a table gets its row count on the client
    few = {name: few_values(X, seed) if len(X) >= 2 else 0 for name, (X, _) in arrays.items()}
    return search, few, {name: len(X) for name, (X, _) in arrays.items()}


def _alignment(after: Any, key: str, series: Any, split: Any) -> tuple[Any, ...] | None:
    """Lazy counts that show whether a Dask Series of group ids or times lines up with its split:
    Dask assigns by index, so a Series of other rows (a subset, another frame's index) leaves rows
    without a value and drops its own extra values, silently. (The Series' values, its missing ones, the
    split's rows left without a value.) None when the Series is the split's own column, taken by name."""
    if split.own_column(series):
        return None
    return series.size, series.isna().sum(), after[key].isna().sum()


def _dask_times_error(name: str, dtype: Any) -> str:
    """Times held as text or Python objects on Dask: text cannot be ordered, and Dask reduces an object
    column's min/max without comparing its objects (a TypeError deep in Dask). Dask's ``from_pandas``
    turns object columns into text by default (``dataframe.convert-string``), datetime objects included."""
    import pandas as pd

    if getattr(dtype, "kind", "") == "O" and not isinstance(dtype, pd.StringDtype):
        return (f"TrainSetup(timestamps={{{name!r}: ...}}) is an object column on Dask (Python datetime objects or "
                f"text), which Dask cannot order: its min and max fail on objects. Convert it to datetimes first: "
                f"dd.to_datetime(frame[column]) (with utc=True when the objects carry time zones), or "
                f"pd.to_datetime(...) on the pandas frame before dd.from_pandas.")
    return leakage.not_times_error(name, "text") + (
        " On Dask, object columns become text by default (dataframe.convert-string), datetime objects included "
        "(dd.from_pandas of a frame holding them): convert them with pd.to_datetime first, or dd.to_datetime after.")


def _check_aligned(out: dict[str, Any]) -> None:
    """A groups / timestamps Series that does not line up with its split is a setup error, never a
    check that silently compared fewer rows (a shared group left out could make the gate pass)."""
    for (name, what), counts in out["aligned"].items():
        if counts is None:
            continue
        size, own_missing, missing = (int(v) for v in counts)
        n = int(np.sum(np.asarray(out["lengths"][name])))
        if size != n or missing != own_missing:
            raise SetupError(
                f"TrainSetup({what}={{{name!r}: ...}}) does not line up with the {name} split: the Dask Series has "
                f"{size:,} value(s) for the split's {n:,} rows, and Dask assigns by index, so {missing - own_missing:,} "
                f"row(s) got no value and {max(size - (n - missing + own_missing), 0):,} of its value(s) matched no row. "
                f"Pass a column of the split itself (ddf['user_id'] or the name 'user_id'), or a Series with the same "
                f"index as the split.")


def _global(rid: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    rid = np.asarray(rid, np.int64)
    return offsets[rid >> ROW_BITS] + (rid & ((1 << ROW_BITS) - 1))


def _result(out: dict[str, Any], names: list[str], columns: list[str], classification: bool,
            max_overlap: int | float, within_split: bool, seed: int,
            near: Any) -> tuple[leakage.LeakageResult, dict[str, Any]]:
    n = {name: int(np.sum(np.asarray(out["lengths"][name]))) for name in names}
    for name in names:
        if not n[name]:
            raise SetupError(f"TrainSetup({name}=...) is empty (0 rows).")
    offsets = {name: np.concatenate([[0], np.cumsum(np.asarray(out["lengths"][name], np.int64))[:-1]]) for name in names}
    pulled: dict[str, int] = {}
    within = {}
    for name in names:
        unique, conflicts, twins, pair_sum = (int(v) for v in out["within"][name])
        within[name] = leakage.Within(n[name], unique, conflicts)
    search, few, _ = out["judged"]  # judged where the samples lie: only the verdicts came back
    if not search.tried:
        search = dataclasses.replace(search, n=n[names[0]])
    pairs = []
    for (a, b), (per_label, matched_b) in out["pairs"].items():
        pulled[f"{a}_{b}_matched_{a}_keys"] = len(per_label)
        pulled[f"{a}_{b}_matched_{b}_rows"] = len(matched_b)
        pair = _pair(a, b, n, offsets, per_label, matched_b)
        if len(pair.exact_b) and n[b] >= 2:
            pair.few_values = few[b]
            if pair.few_values:
                _, _, twins, pair_sum = (int(v) for v in out["within"][b])
                pair.exact_chance = repeat_chance_counts(twins, pair_sum, n[b], n[b], n[a])
        if (a, b) in out["groups"]:
            shared, rows_b, examples, miss_a, miss_b = out["groups"][(a, b)]
            pair.shared_groups, pair.group_rows_b = int(shared), int(rows_b)
            pair.missing_group_a, pair.missing_group_b = int(miss_a), int(miss_b)  # in no group: counted, as in memory
            for name, missing in ((a, pair.missing_group_a), (b, pair.missing_group_b)):
                if missing >= n[name]:
                    raise SetupError(leakage.none_present_error("groups", name, missing))
            pair.group_examples = sorted(np.asarray(examples).tolist())[: leakage.EXAMPLES]
        if (a, b) in out["times"]:
            latest, miss_a, earliest, miss_b, early = out["times"][(a, b)]
            pair.missing_time_a, pair.missing_time_b = int(miss_a), int(miss_b)
            for name, missing in ((a, pair.missing_time_a), (b, pair.missing_time_b)):
                if missing >= n[name]:
                    raise SetupError(leakage.none_present_error("timestamps", name, missing))
            if not _missing(latest) and not _missing(earliest):
                pair.latest_a, pair.earliest_b = _plain(latest), _plain(earliest)
                pair.temporal_rows_b = int(early)
        pairs.append(pair)
    t, found, rule = near(n, offsets)
    pulled["near"] = rule
    for pair in pairs:
        if (pair.a, pair.b) in found:
            (a_rid, nb, d), chance = found[(pair.a, pair.b)]
            leakage.near_copies(pair, _global(a_rid, offsets[pair.a]), nb, d)
            pulled[f"{pair.a}_{pair.b}_near_pairs"] = len(nb)
            if len(pair.near_b):
                pair.chance = chance
    failures, kinds = leakage._failures(pairs, search.columns, max_overlap)
    if within_split:
        failures, kinds = leakage.within_failures(within, max_overlap, failures, kinds)
    return leakage.LeakageResult(pairs, within, search.columns, t, failures, search, kinds), pulled


NEAR_ROWS = 1_000_000  # near copies are searched when the second split of a pair has at most this many rows


def _near(frames: dict[str, Any], names: list[str], columns: list[str], n: dict[str, int],
          offsets: dict[str, np.ndarray], threshold: float | None,
          near_columns: list[int] | None, seed: int) -> tuple[float | None, dict[Any, Any], str]:
    """Near copies per pair (threshold, {(a, b): ((a row ids, b rows, distances), Chance)}, the rule in
    words): b's rows coded and built into the in-memory check's search once, on a worker; every
    partition of a searched against it where it lies; only the near pairs (and what chance gives)
    come back. Standardised with the statistics of train's uniform sample."""
    import dask
    from dask import delayed

    if threshold is None:
        return None, {}, "near copies not searched" + (" (the table has no numeric column)" if near_columns == [] else "")
    big = [b for b in names[1:] if n[b] > NEAR_ROWS]
    if big:
        return None, {}, (f"near copies not searched: {', '.join(f'{b} has {n[b]:,} rows' for b in big)}, more than the "
                          f"{NEAR_ROWS:,} a broadcast search holds; check an in-memory slice with no_leakage for them")
    k = stats_rows(len(columns))  # the in-memory check of a table takes train's first rows: so does this
    first = frames[names[0]].head(k, npartitions=-1, compute=False).map_partitions(
        _code_frame, columns, meta=_code_meta(len(columns)), enforce_metadata=False).to_delayed()
    scale = delayed(first_rows_scale, pure=True)(first, near_columns)
    lazy = {}
    meta = _near_meta()
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            parts = frames[b].map_partitions(_code_frame, columns, meta=_code_meta(len(columns)),
                                                  enforce_metadata=False).to_delayed()
            search = delayed(build_search, pure=True)(parts, scale, near_columns, seed)
            found = frames[a].map_partitions(near_partition, columns, search, threshold, meta=meta,
                                                   enforce_metadata=False).to_delayed()  # one kind of collection per compute
            chance = delayed(_chance_of, pure=True)(search, threshold, n[b], n[a], seed)
            lazy[(a, b)] = (delayed(_joined, pure=True)(found), chance)
    (out,) = dask.compute(lazy)
    found = {key: ((f["rid"].to_numpy(np.int64), f["b"].to_numpy(np.int64), f["d"].to_numpy(np.float64)), chance)
             for key, (f, chance) in out.items()}
    rule = (f"near copies searched on the workers against each pair's second split (standardised with train's "
            f"first {min(k, n[names[0]]):,} rows, as in memory)" + (", on the numeric and bool columns among rows whose other columns are equal"
                                             if near_columns is not None else ""))
    return threshold, found, rule


def first_rows_scale(parts: list[Any], near_columns: list[int] | None) -> Scale:
    """The train statistics near copies are judged in, from train's first rows (``parts``: their codes)."""
    rows = np.concatenate([p.to_numpy(np.float64) for p in parts]) if parts else np.zeros((0, 0))
    return Scale(rows if near_columns is None else rows[:, near_columns], np.float64)


def _joined(parts: list[Any]) -> Any:
    import pandas as pd

    return pd.concat(parts, ignore_index=True) if parts else _near_meta()


def _code_frame(pdf: Any, columns: list[str]) -> Any:
    import pandas as pd

    return pd.DataFrame(_codes(pdf, columns), columns=[f"c{j}" for j in range(len(columns))])


def _code_meta(width: int) -> Any:
    import pandas as pd

    return pd.DataFrame({f"c{j}": np.zeros(0) for j in range(width)})


def _near_meta() -> Any:
    import pandas as pd

    return pd.DataFrame({"rid": np.zeros(0, np.int64), "b": np.zeros(0, np.int64), "d": np.zeros(0)})


def build_search(parts: list[Any], scale: Scale, near_columns: list[int] | None, seed: int) -> Any:
    """The in-memory check's near search over the rows of ``parts`` (runs on a worker): a ``Reference``,
    or for a table with non-numeric columns the search confined to rows whose other columns are equal."""
    X = np.concatenate([p.to_numpy(np.float64) for p in parts]) if parts else np.zeros((0, scale.width))
    canon = Canon(np.float64, X.shape[1], seed=seed ^ 0x5EED)
    if near_columns is not None and len(near_columns) < X.shape[1]:
        return leakage._KeyedNear(X, near_columns, scale, canon.dtype, seed)
    return Reference(canon, X, scale)


def near_partition(pdf: Any, columns: list[str], search: Any, threshold: float,
                   partition_info: dict[str, Any] | None = None) -> Any:
    """One partition's near pairs against ``search``: (row id, b row, distance)."""
    import pandas as pd

    ia, ib, d = search.close(_codes(pdf, columns), threshold)
    part = int((partition_info or {}).get("number", 0))
    return pd.DataFrame({"rid": (np.int64(part) << np.int64(ROW_BITS)) + ia.astype(np.int64), "b": ib.astype(np.int64),
                         "d": d.astype(np.float64)})


def _chance_of(search: Any, threshold: float, n_b: int, n_a: int, seed: int) -> Any:
    """What chance neighbours give at b's density (``measure._chance``), measured where the search lies."""
    return chance_neighbours(search, search.rows, threshold, n_b, n_a, seed)


def _pair(a: str, b: str, n: dict[str, int], offsets: dict[str, np.ndarray], per_label: Any, matched_b: Any) -> leakage.PairLeak:
    """One pair's exact copies from (a's matched keys per label: first row, count) and b's matched rows,
    in ``measure._Match.result``'s terms: pairs ordered by b row, then a row."""
    pair = leakage.PairLeak(a, b, n[a], n[b])
    if not len(matched_b):
        return pair
    key_a = per_label["h1"].to_numpy(np.uint64), per_label["h2"].to_numpy(np.uint64)
    key_b = matched_b["h1"].to_numpy(np.uint64), matched_b["h2"].to_numpy(np.uint64)
    keys, inv = np.unique(np.concatenate([np.stack(key_a, 1), np.stack(key_b, 1)]), axis=0, return_inverse=True)
    inv = inv.reshape(-1)
    ka, kb = inv[: len(per_label)], inv[len(per_label):]
    ya, yb = per_label["y"].to_numpy(), matched_b["y"].to_numpy()
    first_a = _global(per_label["min"].to_numpy(), offsets[a])
    count_a = per_label["count"].to_numpy(np.int64)
    rows_b = _global(matched_b["rid"].to_numpy(), offsets[b])
    # per key: a's first row and its count, over every label and over the labels other than each b row's
    k = len(keys)
    first_any = np.full(k, np.iinfo(np.int64).max)
    np.minimum.at(first_any, ka, first_a)
    total = np.bincount(ka, count_a, minlength=k)
    order = np.argsort(rows_b, kind="stable")
    rows_b, kb, yb = rows_b[order], kb[order], yb[order]
    pair.exact_b = rows_b
    pair.exact_pair_count = int(total[kb].sum())
    pair.exact_pairs = list(zip(first_any[kb][: leakage.EXAMPLES].tolist(), rows_b[: leakage.EXAMPLES].tolist()))
    # a row of b conflicts when an equal row of a holds another label: its key has a label besides b's own
    import pandas as pd

    own = pd.MultiIndex.from_arrays([kb, yb]).isin(pd.MultiIndex.from_arrays([ka, ya]))
    bad = np.flatnonzero(np.bincount(ka, minlength=k)[kb] > own)
    examples = []
    for i in bad[: leakage.EXAMPLES]:  # the first a row of another label (in_memory: the first such pair)
        examples.append((int(first_a[(ka == kb[i]) & (ya != yb[i])].min()), int(rows_b[i])))
    pair.conflicts, pair.conflict_pairs = len(bad), examples
    return pair


def _missing(value: Any) -> bool:
    try:
        import pandas as pd

        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return value is None


def _plain(value: Any) -> Any:
    """A time as the in-memory check holds it: a Timestamp or datetime64 as it is (with its zone;
    the message writes both alike, ``report.time_text``), a numpy number as a Python one."""
    return value.item() if isinstance(value, np.generic) and not isinstance(value, np.datetime64) else value
