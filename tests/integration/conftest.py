from __future__ import annotations

import importlib.util

import pytest

from .helpers_src import HELPERS, KERAS_HELPERS


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    """A pytester dir with the digits ``helpers`` module and a conftest holding the setups as fixtures."""
    pytester.makepyfile(helpers=HELPERS)
    pytester.makeconftest(
        """
        import pytest
        import helpers

        for _name in ("clean", "memorise", "label_column", "raw255", "val_raw", "leaked_val",
                      "copied", "near_copies", "conflicts", "loaders", "warmup", "per_step_decay"):
            globals()[_name] = pytest.fixture(getattr(helpers, _name), name=_name)

        for _name, _fn, _arg in (("shared_groups", helpers.grouped, True), ("disjoint_groups", helpers.grouped, False),
                                 ("overlapping_times", helpers.timed, True), ("later_times", helpers.timed, False)):
            globals()[_name] = pytest.fixture(lambda _fn=_fn, _arg=_arg: _fn(_arg), name=_name)

        @pytest.fixture
        def train_setup():
            return helpers.clean()
        """
    )
    return pytester


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", *args)


@pytest.fixture
def keras_project(pytester: pytest.Pytester) -> pytest.Pytester:
    """A pytester dir with ``keras_helpers`` (digits setups on Keras models) and the torch
    ``helpers``; the conftest exposes the Keras setups as fixtures."""
    if importlib.util.find_spec("tensorflow") is None:  # not imported here: the runs are subprocesses
        pytest.skip("tensorflow is not installed")
    pytester.makepyfile(helpers=HELPERS, keras_helpers=KERAS_HELPERS)
    pytester.makeconftest(
        """
        import pytest
        import keras_helpers

        for _name in ("clean", "memorise", "raw255", "leaked_tfdata", "warmup", "article_decay"):
            globals()[_name] = pytest.fixture(getattr(keras_helpers, _name), name=_name)

        @pytest.fixture
        def train_setup():
            return keras_helpers.clean()
        """
    )
    return pytester
