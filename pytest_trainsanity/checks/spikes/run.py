"""``lr_spike_explained``: train with full records, detect spikes, replay them, word the verdict.

The epochs run over the user's own batches; each spike's epoch is replayed
from the checkpoint before it, with the same batches re-generated from the
restored RNG states (or under one intervention), never from a cached copy of
the data.
"""

from __future__ import annotations

import inspect
import time
import warnings
from typing import Any

import numpy as np

from ...adapters.base import Adapter
from ...errors import TrainSanityWarning
from ...report import CheckReport
from ...settings import CheckOptions, RunSettings
from ...spec import TrainSetup
from ..labels import batch_tv, class_ids, class_shares
from ..runner import Prepared, nonfinite_report, prepare_training, sample_lines
from . import measure as spikes

MARKER = "lr_spike_explained"


def prepare(setup: TrainSetup, options: CheckOptions, settings: RunSettings, hook: Any, nodeid: str | None) -> Prepared:
    setup.require(MARKER, "model")
    names: tuple[str, ...] = ("train",)
    if options.metric.startswith("val"):
        setup.require(f"{MARKER}(metric={options.metric!r})", "val")
        names = ("train", "val")
    return prepare_training(MARKER, setup, options, settings, hook, nodeid, run, names)


REPLAY_BUDGET = 2.0  # replayed epochs per trained epoch, at most


def run(p: Prepared) -> CheckReport:
    adapter, opts = p.adapter, p.options
    assert adapter is not None
    info = adapter.info()
    classification = p.setup.task == "classification"
    split = opts.metric.split("_")[0]
    sample = p.splits[split].sample(p.settings.eval_samples, p.settings.seed)
    shares = (class_shares(class_ids(p.splits["train"].sample(p.settings.eval_samples, p.settings.seed).numpy()[1]),
                           max(info.n_outputs, 2)) if classification else None)
    with adapter:
        p.pass_label(f"{opts.epochs} epochs with full records")
        trace = adapter.train(epochs=opts.epochs, max_steps=p.settings.max_steps, detail=True)
        evals = {name: p.splits[name].sample(p.settings.eval_samples, p.settings.seed)
                 for name in ("train", "val") if name in p.splits}
        broken = nonfinite_report(p, trace, lambda: evals["train"].numpy()[0], info, evals)
        if broken is not None:
            return broken
        series = _series(trace, opts.metric)
        if not np.isfinite(series).all():  # NaN compares False with every threshold: no spike, a silent pass
            return _untracked(series, opts.metric, classification)
        resolution = 1.0 / sample.n if opts.metric.endswith("acc") and classification else 0.0
        found = spikes.detect(series, spikes.HIGHER_IS_BETTER[opts.metric], opts.min_jump, resolution)
        p.pass_label("spike replays")
        replay_seconds = _attribute(adapter, trace, found.spikes, opts.metric, series, shares)
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
    text = message(p, trace, series, found, collapse, bad, info, plot)
    causes = [sp.to_dict() for sp in found.spikes]
    if collapse is not None:
        causes.insert(0, {"cause": "lr_collapse", "epoch": collapse.epoch + 1, "step": collapse.step,
                          "peak_lr": collapse.peak, "final_lr": collapse.final, "halving_steps": collapse.halving_steps,
                          "epoch_factor": collapse.epoch_factor})
    return CheckReport(MARKER, passed, text, metrics, causes, key=("spikes", "unallowed_spikes", "lr_collapse"),
                       skipped=_too_short(p, trace, len(series)) if passed else "")


def _too_short(p: Prepared, trace: Any, epochs: int) -> str:
    """Why a pass too short for spike detection judged nothing (a skip, never a pass: a collapse or a
    non-finite pass still fails)."""
    if epochs > spikes.FIRST_DETECTABLE:
        return ""
    asked = p.options.epochs
    why = (f"the step budget (--trainsanity-max-steps {p.settings.max_steps}) stopped the pass after {trace.steps} "
           f"steps, in epoch {epochs} of the {asked} asked for; raise it, or lift it with max_steps=0"
           if trace.truncated else f"ask for epochs >= {spikes.FIRST_DETECTABLE + 1}")
    return (f"{MARKER} judged no spike: {epochs} epoch(s) ran and spike detection needs at least "
            f"{spikes.FIRST_DETECTABLE + 1} (the first three set the trend); {why}")


def _untracked(series: np.ndarray, metric: str, classification: bool) -> CheckReport:
    """The failure of a metric that is undefined at some epoch (the pass itself stayed finite)."""
    bad = np.flatnonzero(~np.isfinite(series))
    why = ("no sample carries a label: every target is the ignore index -100" if classification else
           "it is R^2 here, and the targets do not vary, so there is no variance to measure the error against")
    text = (f"{MARKER} FAILED: {metric} cannot be tracked: it is undefined at {len(bad)} of {len(series)} epoch(s) "
            f"(first at epoch {bad[0] + 1}; {why}), so no spike can be judged.\n"
            f"Fix: track a metric that is defined here (metric='train_loss' or 'val_loss'), or give the split "
            f"{'labelled samples' if classification else 'targets that vary'}.")
    metrics = {"epochs": len(series), "spikes": 0, "unallowed_spikes": 0, "lr_collapse": False,
               "undefined_epochs": len(bad)}
    return CheckReport(MARKER, False, text, metrics, [{"cause": "metric_undefined", "epochs": len(bad)}],
                       key=("spikes", "unallowed_spikes", "lr_collapse"))


def _series(trace: Any, metric: str) -> np.ndarray:
    return {"val_acc": trace.val_metric, "train_acc": trace.train_metric,
            "val_loss": trace.val_loss, "train_loss": trace.train_loss}[metric]


def _attribute(adapter: Adapter, trace: Any, found: list[spikes.Spike], metric: str, series: np.ndarray,
               shares: np.ndarray | None) -> float:
    """Evidence for every spike; replays for the largest ones within ``REPLAY_BUDGET``."""
    start = time.perf_counter()
    supported = adapter.interventions()
    usable = [k for k, why in supported.items() if not why]
    per_spike = 1 + len(usable) + (1 if "reshuffle" in usable else 0)
    budget = int(REPLAY_BUDGET * len(series)) if usable else 0
    top = spikes.top_lr(trace.lr, len(trace.epoch))
    mix = (spikes.batch_mix(batch_tv(trace.label_counts, shares), trace.epoch, len(series))
           if found and shares is not None and trace.label_counts.shape[1:] == shares.shape else np.zeros(0))
    for sp in found:
        sp.evidence += _evidence(trace, top, sp.epoch, supported)
        if len(mix) > sp.epoch and np.isfinite(mix[sp.epoch]):
            sp.evidence.append(f"batch label mix {mix[sp.epoch]:.3g} from the split's (total variation, mean over "
                                   f"batches) vs median {_g(np.nanmedian(np.delete(mix, sp.epoch)))} in the other epochs")
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


def message(p: Prepared, trace: Any, series: np.ndarray, found: spikes.Detection, collapse: spikes.Collapse | None,
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
    if info.notes:
        lines.append("Training: " + "; ".join(info.notes) + ".")
    samples = {n: split.sample(p.settings.eval_samples, p.settings.seed) for n, split in p.splits.items()}
    lines += [f"Sample: {line}." for line in sample_lines(samples)]
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
            lines.append(f"  - {c}: " + (_collapse_fix(collapse, p) if c == "lr_collapse" else _spike_fix(c, bad, p)))
    if plot:
        lines.append(f"Plot: {plot}")
    return "\n".join(lines)


def _spike_fix(cause: str, bad: list[spikes.Spike], p: Prepared) -> str:
    """SPIKE_FIXES[cause], said for a plateau scheduler's cut, and for a jump at an lr change that the
    replay at the old rate did not remove."""
    if cause == "lr_schedule" and getattr(p.adapter, "plateau", None) is not None:
        return ("the jump follows a cut by ReduceLROnPlateau. If that is intended, allow it "
                "(@pytest.mark.lr_spike_explained(allow=('lr_schedule',))); otherwise make its cuts gentler or rarer "
                "(factor nearer 1, e.g. 0.5; a larger patience or min_delta; a cooldown).")
    text = SPIKE_FIXES[cause]
    if cause == "batch_stats" and p.adapter is not None and p.adapter.interventions().get("freeze_bn"):
        text = ("the jump depends on the batch order, not on learning (the model has no batch-norm layer): do not "
                "pick checkpoints or hyper-parameters on it; use larger batches or average several seeds.")
    held = [sp for sp in bad if sp.cause == "unexplained" and "hold_lr" in sp.effects]  # (effects: the replay reproduced it)
    if cause == "unexplained" and held:
        sp = held[0]
        text += (f" The lr changed at epoch {sp.epoch + 1}, yet the replay that held the old rate jumped "
                 f"{sp.replayed['hold_lr'] - sp.before:+.3f} (as recorded: {sp.baseline:+.3f}), so the rate alone does "
                 f"not explain it in this replay; a rate that unsettles training makes one replay noisy: rerun with "
                 f"other seeds (--trainsanity-seed) before reading it either way.")
    return text


def _collapse_headline(c: spikes.Collapse, p: Prepared) -> str:
    return (
        f"lr_spike_explained FAILED: the learning rate collapsed: it fell below {spikes.COLLAPSE_FACTOR:g} x its peak "
        f"{_g(c.peak)} at step {c.step} (epoch {c.epoch + 1} of {p.options.epochs}) and ends at {_g(c.final)}; "
        f"training after that barely moves the weights."
    )


def _collapse_fix(c: spikes.Collapse | None, p: Prepared) -> str:
    assert c is not None
    if c.epoch_factor is not None:  # the lr moved only between epochs: the per-epoch decay itself is too steep
        # the scheduler the pass stepped (a factory's product, Lightning's), else the one given (a Keras callback)
        source = next((s for s in (getattr(p.adapter, "scheduler", None), p.setup.scheduler)
                       if s is not None and not inspect.isroutine(s)), None)
        named = f" ({type(source).__name__})" if source is not None else ""
        return (f"the schedule{named} changes the lr only between epochs and multiplies it by {c.epoch_factor:.3g} per "
                f"epoch, so it is below the floor by epoch {c.epoch + 1}. Slow the decay (a factor per epoch nearer 1, "
                f"e.g. 0.9-0.95) or give it a floor (a minimum lr: max(lr * factor, min_lr)).")
    text = f"the schedule advances once per optimizer step ({c.steps_per_epoch} steps per epoch)"
    if c.halving_steps:
        every = "step" if abs(c.halving_steps - 1) < 0.05 else f"{c.halving_steps:.3g} steps"
        text += f" and halves the lr every {every} ({c.steps_per_epoch / c.halving_steps:.3g} times per epoch)"
    adapter = p.adapter
    if adapter is not None and adapter.framework == "tensorflow":
        per_epoch = ("count it in steps (Keras ExponentialDecay: decay_steps = epochs_per_decay x "
                     f"{c.steps_per_epoch}) or use a keras.callbacks.LearningRateScheduler")
    elif getattr(adapter, "lightning", False) and p.setup.optimizer is None:
        per_epoch = (f"set \"interval\": \"epoch\" in the lr_scheduler config that "
                     f"{type(p.setup.model).__name__}.configure_optimizers() returns")
    else:
        per_epoch = "step the scheduler once per epoch (TrainSetup(scheduler_step='epoch'))"
    return text + f". If the decay was meant per epoch, {per_epoch}; otherwise raise the floor (a minimum lr) or slow the decay."


def _plot(p: Prepared, trace: Any, series: np.ndarray, found: spikes.Detection, metric: str) -> str | None:
    """Metric and lr per epoch with spikes marked, when matplotlib is installed."""
    try:
        import matplotlib.figure  # noqa: F401 - no pyplot: the user's backend and figures are untouched
    except Exception:  # noqa: BLE001 - the plot is optional
        return None
    import os
    import tempfile

    folder = p.settings.artifacts or os.path.join(tempfile.gettempdir(), "pytest-trainsanity-artifacts")
    try:
        return _draw(p, trace, series, found, metric, folder)
    except OSError as exc:  # the plot is a by-product: a warning, never a changed verdict
        warnings.warn(TrainSanityWarning(
            f"lr_spike_explained could not write its plot under {folder!r} ({type(exc).__name__}: "
            f"{exc.strerror or exc}); the verdict is unaffected. Point --trainsanity-artifacts at a writable folder."))
        return None


def _draw(p: Prepared, trace: Any, series: np.ndarray, found: spikes.Detection, metric: str, folder: str) -> str:
    import os
    import re

    from matplotlib.figure import Figure

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



def _g(x: float) -> str:
    return f"{float(x):.3g}"

