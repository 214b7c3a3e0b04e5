from __future__ import annotations

import pytest

from .helpers_src import HELPERS


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    """A pytester dir with the digits ``helpers`` module and a conftest holding the setups as fixtures."""
    pytester.makepyfile(helpers=HELPERS)
    pytester.makeconftest(
        """
        import pytest
        import helpers

        for _name in ("clean", "memorise", "label_column", "raw255", "val_raw", "leaked_val"):
            globals()[_name] = pytest.fixture(getattr(helpers, _name), name=_name)

        @pytest.fixture
        def train_setup():
            return helpers.clean()
        """
    )
    return pytester


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", *args)
