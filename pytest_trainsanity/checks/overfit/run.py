"""``no_epoch1_overfit``: prepare, run the passes, word the diagnosis.

Three passes through the adapter (as configured; the random-label probe;
lr/10), each over the user's own batches with the step budget; metrics and
the data measurements (duplication, overlap, single-feature rules, scale) on
each split's eval sample, read once.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from ...adapters.base import LabelNoise
from ...adapters.splits import common_widths, fields_rows
from ...report import CheckReport, cause_lines
from ...settings import CheckOptions, RunSettings
from ...spec import TrainSetup
from .. import duplicates, features
from ..labels import class_shares, per_position, sorting, target_ids
from ..normalization.measure import check_fields
from ..runner import Prepared, extra_causes, nonfinite_report, prepare_training, sample_lines
from . import measure as overfit

MARKER = "no_epoch1_overfit"


def prepare(setup: TrainSetup, options: CheckOptions, settings: RunSettings, hook: Any, nodeid: str | None) -> Prepared:
    setup.require(MARKER, "model", "val")
    return prepare_training(MARKER, setup, options, settings, hook, nodeid, run, ("train", "val"))


def run(p: Prepared) -> CheckReport:
    adapter, opts, seed = p.adapter, p.options, p.settings.seed
    assert adapter is not None
    samples = {name: p.splits[name].sample(p.settings.eval_samples, seed) for name in ("train", "val")}
    (train_fields, yt_raw), (val_fields, yv_raw) = samples["train"].numpy(), samples["val"].numpy()
    info = adapter.info()
    classification = p.setup.task == "classification"
    skipped = None if opts.probes else "probes=False"
    if opts.probes and classification and per_position(yt_raw, info.n_outputs):
        skipped = ("the random-label probe gives each sample another sample's labels, which a label per "
                   "position (tokens, pixels) of another length cannot take")
    noise = LabelNoise(yt_raw, seed) if opts.probes and skipped is None else None
    # the data measurements first: they need no training, and numpy's BLAS threads run them ~3x slower
    # while torch's worker threads still spin after a pass
    scale = check_fields({"train": train_fields, "val": val_fields}, numbers=adapter.number_fields())
    # a field with other than one row per sample (EmbeddingBag's flat tokens and offsets) cannot identify samples
    unaligned = sorted({k for fields, y in ((train_fields, yt_raw), (val_fields, yv_raw)) for k, v in fields.items()
                        if len(v) != len(y)})
    cross = within = leak = None
    if not unaligned:
        widths = common_widths(train_fields, val_fields) if _ragged(train_fields, val_fields) else None
        Xt, Xv = fields_rows(train_fields, widths), fields_rows(val_fields, widths)
        cross = duplicates.cross_split(Xt, Xv, yt_raw, yv_raw)
        within = duplicates.within_split(Xt)
    if not unaligned and classification and len(train_fields) == 1:  # one label per sample: the single-feature rules
        yt, yv = target_ids(yt_raw, info.n_outputs), target_ids(yv_raw, info.n_outputs)
        if len(yt) == len(Xt) and len(yv) == len(Xv):
            leak = features.single_feature_leak(Xt, yt, Xv, yv, seed)
            names = getattr(p.splits["train"], "column_names", ())
            if leak is not None and leak.column < len(names):  # a table: the column by its name
                leak = dataclasses.replace(leak, name=names[leak.column])
    with adapter:
        p.pass_label("main pass")
        main = adapter.train(epochs=opts.epochs, max_steps=p.settings.max_steps)
        broken = nonfinite_report(p, main, lambda: train_fields, info, samples)
        if broken is not None:
            return broken
        noisy = low = None
        if noise is not None:
            p.pass_label("random-label probe")
            noisy = adapter.train(epochs=opts.epochs, noise=noise, max_steps=p.settings.max_steps)
        if opts.probes:
            p.pass_label("lr/10 probe")
            low = adapter.train(epochs=opts.epochs, lr_scale=0.1, max_steps=p.settings.max_steps)
    chance = majority = noise_chance = val_clean = val_on_overlap = batch_mix = None
    n_classes = val_one_class = None
    if classification:
        n_classes = max(info.n_outputs, 2)
        yt, yv = target_ids(yt_raw, info.n_outputs), target_ids(yv_raw, info.n_outputs)
        chance = 1.0 / n_classes
        majority = float(np.mean(yv == np.bincount(yt).argmax()))
        if noise is not None:
            noise_ids = target_ids(noise.targets(train_fields), info.n_outputs)
            noise_chance = float(np.bincount(noise_ids).max() / max(len(noise_ids), 1))
        pred = np.asarray(main.val_pred)
        if pred.shape == yv.shape and cross is not None:
            correct = pred == yv
            overlap = np.zeros(len(yv), dtype=bool)
            overlap[cross.overlap_b] = True
            if overlap.any() and (~overlap).any():
                val_clean, val_on_overlap = float(correct[~overlap].mean()), float(correct[overlap].mean())
        present = np.unique(yv) if yv.ndim == 1 and len(yv) else None
        train_classes = len(np.unique(yt)) if yt.ndim == 1 else 0
        if present is not None and len(present) == 1 and train_classes > 1:
            val_one_class = (int(present[0]), train_classes, bool(samples["val"].sampled))
        counts = main.label_counts
        batch_mix = sorting(counts, class_shares(yt, n_classes)) if counts.size and counts.shape[1] == n_classes else None
    m = overfit.OverfitMeasurements(
        task=p.setup.task, epochs=opts.epochs, steps=main.steps, truncated=main.truncated,
        train=main.final_train, val=main.final_val, n_params=info.n_params,
        n_train=_count(p, "train", samples), n_val=_count(p, "val", samples),
        lr=float(main.lr[0, 0]) if main.lr.size else None, chance=chance, majority=majority,
        noise_chance=noise_chance, n_classes=n_classes,
        noise_train=noisy.final_train if noisy else None,
        low_lr_train=low.final_train if low else None, low_lr_val=low.final_val if low else None,
        val_clean=val_clean, val_on_overlap=val_on_overlap,
        within=within, cross=cross, leak=leak, scale=scale,
        probes_skipped=skipped,
        batch_mix=batch_mix, sampled=samples["train"].sampled or samples["val"].sampled,
        planned_steps=_planned(adapter, opts.epochs), val_one_class=val_one_class,
    )
    extra = extra_causes(p.hook, MARKER, m)
    result = overfit.diagnose(m, opts.max_gap, opts.max_train_acc, extra)
    if unaligned:
        result.notes.append(
            f"the batches' field(s) {', '.join(map(repr, unaligned))} hold other than one row per sample (e.g. "
            f"EmbeddingBag's flat tokens and offsets), so samples cannot be told apart by their inputs: train "
            f"duplication, train/val overlap and the single-feature rule were not measured")
    result.metrics["seconds"] = main.seconds + sum(t.seconds for t in (noisy, low) if t is not None)
    result.metrics["eval_train_samples"], result.metrics["eval_val_samples"] = samples["train"].n, samples["val"].n
    return CheckReport(
        MARKER, result.passed, message(p, m, result, info, samples), result.metrics,
        [c.to_dict() for c in result.likely], key=("train_metric", "val_metric", "gap"),
    )


def _planned(adapter: Any, epochs: int) -> int | None:
    per_epoch = getattr(adapter, "steps_per_epoch", lambda: None)()
    return per_epoch * epochs if per_epoch else None


def _ragged(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> bool:
    """Whether the two samples' fields differ in size (batches padded to their own length)."""
    return any(a[k].shape[1:] != b[k].shape[1:] for k in a if k in b)


def _count(p: Prepared, name: str, samples: dict[str, Any]) -> int:
    total = p.splits[name].n_samples()
    return int(total) if total is not None else samples[name].n


def message(p: Prepared, m: overfit.OverfitMeasurements, result: overfit.OverfitResult, info: Any,
            samples: dict[str, Any]) -> str:
    lines = [overfit.headline(m, result, p.options.max_gap)]
    train = p.splits["train"]
    batch = train.batch_size or getattr(train, "seen_batch", None) or p.setup.batch_size  # a batched tf.data: its own
    lines.append(
        f"Model: {info.model_name} ({info.framework} on {info.device}), {info.n_params:,} trainable "
        f"parameters; {m.n_train:,} train / {m.n_val:,} val samples; batch {batch}."
    )
    if info.notes:
        lines.append("Training: " + "; ".join(info.notes) + ".")
    lines += [f"Sample: {line}." for line in sample_lines(samples)]
    if m.chance is not None:
        lines.append(
            f"Baselines: chance {overfit.f3(m.chance)} ({m.n_classes} classes); always predicting the "
            f"majority train class scores {overfit.f3(m.majority)} on val."
        )
    if result.passed:
        lines.append("Measured:")
        lines += [f"  - {c.name}: {c.evidence}" for c in result.ruled_out]
    else:
        lines += cause_lines(result.likely, result.ruled_out)
    lines += [f"Note: {n}" for n in result.notes]
    return "\n".join(lines)
