"""Spike detection, attribution from replays and lr collapse, on plain numbers."""

from __future__ import annotations

import numpy as np
import pytest

from pytest_trainsanity.checks.spikes import Spike, attribute, detect, epoch_lr, lr_collapse


def concave(n: int, top: float = 0.97, rate: float = 0.6, noise: float = 0.0, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return top - (top - 0.1) * np.exp(-rate * np.arange(1, n + 1)) + noise * rng.standard_normal(n)


@pytest.mark.parametrize("seed", range(5))
def test_fast_early_gains_of_a_concave_curve_are_not_spikes(seed: int) -> None:
    found = detect(concave(20, noise=0.004, seed=seed), higher_is_better=True, resolution=1 / 360)
    assert found.spikes == []


def test_a_jump_after_a_plateau_is_a_spike_at_its_epoch() -> None:
    m = np.r_[np.full(5, 0.12) + 0.003 * np.arange(5), concave(10)[:10] * 0 + 0.95]
    found = detect(m, higher_is_better=True, resolution=1 / 360)
    assert [(s.epoch, round(s.jump, 3)) for s in found.spikes] == [(5, round(0.95 - m[4], 3))]
    assert found.threshold == pytest.approx(max(5 * found.sigma, 0.1 * (0.95 - 0.12)))


def test_drops_and_losses_are_signed_the_right_way() -> None:
    acc = np.r_[concave(8), np.full(6, concave(8)[-1] - 0.3)]
    (drop,) = detect(acc, higher_is_better=True).spikes
    assert drop.epoch == 8 and drop.jump == pytest.approx(-0.3)
    recovered = np.r_[concave(8), concave(8)[-1] - 0.3, np.full(5, concave(8)[-1])]
    assert [(s.epoch, s.jump > 0) for s in detect(recovered, True).spikes] == [(8, False), (9, True)]
    loss = np.r_[np.full(6, 2.3) - 0.001 * np.arange(6), np.full(6, 0.4)]
    (fall,) = detect(loss, higher_is_better=False).spikes
    assert fall.epoch == 6 and fall.jump == pytest.approx(0.4 - loss[5])


def test_min_jump_floor_and_short_runs() -> None:
    m = np.r_[np.full(5, 0.5), np.full(5, 0.56)]
    assert [s.epoch for s in detect(m, True, resolution=1 / 360).spikes] == [5]
    assert detect(m, True, min_jump=0.1, resolution=1 / 360).spikes == []
    short = detect(np.array([0.1, 0.5, 0.9]), True)
    assert short.spikes == [] and "need at least 4" in short.note


def test_attribution_picks_the_intervention_that_removes_most() -> None:
    sp = Spike(epoch=6, before=0.15, after=0.96, trend=0.01, threshold=0.1)
    attribute(sp, baseline=0.96, replayed={"hold_lr": 0.17, "reshuffle": 0.95, "reset_momentum": 0.90})
    assert sp.cause == "lr_schedule"
    assert sp.effects["hold_lr"] == pytest.approx(1 - 0.02 / 0.81) and sp.effects["reshuffle"] < 0.1
    weak = Spike(epoch=6, before=0.5, after=0.7, trend=0.0, threshold=0.1)
    attribute(weak, baseline=0.7, replayed={"reshuffle": 0.62, "freeze_bn": 0.66})
    assert weak.cause == "unexplained"  # 40% at most: nothing explains half of it
    bn = Spike(epoch=6, before=0.5, after=0.7, trend=0.0, threshold=0.1)
    attribute(bn, baseline=0.7, replayed={"reshuffle": 0.62, "freeze_bn": 0.52})
    assert bn.cause == "batch_stats"
    drop = Spike(epoch=4, before=0.9, after=0.5, trend=0.0, threshold=0.1)
    attribute(drop, baseline=0.5, replayed={"reset_momentum": 0.88, "hold_lr": 0.6})
    assert drop.cause == "momentum" and drop.effects["reset_momentum"] == pytest.approx(0.95)


def test_a_replay_that_does_not_reproduce_the_jump_is_unexplained() -> None:
    sp = Spike(epoch=3, before=0.5, after=0.8, trend=0.0, threshold=0.1)
    attribute(sp, baseline=0.52, replayed={"hold_lr": 0.5})
    assert sp.cause == "unexplained" and "did not reproduce" in sp.evidence[0]


def test_lr_collapse_of_a_per_step_decay_and_not_of_sane_schedules() -> None:
    steps_per_epoch, epochs = 32, 30
    step = np.arange(steps_per_epoch * epochs)
    epoch = step // steps_per_epoch
    per_step = 0.01 * 0.5 ** (step // 10)
    c = lr_collapse(per_step[:, None], epoch, epochs)
    assert c is not None and c.epoch == 3 and c.step == 100 and c.halving_steps == pytest.approx(10, rel=0.1)
    per_epoch = 0.01 * 0.5 ** (epoch // 10)  # the article's intent: halve every 10 epochs
    assert lr_collapse(per_epoch[:, None], epoch, epochs) is None
    cosine = 0.01 * 0.5 * (1 + np.cos(np.pi * step / len(step)))  # reaches ~0 only at the very end
    assert lr_collapse(cosine[:, None], epoch, epochs) is None
    restarts = 0.01 * 0.5 * (1 + np.cos(np.pi * (step % 160) / 159))  # warm restarts touch 0 every 5 epochs
    assert lr_collapse(restarts[:, None], epoch, epochs) is None
    assert list(epoch_lr(per_epoch[:, None], epoch, epochs)[[0, 10, 29]]) == [0.01, 0.005, 0.0025]
    assert c.epoch_factor is None  # it moves within epochs


def test_a_per_epoch_decay_that_collapses_is_measured_per_epoch_not_per_step() -> None:
    """A per-epoch callback (lr * 0.01 each epoch) was worded "halves the lr every 2 steps (5 times per epoch)" with
    a fix to use the very callback the user had."""
    steps_per_epoch, epochs = 10, 20
    epoch = np.arange(steps_per_epoch * epochs) // steps_per_epoch
    c = lr_collapse((1e-4 * 0.01 ** epoch)[:, None], epoch, epochs)
    assert c is not None and c.epoch == 2 and c.step == 20 and c.halving_steps is None
    assert c.epoch_factor == pytest.approx(0.01)


def test_batch_mix_is_zero_for_stratified_batches_and_large_for_sorted_ones() -> None:
    from pytest_trainsanity.checks.labels import batch_tv, class_shares
    from pytest_trainsanity.checks.spikes import batch_mix

    labels = np.tile(np.arange(4), 24)  # 96 samples, 4 classes, balanced
    stratified = np.eye(4)[labels].reshape(24, 4, 4).sum(axis=1)  # every batch of 4 holds each class once
    by_class = np.eye(4)[np.sort(labels)].reshape(24, 4, 4).sum(axis=1)  # batches of a single class
    tv = batch_tv(np.concatenate([stratified, by_class]), class_shares(labels, 4))
    mix = batch_mix(tv, np.repeat([0, 1], 24), 2)
    assert mix[0] == 0.0 and mix[1] == pytest.approx(0.75)


def test_the_plateau_rule_is_keras_reduce_lr_on_plateau() -> None:
    """Keras's ReduceLROnPlateau was refused as a scheduler; the check now steps its rule (patience,
    min_delta, cooldown, min_lr, direction) on each epoch's measurement."""
    from pytest_trainsanity.adapters.plateau import Plateau

    rule = Plateau("val_loss", factor=0.5, patience=2, min_delta=0.01, cooldown=1, min_lr=0.02, higher=False)
    lrs, lr = [], 0.1
    for value in (1.0, 0.995, 0.99, 0.98, 0.98, 0.98, 0.98, 0.98, 0.98, 0.98):
        lr = rule.step(value, lr)
        lrs.append(lr)
    # 0.995 and 0.99 are within min_delta of the best 1.0: reduced after 2; the cooldown epoch counts down and,
    # as in Keras, the same epoch may count as waiting once it reaches 0; min_lr floors it at 0.02
    assert lrs == [0.1, 0.1, 0.05, 0.05, 0.05, 0.025, 0.025, 0.02, 0.02, 0.02]
    accuracy = Plateau("val_accuracy", factor=0.1, patience=1, min_delta=0.0, cooldown=0, min_lr=0.0, higher=True)
    assert [accuracy.step(v, 1.0) for v in (0.5, 0.6, 0.6)] == [1.0, 1.0, 0.1]
    accuracy.reset()
    assert accuracy.best is None and accuracy.step(0.1, 1.0) == 1.0
