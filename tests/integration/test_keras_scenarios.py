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


KERAS_PIPELINES = '''
import numpy as np
import torch  # noqa: F401 - one process: torch before tensorflow
import keras
import tensorflow as tf
import pytest
from keras_helpers import digits
from pytest_trainsanity import TrainSetup

Xtr, ytr, Xv, yv = digits()
cat_tr = (Xtr[:, 36:39] > 0).astype(np.int64)
cat_v = (Xv[:, 36:39] > 0).astype(np.int64)


def named_inputs():
    keras.utils.set_random_seed(0)
    num, cat = keras.Input((64,), name="x_num"), keras.Input((3,), name="x_cat", dtype="int64")
    h = keras.layers.Concatenate()([num, keras.layers.Flatten()(keras.layers.Embedding(2, 4)(cat))])
    return keras.Model({"x_num": num, "x_cat": cat}, keras.layers.Dense(10)(keras.layers.Dense(64, activation="relu")(h)))


def two_inputs():
    keras.utils.set_random_seed(0)
    num, cat = keras.Input((64,)), keras.Input((3,), dtype="int64")
    h = keras.layers.Concatenate()([num, keras.layers.Flatten()(keras.layers.Embedding(2, 4)(cat))])
    return keras.Model([num, cat], keras.layers.Dense(10)(keras.layers.Dense(64, activation="relu")(h)))


def dicts(X, c, y):
    return tf.data.Dataset.from_tensor_slices(({"x_num": X, "x_cat": c}, y))


class Pairs(keras.utils.PyDataset):
    def __init__(self, X, c, y):
        super().__init__()
        self.X, self.c, self.y = X, c, y

    def __len__(self):
        return (len(self.y) + 31) // 32

    def __getitem__(self, i):
        s = slice(i * 32, (i + 1) * 32)
        return (self.X[s], self.c[s]), self.y[s]


LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def tfdata(leak=0):
    Xv_, cv_, yv_ = Xv.copy(), cat_v.copy(), yv.copy()
    Xv_[:leak], cv_[:leak], yv_[:leak] = Xtr[:leak], cat_tr[:leak], ytr[:leak]
    return TrainSetup(model=named_inputs(), train=dicts(Xtr, cat_tr, ytr).shuffle(2000, seed=1).batch(32),
                      val=dicts(Xv_, cv_, yv_).batch(100), optimizer=keras.optimizers.Adam(1e-3), loss=LOSS)


@pytest.fixture
def tfdata_dicts():
    return tfdata()


@pytest.fixture
def tfdata_leaky():
    return tfdata(leak=30)


@pytest.fixture
def pydataset_pairs():
    return TrainSetup(model=two_inputs(), train=Pairs(Xtr * 300, cat_tr, ytr), val=Pairs(Xv * 300, cat_v, yv),
                      optimizer=keras.optimizers.Adam(1e-3), loss=LOSS)


@pytest.fixture
def weighted():  # Keras's (x, y, sample_weight), as model.fit takes it; val unweighted
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(64, activation="relu"), keras.layers.Dense(10)])
    w = np.where(ytr == 0, 2.0, 1.0).astype("float32")
    return TrainSetup(model=model, train=tf.data.Dataset.from_tensor_slices((Xtr, ytr, w)).batch(32),
                      val=tf.data.Dataset.from_tensor_slices((Xv, yv)).batch(100), optimizer=keras.optimizers.Adam(1e-3), loss=LOSS)


@pytest.mark.no_epoch1_overfit(setup="weighted", probes=False)
@pytest.mark.no_leakage(setup="weighted")
def test_weighted(trainsanity_report):
    assert trainsanity_report["no_epoch1_overfit"].metrics["val_metric"] > 0.5  # chance 0.1: the real labels were read


@pytest.mark.no_epoch1_overfit(setup="tfdata_dicts", max_steps=30, probes=False)
def test_tfdata_dicts(trainsanity_report):
    assert trainsanity_report["no_epoch1_overfit"].metrics["steps"] == 30


@pytest.mark.no_leakage(setup="tfdata_leaky")
def test_tfdata_leak(): pass


@pytest.mark.no_epoch1_overfit(setup="pydataset_pairs")
@pytest.mark.inputs_normalized(setup="pydataset_pairs")
def test_pydataset(): pass
'''


def test_keras_streams_dict_and_tuple_inputs(keras_project: pytest.Pytester) -> None:
    keras_project.makepyfile(test_keras_pipelines=KERAS_PIPELINES)
    res = run(keras_project, "--trainsanity-explain")
    res.assert_outcomes(passed=2, failed=2)
    res.stdout.fnmatch_lines([
        "*test_weighted no_epoch1_overfit passed*",
        "    Training: (x, y) batches with sample weights from a tf.data.Dataset (its own batches).",
        "*test_weighted no_leakage passed*",
    ])
    res.stdout.fnmatch_lines([
        "*test_tfdata_dicts no_epoch1_overfit passed*",
        "    Training: (dict, y) batches with inputs {x_num, x_cat} from a tf.data.Dataset (its own batches); the tf.data "
        "pipeline yields other batches on every pass (a shuffle that reshuffles each iteration, or a random op)*",
        "*Note: the pass stopped at the step budget after 30 steps*",
    ])
    res.stdout.fnmatch_lines([
        "*no_leakage FAILED: train/val: 30 copies (exact or near) of 360 val samples (8.3%; limit 0).",
        "*Samples: a sample is identified by all its input fields (x_num, x_cat), the target excluded.",
    ])
    res.stdout.fnmatch_lines([
        "*inputs_normalized FAILED for train, val: train field 'input 1' inputs are not standardised*",
        "*Note: not features to scale, skipped: input 2 (int64, integer ids).",
    ])
    res.stdout.fnmatch_lines([
        "*test_pydataset no_epoch1_overfit*",
        "    Training: ((x1, ..., xk), y) batches with 2 inputs (input 1, input 2) from a keras PyDataset Pairs (45 batches, shuffled per epoch).",
    ])


KERAS_FIRST_LAYERS = '''
import numpy as np
import torch  # noqa: F401 - one process: torch before tensorflow
import keras
import pytest
from keras_helpers import digits
from pytest_trainsanity import TrainSetup

LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
rng = np.random.RandomState(0)


def people(n):  # int64 columns (age, income, children): df.to_numpy() of integer columns
    X = np.stack([rng.randint(18, 90, n), rng.randint(20000, 200000, n), rng.randint(0, 5, n)], 1).astype("int64")
    return X, (X[:, 1] > 110000).astype("int64")


@pytest.fixture
def dense_on_ints():
    (X, y), (Xv, yv) = people(200), people(100)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,), dtype="int64"), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(2)])
    return TrainSetup(model=model, train=(X, y), val=(Xv, yv), optimizer="adam", loss=LOSS)


@pytest.fixture
def embedding_on_ints():
    r = np.random.RandomState(1)
    X, y = r.randint(0, 50, (200, 6)), r.randint(0, 2, 200)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((6,), dtype="int64"), keras.layers.Embedding(50, 4), keras.layers.Flatten(),
                              keras.layers.Dense(2)])
    return TrainSetup(model=model, train=(X, y), val=(X[:50], y[:50]), optimizer="adam", loss=LOSS)


@pytest.fixture
def rescaled_pixels():
    Xtr, ytr, Xv, yv = digits(scaled=False)  # 0..16 counts, scaled by the model's first layer
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((64,)), keras.layers.Rescaling(1 / 16.0, offset=-0.3), keras.layers.Dense(10)])
    return TrainSetup(model=model, train=(Xtr, ytr), val=(Xv, yv), optimizer="adam", loss=LOSS)


@pytest.fixture
def token_mixer():  # token ids through an Embedding, then a layer that subtracts the batch mean
    r = np.random.RandomState(1)
    X, y = r.randint(0, 50, (200, 6)), r.randint(0, 2, 200)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((6,), dtype="int64"), keras.layers.Embedding(50, 4), keras.layers.Flatten(),
                              keras.layers.Lambda(lambda t: t - keras.ops.mean(t, axis=0, keepdims=True), name="center"),
                              keras.layers.Dense(2)])
    return TrainSetup(model=model, train=(X, y), val=(X[:50], y[:50]), optimizer="adam", loss=LOSS)


@pytest.mark.batch_independent(setup="token_mixer")
def test_token_mixer(): pass


@pytest.mark.inputs_normalized(setup="dense_on_ints")
def test_dense_on_ints(): pass


@pytest.mark.inputs_normalized(setup="embedding_on_ints")
def test_embedding_on_ints(): pass


@pytest.mark.inputs_normalized(setup="rescaled_pixels")
def test_rescaled_pixels(): pass
'''


def test_keras_inputs_are_judged_as_the_first_layer_reads_them(keras_project: pytest.Pytester) -> None:
    """Integer columns read by Dense were skipped as "ids that feed an embedding" (a silent pass); pixels
    rescaled by the model's own first layer failed with a fix that would scale them twice; token ids were
    not differentiated, so batch_independent passed a model that mixes the batch."""
    keras_project.makepyfile(test_first_layers=KERAS_FIRST_LAYERS)
    res = run(keras_project, "-rA", "--trainsanity-explain")
    res.assert_outcomes(passed=2, failed=2)
    res.stdout.fnmatch_lines([  # it was skipped ("the inputs are not float tensors"): a pass
        "*batch_independent FAILED: in eval mode, the outputs of sample(s) 0, 16, 31 of a batch of 32 take a relative "
        "gradient of * from the other samples' inputs (token ids: measured at the output of embedding 'embedding*')*",
        "*they mix in 'center': its output for one sample depends on other samples' inputs",
    ])
    res.stdout.fnmatch_lines([  # each block matched from the top: the summary repeats the failures
        "*inputs_normalized FAILED for train, val: train inputs are not standardised: values span [[]0, 1.999e+05]*",
        "*standardise per feature with statistics fitted on train only*",
        "*Note: the inputs (int64) judged as features: dense* (Dense) reads them as numbers, not an embedding as "
        "integer ids would be.",
    ])
    res.stdout.fnmatch_lines(["*test_embedding_on_ints inputs_normalized passed*",
                              "*inputs are integer ids (dtype int64): token or category ids feed an embedding*"])
    res.stdout.fnmatch_lines([
        "*test_rescaled_pixels inputs_normalized passed*",
        "*train: 1437 samples, 64 feature(s), dtype float32, range [[]-0.3, 0.7]*",
        "*Note: the inputs judged as the model receives them, after its own rescaling (Rescaling) layer, which reads "
        "them first: a failure is fixed in that layer (its scale and offset), not by a second normalisation in the pipeline.",
    ])


def test_a_reduce_lr_on_plateau_callback_is_stepped_by_the_check(keras_project: pytest.Pytester) -> None:
    """TrainSetup(scheduler=keras.callbacks.ReduceLROnPlateau(...)) was a setup error; the check steps
    it after each epoch on its own val loss, as model.fit does, and says so."""
    keras_project.makepyfile(test_plateau="""
        import dataclasses
        import keras
        import pytest
        from keras_helpers import digits, mlp, setup

        @pytest.fixture
        def plateau():
            Xtr, ytr, Xv, yv = digits()
            cb = keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=1, min_delta=0.05)
            return dataclasses.replace(setup(Xtr, ytr, Xv, yv, model=mlp()), optimizer=keras.optimizers.SGD(0.05), scheduler=cb)

        @pytest.mark.lr_spike_explained(setup="plateau", epochs=6)
        def test_plateau(): pass
    """)
    res = run(keras_project, "-rA", "--trainsanity-explain")
    res.assert_outcomes(passed=1)
    res.stdout.fnmatch_lines([
        "*Training: * ReduceLROnPlateau(monitor='val_loss', factor=0.5, patience=1) stepped after each epoch on the "
        "check's measurement.",
        "*Per epoch: 1: * @ lr 0.05, 2: *@ lr 0.025*",
    ])


def test_the_adapters_own_retracing_is_not_reported_as_the_users(keras_project: pytest.Pytester) -> None:
    """After a few Keras checks over dict and plain inputs, TensorFlow printed "5 out of the last 13 calls to
    <function KerasAdapter._measure_sample.<locals>.<lambda>> triggered tf.function retracing ... define your
    @tf.function outside of the loop": the plugin's own eval function, traced per check, read as the user's
    problem. That warning is dropped for the adapter's functions only: the user's own retracing still shows."""
    keras_project.makepyfile("""
        import numpy as np, pandas as pd, pytest, keras, tensorflow as tf
        from pytest_trainsanity import TrainSetup

        rng = np.random.default_rng(0)
        A, B = rng.normal(size=(400, 6)).astype("float32"), rng.normal(size=(400, 4)).astype("float32")
        y = (np.concatenate([A, B], 1) @ rng.normal(size=(10, 3))).argmax(1)
        LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

        def two_inputs(order):
            keras.utils.set_random_seed(0)
            a, b = keras.Input((6,), name="a"), keras.Input((4,), name="b")
            h = keras.layers.Dense(16, activation="relu")(keras.layers.Concatenate()([a, b]))
            model = keras.Model({"a": a, "b": b}, keras.layers.Dense(3)(h))
            model.compile(optimizer=keras.optimizers.Adam(1e-2), loss=LOSS)
            split = lambda s: ({k: {"a": A, "b": B}[k][s] for k in order}, y[s])
            return TrainSetup(model=model, train=split(slice(0, 280)), val=split(slice(280, 400)))

        def frame():
            keras.utils.set_random_seed(0)
            inp = keras.Input((10,))
            model = keras.Model(inp, keras.layers.Dense(3)(keras.layers.Dense(16, activation="relu")(inp)))
            model.compile(optimizer=keras.optimizers.Adam(1e-2), loss=LOSS)
            df = pd.DataFrame(np.concatenate([A, B], 1), columns=[f"f{i}" for i in range(10)])
            return TrainSetup(model=model, train=(df.iloc[:280], y[:280]), val=(df.iloc[280:], y[280:]))

        for name, make in (("ab", lambda: two_inputs("ab")), ("ba", lambda: two_inputs("ba")), ("frame", frame)):
            globals()[name] = pytest.fixture(make, name=name)
            for marker in (pytest.mark.no_epoch1_overfit(setup=name), pytest.mark.preflight(setup=name)):
                def _test(): pass
                globals()[f"test_{marker.name}_{name}"] = marker(_test)

        def test_users_own_retracing():
            f = tf.function(lambda x: x * 2)
            for n in range(1, 9):  # a new shape each call: the user's own retracing
                f(tf.zeros((n, n)))
    """)
    res = run(keras_project, "-s", "-p", "no:logging")
    res.assert_outcomes(passed=7)
    out = res.stdout.str() + res.stderr.str()
    assert "triggered tf.function retracing" in out  # the user's, which the user should see
    assert "KerasAdapter" not in out, out
