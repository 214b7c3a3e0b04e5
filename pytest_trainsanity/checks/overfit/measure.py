"""``no_epoch1_overfit``: turn one run's measurements into a verdict and ranked causes.

Pure: numbers in, ``OverfitResult`` out. Every cause is scored from a
measurement made in the same run; counterfactual probes (shuffled labels,
lr/10) give direct scores, statistics alone are capped at ``STAT_SCORE_CAP``
so a measured effect outranks a suspicion.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..causes import Cause, rank
from ..duplicates import CrossSplit, WithinSplit
from ..features import FeatureLeak
from ..labels import Sorting
from ..matching import near_words
from ..normalization.measure import NormalizationResult

OVERLAP_TOL = 0.01  # more than 1% of val also in train inflates val accuracy: fail
STAT_SCORE_CAP = 0.4
DUP_MIN_FRACTION = 0.05
CHANCE_MARGIN = 0.05  # val within this of chance learned nothing that generalises
FEATURE_LEAK_FAIL = 0.5  # one column predicts train (held-out lift) this much better than val (upper bound): fail
SORTED_BATCHES = 0.5  # batches this sorted (0: as a shuffled loader, 1: one class per batch) are class-sorted

GAP_FAILED = "gap {gap} > max_gap {max_gap}"
TRAIN_FAILED = "train {metric} {train} > max_train_acc {limit}"
OVERLAP_FAILED = "{n} of {n_val} val samples ({frac}) also occur in train"
FEATURE_FAILED = ("column {column} alone predicts the train label (accuracy {train}, baseline {base}) "
                  "but not the val label ({val}): a leaked feature")
FEATURE_NOT_JUDGED = ("no column judged: {n} train rows; a verdict needs >= {needed} ({tried} columns tried, "
                      "99% confidence)")
HIGH_BUT_FINE = "high accuracy after one epoch is not by itself a problem"

CAUSE_DUPLICATION = "train duplication"
CAUSE_OVERLAP = "train/val overlap"
CAUSE_FEATURE = "single-feature leak"
CAUSE_MEMORISATION = "memorisation (model capacity)"
CAUSE_LR = "learning rate"
CAUSE_SCALE = "input scale"


@dataclass(frozen=True)
class OverfitMeasurements:
    task: str
    epochs: int
    steps: int
    truncated: bool
    train: float
    val: float
    n_params: int
    n_train: int
    n_val: int
    lr: float | None = None
    chance: float | None = None
    majority: float | None = None
    n_classes: int | None = None
    noise_train: float | None = None  # random-label probe: train metric on the shuffled labels
    noise_chance: float | None = None  # majority-class share of the shuffled labels
    low_lr_train: float | None = None
    low_lr_val: float | None = None
    val_clean: float | None = None  # val metric on the rows not found in train
    val_on_overlap: float | None = None
    within: WithinSplit | None = None
    cross: CrossSplit | None = None
    leak: FeatureLeak | None = None
    scale: NormalizationResult | None = None
    probes_skipped: str | None = None
    batch_mix: Sorting | None = None  # how sorted by class the training batches are
    sampled: bool = False  # the metrics and data measurements come from an eval sample, not the whole splits
    planned_steps: int | None = None  # steps of the epochs asked for, when known (a capped pass ran fewer)
    # (the one class id every measured val sample holds, how many classes train holds, whether val was sampled)
    val_one_class: tuple[int, int, bool] | None = None

    @property
    def metric_name(self) -> str:
        return "accuracy" if self.task == "classification" else "R^2"

    @property
    def gap(self) -> float:
        return self.train - self.val


@dataclass
class OverfitResult:
    passed: bool
    failures: list[str]
    likely: list[Cause]
    ruled_out: list[Cause]
    notes: list[str] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)


def f3(x: float | None) -> str:
    return "n/a" if x is None or not np.isfinite(x) else f"{x:.3f}"


def pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def measure_causes(m: OverfitMeasurements) -> list[Cause]:
    """Every cause this check knows, each scored from this run's measurements."""
    causes = [
        _duplication(m), _overlap(m), _feature(m), _memorisation(m), _learning_rate(m), _scale(m),
    ]
    return [c for c in causes if c is not None]


def _duplication(m: OverfitMeasurements) -> Cause | None:
    w = m.within
    if w is None:
        return None
    frac = w.duplicate_fraction
    evidence = f"{w.n_unique} unique inputs among {w.n} train samples ({pct(frac)} are repeats)"
    if frac >= DUP_MIN_FRACTION:
        evidence += (f"; each input is seen {w.mean_copies:.1f}x per epoch, so one epoch is "
                     f"{w.mean_copies:.1f} passes over the same samples and train accuracy measures "
                     f"recall of seen inputs")
    return Cause(
        CAUSE_DUPLICATION,
        frac if frac >= DUP_MIN_FRACTION else 0.0,
        evidence,
        "de-duplicate train (np.unique(X_train, axis=0, return_index=True)); if the repeats are "
        "deliberate oversampling, judge generalisation on val only and count epochs in unique samples",
        {"train_duplicate_fraction": frac, "train_unique": w.n_unique},
    )


def _overlap(m: OverfitMeasurements) -> Cause | None:
    c = m.cross
    if c is None:
        return None
    frac = c.fraction
    n_exact, n_near = len(c.exact_b), len(c.near_b)
    examples = (c.exact_pairs + c.near_pairs)[:3]
    inflation = ""
    if m.val_clean is not None and m.val_on_overlap is not None:
        inflation = (
            f"; val {m.metric_name} is {f3(m.val_on_overlap)} on the overlapping samples vs "
            f"{f3(m.val_clean)} on the rest, so the reported val {f3(m.val)} is inflated by "
            f"{f3(m.val - m.val_clean)}"
        )
    sampled = f" (near search on {pct(c.near_sampled)} of val)" if c.near_sampled < 1 else ""
    if m.sampled:
        sampled += " (between the eval samples)"
    left_out = []  # near or equal rows that chance gives at this density, named and not counted
    if n_exact and not c.exact_counted:
        e = c.exact_chance
        left_out.append(
            f"{n_exact} val samples equal a train sample, but every feature takes at most {c.few_values} values and "
            f"{e.hits} of {e.sampled} train samples equal another train sample, so about {e.rows:,.0f} val samples would "
            f"equal one of the {c.n_a:,} by chance, in about {e.pairs:,.0f} equal pairs; found {c.exact_pair_count:,}")
        n_exact = 0
    if n_near and not c.near_counted:
        left_out.append(f"{n_near} val samples have a near train sample ({near_words(c.near_threshold)}), but chance "
                        f"neighbours give as many at this density ({c.chance.words('train', 'val', 'train', c.n_a, c.near_pair_count)})")
        n_near = 0
    if n_exact + n_near == 0:
        none = "no val sample counts as a copy of a train sample" if left_out else "no val sample occurs in train"
        evidence = f"{none} (exact, or near: {near_words(c.near_threshold)}){sampled}"
    else:
        evidence = (f"{n_exact + n_near} of {c.n_b} val samples ({pct(frac)}) also occur in train: "
                    f"{n_exact} exact, {n_near} near ({near_words(c.near_threshold)}){sampled}, "
                    f"{c.label_conflicts} with a different label; examples (train, val): {examples}{inflation}")
    if left_out:
        evidence += "; not counted: " + "; ".join(left_out)
    return Cause(
        CAUSE_OVERLAP,
        min(1.0, 0.5 + frac) if frac > OVERLAP_TOL else frac,
        evidence,
        "remove from val every sample that also occurs in train, and split by unique input "
        "(or by group: patient, user, session) before any augmentation or oversampling",
        {"val_overlap": frac, "val_overlap_exact": n_exact, "val_overlap_near": n_near,
         "label_conflicts": c.label_conflicts},
    )


def _feature(m: OverfitMeasurements) -> Cause | None:
    """A column that predicts the train label (held-out, with a confidence bound corrected for the
    columns tried) and not val's: see ``checks/features.py``."""
    leak = m.leak
    if leak is None:
        return None
    if not leak.judged:
        evidence = FEATURE_NOT_JUDGED.format(n=leak.n, needed=leak.needed, tried=leak.tried)
    elif leak.supported:
        bound = "" if leak.lift_bound is None else (
            f"; lift {leak.train_lift:.2f}, >= {leak.lift_bound:.2f} with 99% confidence over {leak.tried} columns")
        evidence = (f"column {leak.label} alone predicts the train label with held-out accuracy {f3(leak.train_acc)} "
                    f"(majority baseline {f3(leak.baseline)}{bound}) but the same rule gets {f3(leak.val_acc)} on val")
    else:
        evidence = (f"no single column predicts the train label: the best, column {leak.label}, scores held-out "
                    f"accuracy {f3(leak.train_acc)} on train (majority baseline {f3(leak.baseline)}) and "
                    f"{f3(leak.val_acc)} on val")
    return Cause(
        CAUSE_FEATURE,
        leak.score,
        evidence,
        f"drop column {leak.label} ({f'df.drop(columns=[{leak.name!r}])' if leak.name else f'X[:, {leak.column}]'}) or "
        f"rebuild it without the label; check how "
        f"it is computed for train vs val (target encoding fitted on train rows leaks the label)",
        {"leak_column": leak.column, "leak_train_acc": leak.train_acc, "leak_val_acc": leak.val_acc,
         "leak_lift_bound": leak.lift_bound, "leak_judged": leak.judged},
    )


def _memorisation(m: OverfitMeasurements) -> Cause | None:
    per_sample = m.n_params / max(m.n_train, 1)
    size = f"{m.n_params:,} trainable parameters for {m.n_train} train samples ({per_sample:.1f} per sample)"
    metrics: dict[str, Any] = {"n_params": m.n_params, "params_per_sample": per_sample}
    if m.noise_train is None:
        return Cause(CAUSE_MEMORISATION, 0.0, f"{size}; random-label probe not run ({m.probes_skipped})",
                     "run with probes=True to measure memorisation", metrics)
    if m.task == "classification":
        chance = m.noise_chance if m.noise_chance is not None else 0.0
        fit = float(np.clip((m.noise_train - chance) / max(1 - chance, 1e-12), 0, 1))
        probe = (f"with the labels shuffled (same init, same {m.steps} steps) it reached train accuracy "
                 f"{f3(m.noise_train)} vs {f3(chance)} chance: it fits {pct(fit)} of the way from chance "
                 f"to perfect on pure noise")
    else:
        fit = float(np.clip(m.noise_train, 0, 1))
        probe = (f"with the targets shuffled (same init, same {m.steps} steps) it reached train R^2 "
                 f"{f3(m.noise_train)} on pure noise")
    metrics.update(noise_train=m.noise_train, noise_fit=fit)
    return Cause(
        CAUSE_MEMORISATION, fit, f"{size}; {probe}",
        "shrink the model (fewer or narrower layers), regularise (weight_decay=1e-4, dropout 0.2-0.5), "
        "augment or add data",
        metrics,
    )


def _learning_rate(m: OverfitMeasurements) -> Cause | None:
    if m.low_lr_train is None or m.low_lr_val is None:
        return None
    low_gap = m.low_lr_train - m.low_lr_val
    lr_text = f"lr={m.lr:g}" if m.lr is not None else "the configured lr"
    low_text = f"lr={m.lr / 10:g}" if m.lr is not None else "lr/10"
    evidence = (f"the same pass at {low_text} gives gap {f3(low_gap)} (train {f3(m.low_lr_train)}, val "
                f"{f3(m.low_lr_val)}) vs gap {f3(m.gap)} at {lr_text}")
    score = 0.0
    if m.gap > 0.02:
        shrink = float(np.clip((m.gap - low_gap) / m.gap, 0, 1))
        floor = m.chance if m.chance is not None else 0.0
        if m.val - floor < CHANCE_MARGIN:
            score = 0.0
            evidence += "; val is at chance either way, so the lower rate only fits train more slowly"
        else:
            # credit falls to 0 when lr/10 loses half of val's lead over chance: slower, not better
            kept = float(np.clip(1 - (m.val - m.low_lr_val) / (0.5 * (m.val - floor)), 0, 1))
            score = shrink * kept
            if shrink > 0.5 and kept < 0.5:
                evidence += "; the gap shrinks only because the slower run learns less (val drops too)"
    return Cause(
        CAUSE_LR, score, evidence,
        f"lower the learning rate to {low_text} (or add warm-up); the gap shrank at the lower rate",
        {"low_lr_gap": low_gap, "low_lr_val": m.low_lr_val, "low_lr_train": m.low_lr_train},
    )


def _scale(m: OverfitMeasurements) -> Cause | None:
    if m.scale is None or m.scale.integer_ids:
        return None
    raw = [f for f in m.scale.findings if f.kind in ("raw_scale", "tiny_scale", "split_shift", "nonfinite")]
    if raw:
        return Cause(CAUSE_SCALE, STAT_SCORE_CAP * (1.0 if raw[0].split == "train" else 0.75),
                     "; ".join(f.text for f in raw), raw[0].fix)
    parts = [f"{'' if s.field is None else f'{s.field!r}: '}per-{s.axis_label} |mean| <= "
             f"{float(np.abs(s.mean[s.varying]).max()):.3g}, std <= {float(s.std.max()):.3g}"
             for s in m.scale.stats.values() if s.name == "train" and s.varying.any()]
    text = "train inputs are on a unit scale" + (f" ({'; '.join(parts)})" if parts else "")
    if m.scale.skipped:
        text += "; not scaled, as ids or masks: " + ", ".join(m.scale.skipped)
    return Cause(CAUSE_SCALE, 0.0, text, "none needed")


def unmeasured(m: OverfitMeasurements) -> str:
    """The failure of a gap that cannot be measured: which metric is undefined, and why."""
    which = [name for name, v in (("train", m.train), ("val", m.val)) if not math.isfinite(v)]
    why = ("the targets do not vary, and R^2 measures the error against their variance; give a split whose targets "
           "vary" if m.task != "classification" else
           "no sample carries a label: every target is the ignore index -100; give labelled samples")
    return (f"the gap cannot be measured: {' and '.join(which)} {m.metric_name} {'are' if len(which) > 1 else 'is'} "
            f"undefined ({why})")


def diagnose(
    m: OverfitMeasurements, max_gap: float, max_train_acc: float | None, extra: list[Cause] | None = None
) -> OverfitResult:
    failures: list[str] = []
    if m.gap > max_gap:
        failures.append(GAP_FAILED.format(gap=f3(m.gap), max_gap=f3(max_gap)))
    elif not math.isfinite(m.gap):  # a NaN gap compares False with max_gap: it must not pass
        failures.append(unmeasured(m))
    if max_train_acc is not None and m.train > max_train_acc:
        failures.append(TRAIN_FAILED.format(metric=m.metric_name, train=f3(m.train), limit=f3(max_train_acc)))
    if m.cross is not None and m.cross.fraction > OVERLAP_TOL:
        n = len(m.cross.overlap_b)
        failures.append(
            OVERLAP_FAILED.format(n=n, n_val=m.cross.n_b, frac=pct(m.cross.fraction))
            + f" (limit {pct(OVERLAP_TOL)}): val {m.metric_name} can be inflated by up to "
            f"{100 * m.cross.fraction:.0f} points"
        )
    if m.leak is not None and m.leak.score >= FEATURE_LEAK_FAIL:
        failures.append(FEATURE_FAILED.format(
            column=m.leak.label, train=f3(m.leak.train_acc), val=f3(m.leak.val_acc), base=f3(m.leak.baseline)))
    likely, ruled_out = rank(measure_causes(m) + list(extra or []))
    notes = []
    if m.task == "classification" and m.low_lr_train is not None and m.low_lr_train > m.train + 0.1:
        notes.append(
            f"at lr/10 train accuracy is higher ({f3(m.low_lr_train)} vs {f3(m.train)}): the learning "
            f"rate is too high to learn well at all; that is under-fitting, not over-fitting"
        )
    if not failures and m.task == "classification" and m.train >= 0.95:
        notes.append(f"{HIGH_BUT_FINE}: train and val agree and val does not overlap train")
    if m.task == "classification" and m.chance is not None and m.val - m.chance < CHANCE_MARGIN:
        notes.append(f"val accuracy {f3(m.val)} is within {CHANCE_MARGIN:g} of chance {f3(m.chance)}: this pass learned "
                     f"nothing that generalises" + (", so the absence of a gap says little" if m.gap <= max_gap else ""))
    if m.batch_mix is not None and m.batch_mix.score >= SORTED_BATCHES:
        notes.append(
            f"the training batches are sorted by class: their label mix scores {m.batch_mix.words()}, so the model "
            f"chases the class it saw last and both accuracies understate the data; shuffle the training loader "
            f"(DataLoader(..., shuffle=True)) or use a sampler that mixes classes"
        )
    if m.truncated:
        notes.append(f"the pass stopped at the step budget after {m.steps} steps (--trainsanity-max-steps)")
    if m.val_one_class is not None:
        only, train_classes, val_sampled = m.val_one_class
        notes.append(
            f"every one of the {'sampled' if val_sampled else m.n_val} val samples holds class {only}, "
            f"while train holds {train_classes} classes: val accuracy is that one class's "
            f"recall, so the gap compares it with train accuracy over every class and says little about "
            f"over-fitting; split with stratification (train_test_split(..., stratify=y), StratifiedKFold) so val "
            f"holds every class")
    if m.probes_skipped:
        notes.append(f"probes not run: {m.probes_skipped}")
    metrics: dict[str, Any] = {
        "train_metric": m.train, "val_metric": m.val, "gap": m.gap, "max_gap": max_gap,
        "epochs": m.epochs, "steps": m.steps, "n_train": m.n_train, "n_val": m.n_val,
        "chance": m.chance, "majority": m.majority,
    }
    if m.batch_mix is not None:
        metrics["batch_label_tv"], metrics["batch_sorting"] = m.batch_mix.tv, m.batch_mix.score
    for cause in likely + ruled_out:
        metrics.update(cause.metrics)
    return OverfitResult(not failures, failures, likely if failures else [], ruled_out if failures else likely + ruled_out,
                         notes, metrics)


def headline(m: OverfitMeasurements, result: OverfitResult, max_gap: float) -> str:
    span = f"after {m.epochs} epoch{'s' if m.epochs > 1 else ''} ({m.steps:,} steps)"
    if m.truncated:
        of = f" of {m.planned_steps:,}" if m.planned_steps else ""
        span = f"after {m.steps:,}{of} steps of {m.epochs} epoch{'s' if m.epochs > 1 else ''} (capped by --trainsanity-max-steps)"
    base = f"train {m.metric_name} {f3(m.train)} vs val {f3(m.val)}"
    if result.passed:
        overlap = "no train/val overlap" if m.cross is not None else "train/val overlap not measured"
        return f"no_epoch1_overfit passed: {span} {base}: gap {f3(m.gap)} <= max_gap {f3(max_gap)}, {overlap}."
    return f"no_epoch1_overfit FAILED: {span} {base}: " + "; ".join(result.failures) + "."
