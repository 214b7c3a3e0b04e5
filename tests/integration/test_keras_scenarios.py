"""The pytester scenarios for Keras 3 models (TensorFlow backend), mirroring the torch ones:
every marker on real Keras training, real digits data, tf.data splits."""

from __future__ import annotations

import json

import pytest

from pytest_trainsanity.checks import overfit

from .conftest import run

SCENARIOS = """
import pytest
import keras_helpers

@pytest.mark.no_epoch1_overfit
@pytest.mark.inputs_normalized
@pytest.mark.no_leakage
@pytest.mark.lr_spike_explained(epochs=8, allow=())
def test_clean(train_setup, trainsanity_report):
    assert all(r.passed for r in trainsanity_report)
    assert keras_helpers.unchanged(train_setup.model)  # bit-identical after four checks

@pytest.mark.no_epoch1_overfit(setup="memorise")
def test_memorise():
    pass

@pytest.mark.inputs_normalized(setup="raw255")
def test_raw255():
    pass

@pytest.mark.no_leakage(setup="leaked_tfdata", near_duplicates=False)
def test_leaked_tfdata():
    pass

@pytest.mark.lr_spike_explained(setup="warmup", epochs=12)
def test_warmup(warmup, trainsanity_report):
    (spike,) = trainsanity_report["lr_spike_explained"].causes
    assert (spike["epoch"], spike["cause"]) == (6, "lr_schedule")
    assert keras_helpers.unchanged(warmup.model)

@pytest.mark.lr_spike_explained(setup="article_decay", epochs=30, metric="train_acc")
def test_article_decay():
    pass
"""


def test_keras_scenarios(keras_project: pytest.Pytester) -> None:
    keras_project.makepyfile(test_keras=SCENARIOS)
    res = run(keras_project, "-rA", "--trainsanity-report=r.json")
    checks = {(c["nodeid"].split("::")[1], c["name"]): c for c in json.loads((keras_project.path / "r.json").read_text())["checks"]}
    assert {k: c["passed"] for k, c in checks.items()} == {
        ("test_clean", "no_epoch1_overfit"): True, ("test_clean", "inputs_normalized"): True,
        ("test_clean", "no_leakage"): True, ("test_clean", "lr_spike_explained"): True,
        ("test_memorise", "no_epoch1_overfit"): False, ("test_raw255", "inputs_normalized"): False,
        ("test_leaked_tfdata", "no_leakage"): False, ("test_warmup", "lr_spike_explained"): True,
        ("test_article_decay", "lr_spike_explained"): False,
    }
    res.assert_outcomes(passed=2, failed=4)
    mem = checks[("test_memorise", "no_epoch1_overfit")]
    assert mem["causes"][0]["name"] in (overfit.CAUSE_DUPLICATION, overfit.CAUSE_MEMORISATION)
    assert checks[("test_leaked_tfdata", "no_leakage")]["metrics"]["train_val_exact"] == 72
    res.stdout.fnmatch_lines([
        "*no_epoch1_overfit FAILED: after 1 epoch (60 steps) train accuracy * vs val *: gap * > max_gap 0.150*",
        "*Model: Sequential (keras on /CPU:0), 9,610 trainable parameters; 1,920 train / 360 val samples; batch 32.",
        f"*1. {overfit.CAUSE_DUPLICATION} (evidence score 0.97): 64 unique inputs among 1920 train samples*",
    ])
    res.stdout.fnmatch_lines(["*inputs_normalized FAILED for train, val: train inputs are not standardised: values span [[]0, 255]*"])
    res.stdout.fnmatch_lines(["*no_leakage FAILED: train/val: 72 copies (exact or near) of 360 val samples (20.0%; limit 0).*"])
    res.stdout.fnmatch_lines([
        "*lr_spike_explained FAILED: the learning rate collapsed: it fell below 0.001 x its peak 0.01 at step 100 (epoch 4 of 30)*",
        "*count it in steps (Keras ExponentialDecay: decay_steps = epochs_per_decay x 32) or use a keras.callbacks.LearningRateScheduler*",
    ])


def test_torch_and_keras_tests_in_one_pytest_process(keras_project: pytest.Pytester) -> None:
    keras_project.makepyfile(test_mixed="""
        import sys
        import pytest
        import helpers
        import keras_helpers

        @pytest.fixture
        def torch_setup():
            return helpers.clean()

        @pytest.mark.no_epoch1_overfit(setup="torch_setup", probes=False)
        def test_torch(trainsanity_report):
            assert trainsanity_report["no_epoch1_overfit"].passed

        @pytest.mark.no_epoch1_overfit(probes=False)
        def test_keras(trainsanity_report):
            assert "keras on /CPU:0" in trainsanity_report["no_epoch1_overfit"].message
            assert "torch" in sys.modules and "tensorflow" in sys.modules
    """)
    run(keras_project).assert_outcomes(passed=2)
