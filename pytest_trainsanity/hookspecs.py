"""Hook specifications other packages implement to extend pytest-trainsanity.

Added to pytest through ``pytest_addhooks``; outside pytest (scripts,
notebooks) the same specs live in a small plugin manager of our own
(``hooks.standalone_hook``). The built-in torch adapter is a ``trylast``
implementation of ``pytest_trainsanity_make_adapter``, so a conftest or a
plugin can take over any model type.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from .adapters.base import Adapter
    from .checks.causes import Cause
    from .adapters.splits import Split
    from .report import CheckReport
    from .settings import RunSettings
    from .spec import TrainSetup


@pytest.hookspec(firstresult=True)
def pytest_trainsanity_make_adapter(
    model: Any, setup: "TrainSetup", data: "dict[str, Split]", settings: "RunSettings"
) -> "Adapter | None":
    """Return an adapter for ``model`` (already built from a factory), or None
    to let another implementation try. ``data`` holds the splits a check reads, as
    ``Split`` handles (nothing read yet): ``split.sample(settings.eval_samples,
    settings.seed)`` gives the eval sample (``.numpy()``: input fields and target),
    array splits also expose ``.X`` and ``.y``."""


@pytest.hookspec
def pytest_trainsanity_diagnose(check: str, evidence: dict[str, Any]) -> "list[Cause] | None":
    """Add diagnosis causes for a check. ``evidence`` holds the measured numbers
    (plain values). Returned causes are ranked with the built-in ones by score;
    return a cause with a built-in cause's name to replace (re-rank) it."""


@pytest.hookspec
def pytest_trainsanity_check_finished(report: "CheckReport", nodeid: str | None) -> None:
    """Observe a finished check (e.g. log ``report.metrics`` to an experiment
    tracker). ``nodeid`` is None outside pytest."""
