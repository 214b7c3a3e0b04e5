"""``inputs_normalized``: stream every split once, judge every float input field.

Model-free: each split is read block by block (memory of one block), so
NaN/Inf anywhere is found; integer-id and mask fields are named and skipped.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from ...adapters.base import first_line
from ...errors import SetupError
from ...frameworks import framework_of
from ...report import CheckReport
from ...settings import CheckOptions, RunSettings
from ...spec import TrainSetup
from ..runner import Prepared, prepare_model_free
from .measure import STANDARDISED, NormalizationResult, StatsAccumulator, field_role, is_integer_ids, judge

MARKER = "inputs_normalized"


def prepare(setup: TrainSetup, options: CheckOptions, settings: RunSettings, hook: Any, nodeid: str | None) -> Prepared:
    return prepare_model_free(MARKER, setup, options, settings, hook, nodeid, run)


def run(p: Prepared) -> CheckReport:
    accs: dict[str | None, dict[str, StatsAccumulator]] = {}
    dtypes: dict[str, np.dtype] = {}
    tables: dict[str, Any] = {}
    # how the model first reads each field: a torch forward on a few samples, read before any split is streamed;
    # a Keras graph, by the field names of the first block
    uses, use_note = _torch_uses(p)
    for split_name, split in p.splits.items():
        several = None
        table = split.kind.startswith("table")
        if table:
            tables[split_name] = split
        for inputs, _ in (split.numeric_blocks() if table else split.blocks()):  # type: ignore[attr-defined]
            several = len(inputs) > 1 if several is None else several
            if uses is None:
                uses = _keras_uses(p, inputs)
            for field, X in inputs.items():
                dtypes.setdefault(field, X.dtype)
                use = uses.get(field)
                if use is not None and use.role == "normalised":
                    X = _through(use.layer, X, split.where)
                if (use is not None and use.role not in ("ids", "mixed", "standardised") or field_role(field, X.dtype) is None
                        or not several and not is_integer_ids(X)):
                    key = field if several else None
                    acc = accs.setdefault(key, {}).setdefault(split_name, StatsAccumulator(split_name, key))
                    try:
                        acc.add(X, split.numeric_dtype() if table else "")  # type: ignore[attr-defined]
                    except ValueError as exc:
                        raise SetupError(f"inputs_normalized cannot summarise {split.where}: {exc}.") from None
        if several is None and table:
            raise SetupError(f"inputs_normalized: {split.where} has no numeric column to judge (its columns: "
                             + ", ".join(f"{c!r} ({k})" for c, k in split.kinds.items()) + ").")  # type: ignore[attr-defined]
        if several is None:
            raise SetupError(f"{split.where} is empty (it yielded no samples).")
    names = {name: tuple(c for c, k in split.kinds.items() if k == "numeric") for name, split in tables.items()}
    reasons = {f: {"standardised": STANDARDISED, "mixed": "read as ids and as numbers"}[u.role]
               for f, u in (uses or {}).items() if u.role in ("standardised", "mixed")}
    result = judge({k: {s: dataclasses.replace(a.result(), names=names.get(s, ())) for s, a in v.items()}
                    for k, v in accs.items()}, dtypes, p.options.tol, reasons)
    text = message(result, p.options.tol, list(p.splits))
    text += "".join(_use_note(field, use, len(dtypes) > 1, dtypes[field]) for field, use in (uses or {}).items()
                    if field in dtypes and (use.role in ("numbers", "normalised")) != (field in result.skipped)) + use_note
    if tables:
        first_name, first = next(iter(tables.items()))
        skipped = {c: k for c, k in first.kinds.items() if k != "numeric"}
        text += "\nColumns: " + ", ".join(f"feature {i} = {c!r}" for i, c in enumerate(names[first_name])) + "."
        if skipped:
            text += ("\nSkipped (not numeric features to scale): " + ", ".join(f"{c!r} ({k})" for c, k in skipped.items())
                     + "; bools are 0/1 flags, categoricals, strings and datetimes are encoded by the pipeline.")
    return CheckReport(
        MARKER, result.passed, text, result.metrics(),
        [{"split": f.split, "field": f.field, "kind": f.kind, "text": f.text, "fix": f.fix} for f in result.findings],
        key=("integer_ids", "skipped_fields") if result.integer_ids else ("train_max_abs_mean", "train_max_std", "train_nan"),
    )


def _torch_uses(p: Prepared) -> tuple[dict[str, Any] | None, str]:
    """(a torch model's first use of each integer field, a note) from one forward on a few samples of
    the first split (``adapters.torch_uses``), read before the splits are streamed; (None, "") for a
    Keras model (its graph is read per field name) and ({}, "") when there is nothing to decide."""
    model = getattr(p.setup, "model", None)
    framework = framework_of(model) if model is not None else None
    if framework == "tensorflow":
        return None, ""
    split = next(iter(p.splits.values()), None)
    if framework != "torch" or split is None or split.one_shot or not hasattr(model, "named_modules"):
        return {}, ""
    from ...adapters.torch_uses import PROBE_SAMPLES, forward_uses

    fields = split.sample(PROBE_SAMPLES, p.settings.seed).numpy()[0]
    if not any(field_role(f, X.dtype) == "integer ids" for f, X in fields.items()):
        return {}, ""
    return forward_uses(model, split, p.settings.seed)


def _keras_uses(p: Prepared, inputs: dict[str, np.ndarray]) -> dict[str, Any]:
    """A Keras model's first use of each field, read from its graph (``adapters.keras_graph``)."""
    from ...adapters.keras_graph import first_uses

    return first_uses(p.setup.model, tuple(inputs))


def _through(layer: Any, X: np.ndarray, where: str) -> np.ndarray:
    """``X`` as the model's own normalising layer hands it on (inference, no state written)."""
    try:
        return np.asarray(layer(X, training=False))
    except Exception as exc:  # noqa: BLE001 - one paragraph, not a framework traceback
        raise SetupError(f"inputs_normalized could not pass {where}'s inputs through the model's first layer "
                         f"{layer.name} ({type(layer).__name__}): {type(exc).__name__}: {first_line(exc)}.") from None


def _use_note(field: str, use: Any, several: bool, dtype: np.dtype) -> str:
    what = f"field {field!r}" if several else "the inputs"
    if use.role == "normalised":
        fix = ("adapt it on train: layer.adapt(X_train)" if type(use.layer).__name__ == "Normalization"
               else "its scale and offset")
        return (f"\nNote: {what} judged as the model receives them, after its own {use.label} layer, which reads "
                f"them first: a failure is fixed in that layer ({fix}), not by a second normalisation in the pipeline.")
    if use.role == "standardised":
        return (f"\nNote: {what} ({dtype}) are standardised by the model's forward itself ({use.label}, right after "
                f"the cast to float), so they were not judged here: their raw scale is what that step expects, and a "
                f"second standardisation in the pipeline would be wrong. Check that step's mean and std come from train.")
    if use.role == "mixed":
        return (f"\nNote: {what} ({dtype}) read both as indices and as numbers by the forward ({use.label}), so "
                f"its id columns cannot be told from its number columns: it was skipped as ids. Give the numeric "
                f"columns as a field of their own (a dict batch, or (x_ids, x_num, y)) to have them judged.")
    if use.role == "ids":
        return (f"\nNote: {what} ({dtype}) skipped as ids: {use.label} reads them as indices (an embedding "
                f"or a lookup), not as numbers.") if np.dtype(dtype).kind in "iu" else ""
    if np.dtype(dtype).kind in "iu":
        return (f"\nNote: {what} ({dtype}) judged as features: {use.label} reads them as numbers, not an embedding "
                f"as integer ids would be.")
    return ""


def message(result: NormalizationResult, tol: float, order: list[str]) -> str:
    if result.integer_ids:
        lines = [f"inputs_normalized passed: {result.notes[0]}"]
    elif result.passed:
        lines = [f"inputs_normalized passed: every split is on train's scale (tol {tol:g})."]
    else:
        worst = sorted({f.split for f in result.findings}, key=order.index)
        lines = [f"inputs_normalized FAILED for {', '.join(worst)}: {result.findings[0].text}."]
        lines += [f"  - {f.text}" for f in result.findings[1:]]
        lines.append("Fix:")
        fixes: dict[str, list[str]] = {}  # one line per fix, naming every split it applies to
        for f in result.findings:
            fixes.setdefault(f.fix, []).append(f.where)
        lines += [f"  - {', '.join(where)}: {fix}" for fix, where in fixes.items()]
    for s in result.stats.values():
        v = s.varying
        lines.append(
            f"{s.label}: {s.n} samples, {len(s.mean)} {s.axis_label}(s), dtype {s.dtype}, range {s.range_text()}, "
            f"per-{s.axis_label} mean in [{_g(s.mean[v].min() if v.any() else 0)}, {_g(s.mean[v].max() if v.any() else 0)}], "
            f"std in [{_g(s.std[v].min() if v.any() else 0)}, {_g(s.std.max() if len(s.std) else 0)}], "
            f"{int((~v).sum())} constant"
        )
    if not result.integer_ids:
        lines += [f"Note: {n}." for n in result.notes]
    return "\n".join(lines)


def _g(x: float) -> str:
    return f"{float(x):.3g}"
