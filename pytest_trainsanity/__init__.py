"""pytest-trainsanity: training sanity checks as ordinary pytest tests.

Importing this package imports neither torch nor tensorflow, nor numpy: the
check functions load on first use (PEP 562), so the pytest plugin adds
nothing heavy to a run that uses no marker.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .checks.causes import Cause
from .errors import OptionError, SetupError, TrainSanityError, UsageError
from .report import CheckReport
from .spec import TrainSetup

if TYPE_CHECKING:
    from .adapters.base import Adapter, ModelInfo, TrainingTrace
    from .api import (
        assert_inputs_normalized,
        assert_lr_spikes_explained,
        assert_no_epoch1_overfit,
        assert_no_leakage,
        check_epoch1_overfit,
        check_leakage,
        check_lr_spikes,
        check_normalization,
    )
    from .api import (  # the pre-flight checks
        assert_batch_independent,
        assert_batches_mixed,
        assert_finite_training,
        assert_loss_at_init,
        assert_overfits_one_batch,
        assert_params_update,
        assert_preflight,
        check_batch_independence,
        check_batch_mix,
        check_finite_training,
        check_loss_at_init,
        check_overfit_one_batch,
        check_params_update,
        check_preflight,
    )

__version__ = "0.1.0"

_API = (
    "assert_inputs_normalized",
    "assert_lr_spikes_explained",
    "assert_no_epoch1_overfit",
    "assert_no_leakage",
    "check_epoch1_overfit",
    "check_leakage",
    "check_lr_spikes",
    "check_normalization",
    "assert_batch_independent",
    "assert_batches_mixed",
    "assert_finite_training",
    "assert_loss_at_init",
    "assert_overfits_one_batch",
    "assert_params_update",
    "assert_preflight",
    "check_batch_independence",
    "check_batch_mix",
    "check_finite_training",
    "check_loss_at_init",
    "check_overfit_one_batch",
    "check_params_update",
    "check_preflight",
)

_ADAPTER_API = ("Adapter", "ModelInfo", "TrainingTrace")  # for third-party adapters (numpy-backed, so lazy too)

__all__ = ["Cause", "CheckReport", "OptionError", "SetupError", "TrainSanityError", "TrainSetup", "UsageError",
           *_API, *_ADAPTER_API]


def __getattr__(name: str) -> Any:
    if name in _API:
        from . import api

        return getattr(api, name)
    if name in _ADAPTER_API:
        from .adapters import base

        return getattr(base, name)
    raise AttributeError(f"module 'pytest_trainsanity' has no attribute {name!r}")
