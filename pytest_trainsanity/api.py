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
