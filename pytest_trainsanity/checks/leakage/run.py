"""``no_leakage``: stream the splits through the matcher, word the counts.

Model-free and streaming: the first split (train) is read block by block,
the others are held as references. A sample is identified by all its input
fields (every array of a batch except the target).
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from ...adapters.base import first_line
from ...adapters.splits import Split, common_widths, fields_rows
from ...errors import SetupError, UsageError
from ...report import CheckReport, time_text
from ...settings import CheckOptions, RunSettings
from ...spec import TrainSetup
from ..features import ROWS, TargetSearch
from ..labels import NonFiniteLabels, require_finite
from ..runner import Prepared, prepare_model_free
from ..matching import CHANCE_MIN_HITS, NEAR_DEFINITION, WidthMismatch, near_words
from . import measure as leakage

MARKER = "no_leakage"


def prepare(setup: TrainSetup, options: CheckOptions, settings: RunSettings, hook: Any, nodeid: str | None) -> Prepared:
    from .on_dask import dask_splits, is_dask_split  # numpy only: dask / pyspark come with the user's splits
    from .on_spark import is_spark_split, spark_splits

    given = list(setup.splits().values())
    for engine, found, opened in (("Dask", is_dask_split, dask_splits), ("Spark", is_spark_split, spark_splits)):
        if any(found(s) for s in given):
            p = Prepared(MARKER, options, settings, hook, nodeid, run_engine, setup)
            p.engine = engine, opened(setup)
            return p
    return prepare_model_free(MARKER, setup, options, settings, hook, nodeid, run)


def run_engine(p: Prepared) -> CheckReport:
    """The check on Dask or Spark splits, computed by the engine that holds them (``on_dask``, ``on_spark``)."""
    from .on_dask import find_leakage_dask
    from .on_spark import find_leakage_spark

    engine, splits = p.engine
    find = find_leakage_dask if engine == "Dask" else find_leakage_spark
    opts = p.options
    try:
        result, pulled = find(
            splits, groups=p.setup.groups, timestamps=p.setup.timestamps,
            classification=p.setup.task == "classification", max_overlap=opts.max_overlap,
            within_split=opts.within_split, seed=p.settings.seed, near=opts.near_duplicates, threshold=opts.threshold)
    except (UsageError, SetupError):
        raise
    except Exception as exc:  # noqa: BLE001 - a worker's refusal, as the engine wraps it (Spark: PythonException)
        said = re.search(r"SetupError: (.+)", str(exc))
        if said:
            raise SetupError(said.group(1).strip()) from None
        if isinstance(exc, (ValueError, TypeError)):
            raise SetupError(f"no_leakage cannot compare the splits on {engine}: {type(exc).__name__}: "
                             f"{str(exc).strip().splitlines()[0] if str(exc).strip() else ''}.") from None
        raise
    parts = ", ".join(f"{name} {s.npartitions}" for name, s in splits.items())
    where = "on the Dask cluster" if engine == "Dask" else "by the Spark session"
    note = (f"computed {where} (partitions: {parts}): rows are matched by a 128-bit key of their values "
            "(strings exactly, categoricals by value, datetimes, bools, numbers), and only the matched rows' keys and ids "
            f"and counts came back (target columns were searched on a sample of up to {ROWS:,} rows per split where it "
            f"lies); {pulled.pop('near')}")
    report = _report(result, opts, note)
    report.metrics.update({f"pulled_{k}": v for k, v in pulled.items()})
    return report


def _by_column(p: Prepared, what: str) -> dict[str, Any] | None:
    """``TrainSetup(groups=...)`` / ``(timestamps=...)`` with a column name (a str) read from its table
    split: that column's values, as Dask and Spark splits take a name. The column stays a feature."""
    given = getattr(p.setup, what)
    if not given or not any(isinstance(v, str) for v in given.values()):
        return given
    out = dict(given)
    for name, column in given.items():
        if not isinstance(column, str):
            continue
        split = p.splits.get(name)
        if split is None or not split.kind.startswith("table"):
            raise SetupError(
                f"TrainSetup({what}={{{name!r}: {column!r}}}) names a column, but the {name} split is "
                f"{'not given' if split is None else split.describe()}, not a table; give one {what[:-1]} per "
                f"sample (an array or list), or a DataFrame / Parquet split that holds the column.")
        if column not in split.columns:  # type: ignore[attr-defined]
            columns = split.columns  # type: ignore[attr-defined]
            raise SetupError(
                f"TrainSetup({what}={{{name!r}: {column!r}}}) is not a feature column of the {name} split; its "
                f"columns: {', '.join(columns[:12])}{', ...' if len(columns) > 12 else ''}.")
        out[name] = split.column_values(column)  # type: ignore[attr-defined]
    return out


def _inputs(p: Prepared, widths: dict[str, int] | None, groups: dict[str, Any] | None,
            timestamps: dict[str, Any] | None) -> list[leakage.SplitInput]:
    inputs, known_times = [], {}
    for name, split in p.splits.items():
        arrays = _arrays(split)
        if arrays is not None:
            _finite_labels(name, arrays[1])
        inputs.append(leakage.SplitInput(
            name, lambda s=split: ((fields_rows(f, widths), _finite_labels(s.name, y)) for f, y in s.blocks()), arrays,
            rows=split.n_samples()))
        n = split.n_samples()
        for what, given in (("groups", groups or {}), ("timestamps", timestamps or {})):
            if name in given and np.ndim(given[name]) != 1:
                raise SetupError(
                    f"TrainSetup({what}={{{name!r}: ...}}) has shape {np.shape(given[name])}; give one {what[:-1]} per "
                    f"sample, a 1-D array or list" + (" (for a group made of several columns, one id per combination: "
                    "pd.factorize(list(zip(a, b)))[0] or a joined string)" if what == "groups" else "") + ".")
            if name in given and n is not None and len(given[name]) != n:
                raise SetupError(
                    f"TrainSetup({what}={{{name!r}: ...}}) has {len(given[name])} entries but the {name} "
                    f"split has {n} samples; give one {what[:-1]} per sample."
                )
        times = (timestamps or {}).get(name)
        present = leakage.known_values(times)[0] if times is not None else None
        if present is not None and (held := leakage.not_times(present)) is not None:
            raise SetupError(leakage.not_times_error(name, held))
        if times is not None and len(times) and not len(present):
            raise SetupError(leakage.none_present_error("timestamps", name, len(times)))
        if present is not None:
            known_times[name] = present
        ids = (groups or {}).get(name)
        if ids is not None and len(ids) and not len(leakage.known_values(ids)[0]):
            raise SetupError(leakage.none_present_error("groups", name, len(ids)))
    _comparable_times(known_times)
    return inputs


def _comparable_times(present: dict[str, np.ndarray]) -> None:
    """Every split's times (those present) order within the split and against every other split's:
    numbers against datetimes, or zone-aware against naive datetimes, raised numpy's or pandas'
    TypeError from inside the check. Each split's span is taken once; splits compare by their ends."""

    def refuse(what: str, exc: BaseException) -> SetupError:
        return SetupError(
            f"TrainSetup(timestamps=...): {what} cannot be ordered against each other: {first_line(exc)}. "
            f"Give every split's times in one kind: all datetimes with a time zone or all without "
            f"(series.dt.tz_convert('UTC') or series.dt.tz_localize(None)), or all numbers.")

    spans = {}
    for name, t in present.items():
        try:
            spans[name] = (t.min(), t.max())
        except (TypeError, ValueError) as exc:
            raise refuse(f"the {name} times ({leakage.time_kind(t)})", exc) from None
    names = list(spans)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            try:
                bool(spans[a][0] < spans[b][1])
                bool(spans[b][0] < spans[a][1])
            except (TypeError, ValueError) as exc:
                raise refuse(f"the {a} times ({leakage.time_kind(present[a])}) and the {b} times "
                             f"({leakage.time_kind(present[b])})", exc) from None


def _finite_labels(name: str, y: np.ndarray) -> np.ndarray:
    try:
        require_finite(y)
    except NonFiniteLabels as exc:
        raise SetupError(f"no_leakage: TrainSetup({name}=...): {exc}.") from None
    return y


def _arrays(split: Split) -> tuple[np.ndarray, np.ndarray] | None:
    """The split as one (rows, y) pair when it is in memory (referenced, not copied, for one input)."""
    if split.kind != "arrays":
        return None
    pair = split.numpy_pair()  # type: ignore[attr-defined]
    if pair is not None:
        return pair
    fields, ys = zip(*split.blocks())
    return fields_rows({k: np.concatenate([f[k] for f in fields]) for k in fields[0]}), np.concatenate(ys)


def run(p: Prepared) -> CheckReport:
    opts = p.options

    tables = [s for s in p.splits.values() if s.kind.startswith("table")]
    names = tables[0].columns if tables and all(t.columns == tables[0].columns for t in tables) else None  # type: ignore[attr-defined]
    mixed = [c for t in tables for c, k in t.kinds.items() if k not in leakage.NUMERIC_KINDS]  # type: ignore[attr-defined]
    # a distance needs numbers: in a table with other columns, near copies are judged on its numeric and
    # bool columns among rows whose other columns are equal (exact copies compare every column)
    near_columns = None
    if names is not None and tables:  # a column is numeric when it is in every split
        kinds = {c: ("numeric" if all(t.kinds[c] in leakage.NUMERIC_KINDS for t in tables) else "other")  # type: ignore[attr-defined]
                 for c in names}
        near_columns = leakage.near_columns_of(kinds, names)
    near = opts.near_duplicates and (not mixed or names is not None)

    groups, timestamps = _by_column(p, "groups"), _by_column(p, "timestamps")

    def find(widths: dict[str, int] | None) -> leakage.LeakageResult:
        return leakage.find_leakage(
            _inputs(p, widths, groups, timestamps), near=near, threshold=opts.threshold, column_names=names,
            groups=groups, timestamps=timestamps,
            classification=p.setup.task == "classification", max_overlap=opts.max_overlap,
            within_split=opts.within_split, seed=p.settings.seed, near_columns=near_columns,
        )

    try:
        try:
            result = find(None)
        except WidthMismatch:
            if any(s.one_shot or s.in_memory for s in p.splits.values()):
                raise  # arrays of different widths are different features, not padding
            # batches padded to their own longest sample: read once more for the widest, pad all to it
            result = find(common_widths(*(f for s in p.splits.values() for f, _ in s.blocks())))
    except UsageError:
        raise
    except ValueError as exc:  # the splits do not fit together (sample sizes, label shapes)
        raise SetupError(f"no_leakage cannot compare the splits: {exc}.") from None
    note = _fields_note(p)
    if mixed and opts.near_duplicates:
        others = ", ".join(repr(c) for c in dict.fromkeys(mixed))
        if names is None:
            rule = "the splits' columns differ, so near copies were not searched (exact copies only)"
        elif near_columns:
            rule = f"near copies are judged on the numeric and bool columns among rows whose other columns ({others}) are equal"
        else:
            rule = f"near copies need numeric columns, and this table has only {others}; exact copies only"
        note = ("rows are compared by value over every column (strings exactly, categoricals by value, datetimes, "
                "bools, numbers); " + rule)
    return _report(result, opts, note, {n: s.stream_copies() for n, s in p.splits.items()})


def _report(result: leakage.LeakageResult, opts: CheckOptions, note: str | None,
            streams: dict[str, int] | None = None) -> CheckReport:
    metrics: dict[str, Any] = {"near_threshold": result.threshold}
    for pair in result.pairs:
        key = f"{pair.a}_{pair.b}"
        metrics.update({
            f"{key}_exact": len(pair.exact_b), f"{key}_near": len(pair.near_b), f"{key}_copies": pair.copies,
            f"{key}_copy_fraction": pair.copies / pair.n_b if pair.n_b else 0.0,
            f"{key}_label_conflicts": pair.conflicts, f"{key}_group_rows": pair.group_rows_b,
            f"{key}_temporal_rows": pair.temporal_rows_b, f"{key}_near_chance": round(pair.chance.rows, 1),
            f"{key}_near_counted": pair.near_counted, f"{key}_near_pairs": pair.near_pair_count,
            f"{key}_near_pairs_expected": round(pair.chance.pairs, 1), f"{key}_exact_counted": pair.exact_counted,
            f"{key}_exact_chance": round(pair.exact_chance.rows, 1),
        })
    for name, w in result.within.items():
        metrics[f"{name}_repeated_rows"] = w.repeats
        metrics[f"{name}_label_conflicts"] = w.conflicts
    metrics["target_columns"] = len(result.targets)
    metrics["target_columns_judged"] = result.target_search.judged
    metrics["target_rows_needed"] = result.target_search.needed if result.target_search.tried else None
    worst = max(result.pairs, key=lambda q: q.copies / max(q.n_b, 1), default=None)
    metrics["max_copy_fraction"] = worst.copies / worst.n_b if worst and worst.n_b else 0.0
    return CheckReport(
        MARKER, result.passed, leakage_message(result, opts.max_overlap, opts.within_split, note, streams), metrics,
        [{"failure": f} for f in result.failures], key=("max_copy_fraction", "target_columns"),
    )


def _fields_note(p: Prepared) -> str | None:
    """How a sample was identified, when its batches hold several input fields."""
    for split in p.splits.values():
        form = split.form() if split.kind != "stream" else None
        if form is not None and len(form.names) > 1:
            return f"a sample is identified by all its input fields ({', '.join(form.names)}), the target excluded"
    return None


def leakage_message(r: leakage.LeakageResult, max_overlap: int | float, within_split: bool = False,
                    fields: str | None = None, streams: dict[str, int] | None = None) -> str:
    """``streams``: per split, how many workers each run a copy of its stream (``Split.stream_copies``)."""
    limit = f"max_overlap {max_overlap}" + (" (a fraction of each pair's second split)" if isinstance(max_overlap, float) else " (a count)")
    near = f"near copies ({near_words(r.threshold)})" if r.threshold is not None else "near copies not searched"
    if r.passed:
        lines = [f"no_leakage passed: no split pair exceeds {limit}; exact copies, {near}, groups and time checked."]
    else:
        lines = [f"no_leakage FAILED: {r.failures[0]}."] + [f"  also: {f}" for f in r.failures[1:]]
        rule = f"near copies: {near_words(r.threshold)} ({NEAR_DEFINITION})" if r.threshold is not None else near
        lines.append(f"Limit: {limit}; {rule}.")
    for pair in r.pairs:
        lines.append(f"{pair.a}/{pair.b}: " + _pair_text(pair))
    lines.append("Within splits" + ("" if within_split else " (reported, not a failure; within_split=True fails on them)") + ": " + "; ".join(
        f"{name} {w.repeats} repeated row(s) of {w.n}"
        + (f" ({w.conflicts} row(s) share their inputs with a row of another label)" if w.conflicts else "")
        for name, w in r.within.items()))
    if fields:
        lines.append(f"Samples: {fields}.")
    lines += _target_lines(r.target_search)
    columns = ", ".join(t.label for t in r.targets[: leakage.EXAMPLES])
    needed = dict.fromkeys(FIX_OF.get(kind, kind) for kind in r.kinds)
    lines += [f"Fix ({name}): " + FIXES[name].format(columns=columns) for name in needed if name in FIXES]
    # repeats in a stream read by several workers: named whether or not they fail (within_split=False reports them)
    # (k unsharded copies repeat at least (k-1)/k of the rows: fewer repeats rule them out)
    for name, k in (streams or {}).items():
        w = r.within.get(name)
        if k > 1 and w is not None and w.repeats and w.repeats * k >= w.n * (k - 1):
            failed = any(f.startswith(f"{name}: ") and "repeated row" in f for f in r.failures)
            lines.append(_worker_repeats(f"{'Fix' if failed else 'Note'} (repeats, {name})", name, w, k))
    return "\n".join(lines)


def _worker_repeats(label: str, name: str, w: Any, k: int) -> str:
    """The fix when a split's repeats may be its workers' copies of one stream."""
    exact = w.repeats * k == w.n * (k - 1)
    share = (f"its {w.repeats} repeats of {w.n} rows are exactly the (k-1)/k share that {k} copies of one stream give"
             if exact else f"its {w.repeats} repeats of {w.n} rows include the (k-1)/k share that {k} copies of one "
             f"stream give")
    return (f"{label}: {name} is an IterableDataset read by {k} DataLoader workers, each running its own "
            f"copy of __iter__, and {share}: unless __iter__ splits its samples by "
            f"torch.utils.data.get_worker_info() (worker i yields every num_workers-th sample from i), each sample "
            f"comes once per worker; shard it there (or read it with num_workers=0), then de-duplicate only what still repeats.")


TARGET_FOUND = ("Target leakage: column {column} alone predicts the train {label}: held-out {score} ({evidence} >= "
                "{bound} with 99% confidence over {tried} columns, {n} train rows){why}.")
TARGET_CLASSES = ("accuracy {acc}", "majority baseline {base}; lift {lift},")
TARGET_VALUES = ("R^2 {r2}", "each row's side of the median target: lift")
TARGET_ALONE = ("; within each {group} it moves with no other column (largest |r| {r}, <= {bound} with 99% "
                "confidence), as a column computed from the {label} does (a real measurement usually moves with "
                "its neighbours; if this one is a genuine, decisive measurement, allow it with max_overlap=1)")
TARGET_PERFECT = "; that is near perfect: the {label} (or a copy of it) is among the inputs"
TARGET_RECODED = "; it takes one value per {group}: the {label}, recoded"
TARGETS_NONE = "Target columns: none among {tried} columns ({n} train rows; a verdict needs >= {needed})."
TARGETS_NOT_JUDGED = "Target columns: not judged, {n} train rows; a verdict needs >= {needed} ({tried} columns tried)."
FIX_OF = {"copies": "copies", "label_conflicts": "copies", "group_rows": "groups", "temporal_rows": "time",
          "targets": "target columns", "repeats": "repeats", "within_conflicts": "conflicts"}  # each failure kind's fix: one line per fix needed
FIXES = {
    "copies": "remove from val/test every sample that also occurs in train (np.unique over the concatenated splits), "
              "then split by unique input so no sample is on both sides.",
    "groups": "split by group (patient, user, session) with sklearn GroupShuffleSplit, so no group is on both sides.",
    "time": "split by time: every val/test sample after the last train sample (sklearn TimeSeriesSplit).",
    "target columns": "drop column(s) {columns} or rebuild them from what is known before the label: they were "
                      "computed from (or after) the label, so a model reads the answer from them and val/test "
                      "scores mean nothing.",
    "repeats": "de-duplicate each split (np.unique(X, axis=0, return_index=True)) before splitting.",
    "conflicts": "resolve the rows whose identical inputs carry different labels (a labelling error, or features "
                 "that miss what decides the label): keep one label per input (majority vote or relabel), or add "
                 "the missing feature.",
}


def _target_lines(s: TargetSearch) -> list[str]:
    if not s.tried:
        return []  # not a table of columns (images, sequences)
    if not s.judged:
        return [TARGETS_NOT_JUDGED.format(n=s.n, needed=s.needed, tried=s.tried)]
    if not s.columns:
        return [TARGETS_NONE.format(tried=s.tried, n=s.n, needed=s.needed)]
    regression = s.task == "regression"
    label, group = ("target", "target bin") if regression else ("label", "class")
    out = []
    for t in s.columns:
        alone = t.alone
        why = TARGET_PERFECT if not alone else TARGET_RECODED if t.residual_bound == 0 else TARGET_ALONE
        why = why.format(group=group, r=f"{t.residual_corr:.2f}", bound=f"{t.residual_bound:.2f}", label=label)
        score, evidence = TARGET_VALUES if regression else TARGET_CLASSES
        values = {"acc": f"{t.train_acc:.3f}", "r2": f"{t.train_acc:.3f}", "base": f"{t.baseline:.3f}",
                  "lift": f"{t.train_lift:.2f}"}
        out.append(TARGET_FOUND.format(column=t.label, label=label, score=score.format(**values),
                                       evidence=evidence.format(**values), bound=f"{t.lift_bound:.2f}", tried=t.tried,
                                       n=t.n, why=why))
    return out


def _pair_text(p: leakage.PairLeak) -> str:
    frac = p.copies / p.n_b if p.n_b else 0.0
    share = f"{100 * frac:.1f}%"
    if p.copies != len(p.exact_b) + len(p.near_b):  # some left out as chance: the share is of those counted
        share = f"{p.copies} counted, {share}"
    parts = [f"{len(p.exact_b)} exact and {len(p.near_b)} near copies of {p.n_b} {p.b} samples ({share})"]
    if p.exact_pairs:
        parts.append(f"exact examples ({p.a}, {p.b}): {p.exact_pairs}")
    if p.near_pairs:
        parts.append("near examples: " + ", ".join(f"({x}, {z}) at {d:.2g}" for x, z, d in p.near_pairs))
    if p.few_values and p.exact_chance.hits >= CHANCE_MIN_HITS:
        density = (f"every feature takes at most {p.few_values} values, and {p.exact_chance.hits} of {p.n_b} {p.b} rows "
                   f"equal another {p.b} row, so about {p.exact_chance.rows:,.0f} {p.b} rows would equal a {p.a} row by "
                   f"chance among {p.n_a:,}, in about {p.exact_chance.pairs:,.0f} equal pairs; found {p.exact_pair_count:,}")
        parts.append(f"exact copies counted: not what chance gives ({density})" if p.exact_counted else
                     f"the {len(p.exact_b)} exact copies (and their label conflicts) are not counted: in so small a "
                     f"feature space equal rows recur by chance ({density}); to find leakage here, give the entity ids "
                     f"(groups=) or times (timestamps=)")
    if len(p.near_b) and p.chance.hits >= CHANCE_MIN_HITS:
        density = p.chance.words(p.b, p.b, p.a, p.n_a, p.near_pair_count)
        parts.append(f"near copies counted: not what chance neighbours give ({density})" if p.near_counted else
                     f"the {len(p.near_b)} near copies are not counted: chance neighbours give as many at this density "
                     f"({density}); a smaller threshold= tells true copies apart")
    if p.copies:
        points = f"{100 * frac:.0f}" if frac >= 0.095 else f"{100 * frac:.1g}"  # 0.5, not "up to 0 points"
        parts.append(f"{p.b} accuracy can be inflated by up to {points} points: these samples were trained on")
    parts.append(f"{p.conflicts} label conflict(s)" + (f" e.g. {p.conflict_pairs}" if p.conflicts else "")
                 + ("" if p.exact_counted or not p.conflicts else " (not counted, with the exact copies)"))
    if p.shared_groups or p.group_rows_b:
        parts.append(f"{p.shared_groups} shared group id(s) covering {p.group_rows_b} {p.b} samples, e.g. {p.group_examples}")
    if p.latest_a is not None:
        parts.append(f"{p.temporal_rows_b} {p.b} sample(s) earlier than the latest {p.a} time {time_text(p.latest_a)}")
    if p.missing_group_a or p.missing_group_b:
        parts.append(f"samples without a group id (None/NaN), left out of the group comparison: {p.missing_group_a} "
                     f"{p.a}, {p.missing_group_b} {p.b}")
    if p.missing_time_a or p.missing_time_b:
        parts.append(f"samples without a time (NaT/NaN/None), left out of the time comparison: {p.missing_time_a} "
                     f"{p.a}, {p.missing_time_b} {p.b}")
    return "; ".join(parts)

