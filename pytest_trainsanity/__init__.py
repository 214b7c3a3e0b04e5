"""pytest-trainsanity: training sanity checks as ordinary pytest tests.

Importing this package imports neither torch nor tensorflow.
"""

from __future__ import annotations

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
from .checks.causes import Cause
from .errors import OptionError, SetupError, TrainSanityError, UsageError
from .report import CheckReport
from .spec import TrainSetup

__version__ = "0.1.0"

__all__ = [
    "Cause",
    "CheckReport",
    "OptionError",
    "SetupError",
    "TrainSanityError",
    "TrainSetup",
    "UsageError",
    "assert_inputs_normalized",
    "assert_lr_spikes_explained",
    "assert_no_epoch1_overfit",
    "assert_no_leakage",
    "check_epoch1_overfit",
    "check_leakage",
    "check_lr_spikes",
    "check_normalization",
]
