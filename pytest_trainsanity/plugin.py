"""pytest hooks only: options, markers, fixtures, the run of marked tests, the summary.

Every hook body is a few lines that call into ``session.Session``. Nothing
here (or in what it imports) imports torch or tensorflow.
"""

from __future__ import annotations

from typing import Any, Iterator

import pytest

from . import hooks as builtin_hooks
from . import hookspecs
from .errors import UsageError
from .session import REPORT_ATTR, SUMMARY_TITLE, Imperative, Session, TestReports, fail_usage
from .settings import CHECKS, DEFAULT_EVAL_SAMPLES, DEFAULT_MAX_STEPS, DEFAULT_SEED, DEVICE_CHOICES

SESSION = pytest.StashKey[Session]()
PREPARED = pytest.StashKey[list]()
REPORTS = pytest.StashKey[TestReports]()

OPTIONS = (  # (name, help, extra addoption kwargs); each has an ini twin trainsanity_<name>
    ("device", f"device for the short training passes: {DEVICE_CHOICES} (default auto: a GPU when "
               "one is visible; under xdist worker N takes GPU N mod count)", {}),
    ("seed", f"seed of every training pass and probe (default {DEFAULT_SEED}): verdicts are reproducible", {}),
    ("max-steps", f"most optimizer steps one training pass may take (default {DEFAULT_MAX_STEPS}; "
                  "0 or none: no budget)", {}),
    ("eval-samples", f"most samples per split a training check measures its metrics on: a seeded sample "
                     f"(default {DEFAULT_EVAL_SAMPLES}); datasets are never read whole for training checks", {}),
    ("report", "write every check's measurements as JSON to this path", {}),
    ("artifacts", "directory for plots and other artifacts", {}),
    ("explain", "print every check's full diagnosis in the terminal summary", {"action": "store_true", "default": None}),
)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("trainsanity", "training sanity checks (pytest-trainsanity)")
    for name, help_text, extra in OPTIONS:
        dest = f"trainsanity_{name.replace('-', '_')}"
        group.addoption(f"--trainsanity-{name}", dest=dest, help=help_text, **({"default": None} | extra))
        parser.addini(dest, help_text, type="bool" if name == "explain" else "string", default=None)


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    pluginmanager.add_hookspecs(hookspecs)


def pytest_configure(config: pytest.Config) -> None:
    for spec in CHECKS.values():
        config.addinivalue_line("markers", f"{spec.signature()}: {spec.summary} (pytest-trainsanity)")
    try:
        config.stash[SESSION] = Session.from_config(config)
    except UsageError as exc:
        raise pytest.UsageError(str(exc)) from None
    config.pluginmanager.register(config.stash[SESSION], "trainsanity-session")  # collects reports
    if not config.pluginmanager.has_plugin("trainsanity-builtin"):
        config.pluginmanager.register(builtin_hooks, "trainsanity-builtin")


def _session(config: pytest.Config) -> Session:
    return config.stash[SESSION]


@pytest.fixture(autouse=True)
def _trainsanity_prepare(request: pytest.FixtureRequest) -> None:
    """Validate markers and build each check in the setup phase: misuse is a test error."""
    item = request.node
    if not any(m.name in CHECKS for m in item.iter_markers()):
        return
    try:
        item.stash[PREPARED] = _session(request.config).prepare(item, request)
        return
    except UsageError as exc:
        problem = str(exc)
    fail_usage(problem)


@pytest.fixture
def trainsanity_report(request: pytest.FixtureRequest) -> TestReports:
    """The reports of the checks that ran for this test (filled before the test body runs)."""
    return request.node.stash.setdefault(REPORTS, TestReports())


@pytest.fixture
def trainsanity(request: pytest.FixtureRequest) -> Imperative:
    """Imperative checks: ``trainsanity.check_epoch1_overfit(setup, **marker_kwargs)`` and friends."""
    reports = request.node.stash.setdefault(REPORTS, TestReports())
    return Imperative(_session(request.config), request.node.nodeid, reports)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    __tracebackhide__ = True
    prepared = item.stash.get(PREPARED, None)
    if prepared:
        _session(item.config).run(item, prepared, item.stash.setdefault(REPORTS, TestReports()))
    return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[Any]:
    report = yield
    reports = item.stash.get(REPORTS, None)
    if call.when == "call" and reports:
        setattr(report, REPORT_ATTR, reports.to_dict())
    return report


def pytest_report_header(config: pytest.Config) -> str:
    s = _session(config).settings
    return f"trainsanity: device={s.device} seed={s.seed} max_steps={s.max_steps} eval_samples={s.eval_samples}"


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    lines = _session(config).summary_lines()
    if lines:
        terminalreporter.write_sep("=", SUMMARY_TITLE)
        for line in lines:
            terminalreporter.write_line(line)


def pytest_sessionfinish(session: pytest.Session) -> None:
    state = _session(session.config)
    if state.settings.report and not hasattr(session.config, "workerinput"):
        state.write_json(state.settings.report, session.config.rootpath)
