"""``no_leakage`` on Spark DataFrames, computed by the DataFrame's Spark session.

The same work as on Dask (``on_dask``), in Spark's operations: each
partition is coded and keyed where it lies by the very function Dask runs
(``on_dask.hash_partition``, through ``mapInPandas``: one definition of
canonical equality for every engine); val's distinct keys are broadcast
into train (``broadcast`` join hint: train is never shuffled for it); the
matched train rows are reduced to one row per (key, label); each split is
grouped by key for its repeats and within-split label conflicts; group ids
and times are aggregated; the target-column search runs in one executor
task on a uniform sample of up to 4,096 rows per split. What reaches the
driver: the matched rows' keys, labels and row ids, per-partition row counts,
counts, five example group ids, near pairs, and the search's verdict. A row id is (Spark partition, place in it), turned into a position
by the partition counts: a DataFrame read from files keeps that order.

Near copies (``_near``): rows bucketed by a projection of their standardised
numeric columns, b's rows repeated into the neighbouring buckets, the splits
co-grouped by bucket, the in-memory search run per group on an executor.
Nothing here imports pyspark until a Spark split arrives.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from ...errors import SetupError
from ..features import ROWS
from ..matching import Chance, Scale, chance_of_pairs, chance_pick, stats_rows
from . import measure as leakage
from .on_dask import (
    GROUP,
    LABEL,
    ROW_BITS,
    TAG,
    TIME,
    _codes,
    _global,
    _result,
    build_search,
    coded_sample,
    engine_splits,
    first_rows_scale,
    hash_partition,
    judge_samples,
    near_rule,
    same_columns,
)


def is_spark_split(source: Any) -> bool:
    return type(source).__module__.startswith("pyspark.sql") and type(source).__name__ == "DataFrame"


_NUMERIC = ("ByteType", "ShortType", "IntegerType", "LongType", "FloatType", "DoubleType", "DecimalType")


def _kind(data_type: Any) -> str:
    name = type(data_type).__name__
    if name in _NUMERIC:
        return "numeric"
    if name == "BooleanType":
        return "bool"
    if name in ("StringType", "BinaryType", "VarcharType", "CharType"):
        return "string"
    if name in ("TimestampType", "TimestampNTZType", "DateType"):
        return "datetime"
    return "other"


class SparkSplit:
    """One split as a Spark DataFrame of its feature columns and its label (``LABEL``)."""

    def __init__(self, name: str, source: Any, target: str | None) -> None:
        self.name = name
        cols = list(source.columns)
        if target is None or target not in cols:
            raise SetupError(
                f"TrainSetup({name}=...) is a Spark DataFrame; name its label column with TrainSetup(target='column') "
                f"(its columns: {', '.join(cols[:12])}{', ...' if len(cols) > 12 else ''}).")
        self.columns = [c for c in cols if c != target]
        if not self.columns:
            raise SetupError(f"TrainSetup({name}=...) has no feature column besides its label.")
        self.kinds = {f.name: _kind(f.dataType) for f in source.schema.fields if f.name != target}
        bad = [c for c, k in self.kinds.items() if k == "other"]
        if bad:
            raise SetupError(f"TrainSetup({name}=...) column(s) {', '.join(bad)} are nested or of an unsupported type; "
                             "drop them or flatten them first.")
        self.frame, self.target = source.withColumnRenamed(target, LABEL), target
        try:
            self.npartitions: int | str = source.rdd.getNumPartitions()
        except Exception:  # noqa: BLE001 - Spark Connect has no RDDs: the count is only for the message
            self.npartitions = "?"

    def with_column(self, frame: Any, key: str, column: Any, what: str) -> Any:
        if isinstance(column, str):
            if column not in self.columns:
                raise SetupError(f"TrainSetup({what}={{{self.name!r}: {column!r}}}) is not a column of the {self.name} split.")
            return frame.withColumn(key, frame[column])
        if type(column).__name__ != "Column":
            raise SetupError(f"TrainSetup({what}={{{self.name!r}: ...}}) with a Spark split takes a column name or a "
                             f"Column of that split (df['user_id']); got {type(column).__name__}.")
        return frame.withColumn(key, column)


def spark_splits(setup: Any) -> dict[str, SparkSplit] | None:
    return engine_splits(setup, "Spark", is_spark_split, SparkSplit, "spark.createDataFrame(df)")


def _numbered(it: Any) -> Any:
    """A task's pandas batches with (partition, place of their first row in it): what row ids are made of."""
    from pyspark import TaskContext

    part, start = TaskContext.get().partitionId(), 0
    for pdf in it:
        yield pdf, part, start
        start += len(pdf)


def _hashed(frame: Any, columns: list[str], seed: int, classification: bool, extra: tuple[str, ...], schema: str,
            target: str) -> Any:
    def batches(it: Any) -> Any:
        for pdf, part, start in _numbered(it):
            out = hash_partition(pdf, columns, seed, classification, extra, {"number": part}, start, target)
            out["h1"], out["h2"] = out["h1"].to_numpy().view(np.int64), out["h2"].to_numpy().view(np.int64)
            yield out

    return frame.mapInPandas(batches, schema)


def find_leakage_spark(
    splits: dict[str, SparkSplit],
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
    """``on_dask.find_leakage_dask``'s result, computed by Spark (near copies not searched)."""
    import pandas as pd
    from pyspark.sql import functions as F

    names = list(splits)
    columns = same_columns(splits, "Spark")
    y_type = "long" if classification else "double"
    hashed, lengths, within, has_group, has_time = {}, {}, {}, set(), set()
    for name, split in splits.items():
        frame, extra, schema = split.frame, [], f"h1 long, h2 long, y {y_type}, rid long"
        for key, given, what in ((GROUP, groups, "groups"), (TIME, timestamps, "timestamps")):
            if given and name in given:
                frame = split.with_column(frame, key, given[name], what)
                extra.append(key)
                schema += f", {key} {frame.schema[key].dataType.simpleString()}"
                if key == TIME and frame.schema[key].dataType.simpleString() == "string":
                    raise SetupError(leakage.not_times_error(name, "text"))
        if GROUP in extra:
            has_group.add(name)
        if TIME in extra:
            has_time.add(name)
        h = _hashed(frame, columns, seed, classification, tuple(extra), schema, split.target).cache()
        hashed[name] = h
        counts = h.groupBy(F.shiftrightunsigned(F.col("rid"), ROW_BITS).alias("part")).count().toPandas()
        sizes = np.zeros(int(counts["part"].max()) + 1 if len(counts) else 0, np.int64)
        sizes[counts["part"].to_numpy()] = counts["count"].to_numpy()
        lengths[name] = sizes
        g = h.groupBy("h1", "h2").agg(F.min("y").alias("lo"), F.max("y").alias("hi"), F.count("*").alias("n"))
        row = g.agg(F.count("*"), F.sum(F.when(F.col("lo") != F.col("hi"), F.col("n")).otherwise(0)),
                    F.sum(F.when(F.col("n") > 1, F.col("n")).otherwise(0)), F.sum(F.col("n") * (F.col("n") - 1))).collect()[0]
        within[name] = tuple(int(v or 0) for v in row)
    out: dict[str, Any] = {"lengths": lengths, "within": within, "pairs": {}, "groups": {}, "times": {}}
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            keys_b = hashed[b].select("h1", "h2").distinct()
            per_label = (hashed[a].join(F.broadcast(keys_b), ["h1", "h2"]).groupBy("h1", "h2", "y")
                         .agg(F.min("rid").alias("min"), F.count("*").alias("count")))
            per_label_pd = _unsigned(per_label.toPandas())
            keys_a = F.broadcast(per_label.select("h1", "h2").distinct())
            matched_b = hashed[b].join(keys_a, ["h1", "h2"]).select("h1", "h2", "y", "rid")
            out["pairs"][(a, b)] = (per_label_pd, _unsigned(matched_b.toPandas()))
            if a in has_group and b in has_group:
                ga = hashed[a].select(F.col(GROUP).alias("g")).where(_present(hashed[a], GROUP, "g")).distinct()
                gb = hashed[b].select(F.col(GROUP).alias("g")).where(_present(hashed[b], GROUP, "g")).distinct()
                shared = ga.join(gb, "g")
                rows_b = hashed[b].join(F.broadcast(shared.withColumnRenamed("g", GROUP)), GROUP).count()
                examples = [r["g"] for r in shared.orderBy("g").limit(leakage.EXAMPLES).collect()]
                missing = [h.where(~_present(h, GROUP)).count() for h in (hashed[a], hashed[b])]  # in no group: counted
                out["groups"][(a, b)] = (shared.count(), rows_b, pd.Series(examples, dtype=object), *missing)
            if a in has_time and b in has_time:
                known_a, known_b = _present(hashed[a], TIME), _present(hashed[b], TIME)  # NaN is a missing time, as NaT
                ta = hashed[a].agg(F.max(F.when(known_a, F.col(TIME))), F.sum((~known_a).cast("long"))).collect()[0]
                tb = hashed[b].agg(F.min(F.when(known_b, F.col(TIME))), F.sum((~known_b).cast("long"))).collect()[0]
                early = hashed[b].where(known_b & (F.col(TIME) < F.lit(ta[0]))).count() if ta[0] is not None else 0
                out["times"][(a, b)] = (_time(ta[0]), int(ta[1] or 0), _time(tb[0]), int(tb[1] or 0), early)
    out["judged"] = _judged(splits, names, columns, lengths, seed, classification)
    for h in hashed.values():
        h.unpersist()
    t, near_columns = near_rule(splits[names[0]].kinds, columns, near, threshold)
    return _result(out, names, columns, classification, max_overlap, within_split, seed,
                   lambda n, offsets: _near(splits, names, columns, n, offsets, t, near_columns, seed))


def _judged(splits: dict[str, SparkSplit], names: list[str], columns: list[str], lengths: dict[str, np.ndarray],
            seed: int, classification: bool) -> Any:
    """``on_dask.judge_samples`` on a uniform sample of up to ``ROWS`` rows per split, run in one
    executor task: only its verdicts (pickled) reach the driver."""
    from pyspark.sql import functions as F

    sampled = None
    for name in names:
        frac = min(1.0, 2.0 * ROWS / max(int(lengths[name].sum()), 1))
        part = splits[name].frame
        if frac < 1:  # the sampled rows shuffled before the cut: every partition kept alike
            part = part.sample(fraction=frac, seed=seed).orderBy(F.rand(seed)).limit(ROWS)
        part = part.withColumn(TAG, F.lit(name))
        sampled = part if sampled is None else sampled.unionByName(part)
    target = splits[names[0]].target

    def judge(it: Any) -> Any:
        import pickle

        import pandas as pd

        parts = list(it)
        if not parts:
            return
        pdf = pd.concat(parts, ignore_index=True)
        samples = [coded_sample(rows, columns, classification, target, np.arange(len(rows), dtype=np.float64))
                   for rows in (pdf[pdf[TAG] == name] for name in names)]
        yield pd.DataFrame({"blob": [pickle.dumps(judge_samples(samples, names, columns, seed, classification))]})

    import pickle

    found = sampled.coalesce(1).mapInPandas(judge, "blob binary").collect()
    return pickle.loads(found[0]["blob"]) if found else None


def _first_rows_scale(frame: Any, columns: list[str], k: int, offsets: np.ndarray, near_columns: list[int] | None) -> Scale:
    """``on_dask.first_rows_scale`` of the split's first ``k`` rows (by row id), built in one executor
    task: only the statistics (pickled) reach the driver."""
    from pyspark.sql import functions as F

    rids = [int(r) for r in _rids(np.arange(k), offsets)]  # k is at most the split's rows
    names = [f"c{j}" for j in range(len(columns))]

    def build(it: Any) -> Any:
        import pickle

        import pandas as pd

        parts = list(it)
        pdf = pd.concat(parts, ignore_index=True).sort_values("rid") if parts else pd.DataFrame(columns=names)
        yield pd.DataFrame({"blob": [pickle.dumps(first_rows_scale([pdf[names]], near_columns))]})

    import pickle

    coded = _bucketed(frame, columns, [], np.zeros(0), np.ones(0), np.zeros(0), 1.0, spread=False)
    # repartition, not coalesce: a coalesced task would run the coder over every partition as partition 0
    blob = coded.where(F.col("rid").isin(rids)).repartition(1).mapInPandas(build, "blob binary").collect()[0]["blob"]
    return pickle.loads(blob)


def _near(splits: dict[str, SparkSplit], names: list[str], columns: list[str], n: dict[str, int],
          offsets: dict[str, np.ndarray], threshold: float | None,
          near_columns: list[int] | None, seed: int) -> tuple[float | None, dict[Any, Any], str]:
    """Near copies per pair, by Spark (``on_dask._near``'s result): every row gets a bucket of its
    standardised numeric columns projected on a seeded unit direction, buckets ``threshold *
    sqrt(columns)`` wide, so a near pair's buckets differ by at most one (|v.(a - b)| <= |a - b|).
    b's rows are repeated into their neighbouring buckets, the two splits are co-grouped by bucket,
    and each group runs the in-memory check's search (``on_dask.build_search``) on its rows, on an
    executor. Chance neighbours: b's sampled rows searched against b the same way."""
    from pyspark.sql import functions as F

    if threshold is None:
        return None, {}, "near copies not searched" + (" (the table has no numeric column)" if near_columns == [] else "")
    numeric = list(range(len(columns))) if near_columns is None else near_columns
    k = min(stats_rows(len(columns)), n[names[0]])  # train's first rows, as the in-memory check of a table
    scale = _first_rows_scale(splits[names[0]].frame, columns, k, offsets[names[0]], near_columns)
    direction = np.random.default_rng(seed ^ 0xB0C7).standard_normal(len(numeric))
    direction /= np.linalg.norm(direction)
    width = threshold * np.sqrt(len(numeric)) * (1 + 1e-9)
    centre, unit = scale.center, scale.std  # d(a, b) <= t  =>  |z_a - z_b| <= t sqrt(columns), z = (x - mean) / std
    found = {}
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            side_a = _bucketed(splits[a].frame, columns, numeric, centre, unit, direction, width, spread=False)
            side_b = _bucketed(splits[b].frame, columns, numeric, centre, unit, direction, width, spread=True)
            pairs = _cogrouped(side_a, side_b, columns, scale, near_columns, seed, threshold).toPandas()
            rid_a, rid_b = pairs["a"].to_numpy(np.int64), pairs["b"].to_numpy(np.int64)
            near_b = _global(rid_b, offsets[b])
            chance = Chance()
            if len(pairs):  # density, measured only where there is something to explain (as measure._chance)
                pick = chance_pick(n[b], seed)
                rids = _rids(pick, offsets[b])
                picked = _bucketed(splits[b].frame, columns, numeric, centre, unit, direction, width, spread=False).where(
                    F.col("rid").isin([int(r) for r in rids]))
                self_pairs = _cogrouped(picked, side_b, columns, scale, near_columns, seed, threshold).toPandas()
                chance = chance_of_pairs(n[b], len(pick), _global(self_pairs["a"].to_numpy(np.int64), offsets[b]),
                                         _global(self_pairs["b"].to_numpy(np.int64), offsets[b]),
                                         self_pairs["d"].to_numpy(np.float64), n[b], n[a])
            found[(a, b)] = ((rid_a, near_b, pairs["d"].to_numpy(np.float64)), chance)
    rule = (f"near copies searched by Spark in buckets of a projection of the standardised numeric columns "
            f"(standardised with train's first {k:,} rows, as in memory)" + (", among rows whose other columns are equal"
                                                                       if near_columns is not None else ""))
    return threshold, found, rule


def _rids(positions: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Row ids (partition << ROW_BITS | place) of global positions."""
    part = np.searchsorted(offsets, positions, side="right") - 1
    return (part.astype(np.int64) << ROW_BITS) + (positions - offsets[part])


def _bucketed(frame: Any, columns: list[str], numeric: list[int], centre: np.ndarray, unit: np.ndarray,
              direction: np.ndarray, width: float, spread: bool) -> Any:
    """The frame as (bucket, rid, c0..: value codes); with ``spread`` each row also in the buckets beside its own."""
    names = [f"c{j}" for j in range(len(columns))]
    schema = "bucket long, rid long, " + ", ".join(f"{c} double" for c in names)

    def batches(it: Any) -> Any:
        import pandas as pd

        for pdf, part, start in _numbered(it):
            codes = _codes(pdf, columns)
            with np.errstate(over="ignore", invalid="ignore"):  # NaN counts as the mean, as in the distance
                z = np.nan_to_num((codes[:, numeric] - centre) / unit, nan=0.0, posinf=0.0, neginf=0.0)
            bucket = np.floor(z @ direction / width).astype(np.int64)
            rid = (np.int64(part) << np.int64(ROW_BITS)) + start + np.arange(len(pdf), dtype=np.int64)
            out = pd.DataFrame(codes, columns=names)
            out.insert(0, "rid", rid)
            out.insert(0, "bucket", bucket)
            if spread:
                out = pd.concat([out.assign(bucket=bucket + k) for k in (-1, 0, 1)], ignore_index=True)
            yield out

    return frame.mapInPandas(batches, schema)


def _cogrouped(side_a: Any, side_b: Any, columns: list[str], scale: Scale, near_columns: list[int] | None, seed: int,
               threshold: float) -> Any:
    """(a rid, b rid, distance) of every near pair, searched bucket by bucket on the executors."""
    names = [f"c{j}" for j in range(len(columns))]

    def search(a: Any, b: Any) -> Any:
        import pandas as pd

        if not len(a) or not len(b):
            return pd.DataFrame({"a": np.zeros(0, np.int64), "b": np.zeros(0, np.int64), "d": np.zeros(0)})
        found = build_search([b[names]], scale, near_columns, seed)
        ia, ib, d = found.close(a[names].to_numpy(np.float64), threshold)
        return pd.DataFrame({"a": a["rid"].to_numpy(np.int64)[ia], "b": b["rid"].to_numpy(np.int64)[ib], "d": d})

    return side_a.groupBy("bucket").cogroup(side_b.groupBy("bucket")).applyInPandas(search, "a long, b long, d double")


def _present(frame: Any, key: str, alias: str | None = None) -> Any:
    """Not null, and not NaN in a float column: Spark's NaN equals NaN and sorts above every number."""
    from pyspark.sql import functions as F

    col = F.col(alias or key)
    if type(frame.schema[key].dataType).__name__ in ("FloatType", "DoubleType"):
        return col.isNotNull() & ~F.isnan(col)
    return col.isNotNull()


def _unsigned(df: Any) -> Any:
    """Spark's signed 64-bit keys as the uint64 keys ``_result`` joins on."""
    for c in ("h1", "h2"):
        df[c] = df[c].to_numpy(np.int64).view(np.uint64)
    return df


def _time(value: Any) -> Any:
    """A Spark time (a Python datetime, in the session's time zone) as a pandas Timestamp, as the
    in-memory check holds a pandas time (the message writes it with ``report.time_text``)."""
    if value is None or not hasattr(value, "year"):
        return value
    import pandas as pd

    return pd.Timestamp(value)
