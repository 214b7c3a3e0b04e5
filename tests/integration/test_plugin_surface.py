"""The plugin's public surface end to end: markers, options and ini twins,
fixtures, the summary, JUnit properties, the JSON report, misuse errors."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest

from pytest_trainsanity.checks import overfit

from .conftest import run


def test_markers_are_registered_with_signatures(pytester: pytest.Pytester) -> None:
    res = run(pytester, "--markers")
    res.stdout.fnmatch_lines([
        "@pytest.mark.no_epoch1_overfit(max_gap=0.15, max_train_acc=None, epochs=1, probes=True, setup='train_setup'):*",
        "@pytest.mark.no_leakage(near_duplicates=True, threshold=None, max_overlap=0, within_split=False, setup='train_setup'):*",
        "@pytest.mark.lr_spike_explained(epochs=20, metric='val_acc', min_jump=None, allow=('lr_schedule',), setup='train_setup'):*",
        "@pytest.mark.inputs_normalized(tol=5.0, setup='train_setup'):*",
    ])


def test_strict_markers_clean_and_disable_with_p_no(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest
        @pytest.mark.no_epoch1_overfit
        @pytest.mark.no_leakage
        @pytest.mark.lr_spike_explained
        @pytest.mark.inputs_normalized
        def test_x(): pass
        """
    )
    run(pytester, "--strict-markers", "--collect-only").assert_outcomes()
    disabled = run(pytester, "--strict-markers", "--collect-only", "-p", "no:trainsanity")
    disabled.stdout.fnmatch_lines(["*'no_epoch1_overfit' not found in `markers` configuration option*"])
    assert disabled.ret != 0


@pytest.mark.parametrize(
    ("args", "ini", "expected"),
    [
        (["--trainsanity-device=tpu"], "", "*trainsanity device 'tpu' (from --trainsanity-device) is not valid; choose one of: auto, cpu, cuda, cuda:N, mps.*"),
        (["--trainsanity-seed=abc"], "", "*trainsanity seed 'abc' (from --trainsanity-seed) must be an integer >= 0.*"),
        (["--trainsanity-max-steps=-3"], "", "*trainsanity max_steps '-3' (from --trainsanity-max-steps) must be an integer >= 1.*"),
        ([], "trainsanity_device = gpu", "*trainsanity device 'gpu' (from ini trainsanity_device) is not valid*"),
    ],
)
def test_bad_option_values_are_usage_errors(pytester: pytest.Pytester, args: list[str], ini: str, expected: str) -> None:
    pytester.makeini(f"[pytest]\n{ini}\n")
    pytester.makepyfile("def test_x(): pass")
    res = run(pytester, *args)
    res.stderr.fnmatch_lines(["ERROR: " + expected.lstrip("*")])
    assert res.ret == pytest.ExitCode.USAGE_ERROR


def test_options_ini_and_marker_precedence(project: pytest.Pytester) -> None:
    project.makeini(
        "[pytest]\ntrainsanity_seed = 7\ntrainsanity_max_steps = 11\ntrainsanity_device = cpu\n"
        "trainsanity_explain = true\ntrainsanity_artifacts = from-ini\ntrainsanity_eval_samples = 300\n"
    )
    project.makepyfile(
        """
        import pytest

        @pytest.mark.no_epoch1_overfit(probes=False)
        def test_ini(trainsanity_report):
            assert trainsanity_report["no_epoch1_overfit"].metrics["eval_val_samples"] == 300
            assert trainsanity_report["no_epoch1_overfit"].metrics["steps"] == 11

        @pytest.mark.no_epoch1_overfit(probes=False, max_steps=5, seed=3, device="cpu", eval_samples=100)
        def test_marker_wins(trainsanity_report):
            r = trainsanity_report["no_epoch1_overfit"]
            assert r.metrics["steps"] == 5
            assert r.metrics["eval_train_samples"] == r.metrics["eval_val_samples"] == 100
            assert "val metrics and data measurements come from a seeded sample of 100 of 360 samples" in r.message
            assert "stopped at the step budget after 5 steps" in r.message
            assert "probes not run: probes=False" in r.message
        """
    )
    res = run(project, "--trainsanity-max-steps=13", "--trainsanity-report=out.json", "--trainsanity-artifacts=plots")
    res.assert_outcomes(passed=1, failed=1)
    res.stdout.fnmatch_lines(["trainsanity: device=cpu seed=7 max_steps=13 eval_samples=300"])  # CLI beats ini
    res.stdout.fnmatch_lines(["*assert 13 == 11*"])
    res.stdout.fnmatch_lines(["*= trainsanity =*", "*test_marker_wins no_epoch1_overfit passed*", "    Measured:"])  # ini explain
    data = json.loads((project.path / "out.json").read_text())
    assert data["settings"] == {"device": "cpu", "seed": 7, "max_steps": 13, "eval_samples": 300, "artifacts": "plots"}


def test_seed_makes_verdicts_reproducible(project: pytest.Pytester) -> None:
    project.makepyfile(
        """
        import pytest
        @pytest.mark.no_epoch1_overfit
        def test_clean(): pass
        """
    )
    numbers = []
    for seed in ("0", "0", "5"):
        run(project, f"--trainsanity-seed={seed}", "--trainsanity-report=r.json").assert_outcomes(passed=1)
        metrics = json.loads((project.path / "r.json").read_text())["checks"][0]["metrics"]
        numbers.append((metrics["train_metric"], metrics["val_metric"], metrics["noise_train"], metrics["low_lr_gap"]))
    assert numbers[0] == numbers[1]
    assert numbers[0] != numbers[2]


def test_marker_arguments(project: pytest.Pytester) -> None:
    project.makepyfile(
        """
        import pytest

        @pytest.mark.no_epoch1_overfit(max_gap=0.0, probes=False)
        def test_zero_gap(): pass

        @pytest.mark.no_epoch1_overfit(max_train_acc=0.5, probes=False)
        def test_max_train_acc(): pass

        @pytest.mark.no_epoch1_overfit(epochs=2, probes=False)
        def test_two_epochs(trainsanity_report):
            r = trainsanity_report["no_epoch1_overfit"]
            assert r.metrics["epochs"] == 2 and r.metrics["steps"] == 90
            assert r.message.startswith("no_epoch1_overfit passed: after 2 epochs (90 steps)")

        @pytest.mark.inputs_normalized(setup="raw255", tol=1000)
        def test_tol_loosened(): pass

        @pytest.mark.inputs_normalized(setup="raw255", tol=1.0)
        def test_tol_tight(): pass
        """
    )
    res = run(project)
    res.assert_outcomes(passed=2, failed=3)
    res.stdout.fnmatch_lines([f"*no_epoch1_overfit FAILED: after 1 epoch (45 steps) train accuracy * vs val *: {overfit.GAP_FAILED.format(gap='*', max_gap='0.000')}*"])
    res.stdout.fnmatch_lines(["*no_epoch1_overfit FAILED:*train accuracy 0.841 > max_train_acc 0.500*"])
    res.stdout.fnmatch_lines(["*inputs_normalized FAILED for train, val: train inputs are not standardised*"])


MISUSE = [
    ("no_epoch1_overfit(bogus=1)", "*pytest-trainsanity: @pytest.mark.no_epoch1_overfit: unknown argument(s) bogus for no_epoch1_overfit. Valid arguments: device, epochs, eval_samples, max_gap, max_steps, max_train_acc, probes, seed, setup.*"),
    ("no_epoch1_overfit(max_gap=2)", "*@pytest.mark.no_epoch1_overfit: max_gap must be a number in [[]0.0, 1.0], got 2.*"),
    ("no_epoch1_overfit(0.2)", "*no_epoch1_overfit takes keyword arguments only, got positional (0.2,)*"),
    ("no_epoch1_overfit(epochs=0)", "*epochs must be an integer >= 1, got 0*"),
    ("no_epoch1_overfit(probes='yes')", "*probes must be True or False, got 'yes'*"),
    ("no_epoch1_overfit(device='gpu')", "*trainsanity device 'gpu' (from marker no_epoch1_overfit) is not valid*"),
    ("inputs_normalized(tol=-1)", "*tol must be a positive number, got -1*"),
    ("no_leakage(max_overlap=1.5)", "*max_overlap as a float is a fraction in [[]0, 1), got 1.5*"),
    ("lr_spike_explained(metric='f1')", "*metric must be one of val_acc, train_acc, val_loss, train_loss, got 'f1'*"),
    ("lr_spike_explained(allow=('magic',))", "*allow may hold only lr_schedule, batch_stats, momentum, unexplained; got [[]'magic']*"),
    ("no_epoch1_overfit(setup='nope')", "*uses the setup fixture 'nope', which does not exist. Define @pytest.fixture def nope()*"),
    ("no_epoch1_overfit(setup='not_a_setup')", "*no_epoch1_overfit needs a TrainSetup, but the setup fixture 'not_a_setup' returned dict.*"),
    ("lr_spike_explained(setup='no_model')", "*lr_spike_explained needs TrainSetup(model=...) but it was left None.*"),
    ("no_leakage(near_duplicates='no')", "*near_duplicates must be True or False, got 'no'*"),
    ("no_leakage(threshold=0)", "*threshold must be a positive number, got 0*"),
    ("no_leakage(within_split=1)", "*within_split must be True or False, got 1*"),
    ("lr_spike_explained(epochs=0)", "*epochs must be an integer >= 1, got 0*"),
    ("lr_spike_explained(min_jump=-0.1)", "*min_jump must be a positive number, got -0.1*"),
    ("inputs_normalized(seed=-2)", "*trainsanity seed -2 (from marker inputs_normalized) must be an integer >= 0.*"),
    ("no_epoch1_overfit(max_steps='many')", "*trainsanity max_steps 'many' (from marker no_epoch1_overfit) must be an integer >= 1.*"),
    ("no_epoch1_overfit(eval_samples=0)", "*trainsanity eval_samples 0 (from marker no_epoch1_overfit) must be an integer >= 1.*"),
]


def test_misuse_is_a_one_paragraph_setup_error(project: pytest.Pytester) -> None:
    tests = "\n".join(f"@pytest.mark.{marker}\ndef test_{i}(): pass\n" for i, (marker, _) in enumerate(MISUSE))
    project.makepyfile(
        "import pytest\nimport numpy as np\nfrom pytest_trainsanity import TrainSetup\n\n@pytest.fixture\ndef not_a_setup():\n    return {'model': None}\n\n"
        "@pytest.fixture\ndef no_model():\n    return TrainSetup(train=(np.zeros((4, 2)), np.zeros(4)))\n\n" + tests
    )
    res = run(project)
    res.assert_outcomes(errors=len(MISUSE))
    for i, (_, expected) in enumerate(MISUSE):
        res.stdout.fnmatch_lines([f"*ERROR at setup of test_{i} *", expected])
    assert "Traceback" not in res.stdout.str()
    assert "During handling" not in res.stdout.str()


def test_fixtures_imperative_and_report(project: pytest.Pytester) -> None:
    project.makepyfile(
        """
        import pytest
        from pytest_trainsanity import OptionError, TrainSanityError, check_normalization
        import helpers

        def test_imperative(trainsanity, trainsanity_report):
            report = trainsanity.check_epoch1_overfit(helpers.clean(), probes=False)
            assert report.passed and report.name == "no_epoch1_overfit"
            assert set(report.to_dict()) >= {"name", "passed", "message", "metrics"}
            with pytest.raises(TrainSanityError, match=r"^inputs_normalized FAILED for val"):
                trainsanity.assert_inputs_normalized(helpers.val_raw())
            assert [r.name for r in trainsanity_report] == ["no_epoch1_overfit", "inputs_normalized"]
            assert trainsanity.assert_no_epoch1_overfit(helpers.clean(), probes=False).passed
            spikes = trainsanity.check_lr_spikes(helpers.clean(), epochs=5, allow=())
            assert spikes.passed and spikes.metrics["spikes"] == 0 and spikes.name == "lr_spike_explained"
            assert trainsanity.assert_no_leakage(helpers.clean()).passed
            with pytest.raises(OptionError, match="check_epoch1_overfit.*unknown argument.*gap"):
                trainsanity.check_epoch1_overfit(helpers.clean(), gap=0.1)

        def test_outside_pytest_api():
            report = check_normalization(helpers.raw255(), tol=1000)
            assert report.passed

        def test_report_fixture_lookup(trainsanity_report):
            with pytest.raises(KeyError, match="no 'no_leakage' check ran for this test"):
                trainsanity_report["no_leakage"]
        """
    )
    res = run(project)
    res.assert_outcomes(passed=3)
    res.stdout.fnmatch_lines([
        "*= trainsanity =*",
        "test_fixtures_imperative_and_report.py::test_imperative no_epoch1_overfit passed: train_metric=0.841, val_metric=0.817, gap=0.024",
        "test_fixtures_imperative_and_report.py::test_imperative inputs_normalized FAILED: *",
    ])


def test_summary_explain_junit_and_json(project: pytest.Pytester) -> None:
    project.makepyfile(
        """
        import pytest

        @pytest.mark.no_epoch1_overfit(probes=False)
        @pytest.mark.inputs_normalized
        def test_clean(): pass

        @pytest.mark.inputs_normalized(setup="val_raw")
        def test_val_raw(): pass

        def test_plain(): pass
        """
    )
    res = run(project, "--trainsanity-explain", "--junitxml=junit.xml", "--trainsanity-report=sub/report.json")
    res.assert_outcomes(passed=2, failed=1)
    res.stdout.fnmatch_lines([
        "*= trainsanity =*",
        "test_summary_explain_junit_and_json.py::test_clean no_epoch1_overfit passed: train_metric=0.841, val_metric=0.817, gap=0.024",
        "    no_epoch1_overfit passed: after 1 epoch (45 steps) train accuracy 0.841 vs val 0.817*",
        "    Measured:",
        "test_summary_explain_junit_and_json.py::test_clean inputs_normalized passed: *",
        "test_summary_explain_junit_and_json.py::test_val_raw inputs_normalized FAILED: *",
    ])
    props = {
        (case.get("name"), p.get("name")): p.get("value")
        for case in ET.parse(project.path / "junit.xml").iter("testcase")
        for p in case.iter("property")
    }
    assert props[("test_clean", "trainsanity.no_epoch1_overfit.gap")] == "0.024"
    assert props[("test_clean", "trainsanity.no_epoch1_overfit.passed")] == "True"
    assert props[("test_val_raw", "trainsanity.inputs_normalized.passed")] == "False"
    data = json.loads((project.path / "sub" / "report.json").read_text())
    assert [(c["nodeid"].split("::")[1], c["name"], c["passed"]) for c in data["checks"]] == [
        ("test_clean", "no_epoch1_overfit", True),
        ("test_clean", "inputs_normalized", True),
        ("test_val_raw", "inputs_normalized", False),
    ]
    assert isinstance(data["checks"][0]["metrics"]["n_params"], int)


def test_loading_the_plugin_imports_no_framework(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        """
        import sys
        def pytest_unconfigure(config):
            heavy = [m for m in ("torch", "tensorflow", "keras") if m in sys.modules]
            print("HEAVY=" + ",".join(heavy))
        """
    )
    pytester.makepyfile(
        """
        import pytest
        @pytest.mark.inputs_normalized
        def test_plain(trainsanity, trainsanity_report): pass
        def test_other(): pass
        """
    )
    res = run(pytester, "-s", "--collect-only")
    res.stdout.fnmatch_lines(["HEAVY="])
    res = run(pytester, "-s", "-k", "test_other")
    res.assert_outcomes(passed=1)
    res.stdout.fnmatch_lines(["HEAVY="])


def test_cuda_asked_for_without_a_gpu_is_a_setup_error(project: pytest.Pytester) -> None:
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a GPU is visible here")
    project.makepyfile(
        """
        import pytest
        @pytest.mark.no_epoch1_overfit
        def test_x(): pass
        """
    )
    res = run(project, "--trainsanity-device=cuda")
    res.assert_outcomes(errors=1)
    res.stdout.fnmatch_lines(["*trainsanity device 'cuda' was asked for but torch.cuda.is_available() is False*Use 'cpu' or 'auto'."])
