"""The Keras pre-flight probes on real Keras models and real digits data: a clean MLP measures clean,
each planted bug shows in the probe meant to find it, and every probe leaves the model bit for bit."""

from __future__ import annotations

import contextlib
import re
from typing import Any, Iterator

import numpy as np
import pytest

pytest.importorskip("torch")  # one process: torch before tensorflow
tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

from pytest_trainsanity import TrainSetup  # noqa: E402
from pytest_trainsanity.adapters.keras import KerasAdapter  # noqa: E402
from pytest_trainsanity.adapters.splits import open_splits as load_splits  # noqa: E402
from pytest_trainsanity.settings import RunSettings  # noqa: E402

LOGITS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def mlp(*middle: Any, head: Any = None) -> keras.Model:
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((64,)), keras.layers.Dense(64, activation="relu", name="hidden"), *middle,
                             head or keras.layers.Dense(10, name="logits")])


def make(model: keras.Model, train: Any, val: Any, optimizer: Any = None, loss: Any = LOGITS, **kw: Any) -> KerasAdapter:
    setup = TrainSetup(model=model, train=train, val=val, optimizer=optimizer or keras.optimizers.Adam(1e-2), loss=loss, **kw)
    return KerasAdapter(model, setup, load_splits(setup, ("train", "val")), RunSettings(device="cpu"))


@contextlib.contextmanager
def entered(adapter: KerasAdapter) -> Iterator[KerasAdapter]:
    """The adapter entered; on leaving, the model's weights and the optimizer's state are as before, bit for bit."""
    weights, opt = adapter.model.get_weights(), [v.numpy().copy() for v in adapter.optimizer.variables]
    rate = adapter.optimizer._learning_rate
    with adapter:
        yield adapter
    assert all(np.array_equal(a, b) for a, b in zip(weights, adapter.model.get_weights()))
    assert all(np.array_equal(a, v.numpy()) for a, v in zip(opt, adapter.optimizer.variables))
    assert adapter.optimizer._learning_rate is rate
    assert not any("call" in vars(layer) for layer in adapter.model._flatten_layers())  # no recording shadow left


def test_a_clean_mlp_measures_clean_and_every_probe_restores_the_model(digits) -> None:
    Xtr, ytr, Xv, yv = digits
    adapter = make(mlp(), (Xtr, ytr), (Xv, yv))
    with entered(adapter):
        init = adapter.init_probe()
    assert init.outputs.shape == (1437, 10) and init.outputs.dtype == np.float64 and np.array_equal(init.targets, ytr)
    assert abs(init.loss - np.log(10)) < 0.5 and init.loss == pytest.approx(float(LOGITS(ytr, init.outputs)), rel=1e-4)
    assert (init.loss_kind, init.loss_name) == ("logits", "SparseCategoricalCrossentropy(from_logits=True)")
    assert init.final_layer == "logits" and init.final_bias.shape == (10,) and init.ends_in_softmax == ""
    assert np.isnan(init.twice_loss)  # no softmax: nothing kept behind the outputs
    with entered(adapter):
        run = adapter.one_batch(300)
    assert run.accuracy == 1.0 and np.isnan(run.r2) and run.losses.shape == (300,) and run.losses[-1] < 0.05 * run.losses[0]
    assert run.batch_size == 32 and run.conflicts == 0 and run.train_mode_layers == []
    assert run.lr == pytest.approx(1e-2) and 1e-5 < run.update_ratio < 0.1
    assert run.lrs.shape == (300,) and np.allclose(run.lrs, 1e-2)
    assert len(run.moved) == 4 and all(v > 0 for v in run.moved.values())
    with entered(adapter):
        mix = adapter.mixing()
    assert mix.leak == 0.0 and mix.probed == [0, 16, 31] and mix.module == "" and not mix.skipped
    with entered(adapter):
        records = adapter.param_step(())
    assert [r.name for r in records] == ["hidden/kernel", "hidden/bias", "logits/kernel", "logits/bias"]  # no model name
    assert all(r.grad == "ok" and r.changed and r.trainable and r.in_optimizer and not r.frozen_by_prefix for r in records)
    assert sum(r.size for r in records) == 64 * 64 + 64 + 64 * 10 + 10
    with entered(adapter):
        finite = adapter.finite_run(60)  # past the 45 batches of an epoch: the second epoch is reshuffled
        trace = adapter.train(epochs=1)  # the adapter's own pass, for the label mix of its batches
        mixed = adapter.batch_mix(None)
    assert finite.bad_step == 0 and finite.steps == 60 and np.isfinite(finite.losses).all() and finite.dtype == "float32"
    assert finite.first_loss == pytest.approx(trace.loss[0]) and np.allclose(finite.losses[:45], trace.loss)
    assert mixed.counts.shape == (45, 10) and mixed.counts.sum() == 1437 and np.array_equal(mixed.counts, trace.label_counts)
    assert mixed.source.startswith("arrays, shuffled by the plugin each epoch")


@pytest.mark.filterwarnings("ignore:.*from_logits=True.*Softmax:UserWarning")
def test_a_softmax_output_is_named_and_the_loss_kind_read(digits) -> None:
    Xtr, ytr, Xv, yv = digits
    model = mlp(head=keras.layers.Dense(10, activation="softmax", name="probs"))
    with entered(make(model, (Xtr, ytr), (Xv, yv))) as adapter:
        init = adapter.init_probe()
    assert init.ends_in_softmax == "layer 'probs' (activation='softmax')" and init.loss_kind == "logits"
    assert np.allclose(init.outputs.sum(axis=1), 1.0, atol=1e-5) and (init.outputs >= 0).all()
    # Keras reads the logits it kept behind the softmax; a copy of the outputs applies the softmax twice
    assert init.loss == pytest.approx(float(LOGITS(ytr, np.log(init.outputs))), rel=1e-4)
    assert init.twice_loss == pytest.approx(float(LOGITS(ytr, init.outputs)), rel=1e-4) and init.twice_loss != init.loss
    with entered(make(model, (Xtr, ytr), (Xv, yv), loss="sparse_categorical_crossentropy")) as adapter:
        init = adapter.init_probe()
    assert (init.loss_kind, init.loss_name) == ("probs", "sparse_categorical_crossentropy(from_logits=False)")
    assert abs(init.loss - np.log(10)) < 0.5
    def own_nll(y_true, y_pred):  # the user's own loss on probabilities: its kind cannot be read
        picked = keras.ops.take_along_axis(y_pred, keras.ops.cast(y_true, "int32")[:, None], axis=1)
        return -keras.ops.log(picked + 1e-7)

    layer = mlp(keras.layers.Dense(10, name="scores"), head=keras.layers.Softmax(name="softmax_out"))
    with entered(make(layer, (Xtr, ytr), (Xv, yv), loss=own_nll)) as adapter:
        init = adapter.init_probe()
    assert init.ends_in_softmax == "layer 'softmax_out' (Softmax)" and init.final_layer == "scores"
    assert (init.loss_kind, init.loss_name) == ("unknown", "own_nll")


def test_a_learning_rate_of_1e9_barely_moves_and_lr_scale_is_undone(digits) -> None:
    Xtr, ytr, Xv, yv = digits
    opt = keras.optimizers.Adam(1e-9)
    with entered(make(mlp(), (Xtr, ytr), (Xv, yv), optimizer=opt)) as adapter:
        slow = adapter.one_batch(100)
        scaled = adapter.one_batch(20, lr_scale=1e7)
    assert slow.accuracy < 1.0 and slow.update_ratio < 1e-7 and slow.lr == pytest.approx(1e-9)
    kernels = [v for k, v in slow.moved.items() if k.endswith("kernel")]  # the biases start at 0: any move is large
    assert slow.losses[-1] == pytest.approx(slow.losses[0], rel=1e-3) and max(kernels) < 1e-5
    assert scaled.lr == pytest.approx(1e-2) and scaled.update_ratio > 1e3 * slow.update_ratio
    decay = keras.optimizers.schedules.ExponentialDecay(0.1, decay_steps=1, decay_rate=0.5)
    with entered(make(mlp(), (Xtr, ytr), (Xv, yv), optimizer=keras.optimizers.SGD(decay))) as adapter:
        decayed = adapter.one_batch(10)
    assert np.allclose(decayed.lrs, 0.1 * 0.5 ** np.arange(10)) and decayed.lr == pytest.approx(0.1)  # the peak
    assert float(opt.learning_rate) == pytest.approx(1e-9)


def test_a_frozen_layer_is_reported_and_stays_unchanged(digits) -> None:
    Xtr, ytr, Xv, yv = digits
    model = mlp(keras.layers.Dense(32, activation="relu", name="frozen"))
    model.get_layer("frozen").trainable = False
    with entered(make(model, (Xtr, ytr), (Xv, yv))) as adapter:
        kernel = model.get_layer("frozen").kernel.numpy().copy()
        records = {r.name: r for r in adapter.param_step(("hidden",))}  # prefixes without the model's name
        run = adapter.one_batch(20)
        assert np.array_equal(kernel, model.get_layer("frozen").kernel.numpy())
    for name in ("frozen/kernel", "frozen/bias"):
        r = records[name]
        assert not r.trainable and not r.in_optimizer and r.grad == "none" and not r.changed and not r.frozen_by_prefix
    assert records["hidden/kernel"].frozen_by_prefix and records["hidden/kernel"].grad == "ok" and records["hidden/kernel"].changed
    assert records["logits/bias"].changed and not records["logits/bias"].frozen_by_prefix
    assert not any(name.endswith(("frozen/kernel", "frozen/bias")) for name in run.moved)


def test_mixing_names_the_layer_or_op_that_mixes_samples(digits) -> None:
    Xtr, ytr, Xv, yv = digits
    center = keras.layers.Lambda(lambda t: t - keras.ops.mean(t, axis=0), name="center")
    with entered(make(mlp(center, keras.layers.BatchNormalization(name="bn")), (Xtr, ytr), (Xv, yv))) as adapter:
        mix = adapter.mixing()
    assert mix.leak > 1e-6 and mix.module == "center" and mix.batchnorm_train == ["bn"] and not mix.skipped
    keras.utils.set_random_seed(0)
    inputs = keras.Input((64,))
    h = keras.layers.Dense(32, name="d1")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(10, name="head")(h - keras.ops.mean(h, axis=0)))  # a graph op, no layer
    with entered(make(model, (Xtr, ytr), (Xv, yv))) as adapter:
        mix = adapter.mixing(probes=2)
    assert mix.probed == [0, 31] and mix.leak > 1e-6 and mix.module.startswith("mean")
    keras.utils.set_random_seed(0)
    tokens = np.random.RandomState(0).randint(0, 50, (300, 12))
    embed = keras.Sequential([keras.Input((12,), dtype="int32"), keras.layers.Embedding(50, 8),
                              keras.layers.GlobalAveragePooling1D(), keras.layers.Dense(3)])
    with entered(make(embed, (tokens, tokens[:, 0] % 3), (tokens[:40], tokens[:40, 0] % 3))) as adapter:
        mix = adapter.mixing()
        records = adapter.param_step(())
    assert not mix.skipped and mix.leak == 0.0 and re.fullmatch(r"the output of embedding 'embedding(_\d+)?'", mix.through)
    assert all(r.grad == "ok" and r.changed for r in records)  # the embedding's sparse gradient too
    # token ids into a layer that subtracts the batch mean: it was skipped ("not float tensors"), a silent pass
    keras.utils.set_random_seed(0)
    mixer = keras.Sequential([keras.Input((12,), dtype="int32"), keras.layers.Embedding(50, 8), keras.layers.GlobalAveragePooling1D(),
                              keras.layers.Lambda(lambda t: t - keras.ops.mean(t, axis=0, keepdims=True), name="center"),
                              keras.layers.Dense(3)])
    with entered(make(mixer, (tokens, tokens[:, 0] % 3), (tokens[:40], tokens[:40, 0] % 3))) as adapter:
        mix = adapter.mixing()
    assert mix.leak > 1e-3 and mix.module == "center" and mix.through.startswith("the output of embedding")
    keras.utils.set_random_seed(0)
    counts = keras.Sequential([keras.Input((12,), dtype="int32"), keras.layers.Dense(3)])  # ints read as numbers
    with entered(make(counts, (tokens, tokens[:, 0] % 3), (tokens[:40], tokens[:40, 0] % 3))) as adapter:
        mix = adapter.mixing()
    assert mix.skipped.startswith("the inputs are not float tensors (int64) and no Embedding layer reads them") and np.isnan(mix.leak)


def test_a_huge_learning_rate_on_pixels_times_255_is_caught_at_its_first_step(digits) -> None:
    Xtr, ytr, Xv, yv = digits
    adapter = make(mlp(), (Xtr * 255, ytr), (Xv * 255, yv), optimizer=keras.optimizers.SGD(1e4))
    with entered(adapter):
        run = adapter.finite_run(100)
        trace = adapter.train(epochs=1, max_steps=run.bad_step)  # the adapter's own pass meets it at the same step
    assert run.bad_step > 0 and run.steps == run.bad_step and len(run.losses) == run.bad_step
    assert run.what in ("loss", "gradient", "weights") and run.module in ("hidden", "logits") and run.module_kind == "Dense"
    assert run.lr == pytest.approx(1e4) and run.input_min < -100 and run.input_max > 1000
    assert np.isfinite(run.first_loss) and run.first_loss == run.losses[0] and run.bad_params and run.dtype == "float32"
    assert np.allclose(trace.loss[: run.bad_step - 1], run.losses[:-1])
    if run.what == "loss":
        assert not np.isfinite(trace.loss[run.bad_step - 1]) and np.isfinite(run.losses[:-1]).all()


def test_pipelines_give_their_own_first_batch_and_batch_mix(digits) -> None:
    Xtr, ytr, Xv, yv = digits
    X, y = Xtr.copy(), ytr.copy()
    X[1], y[1] = X[0], (y[0] + 1) % 10  # one input, two labels, in the first batch the pipeline yields
    ds = tf.data.Dataset.from_tensor_slices((X, y)).batch(100)
    with entered(make(mlp(), ds, (Xv, yv))) as adapter:
        run = adapter.one_batch(5)
        mixed = adapter.batch_mix(4)
    assert run.batch_size == 100 and run.conflicts == 2
    assert mixed.source == "a tf.data.Dataset (its own batches)" and mixed.counts.shape == (4, 10)
    assert np.array_equal(mixed.counts[0], np.bincount(y[:100], minlength=10))

    class Batches(keras.utils.PyDataset):
        def __init__(self, X: np.ndarray, y: np.ndarray) -> None:
            super().__init__()
            self.X, self.y = X, y

        def __len__(self) -> int:
            return (len(self.X) + 99) // 100

        def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
            return self.X[i * 100 : (i + 1) * 100], self.y[i * 100 : (i + 1) * 100]

    with entered(make(mlp(), Batches(Xtr, ytr), (Xv, yv))) as adapter:
        mixed = adapter.batch_mix(None)
        finite = adapter.finite_run(20)
    assert mixed.source.startswith("a keras PyDataset Batches (15 batches") and mixed.counts.sum() == 1437
    assert finite.bad_step == 0 and finite.steps == 20
    regression = keras.Sequential([keras.Input((64,)), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(1)])
    target = Xtr[:, 20:30].sum(axis=1)
    with entered(make(regression, (Xtr, target), (Xv, Xv[:, 20:30].sum(axis=1)), loss="mse", task="regression")) as adapter:
        run = adapter.one_batch(200)
        init = adapter.init_probe()
        mixed = adapter.batch_mix(None)
    assert run.r2 > 0.9 and np.isnan(run.accuracy) and mixed.skipped == "regression: no class mix"
    assert init.loss_kind == "unknown" and init.targets.shape == (1437,) and init.outputs.shape == (1437, 1)


def test_a_loss_by_name_or_function_takes_the_labels_fit_takes(digits) -> None:
    """A (n, 1) sigmoid head with labels of shape (n,) and loss="binary_crossentropy": model.fit trains it (compile
    wraps the function in LossFunctionWrapper, which matches the ranks); every check was a setup error ("Arguments
    `target` and `output` must have the same rank"). Logits into that loss fail naming the mismatch."""
    from pytest_trainsanity import check_loss_at_init

    Xtr, ytr, Xv, yv = digits
    binary, binary_v = (ytr % 2).astype(np.float32), (yv % 2).astype(np.float32)

    def head(activation: Any) -> keras.Model:
        return mlp(head=keras.layers.Dense(1, activation=activation, name="out"))

    fitted = head("sigmoid")
    fitted.compile(optimizer="adam", loss="binary_crossentropy")
    fitted.fit(Xtr, binary, epochs=1, batch_size=64, verbose=0)  # what the user's own run does with these labels
    report = check_loss_at_init(TrainSetup(model=head("sigmoid"), train=(Xtr, binary), val=(Xv, binary_v),
                                           optimizer="adam", loss="binary_crossentropy"))
    assert report.passed, report.message
    logits = check_loss_at_init(TrainSetup(model=head(None), train=(Xtr, binary), val=(Xv, binary_v), optimizer="adam",
                                           loss="binary_crossentropy"))
    assert not logits.passed and logits.causes[0]["name"] == "loss reads the outputs as something else", logits.message
    assert "pass from_logits=True to the loss" in logits.message


def test_a_sigmoid_head_into_a_logits_loss_is_a_double_sigmoid(digits) -> None:
    """Dense(1, activation="sigmoid") with BinaryCrossentropy(from_logits=True) passed loss_at_init: only a final
    softmax was recognised as a squashing end ("in [0, 1] behind a final sigmoid: False")."""
    from pytest_trainsanity import check_loss_at_init

    Xtr, ytr, Xv, yv = digits
    binary = (ytr % 2).astype(np.float32)
    model = mlp(head=keras.layers.Dense(1, activation="sigmoid", name="out"))
    report = check_loss_at_init(TrainSetup(model=model, train=(Xtr, binary), val=(Xv, (yv % 2).astype(np.float32)),
                                           optimizer="adam", loss=keras.losses.BinaryCrossentropy(from_logits=True)))
    assert not report.passed and report.causes[0]["name"] == "double softmax", report.message
    assert "the model ends in layer 'out' (activation='sigmoid')" in report.message
    # Keras 3 reads the logit it kept behind the sigmoid: measured, and said, rather than "the model learns slowly"
    assert "(Keras reads the logits it kept behind the sigmoid, so nothing is applied twice yet)" in report.message
    assert report.metrics["twice_loss"] != report.metrics["init_loss"]


def test_batch_norm_moving_statistics_are_state_not_frozen_parameters(digits) -> None:
    """Every model with BatchNormalization failed params_update: moving_mean and moving_variance (non-trainable,
    updated by the layer itself in training) were 'changed while frozen'. A layer frozen by the user still counts."""
    from pytest_trainsanity import check_params_update

    Xtr, ytr, Xv, yv = digits
    report = check_params_update(TrainSetup(model=mlp(keras.layers.BatchNormalization(name="bn")), train=(Xtr, ytr),
                                            val=(Xv, yv), optimizer="adam", loss=LOGITS))
    assert report.passed, report.message
    assert "moving_mean" not in report.message
    model = mlp(keras.layers.BatchNormalization(name="bn"))
    model.get_layer("hidden").trainable = False
    frozen = check_params_update(TrainSetup(model=model, train=(Xtr, ytr), val=(Xv, yv), optimizer="adam", loss=LOGITS))
    assert frozen.passed and "2 of 2 frozen stayed bit-identical" in frozen.message, frozen.message


def test_params_update_steps_at_the_first_nonzero_rate_of_a_warm_up_from_zero(digits) -> None:
    """CosineDecay(0.0, warmup_target=...) is 0 at step 0: the probe's one step moved nothing and
    params_update failed "lr 0?" on a healthy setup."""
    from pytest_trainsanity import check_params_update

    Xtr, ytr, Xv, yv = digits
    sched = keras.optimizers.schedules.CosineDecay(0.0, decay_steps=1000, warmup_target=1e-2, warmup_steps=50)
    setup = TrainSetup(model=mlp(), train=(Xtr, ytr), val=(Xv, yv), optimizer=keras.optimizers.Adam(sched), loss=LOGITS)
    report = check_params_update(setup)
    assert report.passed, report.message
    assert "4 of 4 trainable parameter tensors got a finite nonzero gradient and changed" in report.message
    zero = TrainSetup(model=mlp(), train=(Xtr, ytr), val=(Xv, yv), optimizer=keras.optimizers.SGD(0.0), loss=LOGITS)
    assert "unchanged after the step (lr 0?)" in check_params_update(zero).message  # a rate that stays 0 still fails
