"""The pre-flight verdicts on plain numbers (numpy only): thresholds, causes, wording."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from pytest_trainsanity.adapters.preflight import BatchMix, BatchRun, FiniteRun, InitProbe, Mixing, ParamRecord
from pytest_trainsanity.checks.preflight import measure as m


def probe(outputs: np.ndarray, targets: np.ndarray, loss: float, kind: str = "logits", bias=None, end: str = "") -> InitProbe:
    return InitProbe(outputs, targets, loss, kind, "CrossEntropyLoss", bias, "head", end)


def test_entropy_and_probabilities() -> None:
    assert m.entropy(np.arange(1000) % 10, 10) == pytest.approx(math.log(10))
    assert m.entropy(np.r_[np.zeros(90, int), np.ones(10, int)], 2) == pytest.approx(-(0.9 * math.log(0.9) + 0.1 * math.log(0.1)))
    p = np.full((5, 4), 0.25)
    assert m.is_probabilities(p) and not m.is_probabilities(p - 0.25) and not m.is_probabilities(np.ones((5, 1)))


def test_loss_at_init_verdicts() -> None:
    rng = np.random.default_rng(0)
    ids = np.arange(500) % 10
    ok = m.judge_loss_at_init(probe(rng.normal(0, 0.01, (500, 10)), ids, math.log(10) + 0.01), 0.5, "classification")
    assert ok.passed and ok.metrics["expected_loss"] == pytest.approx(math.log(10))
    double = m.judge_loss_at_init(probe(np.full((500, 10), 0.1), ids, math.log(10), end="module '3' (Softmax)"), 0.5,
                                  "classification")
    assert not double.passed and double.likely[0].name == "double softmax" and "module '3' (Softmax)" in double.likely[0].evidence
    wide = m.judge_loss_at_init(probe(rng.normal(0, 8, (500, 10)), ids, 9.0, bias=np.zeros(10)), 0.5, "classification")
    assert not wide.passed and wide.likely[0].name == "logit scale at init" and "off by 6.697 nats" in wide.headline
    widths = m.judge_loss_at_init(probe(rng.normal(0, 0.01, (500, 100)), ids, math.log(100)), 0.5, "classification")
    assert not widths.passed and widths.likely[0].name == "outputs vs classes"
    assert "100 outputs and the labels use 10 classes" in widths.likely[0].evidence
    assert m.judge_loss_at_init(probe(np.zeros((5, 1)), np.zeros(5, int), 1.0), 0.5, "regression").skipped
    sigmoid = probe(np.full((100, 1), 0.5), np.arange(100) % 2, math.log(2) + 0.1, end="module '3' (Sigmoid)")
    binary = m.judge_loss_at_init(sigmoid, 0.5, "classification")
    assert not binary.passed and binary.likely[0].name == "double softmax" and "in [0, 1]" in binary.likely[0].evidence
    assert m.judge_loss_at_init(probe(np.full((100, 1), 0.5), np.arange(100) % 2, math.log(2)), 0.5, "classification").passed
    # a NaN loss compares False with the tolerance both ways: it passed as "off by nan nats"
    outputs = rng.normal(0, 0.01, (500, 10))
    outputs[7] = np.nan
    nan = m.judge_loss_at_init(probe(outputs, ids, float("nan")), 0.5, "classification")
    assert not nan.passed and "untrained loss nan vs 2.303 expected" in nan.headline and "not a finite loss" in nan.headline
    assert nan.likely[0].name == "non-finite loss at init" and "10 of the 5000 output values" in nan.likely[0].evidence
    inf = m.judge_loss_at_init(probe(rng.normal(0, 0.01, (500, 10)), ids, float("inf")), 0.5, "classification")
    assert not inf.passed and "the outputs are finite, so the loss computes it" in inf.likely[0].evidence


def test_loss_at_init_names_a_loss_that_reads_the_outputs_as_something_else() -> None:
    """Softmax into NLLLoss, logits into NLLLoss, logits into a loss on probabilities (Keras from_logits=False,
    BCELoss), a summed loss, a binary head's bias: each failed with no likely cause (the real one was listed as
    ruled out), and a binary head's message spoke of softmax and ln C."""
    rng = np.random.default_rng(0)
    ids = np.arange(400) % 4
    logits = rng.normal(0, 0.2, (400, 4))
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    log_probs = np.log(probs)

    def judge(outputs, loss, kind, name, framework="torch", bias=None, **extra):
        return m.judge_loss_at_init(InitProbe(outputs, ids if outputs.shape[1] > 1 else ids % 2, loss, kind, name, bias,
                                              "head", **extra), 0.5, "classification", framework)

    soft_nll = judge(probs, float(-probs[np.arange(400), ids].mean()), "log_probs", "NLLLoss")
    assert not soft_nll.passed and soft_nll.likely[0].name == "loss reads the outputs as something else"
    assert soft_nll.likely[0].score == 0.95 and "the outputs are probabilities but NLLLoss reads log-probabilities" in soft_nll.likely[0].evidence
    assert "end the model in LogSoftmax(dim=1) instead of Softmax" in soft_nll.likely[0].fix
    assert "but the outputs are probabilities fed to NLLLoss, which reads log-probabilities" in soft_nll.headline
    raw_nll = judge(logits, float(-logits[np.arange(400), ids].mean()), "log_probs", "NLLLoss")
    assert raw_nll.likely[0].name == "loss reads the outputs as something else" and "raw logits" in raw_nll.likely[0].evidence
    right = judge(log_probs, float(-log_probs[np.arange(400), ids].mean()), "log_probs", "NLLLoss")
    assert right.passed and not right.metrics["outputs_read_wrongly"]
    keras = judge(logits, 8.4, "probs", "SparseCategoricalCrossentropy(from_logits=False)", "tensorflow")
    assert keras.likely[0].name == "loss reads the outputs as something else"
    assert "pass from_logits=True to the loss" in keras.likely[0].fix and "CrossEntropyLoss" not in keras.likely[0].fix
    per_sample = m.per_sample_loss(logits, ids, "logits")
    summed = judge(logits, per_sample * 32, "logits", "<lambda>", per_batch=32.0)  # a custom loss that sums
    assert not summed.passed and summed.likely[0].name == "loss summed over the batch" and "32x" in summed.likely[0].evidence
    declared = judge(logits, per_sample, "logits", "CrossEntropyLoss", summed=True, per_batch=32.0)  # reduction='sum'
    assert declared.passed and "reduction='sum'" in declared.lines[0]
    biased = judge(np.full((400, 1), 4.0), float(np.mean(np.logaddexp(0, 4.0) - (ids % 2) * 4.0)), "logits",
                   "BCEWithLogitsLoss", bias=np.array([4.0]))
    assert not biased.passed and biased.likely[0].name == "final bias away from the class prior"
    assert "log-odds of the class-1 share by 4.000 nats" in biased.likely[0].evidence
    assert "1 output (a binary head: the logit of class 1)" in " ".join(c.evidence for c in biased.ruled_out)


def run(losses, acc=1.0, moved=None, conflicts=0, ratio=1e-3, layers=()) -> BatchRun:
    return BatchRun(np.asarray(losses, float), acc, float("nan"), 32, conflicts, moved or {"w": 0.1}, 1e-3, ratio, list(layers))


def test_one_batch_verdicts() -> None:
    assert m.judge_one_batch(run([2.3, 0.01]), 300, "classification", None, None, None).passed
    slow = m.judge_one_batch(run([2.3, 2.3], 0.1, ratio=1e-9), 300, "classification", run([2.3, 2.29], 0.1), run([2.3, 2.3], 0.1), None)
    assert not slow.passed and slow.likely[0].name == "learning rate too low" and "1.00e-09 of their norm" in slow.likely[0].evidence
    higher_fits = m.judge_one_batch(run([2.3, 1.0], 0.5), 300, "classification", run([2.3, 0.0], 1.0), run([2.3, 2.0], 0.2), None)
    assert higher_fits.likely[0].name == "learning rate too low" and higher_fits.likely[0].score == 0.9
    stuck = m.judge_one_batch(run([2.3, 0.5], 0.9, moved={"a": 0.0, "b": 0.2}, conflicts=4), 300, "classification", None, None, None)
    names = [c.name for c in stuck.likely]
    assert names[:2] == ["parameters that never update", "conflicting labels in the batch"] and "a" in stuck.likely[0].evidence
    assert "Loss curve (step: loss): 1: 2.300, 2: 0.500" in stuck.lines[0]
    diverged = m.judge_one_batch(run([2.3, 50.0, np.nan], 0.1), 300, "classification", run([2.3, np.nan], 0.1), run([2.3, np.nan], 0.1), None)
    assert diverged.likely[0].name == "the loss went non-finite" and "from step 3 of 300" in diverged.likely[0].evidence


def test_one_batch_names_a_schedule_that_spends_its_lr_early_a_zero_loss_and_outputs_read_wrongly() -> None:
    """Each of these failed with every cause ruled out (or blamed "learning rate too low"): ExponentialDecay with
    decay_steps=1, logits into a loss on probabilities (from_logits=False), a loss of 0 from the first step."""
    steps = np.arange(300)
    losses = np.r_[np.linspace(1.45, 1.1, 7), np.full(293, 0.833)]
    decayed = BatchRun(losses, 0.625, float("nan"), 32, 0, {"w": 0.1}, 0.1, 1e-9, [], 0.1 * 0.5 ** steps)
    v = m.judge_one_batch(decayed, 300, "classification", None, None, None, "tensorflow")
    top = v.likely[0]
    assert top.name == "learning-rate schedule decays to ~0" and top.score == 0.9
    assert "spends 99% of the run's summed learning rate in its first 7 of 300 steps: lr 0.1 at step 1, 0.0015" in top.evidence
    assert "the loss is 1.100 at step 7 and 0.833 at the end" in top.evidence and "decay_steps counts optimizer steps" in top.fix
    assert top.metrics["lr_spent_by_step"] == 7
    constant = BatchRun(losses, 0.625, float("nan"), 32, 0, {"w": 0.1}, 0.1, 1e-3, [], np.full(300, 0.1))
    names = [c.name for c in (lambda v: v.likely + v.ruled_out)(m.judge_one_batch(constant, 300, "classification", None, None, None))]
    assert "learning-rate schedule decays to ~0" not in names  # no schedule: not a line in the message
    cosine = 0.05 * (1 + np.cos(np.pi * steps / 299))  # decays to 0 over the whole run: its lr is spent late
    late = m.judge_one_batch(BatchRun(losses, 0.6, float("nan"), 32, 0, {"w": 0.1}, 0.1, 1e-3, [], cosine), 300,
                             "classification", None, None, None)
    assert [c.name for c in late.ruled_out].count("learning-rate schedule decays to ~0") == 1
    assert "StepLR(step_size=...)" in next(c for c in late.ruled_out if c.name.startswith("learning-rate")).fix
    zero = m.judge_one_batch(run(np.zeros(300), 0.1, ratio=0.0), 300, "classification", None, None, None)
    assert zero.likely[0].name == "the loss is zero from the first step" and "not all 0" in zero.likely[0].fix

    rng = np.random.default_rng(0)
    ids = np.arange(400) % 4
    logits = rng.normal(0, 0.5, (400, 4))
    init = InitProbe(logits, ids, 8.4, "probs", "sparse_categorical_crossentropy(from_logits=False)", None, "head")
    fails = m.judge_one_batch(run([7.6, 1.06], 0.375), 300, "classification", None, None, init, "tensorflow")
    cause = fails.likely[0]
    assert cause.name == "loss reads the outputs as something else" and cause.score == 0.85
    assert "the untrained outputs are raw logits but sparse_categorical_crossentropy(from_logits=False) reads probabilities" in cause.evidence
    assert "it clips outputs outside [0, 1]" in cause.evidence and "pass from_logits=True to the loss" in cause.fix
    right = InitProbe(np.exp(logits) / np.exp(logits).sum(1, keepdims=True), ids, 1.4, "probs", "SCE(from_logits=False)", None, "h")
    ruled = m.judge_one_batch(run([1.4, 1.0], 0.5), 300, "classification", None, None, right, "tensorflow")
    assert "loss reads the outputs as something else" in [c.name for c in ruled.ruled_out]


def test_a_softmax_keras_reads_through_is_named_as_such() -> None:
    """Keras 3 keeps a softmax's logits on its output and its cross-entropies read them, so softmax + from_logits=True
    trains exactly like the logits model; the message said "the model learns slowly or not at all"."""
    probs = np.full((400, 4), 0.25) + np.random.default_rng(0).normal(0, 0.01, (400, 4))
    probs /= probs.sum(1, keepdims=True)
    ids = np.arange(400) % 4
    kept = InitProbe(probs, ids, 1.45, "logits", "SparseCategoricalCrossentropy(from_logits=True)", None, "head",
                     "layer 'out' (activation='softmax')", twice_loss=1.39)
    v = m.judge_loss_at_init(kept, 0.5, "classification", "tensorflow")
    assert not v.passed and "(Keras reads the logits it kept behind the softmax, so nothing is applied twice yet)" in v.headline
    assert v.likely[0].name == "double softmax" and "Keras 3 notices and computes the loss from the logits" in v.likely[0].evidence
    assert "1.450 per sample; a copy of the same outputs, which has lost them, gives 1.390" in v.likely[0].evidence
    assert "learns slowly" not in v.likely[0].evidence and v.metrics["twice_loss"] == 1.39
    twice = m.judge_loss_at_init(dataclasses.replace(kept, twice_loss=float("nan"), loss=1.39), 0.5, "classification", "tensorflow")
    assert "learns slowly or not at all" in twice.likely[0].evidence and "(double softmax)" in twice.headline
    one = m.judge_one_batch(run([1.45, 0.1], 0.9), 300, "classification", None, None, kept, "tensorflow")
    assert "double softmax" in [c.name for c in one.ruled_out]
    assert "Keras computes the loss from the logits it kept" in next(c for c in one.ruled_out if c.name == "double softmax").evidence


def test_mixing_verdicts() -> None:
    assert m.judge_mixing(Mixing(32, [0, 16, 31], 0.0, batchnorm_train=["bn"])).passed
    own = m.judge_mixing(Mixing(32, [0, 16, 31], 0.3, module="centre"))
    assert not own.passed and "they mix in 'centre'" in own.likely[0].evidence
    op = m.judge_mixing(Mixing(32, [0], 1.0, between=("enc", "head")))
    assert "between the output of module 'enc' and the input of module 'head'" in op.likely[0].evidence
    assert m.judge_mixing(Mixing(32, [], 0.0, skipped="no float input")).skipped.endswith("no float input")
    # a functional op after the last module: a batch mean (h - h.mean(0)) as often as a reshape, so the fix names both
    after = m.judge_mixing(Mixing(16, [0, 8, 15], 0.9, between=("emb", "")))
    assert "a mean or sum over dim 0" in after.likely[0].evidence
    assert "never dim 0" in after.likely[0].fix and "x.reshape(x.shape[0], -1)" in after.likely[0].fix
    # the passing headline states the measured gradient, not that the samples depend on each other
    fine = m.judge_mixing(Mixing(16, [0, 8, 15], 0.0))
    assert "take a relative gradient of 0 from the other samples' inputs" in fine.headline
    assert "depends on" not in fine.headline


def record(name: str, **kw) -> ParamRecord:
    base = dict(trainable=True, frozen_by_prefix=False, in_optimizer=True, grad="ok", changed=True, size=4)
    return ParamRecord(name, **(base | kw))


def test_params_verdicts() -> None:
    assert m.judge_params([record("a"), record("f", trainable=False, grad="none", changed=False)], ()).passed
    bad = m.judge_params([record("a", in_optimizer=False, changed=False), record("b", grad="none", changed=False),
                          record("c", grad="zero", changed=False), record("d", trainable=False, changed=True),
                          record("e", frozen_by_prefix=True, changed=True)], ("e",), "tensorflow")
    text = "\n".join(bad.lines)
    assert not bad.passed and bad.metrics["offenders"] == 5
    assert "a: not in the optimizer" in text and "b: no gradient path" in text and "keras.ops.stop_gradient" in text
    assert "c: zero gradient" in text and "d: changed while frozen (it has requires_grad=False" in text
    assert "e: changed while frozen (it matches frozen=('e',)" in text and "0 of 2 frozen stayed bit-identical" in bad.headline


def test_finite_verdicts() -> None:
    assert m.judge_finite(FiniteRun(100, 0, losses=np.ones(100), first_loss=1.0), 100).passed
    assert not m.judge_finite(FiniteRun(0, 0), 100).passed  # an exhausted stream never passes
    r = FiniteRun(100, 4, "loss", "fc2", "Linear", 10.0, 0.0, 255.0, np.r_[1.0, 30.0, 900.0, np.nan], 1.0, ["fc2.weight"], "float32")
    v = m.judge_finite(r, 100)
    assert not v.passed and v.likely[0].name == "learning rate too high" and "grew 900x" in v.likely[0].evidence
    assert "step 4 of 100" in v.headline and "'fc2' (Linear)" in v.headline and "inputs in [0, 255]" in v.headline
    half = m.judge_finite(FiniteRun(5, 1, "loss", "", "", 1e-3, 0.0, 1.0, np.r_[np.nan], float("nan"), [], "float16"), 100)
    assert [c.name for c in half.likely][:2] == ["log of zero / division", "float16 overflow"]


def test_batch_mix_verdicts() -> None:
    sorted_counts = np.zeros((10, 10))
    sorted_counts[np.arange(10), np.arange(10)] = 32
    v = m.judge_batch_mix(BatchMix(sorted_counts, "your DataLoader"), 0.5)
    assert not v.passed and v.metrics["batch_label_tv"] == pytest.approx(0.9) and "shuffle=True" in v.likely[0].fix
    mixed = np.full((10, 10), 3.2)
    assert m.judge_batch_mix(BatchMix(mixed, "arrays"), 0.5).metrics["batch_label_tv"] == pytest.approx(0.0)
    assert not m.judge_batch_mix(BatchMix(np.zeros((0, 10)), "x"), 0.5).passed  # an exhausted stream never passes
    assert m.judge_batch_mix(BatchMix(np.zeros((0, 0)), "", skipped="regression"), 0.5).skipped


def _batches(labels: np.ndarray, size: int, classes: int) -> np.ndarray:
    return np.stack([np.bincount(labels[i: i + size], minlength=classes) for i in range(0, len(labels), size)])


def test_batch_mix_is_judged_between_a_shuffled_loader_and_one_class_per_batch() -> None:
    """Raw distance misjudges both ends: two sorted classes reach only 0.5 (they never failed), and random
    batches of 32 from 100 classes stray 0.72 (they always failed). The score places the batches between
    what random batches of their sizes give and what one class per batch gives."""
    rng = np.random.default_rng(0)
    binary = np.sort(rng.integers(0, 2, 640))
    v = m.judge_batch_mix(BatchMix(_batches(binary, 32, 2), "your DataLoader"), 0.5)
    assert not v.passed and v.metrics["batch_label_tv"] < 0.5 < v.metrics["batch_sorting"]
    assert m.judge_batch_mix(BatchMix(_batches(rng.permutation(binary), 32, 2), "x"), 0.5).passed
    many = rng.integers(0, 100, 3200)
    shuffled = m.judge_batch_mix(BatchMix(_batches(many, 32, 100), "x"), 0.5)
    assert shuffled.passed and shuffled.metrics["batch_label_tv"] > 0.7 and shuffled.metrics["batch_sorting"] < 0.1
    assert not m.judge_batch_mix(BatchMix(_batches(np.sort(many), 32, 100), "x"), 0.5).passed
    small = rng.integers(0, 10, 1437)  # digits-sized, batches of 4
    assert m.judge_batch_mix(BatchMix(_batches(small, 4, 10), "x"), 0.5).passed


def test_shuffled_baseline_is_the_exact_expected_distance() -> None:
    from pytest_trainsanity.checks.labels import sorting

    rng = np.random.default_rng(1)
    p = np.array([0.5, 0.3, 0.15, 0.05])
    draws = rng.multinomial(7, p, size=200_000)
    simulated = float((0.5 * np.abs(draws / 7 - p).sum(axis=1)).mean())
    assert sorting(draws[:10], p).shuffled == pytest.approx(simulated, abs=2e-3)
    assert sorting(np.eye(4)[[0, 0, 1, 2]] * 7, p).one_class == pytest.approx(float((p * (1 - p)).sum()))
