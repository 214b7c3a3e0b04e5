"""The checks as plain functions: setup in, ``CheckReport`` out. A thin table.

Used by the markers, the ``trainsanity`` fixture and directly from scripts
(``from pytest_trainsanity import check_epoch1_overfit``). Each marker maps
to its room, ``checks/<room>/run.py``, which prepares the check (misuse
surfaces there: pytest reports it as a setup error) and runs it.
"""

from __future__ import annotations

import importlib
from typing import Any

from .checks.runner import Prepared, require_setup, resolve_hook
from .errors import TrainSanityError, UsageError
from .report import CheckReport
from .settings import CHECKS, CheckOptions, RunSettings, build_run_settings
from .spec import TrainSetup

ROOMS = {
    "no_epoch1_overfit": "overfit",
    "no_leakage": "leakage",
    "lr_spike_explained": "spikes",
    "inputs_normalized": "normalization",
    **{marker: "preflight" for marker in ("loss_at_init", "overfits_one_batch", "batch_independent", "params_update",
                                          "finite_training", "batches_mixed", "preflight")},
}


def prepare(
    marker: str,
    setup: Any,
    options: CheckOptions,
    settings: RunSettings,
    hook: Any = None,
    nodeid: str | None = None,
) -> Prepared:
    if marker not in ROOMS:
        raise UsageError(f"{marker} is not a pytest-trainsanity check.")
    setup = require_setup(marker, setup, options)
    settings = settings.override(f"marker {marker}", **options.run_overrides) if options.run_overrides else settings
    room = importlib.import_module(f".checks.{ROOMS[marker]}.run", __package__)
    return room.prepare(setup, options, settings, resolve_hook(hook), nodeid)


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
    """Run ``no_epoch1_overfit`` and return its report (keywords: the marker's, plus device/seed/max_steps/eval_samples)."""
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


def _pair(marker: str, check_name: str, assert_name: str, doc: str) -> tuple[Any, Any]:
    def check(setup: TrainSetup, **kwargs: Any) -> CheckReport:
        return _run(marker, setup, kwargs)

    def assert_(setup: TrainSetup, **kwargs: Any) -> CheckReport:
        __tracebackhide__ = True
        return _raise_if_failed(check(setup, **kwargs))

    check.__name__, check.__qualname__, check.__doc__ = check_name, check_name, f"Run ``{marker}`` and return its report: {doc}."
    assert_.__name__, assert_.__qualname__ = assert_name, assert_name
    assert_.__doc__ = f"Run ``{marker}``; raise TrainSanityError with the diagnosis when it fails."
    return check, assert_


PREFLIGHT_FUNCS = {
    "loss_at_init": ("check_loss_at_init", "assert_loss_at_init", "the untrained loss against the label entropy"),
    "overfits_one_batch": ("check_overfit_one_batch", "assert_overfits_one_batch", "fit one fixed batch"),
    "batch_independent": ("check_batch_independence", "assert_batch_independent", "samples do not mix in eval mode"),
    "params_update": ("check_params_update", "assert_params_update", "one step moves every trainable parameter"),
    "finite_training": ("check_finite_training", "assert_finite_training", "loss, gradients, weights stay finite"),
    "batches_mixed": ("check_batch_mix", "assert_batches_mixed", "the loader's batches mix the classes"),
    "preflight": ("check_preflight", "assert_preflight", "all six pre-flight checks"),
}
check_loss_at_init, assert_loss_at_init = _pair("loss_at_init", *PREFLIGHT_FUNCS["loss_at_init"])
check_overfit_one_batch, assert_overfits_one_batch = _pair("overfits_one_batch", *PREFLIGHT_FUNCS["overfits_one_batch"])
check_batch_independence, assert_batch_independent = _pair("batch_independent", *PREFLIGHT_FUNCS["batch_independent"])
check_params_update, assert_params_update = _pair("params_update", *PREFLIGHT_FUNCS["params_update"])
check_finite_training, assert_finite_training = _pair("finite_training", *PREFLIGHT_FUNCS["finite_training"])
check_batch_mix, assert_batches_mixed = _pair("batches_mixed", *PREFLIGHT_FUNCS["batches_mixed"])
check_preflight, assert_preflight = _pair("preflight", *PREFLIGHT_FUNCS["preflight"])
