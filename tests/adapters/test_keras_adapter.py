"""The Keras 3 adapter (TensorFlow backend) on real Keras models and real digits data:
model forms, split forms, state restoration bit for bit, replays, errors."""

from __future__ import annotations

import random
import re

import numpy as np
import pytest

pytest.importorskip("torch")  # one process: torch before tensorflow
tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

from pytest_trainsanity import (  # noqa: E402
    OptionError,
    SetupError,
    TrainSetup,
    check_epoch1_overfit,
    check_lr_spikes,
    check_overfit_one_batch,
)
from pytest_trainsanity.adapters.keras import KerasAdapter  # noqa: E402
from pytest_trainsanity.adapters.splits import open_splits as load_splits  # noqa: E402
from pytest_trainsanity.settings import RunSettings  # noqa: E402


def bn_net() -> keras.Model:
    keras.utils.set_random_seed(0)
    inputs = keras.Input((64,))
    h = keras.layers.Dense(64)(inputs)
    h = keras.layers.BatchNormalization()(h)
    h = keras.layers.Dropout(0.1)(keras.layers.ReLU()(h))
    return keras.Model(inputs, keras.layers.Dense(10)(h))  # functional


def used_setup(digits) -> TrainSetup:
    """A compiled model whose optimizer (SGD momentum, a decaying schedule) already holds state."""
    Xtr, ytr, Xv, yv = digits
    model = bn_net()
    schedule = keras.optimizers.schedules.ExponentialDecay(0.1, decay_steps=20, decay_rate=0.5)
    model.compile(optimizer=keras.optimizers.SGD(schedule, momentum=0.9),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(Xtr[:96], ytr[:96], batch_size=32, epochs=1, verbose=0)  # leave real state behind
    return TrainSetup(model=model, train=(Xtr, ytr), val=(Xv, yv))


def state_of(setup: TrainSetup) -> dict:
    return {
        "model": [v.numpy().copy() for v in setup.model.variables],
        "opt": [v.numpy().copy() for v in setup.model.optimizer.variables],
        "lr": setup.model.optimizer._learning_rate,
        "py": random.getstate(),
        "np": np.random.get_state()[1].copy(),
        "tf": tf.random.get_global_generator().state.numpy().copy(),
    }


def assert_same(before: dict, after: dict) -> None:
    assert all(np.array_equal(a, b) for a, b in zip(before["model"], after["model"]))
    assert all(np.array_equal(a, b) for a, b in zip(before["opt"], after["opt"]))
    assert before["lr"] is after["lr"]
    assert before["py"] == after["py"]
    assert np.array_equal(before["np"], after["np"]) and np.array_equal(before["tf"], after["tf"])


def test_state_is_restored_bit_for_bit_after_checks(digits) -> None:
    setup = used_setup(digits)
    before = state_of(setup)
    assert before["opt"][0] == 3  # iterations: the schedule's position
    report = check_epoch1_overfit(setup, epochs=2)
    assert report.metrics["steps"] == 90 and "keras on /CPU:0" in report.message
    assert_same(before, state_of(setup))
    check_lr_spikes(setup, epochs=4, allow=("lr_schedule", "batch_stats", "momentum", "unexplained"))
    assert_same(before, state_of(setup))


def test_state_is_restored_when_training_itself_raises(digits) -> None:
    setup = used_setup(digits)
    calls = {"n": 0}

    def exploding_loss(y, out):
        calls["n"] += 1  # counted while tracing: the traced step runs the python once per trace
        if calls["n"] > 3:
            raise FloatingPointError("loss exploded")
        return keras.losses.sparse_categorical_crossentropy(y, out, from_logits=True)

    bad = TrainSetup(model=setup.model, train=setup.train, val=setup.val, optimizer=setup.model.optimizer, loss=exploding_loss)
    before = state_of(setup)
    with pytest.raises(SetupError, match=r"(Training step \d+ failed on a batch|Measuring the train eval sample).*FloatingPointError: loss exploded"):
        check_epoch1_overfit(bad)
    assert_same(before, state_of(setup))


class Subclassed(keras.Model):
    def __init__(self) -> None:
        super().__init__()
        self.hidden = keras.layers.Dense(64, activation="relu")
        self.out = keras.layers.Dense(10)

    def call(self, x, training=False):
        return self.out(self.hidden(x))


@pytest.mark.parametrize("form", ["sequential_names", "subclassed_unbuilt", "functional_tfdata", "pydataset"])
def test_model_and_split_forms(digits, form: str) -> None:
    Xtr, ytr, Xv, yv = digits
    keras.utils.set_random_seed(0)
    kw: dict = {"optimizer": "adam", "loss": keras.losses.SparseCategoricalCrossentropy(from_logits=True)}
    train, val = (Xtr, ytr), (Xv, yv)
    if form == "sequential_names":
        model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(64, activation="relu"), keras.layers.Dense(10, activation="softmax")])
        kw["loss"] = "sparse_categorical_crossentropy"
    elif form == "subclassed_unbuilt":
        model = Subclassed()
    else:
        model = bn_net()
        if form == "functional_tfdata":
            train = tf.data.Dataset.from_tensor_slices((Xtr, ytr)).batch(100)
            val = tf.data.Dataset.from_tensor_slices((Xv, yv))  # unbatched
        else:
            class Batches(keras.utils.PyDataset):
                def __init__(self, X, y):
                    super().__init__()
                    self.X, self.y = X, y

                def __len__(self):
                    return (len(self.X) + 99) // 100

                def __getitem__(self, i):
                    return self.X[i * 100 : (i + 1) * 100], self.y[i * 100 : (i + 1) * 100]

            train, val = Batches(Xtr, ytr), Batches(Xv, yv)
    epochs = 1 if form in ("sequential_names", "subclassed_unbuilt") else 3  # the pipelines' own batches of 100
    report = check_epoch1_overfit(TrainSetup(model=model, train=train, val=val, **kw), probes=False, epochs=epochs)
    assert report.passed and report.metrics["train_metric"] > 0.5, report.message
    assert report.metrics["steps"] == epochs * (45 if epochs == 1 else 15)


def test_replay_reproduces_the_recorded_epoch_and_interventions_act(digits) -> None:
    setup = used_setup(digits)
    data = load_splits(setup, ("train", "val"))
    adapter = KerasAdapter(setup.model, setup, data, RunSettings(device="cpu"))
    before = state_of(setup)
    with adapter:
        trace = adapter.train(epochs=4, detail=True)
        assert len(trace.checkpoints) == 4 and np.isfinite(trace.bn_drift[1:]).all()
        assert np.isfinite(trace.momentum_norm).sum() == np.isfinite(trace.update_ratio).sum() > 0
        assert trace.lr[0, 0] < 0.1 and trace.lr[-1, 0] < trace.lr[0, 0]  # the schedule continues from step 3
        for epoch in (1, 3):
            again = adapter.replay(trace, epoch)
            assert again["val_acc"] == trace.val_metric[epoch] and again["train_loss"] == pytest.approx(trace.train_loss[epoch], rel=1e-6)
        assert adapter.interventions() == {"hold_lr": "", "reshuffle": "", "reset_momentum": "", "freeze_bn": ""}
        bn = next(layer for layer in setup.model.layers if isinstance(layer, keras.layers.BatchNormalization))
        adapter.replay(trace, 2, "freeze_bn")
        stats = trace.checkpoints[2]["model"][[v.path for v in setup.model.variables].index(bn.moving_mean.path)]
        assert np.array_equal(bn.moving_mean.numpy(), stats)
        assert adapter.replay(trace, 2, "hold_lr")["val_loss"] != trace.val_loss[2]
        assert adapter.replay(trace, 2, "reshuffle")["val_loss"] != trace.val_loss[2]
    assert_same(before, state_of(setup))


def test_misuse_is_one_clear_error(digits) -> None:
    Xtr, ytr, Xv, yv = digits
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(10)])
    with pytest.raises(SetupError, match=r"The loss could not compare the train labels with the model's output.*sparse ids vs one-hot"):
        check_epoch1_overfit(TrainSetup(model=model, train=(Xtr, ytr), val=(Xv, yv), optimizer="adam", loss="categorical_crossentropy"))
    with pytest.raises(SetupError, match=r"labels in \[0, 9\] but the model outputs 5 value"):
        small = keras.Sequential([keras.Input((64,)), keras.layers.Dense(5)])
        check_epoch1_overfit(TrainSetup(model=small, train=(Xtr, ytr), val=(Xv, yv), optimizer="adam", loss="mse"))
    with pytest.raises(OptionError, match="TensorFlow sees 0 GPU"):
        check_epoch1_overfit(TrainSetup(model=model, train=(Xtr, ytr), val=(Xv, yv), optimizer="adam",
                                        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True)), device="cuda")
    with pytest.raises(SetupError, match="not a Keras optimizer name"):
        check_epoch1_overfit(TrainSetup(model=model, train=(Xtr, ytr), val=(Xv, yv), optimizer="adamw2", loss="mse"))


def test_the_users_step_and_dict_inputs(digits) -> None:
    Xtr, ytr, Xv, yv = digits
    keras.utils.set_random_seed(0)
    inputs = {"left": keras.Input((32,), name="left"), "right": keras.Input((32,), name="right")}
    hidden = keras.layers.Dense(64, activation="relu")(keras.layers.Concatenate()([inputs["left"], inputs["right"]]))
    model = keras.Model(inputs, keras.layers.Dense(10)(hidden))
    calls = []

    def step(model, batch):  # the user's own loss: label smoothing on one-hot targets
        calls.append(1)
        x, y = batch
        onehot = tf.one_hot(tf.cast(y, tf.int32), 10)
        return keras.losses.categorical_crossentropy(onehot, model(x, training=True), from_logits=True, label_smoothing=0.1)

    split = lambda X, y: tf.data.Dataset.from_tensor_slices(({"left": X[:, :32], "right": X[:, 32:]}, y))  # noqa: E731
    setup = TrainSetup(model=model, train=split(Xtr, ytr).batch(32), val=split(Xv, yv).batch(120),
                       optimizer=keras.optimizers.Adam(1e-3), step=step)
    report = check_epoch1_overfit(setup, probes=False, epochs=2)
    assert report.passed and report.metrics["val_metric"] > 0.8 and calls
    assert "(dict, y) batches with inputs {left, right} from a tf.data.Dataset (its own batches); loss from TrainSetup(step=...)" in report.message


def test_an_unbuilt_optimizer_stays_unbuilt_and_an_unseeded_pipeline_is_named(digits) -> None:
    Xtr, ytr, Xv, yv = digits
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(10)])
    opt = keras.optimizers.Adam(1e-3)
    variables = len(opt.variables)  # iteration and learning rate only, until built
    train = tf.data.Dataset.from_tensor_slices((Xtr, ytr)).shuffle(2000).batch(32)  # no seed
    report = check_epoch1_overfit(TrainSetup(model=model, train=train, val=(Xv, yv), optimizer=opt,
                                             loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True)), probes=False)
    assert not opt.built and len(opt.variables) == variables
    assert "the tf.data pipeline yields other batches on every pass (a shuffle that reshuffles each iteration" in report.message


def test_nan_weights_behind_a_finite_loss_fail_never_pass() -> None:
    """One NaN input outside the eval sample: relu(NaN) is 0 in TensorFlow on CPU, so every loss stayed finite
    while the first kernel turned NaN, and no_epoch1_overfit / lr_spike_explained passed ("gap 0.007")."""
    from pytest_trainsanity import TrainSetup, check_epoch1_overfit, check_lr_spikes

    rng = np.random.RandomState(0)
    X = rng.randn(600, 8).astype("float32")
    y = (X[:, 0] + X[:, 1] > 0).astype("int64")
    X[550, 3] = np.nan  # outside the first 200 rows the eval sample holds
    keras.utils.set_random_seed(1)
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(2)])
    setup = TrainSetup(model=model, train=(X, y), val=(X[:100] + 0.5, y[:100]), optimizer=keras.optimizers.Adam(1e-3),
                       loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    for report in (check_epoch1_overfit(setup, eval_samples=200, probes=False), check_lr_spikes(setup, epochs=2, eval_samples=200)):
        assert not report.passed, report.message
        # the step whose gradient broke under a finite loss, found in the per-step gradient norms
        assert re.search(r"training went non-finite: the gradient was NaN/Inf at step \d+ of \d+ \(epoch 1\) while every "
                         r"training loss stayed finite, and the weights hold NaN/Inf after the pass "
                         r"\(sequential(_\d+)?/dense(_\d+)?/kernel", report.message), report.message
        assert report.causes[0]["name"] == "nonfinite_gradient_finite_loss"


def test_sample_weight_triples_weigh_the_loss_as_fit_does(digits) -> None:
    """Keras's (x, y, sample_weight) from tf.data: read as SPEC's (x1, x2, y), the weights were the labels
    (overfits_one_batch passed on them) and no_epoch1_overfit raised a raw ValueError."""
    from pytest_trainsanity import check_overfit_one_batch

    Xtr, ytr, Xv, yv = digits
    val = tf.data.Dataset.from_tensor_slices((Xv, yv)).batch(64)  # fit's validation_data may come unweighted

    def run(train: tf.data.Dataset, check, **kw):
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(32, activation="relu"), keras.layers.Dense(10)])
        return check(TrainSetup(model=model, train=train.batch(32), val=val, optimizer=keras.optimizers.Adam(1e-3),
                                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True)), **kw)

    ones, zeros = np.ones(len(ytr), "float32"), np.zeros(len(ytr), "float32")
    pair = run(tf.data.Dataset.from_tensor_slices((Xtr, ytr)), check_epoch1_overfit, probes=False)
    weighted = run(tf.data.Dataset.from_tensor_slices((Xtr, ytr, ones)), check_epoch1_overfit, probes=False)
    assert pair.metrics["train_metric"] > 0.4  # chance is 0.1
    assert weighted.metrics["train_metric"] == pytest.approx(pair.metrics["train_metric"], abs=1e-6)
    assert weighted.metrics["val_metric"] == pytest.approx(pair.metrics["val_metric"], abs=1e-6)
    assert "(x, y) batches with sample weights from a tf.data.Dataset" in weighted.message
    # every weight 0: the loss is 0 and nothing learns, as in model.fit
    stuck = run(tf.data.Dataset.from_tensor_slices((Xtr, ytr, zeros)), check_overfit_one_batch, steps=100)
    assert not stuck.passed and stuck.metrics["one_batch_score"] < 0.5 and stuck.metrics["last_loss"] == 0.0, stuck.message
    assert run(tf.data.Dataset.from_tensor_slices((Xtr, ytr, ones)), check_overfit_one_batch, steps=100).passed


def test_first_uses_read_the_graph_and_leave_what_it_does_not_settle() -> None:
    from pytest_trainsanity.adapters.keras_graph import first_uses

    num, cat = keras.Input((4,), name="x_num"), keras.Input((3,), name="x_cat", dtype="int64")
    h = keras.layers.Concatenate(name="join")([num, keras.layers.Flatten()(keras.layers.Embedding(5, 2, name="emb")(cat))])
    named = keras.Model({"x_num": num, "x_cat": cat}, keras.layers.Dense(2)(h))
    uses = first_uses(named, ("x_num", "x_cat"))
    assert {k: (u.role, u.label) for k, u in uses.items()} == {
        "x_num": ("numbers", "join (Concatenate)"), "x_cat": ("ids", "emb (Embedding)")}
    pixels = keras.Sequential([keras.Input((8,)), keras.layers.Normalization(name="norm"), keras.layers.Dense(2)])
    assert first_uses(pixels, ("x",))["x"].role == "normalised"
    assert first_uses(pixels, ("input 1", "input 2")) == {}  # fields that do not map onto the inputs

    class Sub(keras.Model):
        def __init__(self) -> None:
            super().__init__()
            self.dense = keras.layers.Dense(2)

        def call(self, x):
            return self.dense(x)

    assert first_uses(Sub(), ("x",)) == {} and first_uses(keras.Sequential([keras.layers.Dense(2)]), ("x",)) == {}
    lam = keras.Sequential([keras.Input((3,), dtype="int64"), keras.layers.Lambda(lambda t: t * 2), keras.layers.Dense(2)])
    assert first_uses(lam, ("x",)) == {}  # a Lambda: unknown, judged as before


def test_a_model_that_overrides_train_step_asks_for_that_step(digits) -> None:
    """model.fit calls an overridden train_step; the checks trained on the compiled loss alone and failed with a
    label-format error that never said the model's own step was bypassed."""
    from pytest_trainsanity import check_overfit_one_batch

    Xtr, ytr, Xv, yv = digits

    class Smoothed(keras.Model):
        def __init__(self) -> None:
            super().__init__()
            self.hidden, self.head = keras.layers.Dense(32, activation="relu"), keras.layers.Dense(10)

        def call(self, x, training=False):
            return self.head(self.hidden(x))

        def train_step(self, data):  # one-hot, smoothed labels into the compiled CategoricalCrossentropy
            x, y = data
            with tf.GradientTape() as tape:
                loss = self.compute_loss(x=x, y=tf.one_hot(tf.cast(y, tf.int32), 10) * 0.9 + 0.01, y_pred=self(x, training=True))
            self.optimizer.apply_gradients(zip(tape.gradient(loss, self.trainable_variables), self.trainable_variables))
            return {"loss": loss}

    keras.utils.set_random_seed(0)
    model = Smoothed()
    model.compile(optimizer="adam", loss=keras.losses.CategoricalCrossentropy(from_logits=True))
    train = tf.data.Dataset.from_tensor_slices((Xtr, ytr)).batch(32)
    with pytest.raises(SetupError, match=r"is a Smoothed that overrides train_step, which model.fit calls and these checks "
                                         r"cannot.*Give that loss as TrainSetup\(step=...\)"):
        check_overfit_one_batch(TrainSetup(model=model, train=train, val=(Xv, yv)))

    def step(model, batch):
        x, y = batch
        return model.loss(tf.one_hot(tf.cast(y, tf.int32), 10) * 0.9 + 0.01, model(x, training=True))

    assert check_overfit_one_batch(TrainSetup(model=model, train=train, val=(Xv, yv), optimizer=keras.optimizers.Adam(1e-2),
                                              step=step)).passed


def test_inputs_are_judged_after_the_models_own_normalization_layer() -> None:
    """An adapted Normalization first layer failed inputs_normalized on the raw data (a fix that normalised twice);
    an unadapted one (mean 0, variance 1: it passes the data on as it is) must still fail, naming adapt()."""
    from pytest_trainsanity import check_normalization

    rng = np.random.RandomState(0)
    X, y = (rng.rand(300, 5) * 100).astype("float32"), rng.randint(0, 2, 300)
    reports = []
    for adapt in (False, True):
        norm = keras.layers.Normalization(name=f"norm_{adapt}")
        if adapt:
            norm.adapt(X)
        model = keras.Sequential([keras.Input((5,)), norm, keras.layers.Dense(2)])
        reports.append(check_normalization(TrainSetup(model=model, train=(X, y), val=(X[:50], y[:50]))))
    raw, adapted = reports
    assert not raw.passed and "a failure is fixed in that layer (adapt it on train: layer.adapt(X_train))" in raw.message
    assert adapted.passed and "after its own norm_True (Normalization) layer" in adapted.message, adapted.message


@pytest.mark.parametrize("monitor, min_delta", [("val_loss", 0.05), ("val_accuracy", 0.05), ("loss", 0.3)])
def test_reduce_lr_on_plateau_steps_as_model_fit_steps_it(digits, monitor, min_delta) -> None:
    """A keras.callbacks.ReduceLROnPlateau given as the scheduler was refused ("must be a
    LearningRateScheduler or a callable"); the check now steps it after each epoch and the rate per
    epoch is model.fit's own."""
    Xtr, ytr, Xv, yv = digits
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    def net() -> keras.Model:
        keras.utils.set_random_seed(0)
        return keras.Sequential([keras.Input((64,)), keras.layers.Dense(32, activation="relu"), keras.layers.Dense(10)])

    def callback() -> keras.callbacks.Callback:
        return keras.callbacks.ReduceLROnPlateau(monitor=monitor, factor=0.5, patience=1, min_delta=min_delta)

    fitted = net()
    fitted.compile(optimizer=keras.optimizers.SGD(0.05), loss=loss, metrics=["accuracy"])
    history = fitted.fit(Xtr, ytr, validation_data=(Xv, yv), epochs=6, batch_size=32, callbacks=[callback()], verbose=0)
    mine = callback()
    before = dict(vars(mine))
    report = check_lr_spikes(TrainSetup(model=net(), train=(Xtr, ytr), val=(Xv, yv), optimizer=keras.optimizers.SGD(0.05),
                                        loss=loss, scheduler=mine), epochs=6)
    per_epoch = [float(x) for x in re.findall(r"@ lr ([0-9.e-]+)", report.message)]
    assert per_epoch == pytest.approx(history.history["learning_rate"], rel=1e-6)
    assert len(set(per_epoch)) > 1, "the callback never reduced the rate: the test proves nothing"
    assert "ReduceLROnPlateau(monitor=" in report.message
    assert vars(mine).keys() == before.keys() and mine.wait == before["wait"]  # the user's callback is only read


def test_reduce_lr_on_plateau_on_a_metric_the_check_does_not_measure_is_said(digits) -> None:
    Xtr, ytr, Xv, yv = digits
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(10)])
    report = check_lr_spikes(TrainSetup(model=model, train=(Xtr, ytr), val=(Xv, yv), optimizer=keras.optimizers.SGD(0.05),
                                        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                                        scheduler=keras.callbacks.ReduceLROnPlateau(monitor="val_auc", patience=0)), epochs=3)
    assert "ReduceLROnPlateau monitors 'val_auc', which the check does not measure" in report.message
    report = check_lr_spikes(TrainSetup(model=model, train=(Xtr, ytr), optimizer=keras.optimizers.SGD(0.05),
                                        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                                        scheduler=keras.callbacks.ReduceLROnPlateau(patience=0)), epochs=3, metric="train_acc")
    assert "ReduceLROnPlateau monitors 'val_loss' but the setup has no val split, so the rate was never reduced" in report.message
    assert "stepped after each epoch" not in report.message
    with pytest.raises(SetupError, match="the callback sets the rate, which a schedule owns"):
        check_lr_spikes(TrainSetup(model=model, train=(Xtr, ytr), val=(Xv, yv),
                                   optimizer=keras.optimizers.SGD(keras.optimizers.schedules.ExponentialDecay(0.1, 10, 0.9)),
                                   loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                                   scheduler=keras.callbacks.ReduceLROnPlateau()), epochs=2)


@pytest.mark.parametrize("wrapped", ["by_compile", "by_hand"])
def test_a_mixed_precision_model_trains_as_fit_trains_it(digits, wrapped: str) -> None:
    """mixed_float16 steps through a LossScaleOptimizer, which divides the gradients by its loss scale
    and keeps the rate on its inner optimizer: the check scales the loss as Keras's train_step does and
    reads the inner rate (it trained ~32768x slower at 'lr 0' before)."""
    Xtr, ytr, Xv, yv = digits
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(64, activation="relu"), keras.layers.Dense(10),
                                  keras.layers.Activation("linear", dtype="float32")])
        opt = keras.optimizers.SGD(0.1, momentum=0.9)
        if wrapped == "by_hand":
            opt = keras.optimizers.LossScaleOptimizer(opt)
        model.compile(optimizer=opt, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert type(model.optimizer).__name__ == "LossScaleOptimizer"
    before = [w.numpy().copy() for w in model.weights]
    setup = TrainSetup(model=model, train=(Xtr, ytr), val=(Xv, yv), batch_size=64)
    one = check_overfit_one_batch(setup, steps=150)
    assert one.passed and one.metrics["lr"] == pytest.approx(0.1), one.message
    epoch = check_epoch1_overfit(setup)
    assert epoch.metrics["train_metric"] > 0.8, epoch.message
    assert "lr=0.01 gives" in epoch.message  # the lr/10 probe ran at a tenth of the inner rate
    assert all(np.array_equal(b, w.numpy()) for b, w in zip(before, model.weights))


def test_the_message_names_the_batch_size_a_batched_tf_data_pipeline_yields(digits) -> None:
    """A batched tf.data.Dataset brings its own batch size; the message said TrainSetup's default 32."""
    Xtr, ytr, Xv, yv = digits
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(32, activation="relu"), keras.layers.Dense(10)])
    train = tf.data.Dataset.from_tensor_slices((Xtr, ytr)).batch(64)
    setup = TrainSetup(model=model, train=train, val=(Xv, yv), optimizer="adam",
                       loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    report = check_epoch1_overfit(setup)
    assert report.metrics["steps"] == 23  # 1437 samples in batches of 64
    assert "1,437 train / 360 val samples; batch 64." in report.message, report.message
