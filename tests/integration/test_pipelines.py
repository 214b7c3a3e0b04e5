"""The user's own pipeline, end to end (issue 10): every batch form and output form, the
user's step, a class-sorted loader, uint8 inputs that the model cannot take, bounded reads,
streams, RNG restoration with a loader and np.random augmentation, structured batches in the
model-free checks, and progress logging. Each inner file is a user's test file; the
assertions are on outcomes and on the real message text."""

from __future__ import annotations

import importlib.util

import pytest

from .conftest import run
from .pipelines_src import PIPELINES


@pytest.fixture
def pipelines(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makepyfile(pipelines=PIPELINES)
    pytester.makeconftest(
        """
        import pytest
        import pipelines

        for _name in ("multi_input", "nested_arrays", "dict_inputs", "flat_dict", "own_loss", "with_step",
                      "sorted_by_class", "uint8_pixels", "augmented", "counting", "streamed"):
            globals()[_name] = pytest.fixture(getattr(pipelines, _name), name=_name)

        @pytest.fixture(params=["tuple", "dict", "object"])
        def output_form(request):
            return pipelines.output_form(request.param)
        """
    )
    return pytester


FORMS = """
import pytest
import pipelines


@pytest.mark.no_epoch1_overfit(setup="multi_input", probes=False)
def test_multi(trainsanity_report):
    assert trainsanity_report["no_epoch1_overfit"].metrics["val_metric"] > 0.8


@pytest.mark.no_epoch1_overfit(setup="nested_arrays", probes=False)
def test_nested_arrays(trainsanity_report):
    assert trainsanity_report["no_epoch1_overfit"].metrics["val_metric"] > 0.8


@pytest.mark.no_epoch1_overfit(setup="dict_inputs", probes=False)
def test_kwargs(trainsanity_report):
    assert trainsanity_report["no_epoch1_overfit"].metrics["val_metric"] > 0.8


@pytest.mark.no_epoch1_overfit(setup="flat_dict", probes=False)
def test_flat_dict(trainsanity_report):
    assert trainsanity_report["no_epoch1_overfit"].metrics["val_metric"] > 0.8


@pytest.mark.no_epoch1_overfit(setup="output_form", probes=False)
def test_outputs(output_form, trainsanity_report):
    assert trainsanity_report["no_epoch1_overfit"].metrics["val_metric"] > 0.8


@pytest.mark.no_epoch1_overfit(setup="own_loss", probes=False)
def test_own_loss(trainsanity_report):
    assert trainsanity_report["no_epoch1_overfit"].metrics["val_metric"] > 0.8


@pytest.mark.no_epoch1_overfit(setup="with_step", probes=False)
def test_step(trainsanity_report):
    assert len(pipelines.STEP_CALLS) >= 45  # every training step, plus the eval losses, went through it
    assert trainsanity_report["no_epoch1_overfit"].metrics["val_metric"] > 0.8


@pytest.mark.no_epoch1_overfit(setup="sorted_by_class", probes=False)
def test_sorted(trainsanity_report):
    assert trainsanity_report["no_epoch1_overfit"].metrics["batch_label_tv"] > 0.8


@pytest.mark.no_epoch1_overfit(setup="uint8_pixels")
def test_uint8(): pass


@pytest.mark.no_epoch1_overfit(setup="counting", max_steps=5, eval_samples=64)
def test_bounded_reads(counting, trainsanity_report):
    r = trainsanity_report["no_epoch1_overfit"]
    reads = counting.train.dataset.reads + counting.val.dataset.reads
    assert reads <= 3 * 5 * 32 + 2 * 64, reads
    assert r.metrics["n_train"] == 1437 and r.metrics["eval_train_samples"] == 64 and r.metrics["steps"] == 5


@pytest.mark.no_epoch1_overfit(setup="streamed", probes=False, eval_samples=500, max_steps=20)
def test_stream(trainsanity_report):
    assert trainsanity_report["no_epoch1_overfit"].metrics["steps"] == 20
"""


def test_every_batch_and_output_form_runs_the_users_pipeline(pipelines: pytest.Pytester) -> None:
    pipelines.makepyfile(test_forms=FORMS)
    res = run(pipelines, "--trainsanity-explain")
    res.assert_outcomes(passed=12, errors=1)
    res.stdout.fnmatch_lines([
        "*test_multi no_epoch1_overfit passed*",
        "    Training: (x1, ..., xk, y) batches with 2 inputs (x_num, x_cat) from a DataLoader over TensorDataset "
        "(1,437 samples, batch 32, shuffled, 0 worker(s)).",
    ])
    res.stdout.fnmatch_lines(["*test_nested_arrays*", "    Training: ((x1, ..., xk), y) batches with 2 inputs (x_num, x_cat) from arrays (1,437 samples)."])
    res.stdout.fnmatch_lines(["*test_kwargs*", "    Training: (dict, y) batches with inputs {x_num, x_cat} from a DataLoader over DictInputs*"])
    res.stdout.fnmatch_lines(["*test_flat_dict*", "    Training: dict batches {pixels} with the target under 'digit' from a DataLoader over FlatDict*"])
    res.stdout.fnmatch_lines(["*test_own_loss*", "    Training: dict batches {pixels} with the target under 'digit'*"])
    res.stdout.fnmatch_lines(["*test_step*", "    Training: (x, y) batches from a DataLoader over TensorDataset*; loss from TrainSetup(step=...)."])
    res.stdout.fnmatch_lines([
        "*test_sorted no_epoch1_overfit passed*",
        "    Note: the training batches are sorted by class: their label mix scores 0.98 between 0 (as mixed as a shuffled "
        "loader) and 1 (one class per batch): mean total-variation distance 0.89 from the split's label mix*shuffle the "
        "training loader (DataLoader(..., shuffle=True))*",
    ])
    res.stdout.fnmatch_lines([
        "*ERROR at setup of test_uint8*",
        "*pytest-trainsanity: The model could not run on the first train samples as the pipeline yields them ((x, y) "
        "batches): x: uint8 (2, 64) raised RuntimeError: mat1 and mat2 must have the same dtype, but got Byte and Float. "
        "The model's first layer is Linear(in_features=64, out_features=128, bias=True) (module '0') with float32 weights. "
        "The plugin feeds batches exactly as the pipeline yields them (only moved to the device, never cast)*",
    ])
    res.stdout.fnmatch_lines([
        "*test_bounded_reads no_epoch1_overfit*",
        "    Sample: train metrics and data measurements come from a seeded sample of 64 of 1,437 samples*",
        "    Sample: val metrics and data measurements come from a seeded sample of 64 of 360 samples*",
    ])
    res.stdout.fnmatch_lines(["*test_stream*", "    Sample: train metrics and data measurements come from the first 500 samples the pipeline yields*"])
    assert "Traceback" not in res.stdout.str()


RNG = """
import numpy as np
import pipelines
import pytest


@pytest.mark.parametrize("workers", [0, 2])
def test_rng_and_loader_left_as_found_and_verdicts_independent_of_them(trainsanity, workers):
    setup = pipelines.augmented(workers)
    generator = setup.train.generator
    before, gen_before = pipelines.rng_states(), generator.get_state().clone()
    first = trainsanity.check_epoch1_overfit(setup)
    assert pipelines.rng_states() == before and bool((generator.get_state() == gen_before).all())
    trainsanity.check_leakage(setup)
    trainsanity.check_normalization(setup)
    trainsanity.check_lr_spikes(setup, epochs=4)
    assert pipelines.rng_states() == before and bool((generator.get_state() == gen_before).all())
    np.random.seed(99); np.random.rand(5)  # the test order moved every global RNG
    import random, torch
    random.random(); torch.rand(3)
    again = trainsanity.check_epoch1_overfit(setup)
    drop = lambda m: {k: v for k, v in m.items() if k != "seconds"}
    assert drop(again.metrics) == drop(first.metrics) and again.message == first.message
"""


def test_rng_restored_with_a_loader_and_np_random_augmentation(pipelines: pytest.Pytester) -> None:
    pipelines.makepyfile(test_rng=RNG)
    run(pipelines).assert_outcomes(passed=2)


STRUCTURED = """
import pytest
import pipelines


@pytest.fixture
def leaked_dicts():
    return pipelines.dict_inputs(val_from_train=40)


@pytest.fixture
def raw_numbers():
    return pipelines.dict_inputs(pipelines.RAW_TR * 100, pipelines.RAW_V * 100)


@pytest.mark.no_leakage(setup="leaked_dicts")
def test_leakage(): pass


@pytest.mark.no_leakage(setup="dict_inputs")
def test_no_leakage(): pass


@pytest.mark.inputs_normalized(setup="raw_numbers")
def test_raw(): pass


@pytest.mark.inputs_normalized(setup="multi_input")
def test_scaled(trainsanity_report):
    assert trainsanity_report["inputs_normalized"].metrics["skipped_fields"] == 1
"""


def test_structured_batches_in_the_model_free_checks(pipelines: pytest.Pytester) -> None:
    pipelines.makepyfile(test_structured=STRUCTURED)
    res = run(pipelines, "--trainsanity-explain")
    res.assert_outcomes(passed=2, failed=2)
    res.stdout.fnmatch_lines([
        "*no_leakage FAILED: train/val: 40 copies (exact or near) of 360 val samples (11.1%; limit 0).",
        "*train/val: 40 exact and 0 near copies of 360 val samples (11.1%); exact examples (train, val): [[](0, 0), (1, 1)*",
        "*Samples: a sample is identified by all its input fields (x_num, x_cat), the target excluded.",
    ])
    res.stdout.fnmatch_lines([
        "*inputs_normalized FAILED for train, val: train field 'x_num' inputs are not standardised: values span [[]0, 1.6e+03]*",
        "*Fix:",
        "*  - train field 'x_num', val field 'x_num': standardise per feature with statistics fitted on train only*",
        "*Note: not features to scale, skipped: x_cat (int64, integer ids).",
    ])
    res.stdout.fnmatch_lines(["*test_scaled inputs_normalized passed*"])


ENDLESS = """
import itertools

import pytest
import torch
from torch.utils.data import DataLoader, IterableDataset

import pipelines
import pytest_trainsanity.adapters.torch_data as torch_data


class Endless(IterableDataset):
    def __iter__(self):  # the training idiom: a stream that cycles for ever
        return itertools.cycle(zip(pipelines.Xtr, pipelines.ytr))


class Sized(Endless):
    def __len__(self):  # a finite stream that says how long it is: read to its end
        return len(pipelines.Xtr)

    def __iter__(self):
        return iter(zip(pipelines.Xtr, pipelines.ytr))


@pytest.fixture
def endless(monkeypatch):
    monkeypatch.setattr(torch_data, "STREAM_CAP", 5000)  # the test's own smaller cap: the refusal in a second
    return pipelines.setup(pipelines.mlp(), DataLoader(Endless(), batch_size=32), (pipelines.Xv, pipelines.yv))


@pytest.fixture
def sized(monkeypatch):
    monkeypatch.setattr(torch_data, "STREAM_CAP", 1000)  # below the split's 1,437 samples: a __len__ lifts it
    return pipelines.setup(pipelines.mlp(), DataLoader(Sized(), batch_size=32), (pipelines.Xv, pipelines.yv))


@pytest.mark.no_leakage(setup="endless")
def test_leakage(): pass


@pytest.mark.inputs_normalized(setup="endless")
def test_normalized(): pass


@pytest.fixture
def endless_workers():
    return pipelines.setup(pipelines.mlp(), DataLoader(Endless(), batch_size=32, num_workers=2), (pipelines.Xv, pipelines.yv))


@pytest.mark.no_epoch1_overfit(setup="endless_workers", probes=False, max_steps=10, eval_samples=200)
def test_overfit(trainsanity_report):
    assert trainsanity_report["no_epoch1_overfit"].metrics["steps"] == 10


@pytest.mark.no_leakage(setup="sized")
def test_sized(trainsanity_report):
    assert "train 0 repeated row(s) of 1437;" in trainsanity_report["no_leakage"].message


class Once(IterableDataset):
    def __iter__(self):  # finite, and not split by get_worker_info(): every worker yields all of it
        return iter(zip(pipelines.Xtr, pipelines.ytr))


@pytest.fixture
def unsharded():
    return pipelines.setup(pipelines.mlp(), DataLoader(Once(), batch_size=32, num_workers=2), (pipelines.Xv, pipelines.yv))


@pytest.mark.no_leakage(setup="unsharded", within_split=True)
def test_unsharded(): pass


@pytest.mark.no_leakage(setup="unsharded")
def test_unsharded_reported(trainsanity_report):  # repeats are reported, not failed: the cause is named all the same
    assert "Note (repeats, train): train is an IterableDataset read by 2 DataLoader workers" in trainsanity_report["no_leakage"].message
"""


def test_an_endless_iterable_dataset_is_refused_by_the_checks_that_read_whole_splits(pipelines: pytest.Pytester) -> None:
    pipelines.makepyfile(test_endless=ENDLESS)
    res = run(pipelines, "--trainsanity-explain")
    res.assert_outcomes(passed=3, failed=3)
    res.stdout.fnmatch_lines([  # the repeats of an unsharded stream read by 2 workers: the fix was "de-duplicate" alone
        "*no_leakage FAILED: train: 1437 repeated row(s) of 2874 (50.0%; limit 0).",
        "*Fix (repeats): de-duplicate each split*",
        "*Fix (repeats, train): train is an IterableDataset read by 2 DataLoader workers, each running its own copy of "
        "__iter__, and its 1437 repeats of 2874 rows are exactly the (k-1)/k share that 2 copies of one stream give: "
        "unless __iter__ splits its samples by torch.utils.data.get_worker_info()*shard it there (or read it with "
        "num_workers=0), then de-duplicate only what still repeats.",
    ])
    res.stdout.fnmatch_lines([  # a stream's order is its own, and each worker runs all of it
        "    Training: (x, y) batches from a DataLoader over Endless (batch 32, in the order its __iter__ yields, 2 "
        "worker(s) (each runs its own copy of __iter__: a stream that does not split its samples by "
        "torch.utils.data.get_worker_info() yields each of them once per worker)).",
    ])
    res.stdout.fnmatch_lines([
        "*_ test_leakage _*",
        "*pytest-trainsanity: TrainSetup(train=...) is a Endless (an IterableDataset with no __len__) that yielded more "
        "than 5,000 samples without ending. The model-free checks (no_leakage, inputs_normalized) read every sample "
        "of the split, so a stream that never ends "
        "(a `while True` in __iter__) would be read without end. Give the check a finite split*",
        "*_ test_normalized _*",
        "pytest-trainsanity: TrainSetup(train=...) is a Endless (an IterableDataset with no __len__) that yielded more "
        "than 5,000 samples*",
    ])


WEIGHTED = """
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import pipelines

W_TR = np.random.default_rng(0).uniform(0.5, 2.0, len(pipelines.ytr)).astype(np.float32)


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.body = pipelines.mlp()

    def forward(self, x):  # one input: a third item of one float per sample is a weight
        return self.body(x)


def weighted(X, y, w, **kw):
    return DataLoader(TensorDataset(torch.as_tensor(X), torch.as_tensor(y), torch.as_tensor(w)), batch_size=32, **kw)


def make(val_from_train=0, **kw):
    Xv, yv = pipelines.Xv.copy(), pipelines.yv.copy()
    Xv[:val_from_train], yv[:val_from_train] = pipelines.Xtr[:val_from_train], pipelines.ytr[:val_from_train]
    torch.manual_seed(0)
    model = Net()
    return pipelines.setup(model, weighted(pipelines.Xtr, pipelines.ytr, W_TR, shuffle=True),
                           weighted(Xv, yv, np.ones(len(yv), np.float32)), **kw)


def user_step(model, batch):
    x, y, w = batch
    return (torch.nn.functional.cross_entropy(model(x), y, reduction="none") * w).mean()


@pytest.fixture
def by_step():
    return make(step=user_step, loss=None)


@pytest.fixture
def unreduced():
    return make(loss=torch.nn.CrossEntropyLoss(reduction="none"))


@pytest.fixture
def reduced():
    return make()


@pytest.fixture
def copied():
    return make(val_from_train=25)


@pytest.mark.no_epoch1_overfit(setup="by_step", probes=False)
def test_step(): pass


@pytest.mark.no_epoch1_overfit(setup="unreduced", probes=False)
def test_unreduced(): pass


@pytest.mark.no_epoch1_overfit(setup="reduced", probes=False)
def test_reduced(): pass


@pytest.mark.no_leakage(setup="copied")
def test_copies(): pass
"""


def test_torch_batches_of_x_y_and_sample_weights(pipelines: pytest.Pytester) -> None:
    """(x, y, w) batches for a forward of one input were refused ("forward() takes 2 positional arguments but 3
    were given ... what your own training would hit") even with the user's step that unpacks them, and
    no_leakage took y for an input and the weights for the labels."""
    pipelines.makepyfile(test_weighted=WEIGHTED)
    res = run(pipelines, "--trainsanity-explain")
    res.assert_outcomes(passed=3, failed=1)
    res.stdout.fnmatch_lines([
        "*test_step no_epoch1_overfit passed*",
        "    Training: (x, y) batches with sample weights from a DataLoader over TensorDataset (1,437 samples, batch 32, "
        "shuffled, 0 worker(s)); loss from TrainSetup(step=...); each batch's third item is read as per-sample weights "
        "(x, y, sample_weight), as the forward takes one input; the training step gets the batch as yielded, and the "
        "metrics compare model(x) with y.",
    ])
    res.stdout.fnmatch_lines(["*test_unreduced no_epoch1_overfit passed*",
                              "    Training: *; the loss is taken as mean(loss * w) over each batch, as Keras weighs it."])
    res.stdout.fnmatch_lines(["*test_reduced no_epoch1_overfit passed*",
                              "    Training: *; loss=... reduces each batch to one number, so the weights are not applied: "
                              "give the loss reduction='none' (the check then takes mean(loss * w), as Keras does), or "
                              "step=... that weighs them."])
    res.stdout.fnmatch_lines([
        "*no_leakage FAILED: train/val: 25 copies (exact or near) of 360 val samples*",
        # the copies' labels are equal: read as (x1, x2, y), the weights were the labels and 'conflicted'
        "*train/val: 25 exact and 0 near copies of 360 val samples (6.9%)*; 0 label conflict(s)",
    ])
    assert "Samples: a sample is identified by all its input fields" not in res.stdout.str()  # x alone, not (x, y)


HOOKS = """
import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import pipelines

CALLS = {"on_before_optimizer_step": 0, "configure_gradient_clipping": 0, "optimizer_step": 0}


class Clipped(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.net = pipelines.mlp()

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return torch.nn.functional.cross_entropy(self(x * 300), y)  # raw-scale inputs: the lr diverges unclipped

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.5)

    def on_before_optimizer_step(self, optimizer):
        CALLS["on_before_optimizer_step"] += 1

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None):
        CALLS["configure_gradient_clipping"] += 1
        torch.nn.utils.clip_grad_norm_(self.parameters(), 0.01)


class WarmedUp(Clipped):
    def optimizer_step(self, epoch, batch_idx, optimizer, optimizer_closure=None):
        CALLS["optimizer_step"] += 1
        super().optimizer_step(epoch, batch_idx, optimizer, optimizer_closure)


class NeedsTrainer(Clipped):
    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None):
        self.clip_gradients(optimizer, gradient_clip_val=0.01, gradient_clip_algorithm="norm")


def make(cls):
    data = lambda X, y: DataLoader(TensorDataset(torch.as_tensor(X), torch.as_tensor(y)), batch_size=32)
    return pipelines.TrainSetup(model=cls(), train=data(pipelines.Xtr, pipelines.ytr), val=data(pipelines.Xv, pipelines.yv))


@pytest.fixture
def clipped():
    return make(Clipped)


@pytest.fixture
def warmed_up():
    return make(WarmedUp)


@pytest.fixture
def needs_trainer():
    return make(NeedsTrainer)


@pytest.mark.finite_training(setup="clipped", steps=50)
@pytest.mark.no_epoch1_overfit(setup="clipped", probes=False)
def test_clipped():
    assert CALLS["on_before_optimizer_step"] == CALLS["configure_gradient_clipping"] == 45 + 50


@pytest.mark.no_epoch1_overfit(setup="warmed_up", probes=False)
def test_warmed_up():
    assert CALLS["optimizer_step"] == 0


@pytest.mark.no_epoch1_overfit(setup="needs_trainer", probes=False)
def test_needs_trainer(): pass
"""


@pytest.mark.skipif(importlib.util.find_spec("lightning") is None, reason="lightning is not installed")
def test_a_lightning_modules_step_hooks_run_as_a_trainer_runs_them(pipelines: pytest.Pytester) -> None:
    """The module's configure_gradient_clipping and on_before_optimizer_step were never called: a module that clips
    its gradients there went NaN in the checks (and was told to clip gradients), though a Trainer trains it fine.
    (Not importorskip: importing lightning here, under pytest's assertion rewriting, breaks torch._dynamo for the
    worker's later tests.)"""
    pipelines.makepyfile(test_hooks=HOOKS)
    res = run(pipelines, "--trainsanity-explain")
    res.assert_outcomes(passed=2, failed=1)
    res.stdout.fnmatch_lines([
        "*test_warmed_up no_epoch1_overfit passed*",
        "    Training: *WarmedUp overrides optimizer_step, which the check does not call (it takes a Trainer's closure): "
        "what it does beyond optimizer.step() (an lr warm-up) is not in the check's passes*",
    ])
    res.stdout.fnmatch_lines([
        "*_ test_needs_trainer _*",
        "pytest-trainsanity: NeedsTrainer.configure_gradient_clipping(optimizer) failed: *. The check calls the module's "
        "own on_before_optimizer_step and configure_gradient_clipping before each optimizer step, as a Trainer does, but "
        "it runs no Trainer*Clip with torch.nn.utils.clip_grad_norm_(self.parameters(), max_norm) in the hook instead.",
    ])


def test_progress_is_logged_for_live_display(pipelines: pytest.Pytester) -> None:
    pipelines.makepyfile(test_progress="""
        import pytest

        @pytest.mark.no_epoch1_overfit(setup="multi_input")
        def test_x(): pass
    """)
    res = run(pipelines, "--log-cli-level=INFO")
    res.assert_outcomes(passed=1)
    res.stdout.fnmatch_lines([
        "*INFO*pytest_trainsanity*no_epoch1_overfit: main pass: started (1 epoch(s), at most 45 steps)",
        "*INFO*pytest_trainsanity*no_epoch1_overfit: main pass: done, 45 steps in * s",
        "*INFO*pytest_trainsanity*no_epoch1_overfit: random-label probe: started*",
        "*INFO*pytest_trainsanity*no_epoch1_overfit: lr/10 probe: done, 45 steps in * s",
    ])
    quiet = run(pipelines)
    assert "pytest_trainsanity" not in quiet.stdout.str().replace("trainsanity-0", "")


def _have(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


LIGHTNING_TESTS = """
import pytest
import torch
import lightning_pipelines as lp
from pytest_trainsanity import TrainSetup


@pytest.fixture(params=lp.FORMS)
def lit(request):
    return TrainSetup(model=lp.Classifier(request.param), datamodule=lp.DigitsData())


@pytest.mark.no_epoch1_overfit(setup="lit", epochs=2, probes=False)
def test_return_forms(lit, trainsanity_report):
    assert lp.CALLS[id(lit.model)] >= 90  # every training step went through the module's own training_step
    assert lit.model.seen == 0  # and what it counted on the module was put back (it kept the check's 90+ before)
    r = trainsanity_report["no_epoch1_overfit"]
    assert r.metrics["steps"] == 90 and r.metrics["val_metric"] > 0.5


def test_training_step_is_the_users(trainsanity):
    plain = trainsanity.check_lr_spikes(TrainSetup(model=lp.Classifier(smoothing=0.0), datamodule=lp.DigitsData()), epochs=4)
    smooth = trainsanity.check_lr_spikes(TrainSetup(model=lp.Classifier(smoothing=0.3), datamodule=lp.DigitsData()), epochs=4)
    assert smooth.metrics["final_metric"] != plain.metrics["final_metric"]  # label smoothing reached the training


@pytest.fixture
def leaky():
    return TrainSetup(model=lp.Classifier(), datamodule=lp.DigitsData(leak=60))


@pytest.mark.no_epoch1_overfit(setup="leaky")
def test_leaky_val_loader(): pass


@pytest.fixture
def manual():
    return TrainSetup(model=lp.Manual(), datamodule=lp.DigitsData())


@pytest.mark.no_epoch1_overfit(setup="manual")
def test_manual_optimization(): pass


@pytest.fixture
def manual_given():
    model = lp.Manual()
    return TrainSetup(model=model, datamodule=lp.DigitsData(), optimizer=torch.optim.Adam(model.parameters(), 1e-3))


@pytest.mark.no_epoch1_overfit(setup="manual_given")
def test_manual_optimization_given_an_optimizer(): pass


@pytest.fixture
def manual_with_loss():
    model = lp.Manual()
    return TrainSetup(model=model, datamodule=lp.DigitsData(), optimizer=torch.optim.Adam(model.parameters(), 1e-3),
                      loss=torch.nn.CrossEntropyLoss())


@pytest.mark.no_epoch1_overfit(setup="manual_with_loss", probes=False)
def test_manual_optimization_with_a_loss(): pass


@pytest.fixture
def two_val_sets():
    return TrainSetup(model=lp.Classifier(), datamodule=lp.TwoValSets())


@pytest.mark.no_epoch1_overfit(setup="two_val_sets")
def test_two_val_sets(): pass


def test_dataclass_datamodule(trainsanity):
    dm = lp.ConfiguredData()
    for _ in range(2):
        report = trainsanity.check_epoch1_overfit(TrainSetup(model=lp.Classifier(), datamodule=dm), probes=False)
        assert report.metrics["steps"] == 45
    assert dm.setups == 1  # set up once, as a Trainer would, although a dataclass has no hash
"""


@pytest.mark.skipif(not _have("lightning"), reason="lightning is not installed")
def test_lightning_module_and_datamodule(pipelines: pytest.Pytester) -> None:
    from .pipelines_src import LIGHTNING

    pipelines.makepyfile(lightning_pipelines=LIGHTNING, test_lightning=LIGHTNING_TESTS)
    res = run(pipelines, "--trainsanity-explain", "-W", "error::UserWarning:lightning")
    res.assert_outcomes(passed=9, failed=1, errors=3)
    res.stdout.fnmatch_lines([
        "*test_return_forms[[]optimizer] no_epoch1_overfit passed*",
        "    Training: (x, y) batches from a DataLoader over TensorDataset (1,437 samples, batch 32, shuffled, 0 worker(s)); "
        "optimizer Adam from Classifier.configure_optimizers(); loss from Classifier.training_step(batch, batch_idx).",
    ])
    res.stdout.fnmatch_lines([
        "*test_return_forms[[]dict_config] no_epoch1_overfit passed*",
        "*optimizer Adam and its StepLR (stepped every 20 steps) from Classifier.configure_optimizers()*",
    ])
    res.stdout.fnmatch_lines(["*test_return_forms[[]two_lists]*", "*optimizer Adam and its StepLR (stepped every 1 epoch)*"])
    res.stdout.fnmatch_lines([
        "*no_epoch1_overfit FAILED: after 1 epoch (45 steps) train accuracy * vs val *: 60 of 360 val samples (16.7%) "
        "also occur in train*",
    ])
    res.stdout.fnmatch_lines([
        "*ERROR at setup of test_manual_optimization*",
        "*pytest-trainsanity: Manual uses manual optimization (automatic_optimization = False)*",
    ])
    res.stdout.fnmatch_lines([  # was "RuntimeError: Manual is not attached to a `Trainer`" from the step's self.optimizers()
        "*ERROR at setup of test_manual_optimization_given_an_optimizer*",
        "*pytest-trainsanity: Manual uses manual optimization (automatic_optimization = False)*TrainSetup(optimizer=...) "
        "alone does not avoid it: the checks would still call that training_step. Give TrainSetup(optimizer=..., "
        "step=...)*or TrainSetup(optimizer=..., loss=...)*",
    ])
    res.stdout.fnmatch_lines(["*test_manual_optimization_with_a_loss no_epoch1_overfit passed*"])
    res.stdout.fnmatch_lines([  # was AttributeError: 'DataLoader' object has no attribute 'detach'
        "*ERROR at setup of test_two_val_sets*",
        "*pytest-trainsanity: TwoValSets.val_dataloader() gives 2 loaders ([[]0] DataLoader, [[]1] DataLoader), as "
        "Lightning accepts for several val sets*pass it as TrainSetup(datamodule=dm, val=dm.val_dataloader()[[]0])*",
    ])
    assert "self.log" not in res.stdout.str()  # no Trainer, by design: its warning is not the user's problem


HF_TESTS = """
import pytest
import hf_pipelines as hf
from torch.utils.data import DataLoader
from pytest_trainsanity import TrainSetup


@pytest.fixture
def bert():
    return TrainSetup(model=hf.tiny_bert(), train=DataLoader(hf.Encoded(*hf.TRAIN), batch_size=16, shuffle=True),
                      val=DataLoader(hf.Encoded(*hf.VAL), batch_size=32))


@pytest.fixture
def copied_val():
    ids, mask, labels = (a.copy() for a in hf.VAL)
    ids[:40], mask[:40], labels[:40] = hf.TRAIN[0][:40], hf.TRAIN[1][:40], hf.TRAIN[2][:40]
    return TrainSetup(train=DataLoader(hf.Encoded(*hf.TRAIN), batch_size=16),
                      val=DataLoader(hf.Encoded(ids, mask, labels), batch_size=32))


@pytest.mark.no_epoch1_overfit(setup="bert", probes=False)
@pytest.mark.inputs_normalized(setup="bert")
def test_bert(trainsanity_report):
    assert trainsanity_report["no_epoch1_overfit"].metrics["steps"] == 40


@pytest.mark.no_leakage(setup="copied_val")
def test_copied(): pass
"""


@pytest.mark.skipif(not _have("transformers"), reason="transformers is not installed")
def test_hugging_face_model_with_dict_batches(pipelines: pytest.Pytester) -> None:
    from .pipelines_src import HUGGING_FACE

    pipelines.makepyfile(hf_pipelines=HUGGING_FACE, test_hf=HF_TESTS)
    res = run(pipelines, "--trainsanity-explain")
    res.assert_outcomes(passed=1, failed=1)
    res.stdout.fnmatch_lines([
        "*test_bert no_epoch1_overfit passed*",
        "    Training: dict batches {input_ids, attention_mask} with the target under 'labels' from a DataLoader over "
        "Encoded (640 samples, batch 16, shuffled, 0 worker(s)); optimizer AdamW(lr=5e-05), the transformers Trainer's "
        "default (TrainSetup(optimizer=...) was not given).",
    ])
    res.stdout.fnmatch_lines([
        "*test_bert inputs_normalized passed*",
        "    inputs_normalized passed: every input field is integer ids or a mask (input_ids: int64 integer ids; "
        "attention_mask: int64 mask)*",
    ])
    res.stdout.fnmatch_lines([
        "*no_leakage FAILED: train/val: 40 copies (exact or near) of 160 val samples (25.0%; limit 0).",
        "*Samples: a sample is identified by all its input fields (input_ids, attention_mask), the target excluded.",
    ])
