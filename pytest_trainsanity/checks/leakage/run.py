"""``no_leakage``: stream the splits through the matcher, word the counts.

Model-free and streaming: the first split (train) is read block by block,
the others are held as references. A sample is identified by all its input
fields (every array of a batch except the target).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ...adapters.splits import Split, common_widths, fields_rows
from ...errors import SetupError, UsageError
from ...report import CheckReport
from ...settings import CheckOptions, RunSettings
from ...spec import TrainSetup
from ..runner import Prepared, prepare_model_free
from ..matching import WidthMismatch
from . import measure as leakage

MARKER = "no_leakage"


def prepare(setup: TrainSetup, options: CheckOptions, settings: RunSettings, hook: Any, nodeid: str | None) -> Prepared:
    return prepare_model_free(MARKER, setup, options, settings, hook, nodeid, run)


def _inputs(p: Prepared, widths: dict[str, int] | None = None) -> list[leakage.SplitInput]:
    inputs = []
    for name, split in p.splits.items():
        arrays = _arrays(split)
        inputs.append(leakage.SplitInput(name, lambda s=split: ((fields_rows(f, widths), y) for f, y in s.blocks()), arrays,
                                         rereadable=not split.one_shot))
        n = split.n_samples()
        for what in ("groups", "timestamps"):
            given = getattr(p.setup, what) or {}
            if name in given and n is not None and len(given[name]) != n:
                raise SetupError(
                    f"TrainSetup({what}={{{name!r}: ...}}) has {len(given[name])} entries but the {name} "
                    f"split has {n} samples; give one {what[:-1]} per sample."
                )
    return inputs


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

    def find(widths: dict[str, int] | None) -> leakage.LeakageResult:
        return leakage.find_leakage(
            _inputs(p, widths), near=opts.near_duplicates, threshold=opts.threshold,
            groups=p.setup.groups, timestamps=p.setup.timestamps,
            classification=p.setup.task == "classification", max_overlap=opts.max_overlap,
            within_split=opts.within_split, seed=p.settings.seed,
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
    metrics: dict[str, Any] = {"near_threshold": result.threshold}
    for pair in result.pairs:
        key = f"{pair.a}_{pair.b}"
        metrics.update({
            f"{key}_exact": len(pair.exact_b), f"{key}_near": len(pair.near_b), f"{key}_copies": pair.copies,
            f"{key}_copy_fraction": pair.copies / pair.n_b if pair.n_b else 0.0,
            f"{key}_label_conflicts": pair.conflicts, f"{key}_group_rows": pair.group_rows_b,
            f"{key}_temporal_rows": pair.temporal_rows_b,
        })
    for name, w in result.within.items():
        metrics[f"{name}_repeated_rows"] = w.repeats
    metrics["target_columns"] = len(result.targets)
    worst = max(result.pairs, key=lambda q: q.copies / max(q.n_b, 1), default=None)
    metrics["max_copy_fraction"] = worst.copies / worst.n_b if worst and worst.n_b else 0.0
    return CheckReport(
        MARKER, result.passed, leakage_message(result, opts.max_overlap, opts.within_split, _fields_note(p)), metrics,
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
                    fields: str | None = None) -> str:
    limit = f"max_overlap {max_overlap}" + (" (a fraction of each pair's second split)" if isinstance(max_overlap, float) else " (a count)")
    near = f"near copies within relative L2 {r.threshold:g}" if r.threshold is not None else "near copies not searched (near_duplicates=False)"
    if r.passed:
        lines = [f"no_leakage passed: no split pair exceeds {limit}; exact copies, {near}, groups and time checked."]
    else:
        lines = [f"no_leakage FAILED: {r.failures[0]}."] + [f"  also: {f}" for f in r.failures[1:]]
        lines.append(f"Limit: {limit}; {near} (relative L2 = ||a - b|| / max(||a||, ||b||)).")
    for pair in r.pairs:
        lines.append(f"{pair.a}/{pair.b}: " + _pair_text(pair))
    lines.append("Within splits" + ("" if within_split else " (reported, not a failure; within_split=True fails on them)") + ": " + "; ".join(
        f"{name} {w.repeats} repeated row(s) of {w.n}{'' if w.verified else ' (by 64-bit hash: a one-shot stream cannot be re-read to verify)'}"
        for name, w in r.within.items()))
    if fields:
        lines.append(f"Samples: {fields}.")
    for t in r.targets:
        lines.append(
            f"Target leakage: column {t.column} alone predicts the train label with accuracy {t.train_acc:.3f} "
            f"(majority baseline {t.baseline:.3f}); fix: drop or rebuild column {t.column}, it encodes the label."
        )
    if not r.passed:
        lines.append(
            "Fix: remove from val/test every sample that also occurs in train (np.unique over the concatenated "
            "splits), split by group (patient, user, session) with sklearn GroupShuffleSplit, and split time "
            "series by time (every val/test sample after the last train sample)."
        )
    return "\n".join(lines)


def _pair_text(p: leakage.PairLeak) -> str:
    frac = p.copies / p.n_b if p.n_b else 0.0
    parts = [f"{len(p.exact_b)} exact and {len(p.near_b)} near copies of {p.n_b} {p.b} samples ({100 * frac:.1f}%)"]
    if p.exact_pairs:
        parts.append(f"exact examples ({p.a}, {p.b}): {p.exact_pairs}")
    if p.near_pairs:
        parts.append("near examples: " + ", ".join(f"({x}, {z}) at {d:.2g}" for x, z, d in p.near_pairs))
    if p.copies:
        parts.append(f"{p.b} accuracy can be inflated by up to {100 * frac:.0f} points: these samples were trained on")
    parts.append(f"{p.conflicts} label conflict(s)" + (f" e.g. {p.conflict_pairs}" if p.conflicts else ""))
    if p.shared_groups or p.group_rows_b:
        parts.append(f"{p.shared_groups} shared group id(s) covering {p.group_rows_b} {p.b} samples, e.g. {p.group_examples}")
    if p.latest_a is not None:
        parts.append(f"{p.temporal_rows_b} {p.b} sample(s) earlier than the latest {p.a} time {p.latest_a}")
    return "; ".join(parts)

