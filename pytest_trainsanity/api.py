"""The checks as plain functions: setup in, ``CheckReport`` out.

Used by the markers, the ``trainsanity`` fixture and directly from scripts
(``from pytest_trainsanity import check_epoch1_overfit``). Each check is
prepared first (data read, model built and validated: misuse surfaces
here) and run second (training and measuring), so pytest can report
misuse as a setup error and a bad measurement as a test failure.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from .adapters.base import Adapter
from .checks import duplicates, features, normalization, overfit
from .checks.causes import Cause
from .data import SplitData, class_ids, load_splits
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
        setup.require(marker, "model", "val", "optimizer", "loss")
        data = load_splits(setup, ("train", "val"))
        return Prepared(options, settings, hook, nodeid, _run_overfit, setup, data, make_adapter(setup, data, settings, hook))
    raise UsageError(
        f"{marker} is registered (its arguments are validated) but its check is not available in this "
        f"version of pytest-trainsanity; it is planned (see the README's roadmap)."
    )


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
            f"supports. Supported: a torch.nn.Module or a zero-argument factory returning one (Keras "
            f"arrives with the Keras adapter); other frameworks can add an adapter through the "
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
