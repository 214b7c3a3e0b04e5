"""Built-in hook implementations and the plugin manager used outside pytest."""

from __future__ import annotations

import functools
import sys
from typing import Any

import pluggy
import pytest

from . import hookspecs
from .frameworks import framework_of


@pytest.hookimpl(trylast=True)
def pytest_trainsanity_make_adapter(model: Any, setup: Any, data: Any, settings: Any) -> Any:
    if framework_of(model) == "torch":
        from .adapters.torch import TorchAdapter

        return TorchAdapter(model, setup, data, settings)
    if framework_of(model) == "tensorflow":
        from .adapters.keras import KerasAdapter

        return KerasAdapter(model, setup, data, settings)
    return None


@functools.lru_cache(maxsize=1)
def standalone_hook() -> Any:
    """A hook relay with our specs and built-ins, for use outside pytest."""
    pm = pluggy.PluginManager("pytest")
    pm.add_hookspecs(hookspecs)
    pm.register(sys.modules[__name__], name="trainsanity-builtin")
    return pm.hook
