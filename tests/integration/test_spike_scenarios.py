"""``lr_spike_explained`` on digits, end to end: the issue's acceptance scenarios."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .conftest import run

SCENARIOS = """
import pytest

@pytest.mark.lr_spike_explained(setup="warmup")
def test_warmup_allowed(trainsanity_report):
    spikes = [c for c in trainsanity_report["lr_spike_explained"].causes if c["cause"] != "lr_collapse"]
    assert [(s["epoch"], s["cause"], s["attributed_by"]) for s in spikes] == [(6, "lr_schedule", "replay")]

@pytest.mark.lr_spike_explained(setup="warmup", allow=())
def test_warmup_not_allowed(): pass

@pytest.mark.lr_spike_explained(epochs=10, allow=())
def test_constant_adam(): pass

@pytest.mark.lr_spike_explained(setup="per_step_decay", epochs=30, metric="train_acc")
def test_per_step_decay(): pass
"""


def test_spike_scenarios(project: pytest.Pytester) -> None:
    project.makepyfile(test_spikes=SCENARIOS)
    res = run(project, "--trainsanity-report=r.json", "--trainsanity-artifacts=plots")
    checks = {c["nodeid"].split("::")[1]: c for c in json.loads((project.path / "r.json").read_text())["checks"]}
    assert {name: c["passed"] for name, c in checks.items()} == {
        "test_warmup_allowed": True, "test_warmup_not_allowed": False, "test_constant_adam": True,
        "test_per_step_decay": False,
    }
    res.assert_outcomes(passed=2, failed=2)
    (spike,) = checks["test_warmup_not_allowed"]["causes"]
    assert (spike["epoch"], spike["cause"]) == (6, "lr_schedule")
    assert spike["removed_fraction"]["hold_lr"] > 0.9 and spike["removed_fraction"]["reshuffle"] < 0.5
    assert any("lr rose x1e+03 (warm-up end) (1e-05 -> 0.01) at epoch 6" in e for e in spike["evidence"])
    assert checks["test_constant_adam"]["metrics"]["spikes"] == 0
    res.stdout.fnmatch_lines([
        "*lr_spike_explained FAILED: val_acc jumped +0.8* at epoch 6 (0.1* -> 0.9*; the run's trend predicted +0.0*), "
        "caused by lr_schedule, which is not in allow=().",
        "*1. epoch 6: val_acc +0.8* -> lr_schedule",
        "*evidence: lr rose x1e+03 (warm-up end) (1e-05 -> 0.01) at epoch 6; no batch-norm layer*",
        "*replay of epoch 6 from the checkpoint before it: as recorded +0.8*; hold the lr at its value before the spike: +0.0* (removes 9*%)*",
        "*Fix:*",
        "*lr_schedule: the jump follows the learning-rate schedule. If that is intended, allow it*",
    ])
    res.stdout.fnmatch_lines([
        "*lr_spike_explained FAILED: the learning rate collapsed: it fell below 0.001 x its peak 0.01 at step 100 (epoch 4 of 30)*",
        "*lr_collapse: the schedule advances once per optimizer step (32 steps per epoch) and halves the lr every 10* steps*",
    ])
    plot = Path(checks["test_warmup_not_allowed"]["metrics"]["plot"])
    assert plot.parent == project.path / "plots" and plot.read_bytes()[:4] == b"\x89PNG"
    res.stdout.fnmatch_lines([f"*Plot: {plot}"])


def test_a_per_epoch_decay_that_collapses_is_worded_per_epoch(keras_project: pytest.Pytester) -> None:
    """A per-epoch schedule whose factor is too steep (a Keras LearningRateScheduler callback, a torch StepLR
    stepped per epoch, each x0.01 per epoch) was worded "advances once per optimizer step and halves the lr every
    2 steps", with a fix to use the very callback the user had."""
    keras_project.makepyfile(test_epoch_decay="""
        import pytest, torch
        import keras
        import helpers, keras_helpers as kh

        @pytest.fixture
        def torch_steplr():
            return helpers.setup(*helpers.digits(), lr=1e-2, scheduler=lambda opt: torch.optim.lr_scheduler.StepLR(
                opt, step_size=1, gamma=0.01))

        @pytest.fixture
        def keras_callback():
            return kh.setup(*kh.digits(), lr=1e-2,
                            scheduler=keras.callbacks.LearningRateScheduler(lambda epoch, lr: lr * 0.01))

        @pytest.mark.lr_spike_explained(setup="torch_steplr", epochs=6)
        def test_torch_steplr(): pass

        @pytest.mark.lr_spike_explained(setup="keras_callback", epochs=6)
        def test_keras_callback(): pass
    """)
    res = run(keras_project)
    res.assert_outcomes(failed=2)
    res.stdout.fnmatch_lines([
        "*lr_spike_explained FAILED: the learning rate collapsed: it fell below 0.001 x its peak 0.01 at step 90 "
        "(epoch 3 of 6)*",
        "*lr_collapse: the schedule (StepLR) changes the lr only between epochs and multiplies it by 0.01 per epoch, so "
        "it is below the floor by epoch 3. Slow the decay (a factor per epoch nearer 1, e.g. 0.9-0.95) or give it a "
        "floor*",
    ])
    res.stdout.fnmatch_lines([
        "*lr_collapse: the schedule (LearningRateScheduler) changes the lr only between epochs and multiplies it by "
        "0.01 per epoch, so it is below the floor by epoch 3.*",
    ])
    assert "advances once per optimizer step" not in res.stdout.str()


def test_spikes_around_a_plateau_cut_get_fixes_that_apply(keras_project: pytest.Pytester) -> None:
    """A ReduceLROnPlateau cut attributed to the lr was told to "smooth the schedule (a longer linear warm-up,
    cosine instead of step decay)", which a plateau callback has no knob for; a jump right after a x0.05 cut that
    the one hold-the-lr replay did not remove was sent after data, val-set or evaluation bugs alone; batch_stats
    advised "more BN momentum smoothing" for a model with no batch-norm layer."""
    keras_project.makepyfile(test_plateau_spikes="""
        import numpy as np, pytest
        import keras
        from pytest_trainsanity import TrainSetup
        from sklearn.datasets import load_digits

        X, y = load_digits(return_X_y=True)
        X, y = (X / 16).astype("float32"), y.astype("int64")

        def build(optimizer, patience, factor):
            keras.utils.set_random_seed(0)
            model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(64, activation="relu"), keras.layers.Dense(10)])
            cb = keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=factor, patience=patience)
            return TrainSetup(model=model, train=(X[:600], y[:600]), val=(X[1400:1700], y[1400:1700]), optimizer=optimizer,
                              loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), scheduler=cb, batch_size=32)

        @pytest.fixture
        def unsettled():
            return build(keras.optimizers.SGD(1.2), 2, 0.05)

        @pytest.fixture
        def cut():
            return build(keras.optimizers.Adam(0.03), 1, 0.1)

        @pytest.mark.lr_spike_explained(setup="unsettled", epochs=12, allow=())
        def test_unsettled(): pass

        @pytest.mark.lr_spike_explained(setup="cut", epochs=12, allow=())
        def test_cut(): pass
    """)
    res = run(keras_project)
    res.assert_outcomes(failed=2)
    res.stdout.fnmatch_lines([
        "*unexplained: no intervention removed half of the jump* The lr changed at epoch 6, yet the replay that held "
        "the old rate jumped +0.303 (as recorded: +0.217)*rerun with other seeds (--trainsanity-seed)*",
    ])
    res.stdout.fnmatch_lines([
        "*batch_stats: the jump depends on the batch order, not on learning (the model has no batch-norm layer)*",
        "*lr_schedule: the jump follows a cut by ReduceLROnPlateau.*make its cuts gentler or rarer (factor nearer 1*",
    ])
    assert "BN momentum" not in res.stdout.str() and "cosine instead of step decay" not in res.stdout.str()


def test_a_pass_too_short_for_spike_detection_is_a_skip_never_a_pass(project: pytest.Pytester) -> None:
    """A step budget that stops the pass in epoch 1 of 5 said "lr_spike_explained passed: 0 spike(s)" with
    a note that no detection ran: a green gate that judged nothing. (A collapse or a non-finite pass still
    fails a short run: test_trust's NaN scenarios run 2 epochs.)"""
    project.makepyfile("""
        import pytest

        @pytest.mark.lr_spike_explained(epochs=5, max_steps=10)
        def test_capped(): pass

        @pytest.mark.lr_spike_explained(epochs=2)
        def test_two_epochs(): pass
    """)
    res = run(project, "-rs")
    res.assert_outcomes(skipped=2)
    res.stdout.fnmatch_lines([
        "SKIPPED [[]1[]] test_a_pass_too_short*: lr_spike_explained judged no spike: 1 epoch(s) ran and spike detection "
        "needs at least 4 (the first three set the trend); the step budget (--trainsanity-max-steps 10) stopped the pass "
        "after 10 steps, in epoch 1 of the 5 asked for; raise it, or lift it with max_steps=0",
    ])
    res.stdout.fnmatch_lines(["SKIPPED [[]1[]] *: lr_spike_explained judged no spike: 2 epoch(s) ran and spike detection "
                              "needs at least 4 (the first three set the trend); ask for epochs >= 4"])
