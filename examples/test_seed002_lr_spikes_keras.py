"""Seed article 002: "why does model accuracy spike at a specific epoch?", its own Keras code.

The three snippets as the article writes them (``keras.Input`` instead of the
deprecated ``input_shape=`` argument; everything else as printed: layers,
optimizers, ``ExponentialDecay(0.01, decay_steps=10, decay_rate=0.5,
staircase=True)``, ``model.compile``, ``np.random.rand(1000, 10)`` with
random one-hot labels, batch 32, 30 epochs). The check watches ``train_acc``,
which the article plots. The compiled models bring their own optimizer and
loss, so the ``TrainSetup`` names only the model and the data.

What measurement shows (the torch twins in ``test_seed002_lr_spikes.py``
agree):

- Example 1: ``decay_steps`` counts optimizer steps (32 per epoch), so the lr
  halves 3.2 times per epoch and falls below 1e-5 in epoch 4: there are no
  spikes "around epochs 10 and 20", training simply stops. The check fails
  with the lr-collapse diagnosis and the fix (``decay_steps=10 * 32``).
- Example 2 (batch norm) and Example 3 (SGD + momentum 0.9): no spike in 30
  epochs; the check passes even with ``allow=()``.
"""

from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from pytest_trainsanity import TrainSanityError, TrainSetup  # noqa: E402


def data() -> tuple[np.ndarray, np.ndarray]:
    np.random.seed(0)
    X_train = np.random.rand(1000, 10)
    y_train = np.random.randint(0, 10, 1000)
    return X_train, keras.utils.to_categorical(y_train, num_classes=10)


@pytest.fixture
def example1() -> TrainSetup:
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((10,)),
        keras.layers.Dense(128, activation="relu"),
        keras.layers.Dense(10, activation="softmax"),
    ])
    lr_schedule = keras.optimizers.schedules.ExponentialDecay(0.01, decay_steps=10, decay_rate=0.5, staircase=True)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=lr_schedule), loss="categorical_crossentropy",
                  metrics=["accuracy"])
    return TrainSetup(model=model, train=data(), batch_size=32)


@pytest.fixture
def example2() -> TrainSetup:
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((10,)),
        keras.layers.Dense(64),
        keras.layers.BatchNormalization(),
        keras.layers.ReLU(),
        keras.layers.Dense(10, activation="softmax"),
    ])
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=0.001), loss="categorical_crossentropy",
                  metrics=["accuracy"])
    return TrainSetup(model=model, train=data(), batch_size=32)


@pytest.fixture
def example3() -> TrainSetup:
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((10,)),
        keras.layers.Dense(128, activation="relu"),
        keras.layers.Dense(10, activation="softmax"),
    ])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.01, momentum=0.9), loss="categorical_crossentropy",
                  metrics=["accuracy"])
    return TrainSetup(model=model, train=data(), batch_size=32)


@pytest.mark.xfail(raises=TrainSanityError, strict=True, reason="decay_steps counts steps: the lr collapses by epoch 4")
@pytest.mark.lr_spike_explained(setup="example1", epochs=30, metric="train_acc")
def test_example1_learning_rate_decay():
    pass


@pytest.mark.lr_spike_explained(setup="example2", epochs=30, metric="train_acc", allow=())
def test_example2_batch_statistics(trainsanity_report):
    assert trainsanity_report["lr_spike_explained"].metrics["spikes"] == 0


@pytest.mark.lr_spike_explained(setup="example3", epochs=30, metric="train_acc", allow=())
def test_example3_momentum(trainsanity_report):
    assert trainsanity_report["lr_spike_explained"].metrics["spikes"] == 0
