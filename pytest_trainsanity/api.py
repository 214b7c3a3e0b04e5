"""The checks as plain functions: setup in, ``CheckReport`` out.

Used by the markers, the ``trainsanity`` fixture and directly from scripts
(``from pytest_trainsanity import check_epoch1_overfit``). Each check is
prepared first (data read, model built and validated: misuse surfaces
here) and run second (training and measuring), so pytest can report
misuse as a setup error and a bad measurement as a test failure.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from .adapters.base import Adapter
from .checks import duplicates, features, leakage, normalization, overfit, spikes
from .checks.causes import Cause
from .data import SplitData, class_ids, iter_split, load_split, load_splits
from .frameworks import framework_of
from .errors import SetupError, TrainSanityError, UsageError
from .report import CheckReport, cause_lines
from .rng import seeded
from .settings import CHECKS, CheckOptions, RunSettings, build_run_settings
from .spec import TrainSetup


@dataclass
class Prepared:
    """A validated check, ready to run."""

    options: CheckOptions
    settings: RunSettings
    hook: Any
    nodeid: str | None
    runner: Callable[["Prepared"], CheckReport]
    setup: TrainSetup
    data: dict[str, SplitData]
    adapter: Adapter | None = None

    def run(self) -> CheckReport:
        report = self.runner(self)
        report.nodeid = self.nodeid
        self.hook.pytest_trainsanity_check_finished(report=report, nodeid=self.nodeid)
        return report


def _hook(hook: Any) -> Any:
    if hook is not None:
        return hook
    from .hooks import standalone_hook

    return standalone_hook()


def prepare(
    marker: str,
    setup: Any,
    options: CheckOptions,
    settings: RunSettings,
    hook: Any = None,
    nodeid: str | None = None,
) -> Prepared:
    if not isinstance(setup, TrainSetup):
        raise SetupError(
            f"{marker} needs a TrainSetup, but the setup fixture {options.setup!r} returned "
            f"{type(setup).__name__}. Return pytest_trainsanity.TrainSetup(model=..., train=..., val=..., ...)."
        )
    settings = settings.override(f"marker {marker}", **options.run_overrides) if options.run_overrides else settings
    hook = _hook(hook)
    if marker == "inputs_normalized":
        return Prepared(options, settings, hook, nodeid, _run_normalization, setup, load_splits(setup))
    if marker == "no_epoch1_overfit":
        setup.require(marker, "model", "val", *_training_fields(setup))
        data = load_splits(setup, ("train", "val"))
        return Prepared(options, settings, hook, nodeid, _run_overfit, setup, data, make_adapter(setup, data, settings, hook))
    if marker == "no_leakage":
        return Prepared(options, settings, hook, nodeid, _run_leakage, setup, {}, None)
    if marker == "lr_spike_explained":
        setup.require(marker, "model", *_training_fields(setup))
        names = ("train", "val") if options.metric.startswith("val") else ("train",)
        if options.metric.startswith("val"):
            setup.require(f"{marker}(metric={options.metric!r})", "val")
        data = load_splits(setup, names)
        return Prepared(options, settings, hook, nodeid, _run_spikes, setup, data, make_adapter(setup, data, settings, hook))
    raise UsageError(f"{marker} is not a pytest-trainsanity check.")


def _training_fields(setup: TrainSetup) -> tuple[str, ...]:
    """What a training check needs besides the model: optimizer and loss for torch and for an
    uncompiled Keras model; a compiled Keras model carries its own, and a third-party adapter
    (another framework) decides for itself."""
    model, framework = setup.model, framework_of(setup.model)
    if framework == "torch" or framework == "tensorflow" and not (
            getattr(model, "optimizer", None) is not None and getattr(model, "loss", None)):
        return ("optimizer", "loss")
    return ()


def make_adapter(setup: TrainSetup, data: dict[str, SplitData], settings: RunSettings, hook: Any) -> Adapter:
    """Ask the hook for an adapter; a zero-arg factory is called (seeded) when nothing claims the object."""
    model = setup.model
    adapter = hook.pytest_trainsanity_make_adapter(model=model, setup=setup, data=data, settings=settings)
    if adapter is None and callable(model) and framework_of(model) is None:
        with seeded(settings.seed):
            try:
                model = model()
            except TypeError as exc:
                raise SetupError(f"TrainSetup(model=...) is callable but not a zero-argument factory: {exc}") from None
        adapter = hook.pytest_trainsanity_make_adapter(model=model, setup=setup, data=data, settings=settings)
    if adapter is None:
        raise SetupError(
            f"TrainSetup(model=...) is a {type(model).__module__}.{type(model).__name__}, which no adapter "
            f"supports. Supported: a torch.nn.Module, a keras.Model, or a zero-argument factory returning one; "
            f"other frameworks can add an adapter through the "
            f"pytest_trainsanity_make_adapter hook."
        )
    return adapter


# ---------------------------------------------------------------- no_epoch1_overfit


def _run_overfit(p: Prepared) -> CheckReport:
    adapter, opts, seed = p.adapter, p.options, p.settings.seed
    assert adapter is not None
    train, val = p.data["train"], p.data["val"]
    info = adapter.info()
    classification = p.setup.task == "classification"
    probes_skipped = None if opts.probes else "probes=False"
    noise_labels = duplicates.shuffle_labels_by_input(train.X, train.y, seed) if opts.probes else None
    with adapter:
        main = adapter.train(epochs=opts.epochs, max_steps=p.settings.max_steps)
        noise = low = None
        if opts.probes:
            noise = adapter.train(epochs=opts.epochs, train_labels=noise_labels, max_steps=p.settings.max_steps)
            low = adapter.train(epochs=opts.epochs, lr_scale=0.1, max_steps=p.settings.max_steps)
    cross = duplicates.cross_split(train.X, val.X, train.y, val.y)
    chance = majority = noise_chance = val_clean = val_on_overlap = None
    n_classes = None
    leak = None
    if classification:
        yt, yv = class_ids(train.y), class_ids(val.y)
        n_classes = max(info.n_outputs, 2)
        chance = 1.0 / n_classes
        majority = float(np.mean(yv == np.bincount(yt).argmax()))
        noise_chance = float(np.bincount(class_ids(noise_labels)).max() / len(yt)) if noise_labels is not None else None
        correct = main.val_pred.reshape(-1) == yv
        overlap = np.zeros(len(yv), dtype=bool)
        overlap[cross.overlap_b] = True
        if overlap.any() and (~overlap).any():
            val_clean, val_on_overlap = float(correct[~overlap].mean()), float(correct[overlap].mean())
        leak = features.single_feature_leak(train.X, yt, val.X, yv, seed)
    m = overfit.OverfitMeasurements(
        task=p.setup.task, epochs=opts.epochs, steps=main.steps, truncated=main.truncated,
        train=main.final_train, val=main.final_val, n_params=info.n_params, n_train=len(train), n_val=len(val),
        lr=float(main.lr[0, 0]) if main.lr.size else None, chance=chance, majority=majority,
        noise_chance=noise_chance,
        n_classes=n_classes, noise_train=noise.final_train if noise else None,
        low_lr_train=low.final_train if low else None, low_lr_val=low.final_val if low else None,
        val_clean=val_clean, val_on_overlap=val_on_overlap,
        within=duplicates.within_split(train.X), cross=cross, leak=leak,
        scale=normalization.check_normalization({"train": train.X, "val": val.X}),
        probes_skipped=probes_skipped,
    )
    extra = _extra_causes(p.hook, "no_epoch1_overfit", m)
    result = overfit.diagnose(m, opts.max_gap, opts.max_train_acc, extra)
    result.metrics["seconds"] = main.seconds + (noise.seconds + low.seconds if noise and low else 0)
    return CheckReport(
        "no_epoch1_overfit", result.passed, _overfit_message(p, m, result, info), result.metrics,
        [c.to_dict() for c in result.likely], key=("train_metric", "val_metric", "gap"),
    )


def _overfit_message(p: Prepared, m: overfit.OverfitMeasurements, result: overfit.OverfitResult, info: Any) -> str:
    lines = [overfit.headline(m, result, p.options.max_gap)]
    lines.append(
        f"Model: {info.model_name} ({info.framework} on {info.device}), {info.n_params:,} trainable "
        f"parameters; {m.n_train} train / {m.n_val} val samples; batch {p.data['train'].batch_size or p.setup.batch_size}."
    )
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


def _extra_causes(hook: Any, check: str, m: Any) -> list[Cause]:
    evidence = {k: v for k, v in vars(m).items() if isinstance(v, (int, float, str, type(None)))}
    found: list[Cause] = []
    for causes in hook.pytest_trainsanity_diagnose(check=check, evidence=evidence):
        found += list(causes or [])
    return found


# ---------------------------------------------------------------- no_leakage


def _leakage_inputs(setup: TrainSetup) -> list[leakage.SplitInput]:
    inputs = []
    for name, split in setup.splits().items():
        arrays = None
        if isinstance(split, (tuple, list)):
            whole = load_split(name, split)  # arrays are referenced, not copied
            arrays = (whole.X, whole.y)
        inputs.append(leakage.SplitInput(name, lambda n=name, s=split: iter_split(n, s), arrays))
        for what in ("groups", "timestamps"):
            given = getattr(setup, what) or {}
            if name in given and arrays is not None and len(given[name]) != len(arrays[0]):
                raise SetupError(
                    f"TrainSetup({what}={{{name!r}: ...}}) has {len(given[name])} entries but the {name} "
                    f"split has {len(arrays[0])} samples; give one {what[:-1]} per sample."
                )
    return inputs


def _run_leakage(p: Prepared) -> CheckReport:
    opts = p.options
    try:
        result = leakage.find_leakage(
            _leakage_inputs(p.setup), near=opts.near_duplicates, threshold=opts.threshold,
            groups=p.setup.groups, timestamps=p.setup.timestamps,
            classification=p.setup.task == "classification", max_overlap=opts.max_overlap,
            within_split=opts.within_split, seed=p.settings.seed,
        )
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
        "no_leakage", result.passed, leakage_message(result, opts.max_overlap, opts.within_split), metrics,
        [{"failure": f} for f in result.failures], key=("max_copy_fraction", "target_columns"),
    )


def leakage_message(r: leakage.LeakageResult, max_overlap: int | float, within_split: bool = False) -> str:
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


# ---------------------------------------------------------------- lr_spike_explained


REPLAY_BUDGET = 2.0  # replayed epochs per trained epoch, at most


def _run_spikes(p: Prepared) -> CheckReport:
    adapter, opts = p.adapter, p.options
    assert adapter is not None
    info = adapter.info()
    classification = p.setup.task == "classification"
    with adapter:
        trace = adapter.train(epochs=opts.epochs, max_steps=p.settings.max_steps, detail=True)
        series = _series(trace, opts.metric)
        split = opts.metric.split("_")[0]
        resolution = 1.0 / len(p.data[split]) if opts.metric.endswith("acc") and classification else 0.0
        found = spikes.detect(series, spikes.HIGHER_IS_BETTER[opts.metric], opts.min_jump, resolution)
        labels = class_ids(p.data["train"].y) if classification else None
        replay_seconds = _attribute(adapter, trace, found.spikes, opts.metric, series, labels)
    collapse = spikes.lr_collapse(trace.lr, trace.epoch, opts.epochs)
    bad = [sp for sp in found.spikes if sp.cause not in opts.allow]
    passed = not bad and collapse is None
    plot = _plot(p, trace, series, found, opts.metric)
    metrics: dict[str, Any] = {
        "epochs": len(series), "spikes": len(found.spikes), "unallowed_spikes": len(bad),
        "noise": found.sigma, "threshold": found.threshold, "margin": found.margin, "lr_collapse": collapse is not None,
        "final_metric": float(series[-1]) if len(series) else float("nan"),
        "train_seconds": trace.seconds, "replay_seconds": replay_seconds,
        "replay_cost": replay_seconds / trace.seconds if trace.seconds else 0.0,
    }
    if plot:
        metrics["plot"] = plot
    message = spike_message(p, trace, series, found, collapse, bad, info, plot)
    causes = [sp.to_dict() for sp in found.spikes]
    if collapse is not None:
        causes.insert(0, {"cause": "lr_collapse", "epoch": collapse.epoch + 1, "step": collapse.step,
                          "peak_lr": collapse.peak, "final_lr": collapse.final, "halving_steps": collapse.halving_steps})
    return CheckReport("lr_spike_explained", passed, message, metrics, causes, key=("spikes", "unallowed_spikes", "lr_collapse"))


def _series(trace: Any, metric: str) -> np.ndarray:
    return {"val_acc": trace.val_metric, "train_acc": trace.train_metric,
            "val_loss": trace.val_loss, "train_loss": trace.train_loss}[metric]


def _attribute(adapter: Adapter, trace: Any, found: list[spikes.Spike], metric: str, series: np.ndarray,
               labels: np.ndarray | None) -> float:
    """Evidence for every spike; replays for the largest ones within ``REPLAY_BUDGET``."""
    start = time.perf_counter()
    supported = adapter.interventions()
    usable = [k for k, why in supported.items() if not why]
    per_spike = 1 + len(usable) + (1 if "reshuffle" in usable else 0)
    budget = int(REPLAY_BUDGET * len(series)) if usable else 0
    top = spikes.top_lr(trace.lr, len(trace.epoch))
    mix = (spikes.batch_mix(labels, trace.orders, int(np.bincount(trace.epoch).max()))
           if found and labels is not None and trace.orders else np.zeros(0))
    for sp in found:
        sp.evidence += _evidence(trace, top, sp.epoch, supported)
        if len(mix) > sp.epoch:
            sp.evidence.append(f"batch label mix {mix[sp.epoch]:.3g} from the split's (total variation, mean over "
                                   f"batches) vs median {_g(np.median(np.delete(mix, sp.epoch)))} in the other epochs")
    for sp in sorted(found, key=lambda q: -abs(q.jump - q.trend)):
        if budget < per_spike or len(trace.checkpoints) <= sp.epoch:
            sp.how = "evidence"
            sp.cause = _cause_by_evidence(trace, top, sp.epoch)
            sp.evidence.append("not replayed: " + ("the adapter cannot replay epochs" if not usable else
                                                   f"the replay budget ({REPLAY_BUDGET:g} x the run) was spent"))
            continue
        budget -= per_spike
        base = adapter.replay(trace, sp.epoch)[metric]
        replayed: dict[str, float] = {}
        for k in usable:
            if k == "hold_lr" and _lr_ratio(trace, top, sp.epoch) is None:
                continue  # the lr did not change: holding it changes nothing
            value = adapter.replay(trace, sp.epoch, k)[metric]
            if k == "reshuffle":  # two other orders: one lucky order is not the answer
                value = float(np.mean([value, adapter.replay(trace, sp.epoch, k, seed_offset=2)[metric]]))
            replayed[k] = value
        spikes.attribute(sp, base, replayed)
    return time.perf_counter() - start


def _lr_ratio(trace: Any, top: np.ndarray, epoch: int) -> float | None:
    """How much the lr (``top``: per step, max over groups) changed from the end of the epoch
    before to the spike epoch (None: not at all)."""
    before, during = top[trace.epoch == epoch - 1], top[trace.epoch == epoch]
    if not len(before) or not len(during):
        return None
    ratio = float(during.mean() / before[-1]) if before[-1] > 0 else float("inf")
    return None if abs(np.log(max(ratio, 1e-300))) < np.log(1.05) else ratio


def _cause_by_evidence(trace: Any, top: np.ndarray, epoch: int) -> str:
    ratio = _lr_ratio(trace, top, epoch)
    return "lr_schedule" if ratio is not None and (ratio >= 2 or ratio <= 0.5) else "unexplained"


def _evidence(trace: Any, top: np.ndarray, epoch: int, supported: dict[str, str]) -> list[str]:
    out = []
    ratio = _lr_ratio(trace, top, epoch)
    before = top[trace.epoch == epoch - 1]
    during = top[trace.epoch == epoch]
    if ratio is None:
        out.append(f"lr unchanged at {_g(during.mean()) if len(during) else '?'} around the spike")
    else:
        kind = ""
        if ratio > 1 and np.allclose(top[trace.epoch < epoch], before[-1]) and epoch > 1:
            kind = " (warm-up end)"
        elif ratio > 1 and top[trace.epoch < epoch].max() > before[-1] * 1.05:
            kind = " (a restart)"
        out.append(f"lr {'dropped' if ratio < 1 else 'rose'} x{ratio:.3g}{kind} ({_g(before[-1])} -> {_g(during.mean())}) at epoch {epoch + 1}")
    if not supported.get("freeze_bn"):
        drift = trace.bn_drift
        if len(drift) > epoch and np.isfinite(drift[epoch]):
            others = np.delete(drift, epoch)
            out.append(f"batch-norm running statistics moved {drift[epoch]:.3g} (relative) in the epoch vs median "
                       f"{_g(np.nanmedian(others)) if np.isfinite(others).any() else '?'} in the others")
    else:
        out.append("no batch-norm layer")
    ratio_steps = trace.update_ratio[trace.epoch == epoch]
    typical = np.nanmedian(trace.update_ratio) if np.isfinite(trace.update_ratio).any() else float("nan")
    if np.isfinite(ratio_steps).any():
        out.append(f"update/weight ratio {_g(np.nanmean(ratio_steps))} in the epoch vs median {_g(typical)}")
    if not supported.get("reset_momentum") and len(trace.momentum_norm) and np.isfinite(trace.momentum_norm).any():
        mom = trace.momentum_norm[trace.epoch == epoch]
        if np.isfinite(mom).any():
            out.append(f"momentum-buffer norm {_g(np.nanmean(mom))} in the epoch vs median {_g(np.nanmedian(trace.momentum_norm))}")
    return out


SPIKE_FIXES = {
    "lr_schedule": "the jump follows the learning-rate schedule. If that is intended, allow it "
                   "(@pytest.mark.lr_spike_explained(allow=('lr_schedule',))); otherwise smooth the schedule "
                   "(a longer linear warm-up, cosine instead of step decay).",
    "batch_stats": "the jump depends on the batch order or batch-norm statistics, not on learning: do not pick "
                   "checkpoints or hyper-parameters on it; use larger batches, more BN momentum smoothing, or "
                   "average several seeds.",
    "momentum": "momentum carried the parameters over a barrier: lower the momentum or the lr, add a warm-up, "
                "or clip gradients if the jump is a drop.",
    "unexplained": "no intervention removed half of the jump: look for data that changes between epochs (a "
                   "curriculum, a sampler), a val set that changes, or an evaluation bug; rerun with other seeds.",
}


def spike_message(p: Prepared, trace: Any, series: np.ndarray, found: spikes.Detection, collapse: spikes.Collapse | None,
                  bad: list[spikes.Spike], info: Any, plot: str | None) -> str:
    opts = p.options
    metric = opts.metric
    lines = []
    if collapse is not None:
        lines.append(_collapse_headline(collapse, p))
    if bad:
        sp = bad[0]
        lines.append(
            f"lr_spike_explained FAILED: {metric} jumped {sp.jump:+.3f} at epoch {sp.epoch + 1} ({sp.before:.3f} -> "
            f"{sp.after:.3f}; the run's trend predicted {sp.trend:+.3f}), caused by {sp.cause}, which is not in "
            f"allow={tuple(opts.allow)!r}."
        )
    if not lines:
        lines.append(
            f"lr_spike_explained passed: {len(found.spikes)} spike(s) in {metric} over {len(series)} epoch(s)"
            + (f", every cause in allow={tuple(opts.allow)!r}." if found.spikes else ".")
        )
    elif collapse is not None and bad:
        lines[1] = "  also: " + lines[1]
    lines.append(
        f"Model: {info.model_name} ({info.framework} on {info.device}); {trace.steps} steps over {len(series)} epoch(s)"
        + (" (the step budget cut the run short)" if trace.truncated else "") + "."
    )
    if found.note:
        lines.append(f"Note: {found.note}.")
    else:
        lines.append(
            f"Detection: a spike is a change of {metric} that differs from the run's trend (median of the three "
            f"changes before it) by more than {found.threshold:.3g} = max({spikes.K_SIGMA:g} x noise {found.sigma:.3g}, "
            f"{spikes.RANGE_FRACTION:g} x the metric's range"
            + (f", min_jump {opts.min_jump:g}" if opts.min_jump else "") + ")."
        )
    for i, sp in enumerate(found.spikes, 1):
        lines.append(f"  {i}. epoch {sp.epoch + 1}: {metric} {sp.jump:+.3f} ({sp.before:.3f} -> {sp.after:.3f}) -> {sp.cause}"
                     + ("" if sp.how == "replay" else " (by evidence only)"))
        lines.append("     evidence: " + "; ".join(sp.evidence))
        if sp.baseline is not None and sp.effects:
            lines.append(
                f"     replay of epoch {sp.epoch + 1} from the checkpoint before it: as recorded {sp.baseline:+.3f}; "
                + "; ".join(f"{spikes.INTERVENTIONS[k][1]}: {sp.replayed[k] - sp.before:+.3f} (removes {100 * v:.0f}%)"
                            for k, v in sorted(sp.effects.items(), key=lambda kv: -kv[1]))
            )
    lr = spikes.epoch_lr(trace.lr, trace.epoch, len(series))
    lines.append("Per epoch: " + ", ".join(f"{e + 1}: {series[e]:.3f} @ lr {_g(lr[e])}" for e in range(len(series))))
    causes = []
    if collapse is not None:
        causes.append("lr_collapse")
    causes += list(dict.fromkeys(sp.cause for sp in bad))
    if causes:
        lines.append("Fix:")
        for c in causes:
            lines.append(f"  - {c}: " + (_collapse_fix(collapse, p) if c == "lr_collapse" else SPIKE_FIXES[c]))
    if plot:
        lines.append(f"Plot: {plot}")
    return "\n".join(lines)


def _collapse_headline(c: spikes.Collapse, p: Prepared) -> str:
    return (
        f"lr_spike_explained FAILED: the learning rate collapsed: it fell below {spikes.COLLAPSE_FACTOR:g} x its peak "
        f"{_g(c.peak)} at step {c.step} (epoch {c.epoch + 1} of {p.options.epochs}) and ends at {_g(c.final)}; "
        f"training after that barely moves the weights."
    )


def _collapse_fix(c: spikes.Collapse | None, p: Prepared) -> str:
    assert c is not None
    text = f"the schedule advances once per optimizer step ({c.steps_per_epoch} steps per epoch)"
    if c.halving_steps:
        text += f" and halves the lr every {c.halving_steps:.3g} steps ({c.steps_per_epoch / c.halving_steps:.3g} times per epoch)"
    per_epoch = ("use a keras.callbacks.LearningRateScheduler" if p.adapter is not None and p.adapter.framework == "tensorflow"
                 else "step the scheduler once per epoch (TrainSetup(scheduler_step='epoch'))")
    return (
        text + ". If the decay was meant per epoch, count it in steps (Keras ExponentialDecay: decay_steps = "
        f"epochs_per_decay x {c.steps_per_epoch}) or {per_epoch}; otherwise raise the floor (a minimum lr) or "
        "slow the decay."
    )


def _plot(p: Prepared, trace: Any, series: np.ndarray, found: spikes.Detection, metric: str) -> str | None:
    """Metric and lr per epoch with spikes marked, when matplotlib is installed."""
    try:
        from matplotlib.figure import Figure  # no pyplot: the user's backend and figures are untouched
    except Exception:  # noqa: BLE001 - the plot is optional
        return None
    import os
    import re
    import tempfile

    folder = p.settings.artifacts or os.path.join(tempfile.gettempdir(), "pytest-trainsanity-artifacts")
    os.makedirs(folder, exist_ok=True)
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", p.nodeid or "lr_spike_explained").strip("_")[-120:]
    path = os.path.abspath(os.path.join(folder, f"{stem}.lr_spikes.png"))
    epochs = np.arange(1, len(series) + 1)
    fig = Figure(figsize=(7, 4))
    ax = fig.subplots()
    ax.plot(epochs, series, marker="o", label=metric)
    for sp in found.spikes:
        ax.annotate(sp.cause, (sp.epoch + 1, sp.after), textcoords="offset points", xytext=(5, 8), color="red")
        ax.plot([sp.epoch + 1], [sp.after], "o", color="red", markersize=10, fillstyle="none")
    ax.set_xlabel("epoch")
    ax.set_ylabel(metric)
    lr_ax = ax.twinx()
    per_epoch = max(int(np.bincount(trace.epoch).max()), 1) if len(trace.epoch) else 1
    if trace.lr.size:  # the lr of each step, placed within its epoch
        lr_ax.plot(trace.epoch + (np.arange(len(trace.epoch)) % per_epoch) / per_epoch, spikes.top_lr(trace.lr, len(trace.epoch)),
                   color="gray", alpha=0.6)
        if (trace.lr > 0).all():
            lr_ax.set_yscale("log")
    lr_ax.set_ylabel("learning rate (gray)")
    ax.set_title(f"lr_spike_explained {p.nodeid or ''}"[-90:], fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    return path


# ---------------------------------------------------------------- inputs_normalized


def _run_normalization(p: Prepared) -> CheckReport:
    result = normalization.check_normalization({n: s.X for n, s in p.data.items()}, p.options.tol)
    if result.integer_ids:
        lines = [f"inputs_normalized passed: {result.notes[0]}"]
    elif result.passed:
        lines = [f"inputs_normalized passed: every split is on train's scale (tol {p.options.tol:g})."]
    else:
        worst = sorted({f.split for f in result.findings}, key=list(p.data).index)
        lines = [f"inputs_normalized FAILED for {', '.join(worst)}: {result.findings[0].text}."]
        lines += [f"  - {f.text}" for f in result.findings[1:]]
        lines.append("Fix:")
        lines += [f"  - {f.split}: {f.fix}" for f in result.findings]
    for name, s in result.stats.items():
        v = s.varying
        lines.append(
            f"{name}: {s.n} samples, {len(s.mean)} {s.axis_label}(s), dtype {s.dtype}, range {s.range_text()}, "
            f"per-{s.axis_label} mean in [{_g(s.mean[v].min() if v.any() else 0)}, {_g(s.mean[v].max() if v.any() else 0)}], "
            f"std in [{_g(s.std[v].min() if v.any() else 0)}, {_g(s.std.max() if len(s.std) else 0)}], "
            f"{int((~v).sum())} constant"
        )
    return CheckReport(
        "inputs_normalized", result.passed, "\n".join(lines), result.metrics(),
        [{"split": f.split, "kind": f.kind, "text": f.text, "fix": f.fix} for f in result.findings],
        key=("train_max_abs_mean", "train_max_std", "train_nan"),
    )


def _g(x: float) -> str:
    return f"{float(x):.3g}"


# ---------------------------------------------------------------- public functions


def _run(marker: str, setup: Any, kwargs: dict[str, Any]) -> CheckReport:
    hook = kwargs.pop("hook", None)
    settings = kwargs.pop("settings", None) or build_run_settings({}, "defaults")
    options = CHECKS[marker].parse((), kwargs, f"{marker}()")
    return prepare(marker, setup, options, settings, hook).run()


def _raise_if_failed(report: CheckReport) -> CheckReport:
    __tracebackhide__ = True
    if not report.passed:
        raise TrainSanityError(report.message, report)
    return report


def check_epoch1_overfit(setup: TrainSetup, **kwargs: Any) -> CheckReport:
    """Run ``no_epoch1_overfit`` and return its report (keywords: the marker's, plus device/seed/max_steps)."""
    return _run("no_epoch1_overfit", setup, kwargs)


def assert_no_epoch1_overfit(setup: TrainSetup, **kwargs: Any) -> CheckReport:
    __tracebackhide__ = True
    return _raise_if_failed(check_epoch1_overfit(setup, **kwargs))


def check_normalization(setup: TrainSetup, **kwargs: Any) -> CheckReport:
    """Run ``inputs_normalized`` and return its report."""
    return _run("inputs_normalized", setup, kwargs)


def assert_inputs_normalized(setup: TrainSetup, **kwargs: Any) -> CheckReport:
    __tracebackhide__ = True
    return _raise_if_failed(check_normalization(setup, **kwargs))


def check_leakage(setup: TrainSetup, **kwargs: Any) -> CheckReport:
    """Run ``no_leakage`` and return its report."""
    return _run("no_leakage", setup, kwargs)


def assert_no_leakage(setup: TrainSetup, **kwargs: Any) -> CheckReport:
    __tracebackhide__ = True
    return _raise_if_failed(check_leakage(setup, **kwargs))


def check_lr_spikes(setup: TrainSetup, **kwargs: Any) -> CheckReport:
    """Run ``lr_spike_explained`` and return its report."""
    return _run("lr_spike_explained", setup, kwargs)


def assert_lr_spikes_explained(setup: TrainSetup, **kwargs: Any) -> CheckReport:
    __tracebackhide__ = True
    return _raise_if_failed(check_lr_spikes(setup, **kwargs))
