"""Per-run state behind the thin plugin: settings, the prepared checks of each
test, every finished report, the terminal summary lines and the JSON file.

The plugin's hooks each call one method here (syrupy-style).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import pytest

from .errors import OptionError, TrainSanityError, UsageError
from .report import CheckReport, fmt
from .settings import CHECKS, CHECK_TO_MARKER, RunSettings, build_run_settings

if TYPE_CHECKING:
    from .api import Prepared

REPORT_ATTR = "trainsanity"  # plain list of report dicts on each TestReport (crosses xdist)
SUMMARY_TITLE = "trainsanity"


class TestReports:
    """The reports of the checks that ran for one test (the ``trainsanity_report`` fixture).

    Index by check name (``reports["no_epoch1_overfit"]``) or iterate.
    """

    def __init__(self) -> None:
        self._reports: list[CheckReport] = []

    def add(self, report: CheckReport) -> None:
        self._reports.append(report)

    def __iter__(self) -> Iterator[CheckReport]:
        return iter(self._reports)

    def __len__(self) -> int:
        return len(self._reports)

    def __getitem__(self, name: str | int) -> CheckReport:
        if isinstance(name, int):
            return self._reports[name]
        for report in reversed(self._reports):
            if report.name == name:
                return report
        ran = ", ".join(r.name for r in self._reports) or "none"
        raise KeyError(f"no {name!r} check ran for this test (ran: {ran})")

    def __contains__(self, name: object) -> bool:
        return any(r.name == name for r in self._reports)

    def to_dict(self) -> list[dict[str, Any]]:
        return [r.to_dict() for r in self._reports]

    def __str__(self) -> str:
        if not self._reports:
            return "trainsanity_report: no check ran for this test"
        lines = [f"trainsanity_report: {len(self._reports)} check(s)"]
        lines += [f"  {r.name} {r.verdict}: {r.key_numbers()}" for r in self._reports]
        return "\n".join(lines)

    __repr__ = __str__


def fail_usage(problem: str) -> None:
    """Misuse as one paragraph. Called outside ``except`` so no exception chain is printed."""
    __tracebackhide__ = True
    pytest.fail(f"pytest-trainsanity: {problem}", pytrace=False)


@dataclass(eq=False)  # registered as a plugin: must stay hashable
class Session:
    settings: RunSettings
    hook: Any
    results: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # I/O problems shown in the summary, never a changed outcome

    @classmethod
    def from_config(cls, config: Any) -> "Session":
        values: dict[str, Any] = {}
        sources: list[str] = []
        for key in ("device", "seed", "max_steps", "eval_samples", "report", "artifacts", "explain"):
            cli = config.getoption(f"trainsanity_{key}")
            if cli is not None:
                values[key] = cli
                sources.append(f"--trainsanity-{key.replace('_', '-')}")
                continue
            ini = config.getini(f"trainsanity_{key}")
            if ini not in (None, "", [], False):
                values[key] = ini
                sources.append(f"ini trainsanity_{key}")
        source = " / ".join(sources) or "defaults"
        return cls(build_run_settings(values, source), config.hook)

    # ---------------------------------------------------------------- per test

    def prepare(self, item: Any, request: Any) -> list["Prepared"]:
        """Parse every trainsanity marker of ``item`` and prepare its check (misuse raises here)."""
        from .api import prepare  # numpy and the checks load only when a marked test runs

        prepared = []
        for marker in item.iter_markers():
            spec = CHECKS.get(marker.name)
            if spec is None:
                continue
            options = spec.parse(tuple(marker.args), dict(marker.kwargs), f"@pytest.mark.{marker.name}")
            setup = fixture_value(request, options.setup, marker.name)
            prepared.append(prepare(marker.name, setup, options, self.settings, self.hook, item.nodeid))
        return prepared[::-1]  # decorators apply bottom-up; run in reading order

    def run(self, item: Any, prepared: list["Prepared"], reports: TestReports) -> None:
        __tracebackhide__ = True
        failed = []
        for check in prepared:
            try:
                report = check.run()
            except UsageError as exc:  # misuse found while running (a streamed split read lazily)
                problem: str | None = str(exc)
            else:
                problem = None
            if problem is not None:
                fail_usage(problem)
            reports.add(report)
            for key in report.key:
                if key in report.metrics:
                    item.user_properties.append((f"trainsanity.{report.name}.{key}", fmt(report.metrics[key])))
            item.user_properties.append((f"trainsanity.{report.name}.passed", str(report.passed)))
            if not report.passed:
                failed.append(report)
        if failed:
            raise TrainSanityError("\n\n".join(r.message for r in failed), failed[0])
        skipped = [r.skipped for r in reports if r.skipped]
        if skipped:  # a check that does not apply is a skip with its reason, never a pass
            skip_test("; ".join(skipped))

    # ---------------------------------------------------------------- reporting

    def pytest_runtest_logreport(self, report: Any) -> None:
        """Registered as a plugin: sees every test report, also those from xdist workers."""
        for data in getattr(report, REPORT_ATTR, None) or []:
            self.results.append(data)

    def summary_lines(self) -> list[str]:
        lines = list(self.warnings)
        for data in self.results:
            r = CheckReport.from_dict(data)
            top = f" [top cause: {r.causes[0]['name']}]" if r.causes and not r.passed and "name" in r.causes[0] else ""
            lines.append(f"{r.summary_line()}{top}")
            if self.settings.explain:
                lines += ["    " + line for line in r.message.splitlines()]
        return lines

    def write_json(self, path: str, rootdir: Path) -> Path | None:
        """The JSON report; an I/O problem is a warning line in the summary, never a changed outcome."""
        target = Path(path)
        if not target.is_absolute():
            target = rootdir / target
        try:
            return self._write_json(target)
        except OSError as exc:
            self.warnings.append(f"WARNING: --trainsanity-report {path} could not be written ({type(exc).__name__}: "
                                 f"{exc.strerror or exc}); test outcomes are unaffected. Give a path in a writable folder.")
            return None

    def _write_json(self, target: Path) -> Path:
        target.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "settings": {"device": self.settings.device, "seed": self.settings.seed,
                         "max_steps": self.settings.max_steps,
                         "eval_samples": self.settings.eval_samples, "artifacts": self.settings.artifacts},
            "checks": self.results,
        }
        tmp = target.with_suffix(target.suffix + f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(payload, indent=2, sort_keys=True))
        tmp.replace(target)
        return target


def skip_test(reason: str) -> None:
    """Skip the running test, reported at the test's own location (not this frame's)."""
    import pytest

    raise pytest.skip.Exception(reason, _use_item_location=True)


def fixture_value(request: Any, name: str, marker: str) -> Any:
    import pytest

    try:
        return request.getfixturevalue(name)
    except pytest.FixtureLookupError:
        raise OptionError(
            f"@pytest.mark.{marker} uses the setup fixture {name!r}, which does not exist. Define "
            f"@pytest.fixture def {name}(): return TrainSetup(...), or pass setup=\"<fixture name>\"."
        ) from None


class Imperative:
    """The ``trainsanity`` fixture: every check/assert function bound to this run's settings."""

    def __init__(self, session: Session, nodeid: str | None, reports: TestReports) -> None:
        self._session, self._nodeid, self._reports = session, nodeid, reports

    def _check(self, marker: str, setup: Any, kwargs: dict[str, Any]) -> CheckReport:
        from .api import prepare

        options = CHECKS[marker].parse((), kwargs, f"trainsanity.{_FUNCS[marker][0]}()")
        report = prepare(marker, setup, options, self._session.settings, self._session.hook, self._nodeid).run()
        self._reports.add(report)
        return report

    def _assert(self, marker: str, setup: Any, kwargs: dict[str, Any]) -> CheckReport:
        __tracebackhide__ = True
        report = self._check(marker, setup, kwargs)
        if report.skipped:
            skip_test(report.skipped)
        if not report.passed:
            raise TrainSanityError(report.message, report)
        return report

    def check_epoch1_overfit(self, setup: Any, **kwargs: Any) -> CheckReport:
        return self._check("no_epoch1_overfit", setup, kwargs)

    def assert_no_epoch1_overfit(self, setup: Any, **kwargs: Any) -> CheckReport:
        __tracebackhide__ = True
        return self._assert("no_epoch1_overfit", setup, kwargs)

    def check_leakage(self, setup: Any, **kwargs: Any) -> CheckReport:
        return self._check("no_leakage", setup, kwargs)

    def assert_no_leakage(self, setup: Any, **kwargs: Any) -> CheckReport:
        __tracebackhide__ = True
        return self._assert("no_leakage", setup, kwargs)

    def check_lr_spikes(self, setup: Any, **kwargs: Any) -> CheckReport:
        return self._check("lr_spike_explained", setup, kwargs)

    def assert_lr_spikes_explained(self, setup: Any, **kwargs: Any) -> CheckReport:
        __tracebackhide__ = True
        return self._assert("lr_spike_explained", setup, kwargs)

    def check_normalization(self, setup: Any, **kwargs: Any) -> CheckReport:
        return self._check("inputs_normalized", setup, kwargs)

    def assert_inputs_normalized(self, setup: Any, **kwargs: Any) -> CheckReport:
        __tracebackhide__ = True
        return self._assert("inputs_normalized", setup, kwargs)


_FUNCS = {
    "no_epoch1_overfit": ("check_epoch1_overfit", "assert_no_epoch1_overfit"),
    "no_leakage": ("check_leakage", "assert_no_leakage"),
    "lr_spike_explained": ("check_lr_spikes", "assert_lr_spikes_explained"),
    "inputs_normalized": ("check_normalization", "assert_inputs_normalized"),
    "loss_at_init": ("check_loss_at_init", "assert_loss_at_init"),
    "overfits_one_batch": ("check_overfit_one_batch", "assert_overfits_one_batch"),
    "batch_independent": ("check_batch_independence", "assert_batch_independent"),
    "params_update": ("check_params_update", "assert_params_update"),
    "finite_training": ("check_finite_training", "assert_finite_training"),
    "batches_mixed": ("check_batch_mix", "assert_batches_mixed"),
    "preflight": ("check_preflight", "assert_preflight"),
}


def _bind(marker: str) -> None:
    """The fixture's check_*/assert_* pair of one pre-flight marker (the first four are written out)."""
    check_name, assert_name = _FUNCS[marker]

    def check(self: "Imperative", setup: Any, **kwargs: Any) -> CheckReport:
        return self._check(marker, setup, kwargs)

    def assert_(self: "Imperative", setup: Any, **kwargs: Any) -> CheckReport:
        __tracebackhide__ = True
        return self._assert(marker, setup, kwargs)

    check.__name__, assert_.__name__ = check_name, assert_name
    setattr(Imperative, check_name, check)
    setattr(Imperative, assert_name, assert_)


for _marker in list(_FUNCS)[4:]:
    _bind(_marker)
assert set(_FUNCS) == set(CHECK_TO_MARKER.values())
