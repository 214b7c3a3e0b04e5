"""Issue 11: no silent passes on broken input, one paragraph instead of a traceback, I/O problems
as warnings. Each case here passed silently or crashed before."""

from __future__ import annotations

import pytest

from .conftest import run

NONFINITE = """
import dataclasses
import numpy as np
import pytest
import torch
from helpers import digits, mlp, setup

def nan_loss():
    Xtr, ytr, Xv, yv = digits()
    base = setup(Xtr, ytr, Xv, yv)
    return dataclasses.replace(base, loss=lambda out, t: torch.nn.functional.cross_entropy(out, t) * float("nan"))

def nan_bias():
    Xtr, ytr, Xv, yv = digits()
    model = mlp()
    with torch.no_grad():
        model[2].bias[3] = float("nan")
    return setup(Xtr, ytr, Xv, yv, model=model)

def inf_input():
    Xtr, ytr, Xv, yv = digits()
    Xtr = Xtr.copy()
    Xtr[700, 5] = np.inf
    return setup(Xtr, ytr, Xv, yv, lr=0.1)

for _name in ("nan_loss", "nan_bias", "inf_input"):
    globals()[_name] = pytest.fixture(globals()[_name], name=_name)
    for _marker in (pytest.mark.no_epoch1_overfit(setup=_name, probes=False),
                    pytest.mark.lr_spike_explained(setup=_name, epochs=2)):
        def _test(): pass
        globals()[f"test_{_marker.name}_{_name}"] = _marker(_test)
"""


def test_non_finite_training_fails_naming_the_step_and_cause(project: pytest.Pytester) -> None:
    project.makepyfile(NONFINITE)
    res = run(project)
    res.assert_outcomes(failed=6)
    res.stdout.fnmatch_lines([
        "*no_epoch1_overfit FAILED: training went non-finite: the training loss was NaN at step 1 of 45 (epoch 1, lr 0.001)*",
        "*1. loss_computes_nonfinite (evidence score 0.80): the loss was NaN on the very first batch, with finite weights and inputs",
    ])
    res.stdout.fnmatch_lines([
        "*1. weights_nonfinite_at_start (evidence score 1.00): 1 weight tensor(s) already hold NaN/Inf before the first step: 2.bias",
    ])
    res.stdout.fnmatch_lines([
        "*lr_spike_explained FAILED: training went non-finite: the training loss was NaN at step * of 90 (epoch 1, lr 0.1)*",
        "*1. nonfinite_inputs (evidence score 0.95): the train inputs hold 1 NaN/Inf value(s) in the eval sample of 1437 rows (field x: 1)",
    ])
    assert "passed" not in res.stdout.str().split("short test summary")[-1]


def test_keras_non_finite_training_fails(keras_project: pytest.Pytester) -> None:
    keras_project.makepyfile("""
        import numpy as np
        import pytest
        import keras_helpers as kh

        @pytest.fixture
        def nan_bias():
            setup = kh.clean()
            bias = setup.model.layers[-1].bias
            value = bias.numpy()
            value[3] = np.nan
            bias.assign(value)
            return setup

        @pytest.mark.no_epoch1_overfit(setup="nan_bias", probes=False)
        def test_overfit(): pass
    """)
    res = run(keras_project)
    res.assert_outcomes(failed=1)
    res.stdout.fnmatch_lines([
        "*no_epoch1_overfit FAILED: training went non-finite: the training loss was NaN at step 1 of *",
        "*1. weights_nonfinite_at_start (evidence score 1.00): 1 weight tensor(s) already hold NaN/Inf before the first step: */bias",
    ])


def test_a_nan_row_outside_the_eval_sample_names_the_step_whose_gradient_broke(keras_project: pytest.Pytester) -> None:
    """One NaN value in a row the eval sample does not hold: the forward hid it from every loss, the weights went NaN,
    and the failure said "after 63 steps" with every cause ruled out ("no NaN/Inf in the train eval sample")."""
    keras_project.makepyfile("""
        import numpy as np, pytest, keras
        from pytest_trainsanity import TrainSetup

        @pytest.fixture
        def nan_row():
            rng = np.random.RandomState(0)
            X, Xv = rng.randn(2000, 8).astype("float32"), rng.randn(300, 8).astype("float32")
            y, yv = (X[:, 0] + X[:, 1] > 0).astype("int64"), (Xv[:, 0] + Xv[:, 1] > 0).astype("int64")
            X[1500, 3] = np.nan
            keras.utils.set_random_seed(1)
            model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(32, activation="relu"), keras.layers.Dense(2)])
            return TrainSetup(model=model, train=(X, y), val=(Xv, yv), optimizer=keras.optimizers.Adam(1e-3),
                              loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))

        @pytest.mark.no_epoch1_overfit(setup="nan_row", probes=False)
        def test_overfit(): pass
    """)
    res = run(keras_project, "--trainsanity-eval-samples", "200", "--trainsanity-explain")
    res.assert_outcomes(failed=1)
    res.stdout.fnmatch_lines([
        "*no_epoch1_overfit FAILED: training went non-finite: the gradient was NaN/Inf at step * of 63 (epoch 1) while "
        "every training loss stayed finite, and the weights hold NaN/Inf after the pass (*kernel*",
        "*1. nonfinite_gradient_finite_loss (evidence score 0.60): the gradient was NaN/Inf at step * while its loss was "
        "finite: a NaN/Inf input in that step's batch that the forward hid*",
        "*fix: count NaN/Inf over the whole split with inputs_normalized*",
    ])


def test_nan_inputs_a_loss_absorbs_fail_never_pass(keras_project: pytest.Pytester) -> None:
    """NaN in 5 train values (one row) with Keras' probability loss on a linear output: the loss
    clips its input, so every training loss, weight and eval loss stayed finite and both checks
    passed ("gap ... <= max_gap"), and loss_at_init passed with "untrained loss nan ... off by nan nats".
    Inputs are checked too: NaN/Inf anywhere fails, naming where."""
    keras_project.makepyfile("""
        import dataclasses
        import numpy as np
        import pytest
        import keras_helpers as kh

        @pytest.fixture
        def absorbed():
            Xtr, ytr, Xv, yv = kh.digits()
            Xtr = Xtr.copy()
            Xtr[5, :5] = np.nan
            setup = kh.setup(Xtr, ytr, Xv, yv)
            return dataclasses.replace(setup, loss="sparse_categorical_crossentropy")  # probabilities, clipped

        @pytest.mark.no_epoch1_overfit(setup="absorbed", probes=False)
        def test_overfit(): pass

        @pytest.mark.lr_spike_explained(setup="absorbed", epochs=2)
        def test_spikes(): pass

        @pytest.mark.loss_at_init(setup="absorbed")
        def test_init(): pass
    """)
    res = run(keras_project)
    res.assert_outcomes(failed=3)
    res.stdout.fnmatch_lines(["*loss_at_init FAILED: untrained loss nan vs 2.30* expected*not a finite loss (tol 0.5)*",
                              "*1. non-finite loss at init (evidence score 1.00): the untrained loss is nan*"])
    for check in ("no_epoch1_overfit", "lr_spike_explained"):
        res.stdout.fnmatch_lines([
            # the loss stayed finite but the weights did not (relu(NaN) is 0 on TF's CPU): the message said
            # "Training stayed finite" until the weights were checked after every pass
            f"*{check} FAILED: training went non-finite: the gradient was NaN/Inf at step * of * (epoch 1) while every "
            f"training loss stayed finite, and the weights hold NaN/Inf after the pass (*dense*/kernel*",
            "*1. nonfinite_inputs (evidence score 0.95): the train inputs hold 5 NaN/Inf value(s) in the eval sample of "
            "1437 rows (field x: 5)*",
        ])

def test_a_gap_that_cannot_be_measured_fails_never_passes(project: pytest.Pytester) -> None:
    """Regression with a val split whose targets are all one value: val R^2 is undefined (NaN), and
    no_epoch1_overfit passed with "gap n/a <= max_gap 0.150", lr_spike_explained with "0 spike(s) in
    val_acc" (NaN compares False with every threshold)."""
    project.makepyfile("""
        import numpy as np
        import pytest
        import torch
        from pytest_trainsanity import TrainSetup

        @pytest.fixture
        def constant_val():
            rng = np.random.default_rng(0)
            X, Xv = rng.normal(size=(200, 3)).astype(np.float32), rng.normal(size=(20, 3)).astype(np.float32)
            torch.manual_seed(0)
            model = torch.nn.Linear(3, 1)
            return TrainSetup(model=model, train=(X, (2 * X[:, 0]).astype(np.float32)), val=(Xv, np.ones(20, np.float32)),
                              optimizer=lambda p: torch.optim.SGD(p, 0.05), loss=torch.nn.MSELoss(), task="regression")

        @pytest.mark.no_epoch1_overfit(setup="constant_val", probes=False)
        def test_overfit(): pass

        @pytest.mark.lr_spike_explained(setup="constant_val", epochs=3)
        def test_spikes(): pass
    """)
    res = run(project)
    res.assert_outcomes(failed=2)
    res.stdout.fnmatch_lines(["*lr_spike_explained FAILED: val_acc cannot be tracked: it is undefined at 3 of 3 epoch(s) "
                              "(first at epoch 1; it is R^2 here, and the targets do not vary*"])
    res.stdout.fnmatch_lines(["*no_epoch1_overfit FAILED: after 1 epoch (7 steps) train R^2 * vs val n/a: the gap cannot be "
                              "measured: val R^2 is undefined (the targets do not vary*"])

def test_one_generator_feeding_two_checks_is_an_error_not_a_pass(project: pytest.Pytester) -> None:
    project.makepyfile("""
        import numpy as np
        import pytest
        from pytest_trainsanity import TrainSetup

        rng = np.random.default_rng(0)
        X, y = rng.normal(size=(200, 5)), rng.integers(0, 2, 200)
        Xv, yv = np.concatenate([X[:10], rng.normal(size=(40, 5))]), rng.integers(0, 2, 50)

        @pytest.fixture(scope="module")
        def train_setup():
            return TrainSetup(train=((X[i : i + 50], y[i : i + 50]) for i in range(0, 200, 50)), val=(Xv, yv))

        @pytest.mark.inputs_normalized
        def test_first(): pass

        @pytest.mark.no_leakage
        def test_second(): pass
    """)
    res = run(project)
    res.assert_outcomes(passed=1, failed=1)
    res.stdout.fnmatch_lines(["*TrainSetup(train=...) is a one-shot iterator that an earlier check already consumed*"])


def test_missing_times_are_left_out_and_counted_never_switch_the_check_off(project: pytest.Pytester) -> None:
    project.makepyfile("""
        import numpy as np
        import pytest
        from pytest_trainsanity import TrainSetup

        rng = np.random.default_rng(0)
        X, y, Xv, yv = rng.normal(size=(100, 5)), rng.integers(0, 2, 100), rng.normal(size=(20, 5)), rng.integers(0, 2, 20)
        days = np.arange("2020-01-01", "2020-04-10", dtype="datetime64[D]")[:100]

        @pytest.fixture
        def nat():
            t = days.copy()
            t[3] = np.datetime64("NaT")
            return TrainSetup(train=(X, y), val=(Xv, yv), timestamps={"train": t, "val": days[60:80]})

        @pytest.fixture
        def float_nan():
            t = np.arange(100.0)
            t[0] = np.nan
            return TrainSetup(train=(X, y), val=(Xv, yv), timestamps={"train": t, "val": np.arange(50.0, 70.0)})

        @pytest.fixture
        def all_missing():
            return TrainSetup(train=(X, y), val=(Xv, yv), timestamps={"train": np.full(100, np.nan), "val": np.arange(20.0)})

        @pytest.mark.no_leakage(setup="nat")
        def test_nat(): pass

        @pytest.mark.no_leakage(setup="float_nan")
        def test_float_nan(): pass

        @pytest.mark.no_leakage(setup="all_missing")
        def test_all_missing(): pass
    """)
    res = run(project)
    res.assert_outcomes(failed=3)  # the times are read when the check runs: a failure, not a setup error
    res.stdout.fnmatch_lines([
        "*no_leakage FAILED: train/val: 20 samples earlier than the other split's latest time of 20 val samples*",
        "*20 val sample(s) earlier than the latest train time 2020-04-09; samples without a time (NaT/NaN/None), left out of the time comparison: 1 train, 0 val*",
    ])
    res.stdout.fnmatch_lines(["*20 val sample(s) earlier than the latest train time 99.0; samples without a time*: 1 train, 0 val*"])
    res.stdout.fnmatch_lines(["*TrainSetup(timestamps={'train': ...}) holds no time at all (100 missing: NaT, NaN or None)*"])



MISUSE = {
    "zero_features_leakage": ("no_leakage", "TrainSetup(train=(np.zeros((50, 0)), y50), val=(np.zeros((5, 0)), y50[:5]))",
                              "*TrainSetup(train=...) X has shape (50, 0): each sample holds 0 values (0 features)*"),
    "zero_features_normalized": ("inputs_normalized", "TrainSetup(train=(np.zeros((50, 0)), y50), val=(np.zeros((5, 0)), y50[:5]))",
                                 "*TrainSetup(train=...) X has shape (50, 0): each sample holds 0 values*"),
    "zero_features_spikes": ("lr_spike_explained(epochs=2)",
                             "TrainSetup(model=torch.nn.Linear(0, 2), train=(np.zeros((50, 0), np.float32), y50), val=(np.zeros((5, 0), np.float32), y50[:5]), optimizer=lambda p: torch.optim.SGD(p, 0.1), loss=torch.nn.CrossEntropyLoss())",
                             "*TrainSetup(train=...) X has shape (50, 0): each sample holds 0 values*"),
    "meta_data": ("no_leakage", "TrainSetup(train=(torch.zeros((50, 4), device='meta'), torch.zeros(50, device='meta')), val=(np.zeros((5, 4)), y50[:5]))",
                  "*A tensor of shape (50, 4) is on torch's meta device: it has a shape but no data*"),
    "meta_model": ("no_epoch1_overfit", "TrainSetup(model=torch.nn.Linear(4, 2, device='meta'), train=(X50, y50), val=(X50, y50), optimizer=lambda p: torch.optim.SGD(p, 0.1), loss=torch.nn.CrossEntropyLoss())",
                   "*TrainSetup(model=...) has 2 parameter(s) on torch's meta device (weight, bias)*model.to_empty(device='cpu')*"),
    "allow_none": ("lr_spike_explained(allow=None)", "TrainSetup(model=torch.nn.Linear(4, 2), train=(X50, y50))",
                   "*allow must be a tuple of causes from lr_schedule, batch_stats, momentum, unexplained (allow=() allows none), got None*"),
    "max_overlap_nan": ("no_leakage(max_overlap=float('nan'))", "TrainSetup(train=(X50, y50), val=(X50, y50))",
                        "*max_overlap must be a count >= 0 or a fraction in [[]0, 1), got nan*"),
    "raising_generator": ("no_leakage", "TrainSetup(train=raising(), val=(X50, y50))",
                          "*Reading TrainSetup(train=...) failed: RuntimeError: disk read failed*"),
    "one_cycle_short": ("no_epoch1_overfit(probes=False)",
                        "TrainSetup(model=torch.nn.Linear(4, 2), train=(X50, y50), val=(X50, y50), batch_size=5, optimizer=lambda p: torch.optim.SGD(p, 0.1), scheduler=lambda o: torch.optim.lr_scheduler.OneCycleLR(o, max_lr=0.1, total_steps=3), scheduler_step='batch', loss=torch.nn.CrossEntropyLoss())",
                        "*The scheduler OneCycleLR (total_steps=3) refused to step after training step 4 of the check's pass: ValueError: Tried to step 4 times*The check trains 10 step(s) per epoch*"),
    "nan_labels_training": ("no_epoch1_overfit(probes=False)",
                            "TrainSetup(model=torch.nn.Linear(4, 2), train=(X50, nan_y), val=(X50, y50), optimizer=lambda p: torch.optim.SGD(p, 0.1), loss=torch.nn.CrossEntropyLoss())",
                            "*TrainSetup(train=...): the labels hold 1 NaN and 0 Inf value(s) (of 50); drop or fill those samples*"),
    "nan_labels_leakage": ("no_leakage", "TrainSetup(train=(X50, nan_y), val=(X50 + 1, y50))",
                           "*no_leakage: TrainSetup(train=...): the labels hold 1 NaN and 0 Inf value(s) (of 50)*"),
    # times as text: a numpy str array raised numpy's UFuncTypeError ("ufunc 'maximum' did not contain a loop"); a
    # pandas str Series (object strings) was ordered letter by letter, '9/1/2024' after '12/1/2024', with no error
    "times_text_numpy": ("no_leakage", "TrainSetup(train=(X50, y50), val=(X50 + 1, y50), timestamps={'train': "
                         "np.array(['2024-01-01'] * 50), 'val': np.array(['2024-02-01'] * 50)})",
                         "*TrainSetup(timestamps={'train': ...}) holds text ('2024-01-01'), not times. Text compares letter "
                         "by letter ('9/1/2024' comes after '12/1/2024')*pd.to_datetime(column, format=...)*"),
    "times_text_pandas": ("no_leakage", "TrainSetup(train=(X50, y50), val=(X50 + 1, y50), timestamps={'train': "
                          "pd.Series([f'{i % 9 + 1}/1/2024' for i in range(50)]), 'val': pd.Series(['12/1/2024'] * 50)})",
                          "*TrainSetup(timestamps={'train': ...}) holds text ('1/1/2024'), not times*"),
    "times_text_column": ("no_leakage", "TrainSetup(train=pd.DataFrame({'a': X50[:, 0], 't': ['1/1/2024'] * 50, 'label': y50}), "
                          "val=pd.DataFrame({'a': X50[:, 1], 't': ['12/1/2024'] * 50, 'label': y50}), target='label', "
                          "timestamps={'train': 't', 'val': 't'})",
                          "*TrainSetup(timestamps={'train': ...}) holds text ('1/1/2024'), not times*"),
    # times of kinds that do not order against each other raised numpy's UFuncTypeError or pandas' TypeError
    "times_number_vs_datetime": ("no_leakage", "TrainSetup(train=(X50, y50), val=(X50 + 1, y50), timestamps={'train': "
                                 "np.arange(50.0), 'val': np.arange('2024-01-01', '2024-02-20', dtype='datetime64[D]')})",
                                 "*TrainSetup(timestamps=...): the train times (float64) and the val times (datetime64[[]D]) "
                                 "cannot be ordered against each other*all numbers.*"),
    "times_zoned_vs_naive": ("no_leakage", "TrainSetup(train=(X50, y50), val=(X50 + 1, y50), timestamps={'train': "
                             "list(pd.date_range('2024-01-01', periods=50, freq='h', tz='UTC')), 'val': "
                             "pd.date_range('2024-01-03', periods=50, freq='h').to_numpy()})",
                             "*the train times (Timestamp objects with time zone UTC) and the val times (datetime64[[]*]) "
                             "cannot be ordered against each other: Cannot compare tz-naive and tz-aware*"),
    # booleans as times passed ("the latest train time False"); 2-D group ids were read as 100 ids of 50 samples
    "times_booleans": ("no_leakage", "TrainSetup(train=(X50, y50), val=(X50 + 1, y50), timestamps={'train': y50 > 0, "
                       "'val': y50 > 0})", "*TrainSetup(timestamps={'train': ...}) holds booleans, not times*"),
    # class names as labels: "labels must be numeric" (numpy text) or "ragged or mixed values" (pandas) with no way out
    "labels_as_text_numpy": ("no_leakage", "TrainSetup(train=(X50, np.where(y50 > 0, 'dog', 'cat')), val=(X50 + 1, y50))",
                             "*TrainSetup(train=...) y has dtype <U3 (e.g. 'dog'); labels must be numeric: encode the class "
                             "names as ids with one mapping for all splits*LabelEncoder().fit(y_train)*"),
    "labels_as_text_pandas": ("no_epoch1_overfit(probes=False)",
                              "TrainSetup(model=torch.nn.Linear(4, 2), train=(X50, pd.Series(np.where(y50 > 0, 'dog', "
                              "'cat'))), val=(X50, y50), optimizer=lambda p: torch.optim.SGD(p, 0.1), "
                              "loss=torch.nn.CrossEntropyLoss())",
                              "*TrainSetup(train=(X, y)) y has dtype object (e.g. 'dog'); labels must be numeric: encode the "
                              "class names as ids*"),
    # a torch model frozen whole crashed with an IndexError inside the step records
    "frozen_model": ("no_epoch1_overfit(probes=False)",
                     "TrainSetup(model=torch.nn.Linear(4, 2).requires_grad_(False), train=(X50, y50), val=(X50, y50), "
                     "optimizer=lambda p: torch.optim.SGD(p, 0.1), loss=torch.nn.CrossEntropyLoss())",
                     "*TrainSetup(model=...) has no trainable parameters: requires_grad is False on all 2 of them*"),
    # group ids that are all missing ran the group check on nothing and passed ("groups ... checked")
    "groups_all_missing": ("no_leakage", "TrainSetup(train=(X50, y50), val=(X50 + 1, y50), groups={'train': [None] * 50, "
                           "'val': list(range(50))})",
                           "*TrainSetup(groups={'train': ...}) holds no group id at all (50 missing: None or NaN), so the "
                           "group leakage check cannot run*"),
    # a DataLoader with batch_size=None over single samples: len() of a 0-d tensor, raw
    "loader_unbatched_training": ("no_epoch1_overfit(probes=False)",
                                  "TrainSetup(model=torch.nn.Linear(4, 2), train=torch.utils.data.DataLoader(torch.utils.data."
                                  "TensorDataset(torch.from_numpy(X50), torch.from_numpy(y50)), batch_size=None), val=(X50, y50), "
                                  "optimizer=lambda p: torch.optim.SGD(p, 0.1), loss=torch.nn.CrossEntropyLoss())",
                                  "*TrainSetup(train=...) yields single samples without a batch dimension (a target of shape ())*"),
    "loader_unbatched_leakage": ("no_leakage", "TrainSetup(train=torch.utils.data.DataLoader(torch.utils.data.TensorDataset("
                                 "torch.from_numpy(X50), torch.from_numpy(y50)), batch_size=None), val=(X50 + 1, y50))",
                                 "*TrainSetup(train=...) yields single samples without a batch dimension*batch_size=32*"),
    # a frozen= prefix that names no parameter checked nothing and passed ("0 of 0 frozen stayed bit-identical")
    "frozen_prefix_typo": ("params_update(frozen=('encoder.',))",
                           "TrainSetup(model=torch.nn.Linear(4, 2), train=(X50, y50), optimizer=lambda p: torch.optim.SGD(p, 0.1), "
                           "loss=torch.nn.CrossEntropyLoss())",
                           "*params_update(frozen=('encoder.',)): 'encoder.' starts no parameter name*names start with: bias, weight*"),
    # multi-hot targets were judged as one class each (argmax against argmax; one class distribution's entropy)
    "multi_label": ("loss_at_init", "TrainSetup(model=torch.nn.Linear(4, 3), train=(X50, (X50[:, :3] > 0).astype(np.float32)), "
                    "optimizer=lambda p: torch.optim.SGD(p, 0.1), loss=torch.nn.BCEWithLogitsLoss())",
                    "*TrainSetup(train=...) has multi-label targets: rows of 0/1 over the 3 outputs holding several 1s or none*"),
    # a list of val loaders (Lightning's several val sets) was read as an (X, y) pair: AttributeError 'detach'
    "val_loader_list": ("no_leakage", "TrainSetup(train=(X50, y50), val=[torch.utils.data.DataLoader(torch.utils.data.TensorDataset("
                        "torch.from_numpy(X50), torch.from_numpy(y50)))] * 2)",
                        "*TrainSetup(val=...) gives 2 loaders ([[]0] DataLoader, [[]1] DataLoader)*TrainSetup(val=loaders[[]0])*"),
    "groups_2d": ("no_leakage", "TrainSetup(train=(X50, y50), val=(X50 + 1, y50), groups={'train': np.zeros((50, 2)), "
                  "'val': np.zeros((50, 2))})",
                  "*TrainSetup(groups={'train': ...}) has shape (50, 2); give one group per sample, a 1-D array or list*"),
}


def test_misuse_is_one_paragraph_never_a_traceback(project: pytest.Pytester) -> None:
    body = [
        "import numpy as np, pandas as pd, pytest, torch",
        "from pytest_trainsanity import TrainSetup",
        "rng = np.random.default_rng(0)",
        "X50, y50 = rng.normal(size=(50, 4)).astype(np.float32), rng.integers(0, 2, 50)",
        "nan_y = y50.astype(float); nan_y[3] = np.nan",
        "def raising():",
        "    yield X50[:25], y50[:25]",
        "    raise RuntimeError('disk read failed')",
        "",
    ]
    for name, (marker, expr, _) in MISUSE.items():
        body += ["@pytest.fixture", f"def {name}():", f"    return {expr}", ""]
        call = marker.replace("(", f"(setup={name!r}, ", 1) if "(" in marker else f"{marker}(setup={name!r})"
        body += [f"@pytest.mark.{call}", f"def test_{name}(): pass", ""]
    project.makepyfile("\n".join(body))
    res = run(project)
    out = res.stdout.str()
    for name, (_, _, expected) in MISUSE.items():
        res.stdout.fnmatch_lines([f"*test_{name}*", expected])
    assert res.parseoutcomes().get("passed", 0) == 0, out
    assert "Traceback (most recent call last)" not in out and "pytest_trainsanity/" not in out
    assert "site-packages/torch" not in out.split("warnings summary")[0]  # the user's Linear(0, 2) warns at init


def test_report_and_plot_io_problems_are_warnings_not_outcomes(project: pytest.Pytester) -> None:
    project.makepyfile("""
        import pytest

        @pytest.mark.lr_spike_explained(setup="warmup", epochs=4)
        def test_spikes(): pass
    """)
    (project.path / "afile").write_text("a file, not a folder")
    res = run(project, "--trainsanity-report", "afile/sub/report.json", "--trainsanity-artifacts", "afile/plots")
    res.assert_outcomes(passed=1)
    assert res.ret == 0
    res.stdout.fnmatch_lines([
        "*WARNING: --trainsanity-report afile/sub/report.json could not be written (*); test outcomes are unaffected*",
    ])
    assert "could not write its plot under" in res.stdout.str()


def test_report_fixture_prints_each_check_with_its_numbers(project: pytest.Pytester) -> None:
    project.makepyfile("""
        import pytest

        @pytest.mark.no_leakage
        @pytest.mark.inputs_normalized
        def test_show(trainsanity_report):
            print(trainsanity_report)
            assert "object at 0x" not in repr(trainsanity_report)
    """)
    res = run(project, "-s")
    res.assert_outcomes(passed=1)
    res.stdout.fnmatch_lines([
        "*trainsanity_report: 2 check(s)",
        "  no_leakage passed: max_copy_fraction=0, target_columns=0",
        "  * passed: *=*",
    ])


def test_capped_pass_says_how_much_of_the_epoch_it_covered(project: pytest.Pytester) -> None:
    project.makepyfile("""
        import pytest

        @pytest.mark.no_epoch1_overfit(probes=False)
        def test_capped(): pass
    """)
    res = run(project, "--trainsanity-max-steps", "20", "--trainsanity-explain")
    res.stdout.fnmatch_lines(["*no_epoch1_overfit passed: after 20 of 45 steps of 1 epoch (capped by --trainsanity-max-steps)*"])


def test_integer_ids_summary_line_has_numbers(project: pytest.Pytester) -> None:
    project.makepyfile("""
        import numpy as np
        import pytest
        from pytest_trainsanity import TrainSetup

        @pytest.fixture
        def ids():
            X = np.random.default_rng(0).integers(0, 1000, (100, 12))
            return TrainSetup(train=(X, np.zeros(100, int)), val=(X, np.zeros(100, int)))

        @pytest.mark.inputs_normalized(setup="ids")
        def test_ids(): pass
    """)
    res = run(project)
    res.assert_outcomes(passed=1)
    res.stdout.fnmatch_lines(["*inputs_normalized passed: integer_ids=True, skipped_fields=1*"])


TORCH_INT_COLUMNS = """
import numpy as np
import pytest
import torch
from pytest_trainsanity import TrainSetup

def table(n, seed):
    r = np.random.RandomState(seed)
    X = np.stack([r.randint(18, 90, n), r.randint(20000, 200000, n), r.randint(0, 5, n)], 1)  # int64, as df.to_numpy()
    return X, (X[:, 1] > 110000).astype(np.int64)

class CastsInForward(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.body = torch.nn.Sequential(torch.nn.Linear(3, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))
    def forward(self, x):
        return self.body(x.float())

class Embeds(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.codes = torch.nn.Embedding(200000, 4)
        self.head = torch.nn.Linear(4, 2)
    def forward(self, x):
        return self.head(self.codes(x).mean(1))

class CodesAndCounts(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.codes = torch.nn.Embedding(100, 4)
        self.head = torch.nn.Linear(6, 2)
    def forward(self, x):
        return self.head(torch.cat([self.codes(x[:, 2]), x[:, :2].float()], 1))

def build(model):
    torch.manual_seed(0)
    net = model()
    return TrainSetup(model=net, train=table(400, 0), val=table(200, 1), optimizer=torch.optim.Adam(net.parameters(), 1e-3),
                      loss=torch.nn.CrossEntropyLoss(), batch_size=32)

@pytest.fixture
def casts():
    return build(CastsInForward)

@pytest.fixture
def embeds():
    return build(Embeds)

class StandardisesItself(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("mean", torch.tensor([54.0, 110000.0, 2.0]))
        self.register_buffer("std", torch.tensor([21.0, 52000.0, 1.4]))
        self.head = torch.nn.Linear(3, 2)
    def forward(self, x):
        return self.head((x.float() - self.mean) / self.std)

@pytest.fixture
def mixed():
    return build(CodesAndCounts)

@pytest.fixture
def standardises():
    return build(StandardisesItself)

@pytest.mark.inputs_normalized(setup="standardises")
def test_standardises(): pass

@pytest.mark.inputs_normalized(setup="casts")
def test_casts(): pass

@pytest.mark.inputs_normalized(setup="mixed")
def test_mixed(): pass

@pytest.mark.inputs_normalized(setup="embeds")
def test_embeds(): pass

@pytest.mark.no_epoch1_overfit(setup="casts", probes=False)
def test_overfit_casts(): pass
"""


def test_torch_integer_columns_cast_in_forward_are_judged_as_features(project: pytest.Pytester) -> None:
    """int64 columns (age, income) that forward casts with x.float() were skipped as "ids that feed an
    embedding": inputs_normalized passed and no_epoch1_overfit never measured their scale. One eval
    forward on a few samples now shows how the model reads them; real ids (an Embedding) still pass."""
    project.makepyfile(test_int_columns=TORCH_INT_COLUMNS)
    res = run(project, "-rA", "--trainsanity-explain")
    res.assert_outcomes(passed=4, failed=1)
    res.stdout.fnmatch_lines([  # it failed with a fix to standardise them a second time
        "*inputs_normalized passed: the integer inputs are standardised inside the model's forward (see the note)*",
        "*Note: the inputs (int64) are standardised by the model's forward itself (a division in the model's forward, "
        "right after the cast to float), so they were not judged here*",
    ])
    res.stdout.fnmatch_lines([
        "*Note: the inputs (int64) read both as indices and as numbers by the forward (embedding() in module 'codes' "
        "and float() in the model's forward)*Give the numeric columns as a field of their own*",
    ])
    res.stdout.fnmatch_lines([
        "*inputs_normalized FAILED for train, val: train inputs are not standardised: values span [[]0, 1.99*e+05]*",
        "*standardise per feature with statistics fitted on train only*",
        "*Note: the inputs (int64) judged as features: float() in the model's forward reads them as numbers, not an "
        "embedding as integer ids would be.",
    ])
    res.stdout.fnmatch_lines([
        "*inputs_normalized passed: inputs are integer ids (dtype int64)*",
        "*Note: the inputs (int64) skipped as ids: embedding() in module 'codes' reads them as indices*",
    ])
    res.stdout.fnmatch_lines(["*input scale: train inputs are not standardised: values span [[]0, 1.99*e+05]*"])


def test_a_tf_data_pipeline_that_repeats_forever_is_refused_not_read(keras_project: pytest.Pytester) -> None:
    """ds.shuffle(...).repeat().batch(32), the form model.fit(steps_per_epoch=...) takes: no_leakage and
    inputs_normalized read it without end (over 3 GB in 10 minutes, never returning)."""
    keras_project.makepyfile("""
        import numpy as np, pytest, tensorflow as tf
        from pytest_trainsanity import TrainSetup

        @pytest.fixture
        def repeated():
            rng = np.random.RandomState(0)
            X, y = rng.randn(200, 8).astype("float32"), rng.randint(0, 2, 200)
            train = tf.data.Dataset.from_tensor_slices((X, y)).shuffle(200, seed=0).repeat().batch(32)
            return TrainSetup(train=train, val=tf.data.Dataset.from_tensor_slices((X[:50] + 1, y[:50])).batch(32))

        @pytest.mark.no_leakage(setup="repeated")
        def test_leakage(): pass

        @pytest.mark.inputs_normalized(setup="repeated")
        def test_normalized(): pass

        @pytest.fixture
        def fit_ready(repeated):  # the form model.fit(steps_per_epoch=...) trains on
            import keras
            keras.utils.set_random_seed(0)
            model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(2)])
            return TrainSetup(model=model, train=repeated.train, val=repeated.val, optimizer="adam",
                              loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))

        @pytest.mark.lr_spike_explained(setup="fit_ready", epochs=6)
        def test_spikes(): pass

        @pytest.mark.no_epoch1_overfit(setup="fit_ready")
        def test_overfit(): pass

        @pytest.mark.finite_training(setup="fit_ready", steps=20)
        def test_finite(): pass  # a step budget, no epoch: an endless pipeline is fine
    """)
    res = run(keras_project)
    out = res.stdout.str()
    assert res.parseoutcomes().get("passed", 0) == 1, out
    assert out.count("TrainSetup(train=...) is a tf.data.Dataset that repeats forever (its cardinality is INFINITE") == 4, out
    assert ("lr_spike_explained judges training epoch by epoch, and an endless pipeline has no epoch to end: the pass "
            "would run its whole step budget as one 'epoch'.") in out
    assert "Traceback (most recent call last)" not in out and "pytest_trainsanity/" not in out


def test_embedding_bag_batches_of_flat_tokens_and_offsets(project: pytest.Pytester) -> None:
    """Dict batches as nn.EmbeddingBag takes them (all tokens of the batch in one flat 'text' field, with
    'offsets'): no_epoch1_overfit crashed with numpy's "cannot reshape array of size 150 into shape (642,newaxis)"
    and no_leakage said "cannot reshape array of size 16 into shape (80,newaxis)"."""
    project.makepyfile(test_bags="""
        import numpy as np
        import pytest
        import torch
        from torch.utils.data import DataLoader, Dataset
        from pytest_trainsanity import TrainSetup

        r = np.random.RandomState(0)
        DOCS = [r.randint(0, 50, size=r.randint(2, 8)) for _ in range(200)]
        COUNTS, LABELS = r.randint(0, 3, size=(200, 1)).astype(np.float32), r.randint(0, 2, size=200)

        class Docs(Dataset):
            def __init__(self, rows):
                self.rows = rows
            def __len__(self):
                return len(self.rows)
            def __getitem__(self, i):
                j = self.rows[i]
                return DOCS[j], COUNTS[j], LABELS[j]

        def collate(items):
            docs, counts, labels = zip(*items)
            offsets = torch.tensor(np.cumsum([0] + [len(d) for d in docs[:-1]]))
            inputs = {"text": torch.tensor(np.concatenate(docs)), "offsets": offsets, "count": torch.tensor(np.stack(counts))}
            return inputs, torch.tensor(np.array(labels))

        class Bag(torch.nn.Module):
            def __init__(self):
                super().__init__()
                torch.manual_seed(0)
                self.bag, self.head = torch.nn.EmbeddingBag(50, 4), torch.nn.Linear(5, 2)
            def forward(self, batch):
                return self.head(torch.cat([self.bag(batch["text"], batch["offsets"]), batch["count"]], 1))

        @pytest.fixture
        def bags():
            train = DataLoader(Docs(range(150)), batch_size=16, collate_fn=collate, shuffle=True)
            val = DataLoader(Docs(range(150, 200)), batch_size=16, collate_fn=collate)
            model = Bag()
            return TrainSetup(model=model, train=train, val=val, optimizer=torch.optim.SGD(model.parameters(), lr=0.01),
                              loss=torch.nn.CrossEntropyLoss())

        @pytest.mark.no_epoch1_overfit(setup="bags", probes=False)
        def test_overfit(): pass

        @pytest.mark.no_leakage(setup="bags")
        def test_leakage(): pass
    """)
    res = run(project, "-rA", "--trainsanity-explain")
    res.assert_outcomes(passed=1, failed=1)
    res.stdout.fnmatch_lines([
        "*no_epoch1_overfit passed: after 1 epoch (10 steps) * train/val overlap not measured.",
        "*Note: the batches' field(s) 'text' hold other than one row per sample (e.g. EmbeddingBag's flat tokens and "
        "offsets), so samples cannot be told apart by their inputs: train duplication, train/val overlap and the "
        "single-feature rule were not measured",
    ])
    res.stdout.fnmatch_lines([
        "*The batches' input fields do not hold one row per sample each: 'text' has * row(s) but 'offsets' has 16, "
        "'count' has 16 (flat token lists with offsets, as nn.EmbeddingBag takes them)*",
    ])
    assert "Traceback" not in res.stdout.str() and "cannot reshape" not in res.stdout.str()


def test_a_val_split_of_one_class_is_named_not_read_as_a_gap(project: pytest.Pytester) -> None:
    """A val split holding only digit 3 passed no_epoch1_overfit with nothing said: its accuracy is one class's
    recall, which the gap compares with train accuracy over ten classes."""
    project.makepyfile("""
        import pytest
        from helpers import digits, setup

        @pytest.fixture
        def threes():
            Xtr, ytr, Xv, yv = digits()
            return setup(Xtr, ytr, Xv[yv == 3], yv[yv == 3])

        @pytest.mark.no_epoch1_overfit(setup="threes", probes=False, max_gap=1.0)
        def test_threes(): pass

        @pytest.mark.no_epoch1_overfit(setup="clean", probes=False)
        def test_clean(): pass
    """)
    res = run(project, "--trainsanity-explain")
    res.assert_outcomes(passed=2)
    res.stdout.fnmatch_lines([
        "*Note: every one of the 37 val samples holds class 3, while train holds 10 classes: val accuracy is that one "
        "class's recall, so the gap compares it with train accuracy over every class and says little about "
        "over-fitting; split with stratification (train_test_split(..., stratify=y), StratifiedKFold)*",
    ])
    assert res.stdout.str().count("holds class") == 1  # the stratified split gets no such note


def test_a_float16_model_whose_adam_eps_is_zero_is_told_so(project: pytest.Pytester) -> None:
    """model.half() with Adam's default eps went NaN at step 2 and was blamed on "one batch broke it" / "float16
    overflow": eps 1e-8 is 0 in float16, so the first update is 0 / 0 wherever a gradient is 0. With eps=1e-4 the
    same model trains, and no such cause is named."""
    project.makepyfile("""
        import numpy as np, pytest, torch
        from pytest_trainsanity import TrainSetup

        rng = np.random.default_rng(0)
        X = rng.normal(size=(400, 10)).astype(np.float16)
        Y = (X.astype(np.float32) @ rng.normal(size=(10, 3))).argmax(1)

        def half(eps):
            torch.manual_seed(0)
            model = torch.nn.Sequential(torch.nn.Linear(10, 32), torch.nn.ReLU(), torch.nn.Linear(32, 3)).half()
            return TrainSetup(model=model, train=(X[:320], Y[:320]), val=(X[320:], Y[320:]), batch_size=32,
                              optimizer=torch.optim.Adam(model.parameters(), 1e-2, eps=eps),
                              loss=torch.nn.CrossEntropyLoss())

        @pytest.fixture
        def default_eps():
            return half(1e-8)

        @pytest.fixture
        def held_eps():
            return half(1e-4)

        @pytest.mark.no_epoch1_overfit(setup="default_eps", probes=False)
        def test_overfit(): pass

        @pytest.mark.finite_training(setup="default_eps")
        def test_finite(): pass

        @pytest.mark.finite_training(setup="held_eps")
        def test_finite_held(): pass
    """)
    res = run(project)
    res.assert_outcomes(passed=1, failed=2)
    res.stdout.fnmatch_lines([
        "*no_epoch1_overfit FAILED: training went non-finite: the training loss was NaN at step 2 of 10*",
        "*1. optimizer_eps_underflow (evidence score 0.90): Adam's eps 1e-08 is 0 in float16, the dtype of the weights "
        "it updates (its smallest positive value is 6e-08): the update m / (sqrt(v) + eps) is 0 / 0 = NaN for every "
        "weight whose gradient is exactly 0*and the loss broke at step 2, right after the first update",
        "*fix: keep float32 weights and train in mixed precision (torch.autocast(device_type, dtype=torch.float16) with "
        "torch.amp.GradScaler), or use bfloat16; with pure float16 weights give the optimizer an eps float16 holds (eps=1e-4)",
    ])
    res.stdout.fnmatch_lines([
        "*finite_training FAILED: the loss became non-finite at step 2 of 100*",
        "*1. optimizer eps is 0 in the weights' dtype (evidence score 0.90): Adam's eps 1e-08 is 0 in float16*",
    ])
    assert res.stdout.str().count("eps 1e-08 is 0") == 2


def test_a_tf_data_pipeline_that_hides_its_repeat_behind_a_filter_is_refused_past_the_cap(keras_project) -> None:
    """.repeat().filter(...) has UNKNOWN cardinality, not INFINITE: no_leakage read it without end (QA: no
    result in 30 s and growing). Past the stream cap a length-less tf.data split is refused, as a torch
    IterableDataset without __len__ is; one that states its length is read to its end."""
    keras_project.makepyfile("""
        import numpy as np, pytest, tensorflow as tf
        import pytest_trainsanity.adapters.keras_data as keras_data
        from pytest_trainsanity import TrainSetup

        rng = np.random.RandomState(0)
        X, y = rng.randn(200, 8).astype("float32"), rng.randint(0, 2, 200)

        def hidden(repeat):
            ds = tf.data.Dataset.from_tensor_slices((X, y))
            return (ds.repeat() if repeat else ds).filter(lambda x, t: True).batch(32)

        @pytest.fixture
        def endless(monkeypatch):
            monkeypatch.setattr(keras_data, "STREAM_CAP", 1000)  # the test's own smaller cap
            return TrainSetup(train=hidden(True), val=tf.data.Dataset.from_tensor_slices((X[:50] + 1, y[:50])).batch(32))

        @pytest.fixture
        def stated(monkeypatch):
            monkeypatch.setattr(keras_data, "STREAM_CAP", 100)  # below its 200 samples: the stated length lifts it
            train = hidden(False).apply(tf.data.experimental.assert_cardinality(7))
            return TrainSetup(train=train, val=tf.data.Dataset.from_tensor_slices((X[:50] + 1, y[:50])).batch(32))

        @pytest.mark.no_leakage(setup="endless")
        def test_leakage(): pass

        @pytest.mark.inputs_normalized(setup="endless")
        def test_normalized(): pass

        @pytest.mark.no_leakage(setup="stated")
        def test_stated(): pass
    """)
    res = run(keras_project)
    out = res.stdout.str()
    res.assert_outcomes(passed=1, failed=2)
    assert out.count("TrainSetup(train=...) is a tf.data.Dataset of unknown length (its cardinality is UNKNOWN") == 2, out
    assert "yielded more than 1,000 samples without ending" in out
    assert "Traceback (most recent call last)" not in out and "pytest_trainsanity/" not in out
