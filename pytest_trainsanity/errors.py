"""One exception family.

A failed check is an ``AssertionError`` (pytest shows it as a test failure);
misuse is a ``UsageError`` (shown as a test error in the setup phase). Both
carry plain data so callers outside pytest can act on them.
"""

from __future__ import annotations

from typing import Any


class TrainSanityError(AssertionError):
    """A sanity check measured something wrong; the message is the diagnosis."""

    def __init__(self, message: str, report: Any = None) -> None:
        super().__init__(message)
        self.report = report


class UsageError(ValueError):
    """The setup, marker arguments or options cannot be used as given.

    The message is one paragraph: what was given, what is supported, how to
    fix it. Never a framework traceback.
    """


class SetupError(UsageError):
    """A ``TrainSetup`` (model, splits, optimizer, loss) is unusable."""


class OptionError(UsageError):
    """A marker keyword, command-line option or ini value is invalid."""


class TrainSanityWarning(UserWarning):
    """Something around a check went wrong (a plot or report could not be written); the verdict stands."""


def missing_extra(module: str, extra: str) -> ModuleNotFoundError:
    """The error raised when an optional framework is needed but absent."""
    return ModuleNotFoundError(
        f"pytest-trainsanity needs {module!r} for this check but it is not installed. "
        f"Install it with: pip install 'pytest-trainsanity[{extra}]'",
        name=module,
    )


# Shown by pytest as `pytest_trainsanity.TrainSanityError`, the name users import.
for _error in (TrainSanityError, UsageError, SetupError, OptionError, TrainSanityWarning):
    _error.__module__ = "pytest_trainsanity"
