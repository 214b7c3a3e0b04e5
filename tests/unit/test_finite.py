"""Non-finite training and missing times (numpy only): a gate never passes on NaN/Inf."""

from __future__ import annotations

import numpy as np
import pytest

from pytest_trainsanity.checks import finite
from pytest_trainsanity.checks.labels import NonFiniteLabels, class_ids
from pytest_trainsanity.checks.leakage.measure import known_values
from pytest_trainsanity.settings import _allow, _overlap


class Trace:
    def __init__(self, loss, lr=0.1, start=(), end=()) -> None:
        self.loss = np.asarray(loss, dtype=np.float64)
        self.lr = np.full((len(self.loss), 1), lr)
        self.epoch = np.arange(len(self.loss)) // 4
        self.bad_weights_start, self.bad_weights_end = tuple(start), tuple(end)


def test_a_finite_pass_has_no_finding() -> None:
    assert finite.find(Trace([2.3, 2.1, 1.9])) is None


def test_the_first_non_finite_step_is_named_one_based_with_its_epoch_and_lr() -> None:
    nf = finite.find(Trace([2.3, 2.2, 2.1, 2.0, 1.9, np.inf, np.nan], lr=0.5))
    assert (nf.step, nf.epoch, nf.value, nf.lr, nf.steps) == (6, 2, "+Inf", 0.5, 7)
    assert "the training loss was +Inf at step 6 of 7 (epoch 2, lr 0.5)" in finite.headline("no_epoch1_overfit", nf)


def test_causes_rank_what_was_measured() -> None:
    likely, _ = finite.causes(finite.find(Trace([np.nan] * 3, start=("fc.bias",), end=("fc.bias", "fc.weight"))))
    assert likely[0].name == "weights_nonfinite_at_start" and "fc.bias" in likely[0].evidence

    likely, _ = finite.causes(finite.find(Trace([2.3, 40.0, 900.0, np.nan], lr=10.0)))
    assert likely[0].name == "lr_too_high" and "(391x)" in likely[0].evidence and "at lr 10" in likely[0].evidence

    likely, _ = finite.causes(finite.find(Trace([2.3, 2.2, np.nan]), {"x": np.array([[1.0, np.inf], [0.0, 1.0]])}))
    assert [c.name for c in likely] == ["nonfinite_inputs", "one_batch_broke_it"]
    assert "1 NaN/Inf value(s) in the eval sample of 2 rows (field x: 1)" in likely[0].evidence

    likely, ruled_out = finite.causes(finite.find(Trace([np.nan, np.nan]), {"x": np.ones((4, 2))}))
    assert likely[0].name == "loss_computes_nonfinite"
    assert {c.name for c in ruled_out} == {"weights_nonfinite_at_start", "nonfinite_inputs"}


def test_an_optimizer_eps_that_is_zero_in_the_weights_dtype_leads_when_the_first_update_broke() -> None:
    said = "Adam's eps 1e-08 is 0 in float16"
    likely, _ = finite.causes(finite.find(Trace([1.1, np.nan, np.nan])), said)
    assert [c.name for c in likely] == ["optimizer_eps_underflow", "one_batch_broke_it"]
    assert likely[0].score == 0.9 and "right after the first update" in likely[0].evidence and "eps=1e-4" in likely[0].fix
    later, _ = finite.causes(finite.find(Trace([1.1, 1.0, 0.9, 0.8, 0.7, np.nan])), said)
    assert [c.score for c in later if c.name == "optimizer_eps_underflow"] == [0.5]  # a late break is weaker evidence
    assert "optimizer_eps_underflow" not in [c.name for c in finite.causes(finite.find(Trace([1.1, np.nan])))[0]]
    # a loss NaN on step 1 came from the weights before any update: not the optimizer's eps
    first, _ = finite.causes(finite.find(Trace([np.nan, np.nan])), said)
    assert first[0].name == "loss_computes_nonfinite" and "optimizer_eps_underflow" not in [c.name for c in first]


def test_weights_broken_with_a_finite_loss_still_fail() -> None:
    nf = finite.find(Trace([2.3, 2.2], end=("head.weight",)))
    assert nf is not None and nf.step == 0 and "the weights hold NaN/Inf after 2 step(s) (head.weight)" in nf.where()


def test_a_gradient_that_broke_under_a_finite_loss_names_its_step() -> None:
    """A NaN input row outside the eval sample, hidden from the loss by the forward (a fused ReLU), made the weights
    NaN with every loss finite: the failure said "after 63 steps" and ruled every cause out."""
    trace = Trace([0.9, 0.8, 0.7, 0.69, 0.69, 0.69], end=("dense/kernel",))
    trace.grad_norm = np.array([1.0, 0.9, 0.8, np.nan, np.nan, np.nan])
    nf = finite.find(trace, {"x": np.zeros((4, 2))})
    assert (nf.grad_step, nf.grad_epoch, nf.step) == (4, 1, 0)
    assert ("the gradient was NaN/Inf at step 4 of 6 (epoch 1) while every training loss stayed finite, and the "
            "weights hold NaN/Inf after the pass (dense/kernel)") in finite.headline("no_epoch1_overfit", nf)
    likely, ruled = finite.causes(nf)
    assert likely[0].name == "nonfinite_gradient_finite_loss" and "at step 4 while its loss was finite" in likely[0].evidence
    assert "inputs_normalized" in likely[0].fix and "nonfinite_inputs" in [c.name for c in ruled]
    trace.grad_norm = np.full(6, np.nan)  # torch outside lr_spike_explained: not measured, not a finding
    assert finite.find(trace).grad_step == 0


def test_missing_times_are_left_out_and_counted() -> None:
    t = np.array(["2020-01-01", "NaT", "2020-03-01"], dtype="datetime64[D]")
    known, missing = known_values(t)
    assert missing == 1 and known.max() == np.datetime64("2020-03-01")
    assert known_values(np.array([1.0, np.nan, 3.0]))[1] == 1
    assert known_values(np.array([1, None, 3], dtype=object))[1] == 1
    assert known_values(np.arange(5))[1] == 0


def test_nan_labels_are_named_not_cast_to_int_min() -> None:
    with pytest.raises(NonFiniteLabels, match="1 NaN and 1 Inf"):
        class_ids(np.array([0.0, np.nan, 1.0, np.inf]))


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -1, 1.0, None, "3"])
def test_max_overlap_rejects_what_cannot_be_a_limit(value: object) -> None:
    with pytest.raises(ValueError, match="max_overlap"):
        _overlap(value)


def test_max_overlap_takes_numpy_numbers_and_allow_rejects_none() -> None:
    assert _overlap(np.int64(3)) == 3 and isinstance(_overlap(np.int64(3)), int)
    assert _overlap(np.float32(0.25)) == 0.25
    with pytest.raises(ValueError, match=r"allow=\(\) allows none"):
        _allow(None)
    assert _allow(()) == ()


def test_non_finite_inputs_fail_even_when_training_stayed_finite() -> None:
    """A loss that clips (Keras' probability losses) or a model that masks NaN keeps every loss and
    weight finite: the inputs alone make the finding, train's by field and other splits' by count."""
    finite_trace = Trace([2.3, 2.1, 1.9])
    assert finite.find(finite_trace, {"x": np.ones((4, 2))}, {"val": {"x": np.ones((3, 2))}}) is None
    nf = finite.find(finite_trace, {"x": np.array([[1.0, np.nan], [0.0, 1.0]])}, {"val": {"x": np.full((3, 2), np.inf)}})
    assert nf is not None and nf.inputs_only and nf.step == 0
    assert finite.headline("no_epoch1_overfit", nf) == (
        "no_epoch1_overfit FAILED: the inputs hold NaN/Inf: the train inputs hold 1 NaN/Inf value(s) in the eval sample "
        "of 2 rows (field x: 1); the val inputs hold 6 NaN/Inf value(s) in the eval sample of 3 rows. Training stayed "
        "finite, but metrics measured on such inputs mean nothing, so no gap or spike was judged.")
    likely, ruled_out = finite.causes(nf)
    assert [c.name for c in likely] == ["nonfinite_inputs"] and "absorbed them" in likely[0].evidence
    assert [c.name for c in ruled_out] == ["weights_nonfinite_at_start"]  # no eval-data cause without a NaN eval loss
    nf = finite.find(finite_trace, {"x": np.ones((4, 2))}, {"val": {"x": np.array([[np.nan, 1.0]])}})
    assert nf is not None and nf.where() == "the val inputs hold 1 NaN/Inf value(s) in the eval sample of 1 rows"
