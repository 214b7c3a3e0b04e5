"""Settings resolution, marker parsing, report plumbing, device mapping, hooks."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pytest_trainsanity.adapters.devices import auto_gpu_index, xdist_worker_index
from pytest_trainsanity.checks.causes import Cause, rank
from pytest_trainsanity.errors import OptionError
from pytest_trainsanity.hooks import standalone_hook
from pytest_trainsanity.report import CheckReport, fmt, plain, time_text
from pytest_trainsanity.settings import CHECKS, DEFAULT_MAX_STEPS, RunSettings, build_run_settings


@pytest.mark.parametrize("device", ["auto", "cpu", "cuda", "cuda:3", "mps", " CUDA:0 "])
def test_devices_accepted(device: str) -> None:
    assert build_run_settings({"device": device}, "test").device == device.strip().lower()


@pytest.mark.parametrize(("values", "message"), [
    ({"device": "gpu"}, "trainsanity device 'gpu' (from src) is not valid; choose one of: auto, cpu, cuda, cuda:N, mps."),
    ({"seed": -1}, "trainsanity seed -1 (from src) must be an integer >= 0."),
    ({"seed": True}, "trainsanity seed True (from src) must be an integer >= 0."),
    ({"max_steps": "x"}, "trainsanity max_steps 'x' (from src) must be an integer >= 1."),
])
def test_bad_values_name_value_and_source(values: dict, message: str) -> None:
    with pytest.raises(OptionError) as info:
        build_run_settings(values, "src")
    assert str(info.value) == message


def test_max_steps_none_or_zero_means_no_budget() -> None:
    assert build_run_settings({}, "d").max_steps == DEFAULT_MAX_STEPS
    assert build_run_settings({"max_steps": "none"}, "d").max_steps is None
    assert build_run_settings({"max_steps": "0"}, "d").max_steps is None


def test_marker_overrides_validate_with_their_source() -> None:
    base = RunSettings()
    assert base.override("marker x", seed=4).seed == 4
    with pytest.raises(OptionError, match=r"\(from marker x\)"):
        base.override("marker x", device="tpu")


def test_marker_parse() -> None:
    spec = CHECKS["no_epoch1_overfit"]
    opts = spec.parse((), {"max_gap": 0.3, "setup": "other", "seed": 2}, "src")
    assert (opts.max_gap, opts.epochs, opts.setup, dict(opts.run_overrides)) == (0.3, 1, "other", {"seed": 2})
    with pytest.raises(OptionError, match="unknown argument"):
        spec.parse((), {"gap": 0.3}, "src")
    with pytest.raises(OptionError, match="setup must name a fixture"):
        spec.parse((), {"setup": 3}, "src")
    assert CHECKS["lr_spike_explained"].parse((), {"allow": "momentum"}, "s").allow == ("momentum",)
    assert CHECKS["no_leakage"].parse((), {"max_overlap": 0.05}, "s").max_overlap == 0.05


def test_report_round_trips_as_plain_json() -> None:
    report = CheckReport("no_epoch1_overfit", False, "msg", {"gap": np.float32(0.5), "n": np.int64(3), "bad": float("nan")},
                         [Cause("x", 0.5, "e", "f").to_dict()], key=("gap", "n"), nodeid="t.py::a")
    data = json.loads(json.dumps(report.to_dict()))
    assert data["metrics"] == {"gap": 0.5, "n": 3, "bad": None}
    again = CheckReport.from_dict(data)
    assert again.summary_line() == "t.py::a no_epoch1_overfit FAILED: gap=0.500, n=3"
    assert plain((np.arange(2), {"a": np.float64(1.0)})) == [[0, 1], {"a": 1.0}]
    assert fmt(1e-7) == "1e-07" and fmt(0.0) == "0" and fmt(12345.0) == "1.23e+04"


def test_rank_orders_by_score_and_splits_ruled_out() -> None:
    likely, out = rank([Cause("a", 0.2, "", ""), Cause("b", 0.9, "", ""), Cause("c", 0.05, "", "")])
    assert [c.name for c in likely] == ["b", "a"] and [c.name for c in out] == ["c"]


def test_xdist_worker_takes_gpu_n_mod_count() -> None:
    assert xdist_worker_index({"PYTEST_XDIST_WORKER": "gw5"}) == 5
    assert xdist_worker_index({}) is None
    assert [auto_gpu_index(2, w) for w in (None, 0, 1, 2, 3)] == [0, 0, 1, 0, 1]
    assert auto_gpu_index(0, 3) is None


def test_standalone_hook_declines_unknown_models() -> None:
    hook = standalone_hook()
    assert hook.pytest_trainsanity_make_adapter(model=object(), setup=None, data={}, settings=RunSettings()) is None


def test_readme_ci_recipe_is_the_workflow_file_and_runs_the_quick_start_commands() -> None:
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    readme = (root / "README.md").read_text()
    workflow = (root / ".github" / "workflows" / "trainsanity.yml").read_text()
    assert "```yaml\n" + workflow + "```" in readme
    quick_start = readme.split("## Quick start")[1].split("## Use it")[0]
    commands = [line for line in quick_start.splitlines() if line.startswith("pip install")]
    assert commands == ["pip install tox && tox -e examples", "pip install tox && tox"]
    assert [line.split("run: ", 1)[1] for line in workflow.splitlines() if "run: " in line] == commands
    assert (root / ".ci" / "run").read_text().strip().endswith(commands[1])


def test_times_read_as_people_write_them() -> None:
    """A message said "the latest train time 2024-01-09T07:00:00.000000000" (numpy's repr of a
    nanosecond datetime64, what pandas gives): a time is written down to the unit it needs, the
    same for numpy and pandas, a zoned time in UTC."""
    pd = pytest.importorskip("pandas")
    assert time_text(np.datetime64("2024-01-09T07:00:00.000000000")) == "2024-01-09 07:00"
    assert time_text(np.datetime64("2024-01-09T00:00:00", "ns")) == "2024-01-09"
    assert time_text(np.datetime64("2024-01-09T07:30:05.250", "ns")) == "2024-01-09 07:30:05.250"
    assert time_text(np.datetime64("2024-01-09T07:30:05.000000001")) == "2024-01-09 07:30:05.000000001"
    assert time_text(pd.Timestamp("2024-01-09 07:00")) == "2024-01-09 07:00"
    assert time_text(pd.Timestamp("2024-03-01 10:00", tz="Europe/Berlin")) == "2024-03-01 09:00 UTC"
    assert time_text(99.0) == "99.0" and time_text(7) == "7"
