"""The pre-flight suite of ``test_preflight.py`` on Keras models: the same planted bugs, the same
clean model passing ``preflight``. A Keras optimizer trains every trainable weight, so "a layer left out
of the optimizer" becomes "a layer cut off from the loss" (``stop_gradient``), and a layer frozen on
purpose (``trainable = False``) passes. Keras has no forward hooks; the plugin names layers by recording
each layer's call while it replays the step in question (removed afterwards).

Raw 0-255 digits with SGD at lr 1e4 stay finite in Keras (the ReLUs die after the first step and the
loss sits near 1e3), so the diverging model here gets standardised pixels multiplied by 255.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")  # one process: torch before tensorflow
keras = pytest.importorskip("keras")
tf = pytest.importorskip("tensorflow")

from pytest_trainsanity import TrainSanityError, TrainSetup  # noqa: E402

LOGITS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def _mlp(softmax: bool = False, hidden_layers: int = 1, *middle) -> keras.Model:
    keras.utils.set_random_seed(0)
    hidden = [keras.layers.Dense(64, activation="relu", name=f"hidden{i}") for i in range(hidden_layers)]
    head = keras.layers.Dense(10, activation="softmax" if softmax else None, name="logits")  # planted when softmax
    return keras.Sequential([keras.Input((64,)), *hidden, *middle, head])


def _setup(digits, model=None, optimizer=None, train=None, scale=1 / 16.0):
    Xtr, ytr, Xv, yv = digits
    model = model if model is not None else _mlp()
    return TrainSetup(model=model, train=train if train is not None else (Xtr * scale, ytr), val=(Xv * scale, yv),
                      optimizer=optimizer or keras.optimizers.Adam(1e-3), loss=LOGITS, batch_size=32)


@pytest.fixture
def clean(digits):
    return _setup(digits)


@pytest.fixture
def double_softmax(digits):
    return _setup(digits, model=_mlp(softmax=True))


@pytest.fixture
def tiny_lr(digits):
    return _setup(digits, optimizer=keras.optimizers.Adam(1e-9))


@pytest.fixture
def mixes_batch(digits):
    centre = keras.layers.Lambda(lambda t: t - keras.ops.mean(t, axis=0), name="batch_centre")  # planted
    return _setup(digits, model=_mlp(False, 1, centre))


@pytest.fixture
def detached_layer(digits):
    detach = keras.layers.Lambda(keras.ops.stop_gradient, name="detach")  # planted: left from a frozen-features trial
    return _setup(digits, model=_mlp(False, 1, detach))


@pytest.fixture
def huge_lr(digits):
    Xtr, ytr, Xv, yv = digits
    mean, std = Xtr.mean(0), Xtr.std(0) + 1e-6
    scaled = ((Xtr - mean) / std * 255, ytr, (Xv - mean) / std * 255, yv)  # planted: 255x the scale, lr 1e4
    return _setup(scaled, model=_mlp(hidden_layers=3), optimizer=keras.optimizers.SGD(1e4), scale=1.0)


@pytest.fixture
def sorted_dataset(digits):
    Xtr, ytr, _, _ = digits
    order = np.argsort(ytr, kind="stable")  # planted: sorted by class, never shuffled
    data = tf.data.Dataset.from_tensor_slices((Xtr[order] / 16.0, ytr[order])).batch(32)
    return _setup(digits, train=data)


@pytest.mark.preflight(setup="clean")
def test_clean_model_passes_every_preflight_check():
    pass


@pytest.mark.xfail(raises=TrainSanityError, strict=True, reason="softmax output with from_logits=True")
@pytest.mark.loss_at_init(setup="double_softmax")
def test_double_softmax():
    pass


@pytest.mark.xfail(raises=TrainSanityError, strict=True, reason="lr 1e-9 cannot fit even one batch")
@pytest.mark.overfits_one_batch(setup="tiny_lr")
def test_learning_rate_too_small():
    pass


@pytest.mark.xfail(raises=TrainSanityError, strict=True, reason="a Lambda layer subtracts the batch mean")
@pytest.mark.batch_independent(setup="mixes_batch")
def test_samples_mix_across_the_batch():
    pass


@pytest.mark.xfail(raises=TrainSanityError, strict=True, reason="stop_gradient cuts hidden0 off the loss")
@pytest.mark.params_update(setup="detached_layer")
def test_layer_cut_off_from_the_loss():
    pass


@pytest.fixture
def frozen_layer(digits):
    model = _mlp()
    model.get_layer("hidden0").trainable = False  # frozen on purpose: must stay bit-identical, and does
    return _setup(digits, model=model)


@pytest.mark.params_update(setup="frozen_layer")
def test_a_frozen_layer_stays_frozen():
    pass


@pytest.mark.xfail(raises=TrainSanityError, strict=True, reason="lr 1e4 on inputs 255x their scale diverges")
@pytest.mark.finite_training(setup="huge_lr")
def test_training_goes_non_finite():
    pass


@pytest.mark.xfail(raises=TrainSanityError, strict=True, reason="class-sorted tf.data without shuffle")
@pytest.mark.batches_mixed(setup="sorted_dataset")
def test_batches_sorted_by_class():
    pass
