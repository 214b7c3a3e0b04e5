"""Batch forms, array splits, eval samples and the random-label probe's noise, on numpy alone
(no framework is imported: these are the rules every adapter reads batches by)."""

from __future__ import annotations

import subprocess
import sys
from collections import OrderedDict, namedtuple

import numpy as np
import pytest

from pytest_trainsanity import SetupError, TrainSetup
from pytest_trainsanity.adapters.base import LabelNoise
from pytest_trainsanity.adapters.batches import FLAT, KWARGS, MULTI, NESTED, PAIR, detect_form, takes_whole, tree_map
from pytest_trainsanity.adapters.splits import ArraySplit, EvalSample, Gather, fields_rows, open_splits, sample_indices
from pytest_trainsanity.checks.labels import batch_tv, class_shares

rng = np.random.default_rng(0)
X, X2, y = rng.standard_normal((10, 3)), rng.integers(0, 5, (10, 2)), np.arange(10) % 3


@pytest.mark.parametrize(
    ("batch", "kind", "names", "args", "kwargs"),
    [
        ((X, y), PAIR, ("x",), 1, ()),
        ((X, X2, y), MULTI, ("input 1", "input 2"), 2, ()),
        (((X, X2), y), NESTED, ("input 1", "input 2"), 2, ()),
        (({"a": X, "b": X2}, y), KWARGS, ("a", "b"), 0, ("a", "b")),
        ({"a": X, "mask": X2, "labels": y}, FLAT, ("a", "mask"), 0, ("a", "mask")),
    ],
)
def test_every_batch_form_is_read_and_rebuilt(batch, kind, names, args, kwargs) -> None:
    form = detect_form(batch, "TrainSetup(train=...)")
    assert (form.kind, form.names) == (kind, names)
    assert form.target(batch) is y
    a, k = form.call_args(batch)
    assert len(a) == args and tuple(k) == kwargs
    assert list(form.inputs(batch)) == list(names)
    relabelled = form.with_target(batch, y + 1)
    assert type(relabelled) is type(batch) and np.array_equal(form.target(relabelled), y + 1)
    assert form.target(batch) is y  # the user's batch is not written to


def test_keras_reads_a_triple_as_x_y_sample_weight_unless_the_model_takes_two_inputs() -> None:
    w = np.linspace(0.5, 1.5, 10)
    for batch in ((X, y, w), ((X, X2), y, w), ({"a": X}, y, w)):
        form = detect_form(batch, "w", keras_inputs=0)  # a Keras model, input count unknown: as model.fit reads it
        assert form.weighted and form.target(batch) is y and form.weights(batch) is w
        assert not any(v is w or v is y for v in form.inputs(batch).values())
        relabelled = form.with_target(batch, y + 1)
        assert np.array_equal(form.target(relabelled), y + 1) and form.weights(relabelled) is w
        assert form.structure().endswith("with sample weights")
    assert detect_form((X, y, w), "w", keras_inputs=1).keras_input((X, y, w)) is X
    two = detect_form((X, X2, y), "w", keras_inputs=2)  # SPEC's (x1, x2, y) for a two-input Keras model
    assert (two.kind, two.weighted, two.target((X, X2, y)) is y) == (MULTI, False, True)
    assert detect_form((X, X2, y), "w").kind == MULTI and detect_form((X, X2, y), "w").weights((X, X2, y)) is None


def test_a_flat_dict_passes_its_target_only_when_the_model_computes_the_loss() -> None:
    batch = {"input_ids": X2, "labels": y}
    form = detect_form(batch, "w")
    assert set(form.call_args(batch)[1]) == {"input_ids"}
    assert set(form.call_args(batch, with_target=True)[1]) == {"input_ids", "labels"}
    assert form.keras_input(batch).keys() == {"input_ids"}
    assert detect_form({"x": X, "target_class": y}, "w", target_key="target_class").target_key == "target_class"


def test_forms_without_a_target_are_one_clear_error() -> None:
    with pytest.raises(SetupError, match=r"yields dict batches with keys \['x', 'w'\], but none holds the target "
                                         r"\(one of \['labels', 'label', 'target', 'targets', 'y'\]\).*target_key="):
        detect_form({"x": X, "w": X}, "TrainSetup(train=...)")
    with pytest.raises(SetupError, match=r"yields a ndarray; a batch must carry its target"):
        detect_form(X, "TrainSetup(train=...)")
    with pytest.raises(SetupError, match=r"TrainSetup\(target_key='y2'\)"):
        detect_form({"x": X, "y": y}, "w", target_key="y2")


def test_tree_map_keeps_container_types() -> None:
    Pair = namedtuple("Pair", "x y")
    tree = Pair(OrderedDict(a=1, b=[2, 3]), (4,))
    out = tree_map(lambda v: v * 10, tree)
    assert type(out) is Pair and type(out.x) is OrderedDict and out == Pair(OrderedDict(a=10, b=[20, 30]), (40,))


def test_array_splits_take_several_inputs_and_validate_lengths() -> None:
    split = ArraySplit("train", ((X, X2), y), input_names=("x_num", "x_cat"))
    assert split.form().kind == NESTED and split.form().names == ("x_num", "x_cat")
    assert split.n_samples() == 10 and split.numpy_pair() is None
    (fields, target), = list(split.blocks())
    assert list(fields) == ["x_num", "x_cat"] and np.array_equal(target, y)
    assert ArraySplit("train", ({"a": X}, y)).form().kind == KWARGS
    with pytest.raises(SetupError, match=r"has 9 inputs in 'input 2' but 10 labels"):
        ArraySplit("train", ((X, X2[:9]), y))
    with pytest.raises(SetupError, match=r"a tuple of 3 items; a split given as a tuple must be \(X, y\)"):
        ArraySplit("train", (X, X2, y))


def test_eval_samples_are_seeded_bounded_and_say_so() -> None:
    big = rng.standard_normal((5000, 4))
    split = ArraySplit("train", (big, np.arange(5000) % 2))
    s = split.sample(300, seed=1)
    assert s.n == 300 and s.total == 5000 and s.sampled and s.how == "a seeded sample of 300 of 5,000 samples"
    assert split.sample(300, seed=1) is s  # read once per split object
    assert np.array_equal(sample_indices(5000, 300, 1), sample_indices(5000, 300, 1))
    assert not np.array_equal(sample_indices(5000, 300, 1), sample_indices(5000, 300, 2))
    whole = split.sample(10000, seed=1)
    assert whole.n == 5000 and not whole.sampled and whole.columns[0] is big  # small splits: referenced, not copied
    assert [len(c[1]) for c in s.chunks(128)] == [128, 128, 44]


def test_gather_writes_columns_and_keeps_ragged_batches_as_they_came() -> None:
    def alloc(like, n):
        return np.empty((n, *like.shape[1:]), like.dtype)

    def write(col, start, part):
        col[start : start + len(part)] = part

    g = Gather(10, alloc, write)
    g.add((X[:4], y[:4]), 4)
    g.add((X[4:9], y[4:9]), 5)
    template, columns, raw = g.result()
    assert raw is None and np.array_equal(columns[0], X[:9]) and template == (0, 1)
    ragged = Gather(10, alloc, write)
    ragged.add((np.zeros((2, 5)), y[:2]), 2)
    ragged.add((np.ones((3, 7)), y[2:5]), 3)  # padded to another length: kept as it came
    _, columns, raw = ragged.result()
    assert columns is None and [b[0].shape for b in raw] == [(2, 5), (3, 7)]
    sample = EvalSample("train", detect_form(raw[0], "w"), 5, 5, "all 5 samples", raw=raw, to_numpy=np.asarray)
    fields, target = sample.numpy()
    assert fields["x"].shape == (5, 7) and fields["x"][0, 5:].tolist() == [0, 0]  # padded for measuring


def test_fields_rows_identify_a_sample_by_every_input() -> None:
    rows = fields_rows({"num": X, "cat": X2})
    assert rows.shape == (10, 5) and rows.dtype == np.float64 and np.array_equal(rows[:, 3:], X2)
    assert fields_rows({"x": X}) is X


def test_label_noise_keeps_copies_together_and_the_label_mix() -> None:
    pool = rng.integers(0, 4, 2000)
    inputs = np.repeat(rng.standard_normal((500, 6)), 4, axis=0)
    noise = LabelNoise(pool, seed=0)
    labels = noise.targets([inputs])
    assert (labels.reshape(500, 4) == labels.reshape(500, 4)[:, :1]).all()  # copies of one input share a label
    assert np.abs(class_shares(labels, 4) - class_shares(pool, 4)).max() < 0.08
    assert np.array_equal(labels, LabelNoise(pool, seed=0).targets([inputs]))
    assert not np.array_equal(labels, LabelNoise(pool, seed=1).targets([inputs]))
    two = noise.pick([inputs, rng.integers(0, 3, (2000, 2))])  # every input field counts
    assert not np.array_equal(two, noise.pick([inputs]))


def test_batch_tv_is_zero_when_stratified_and_near_one_when_sorted() -> None:
    shares = np.full(4, 0.25)
    assert batch_tv(np.array([[8.0, 8, 8, 8], [32, 0, 0, 0]]), shares).tolist() == [0.0, 0.75]


def test_open_splits_reads_nothing_and_imports_no_framework() -> None:
    code = (
        "import sys, numpy as np\n"
        "from pytest_trainsanity import TrainSetup, check_leakage, check_normalization\n"
        "from pytest_trainsanity.adapters.splits import open_splits\n"
        "s = TrainSetup(train=(np.zeros((8, 2)), np.zeros(8)), val=((np.ones((4, 2)), np.ones((4, 1), int)), np.ones(4)))\n"
        "splits = open_splits(s); check_leakage(TrainSetup(train=s.train, val=(np.ones((4, 2)), np.ones(4))))\n"
        "check_normalization(s)\n"
        "print(sorted(splits), [m for m in ('torch', 'tensorflow') if m in sys.modules])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "['train', 'val'] []"


def test_a_consumed_generator_is_an_error_not_an_empty_pass() -> None:
    from pytest_trainsanity import check_leakage

    gen = ((X[i : i + 5], y[i : i + 5]) for i in range(0, 10, 5))
    setup = TrainSetup(train=gen, val=(X, y))
    assert check_leakage(setup).metrics["train_val_exact"] == 10
    with pytest.raises(SetupError, match="one-shot iterator that an earlier check already consumed"):
        check_leakage(setup)
    assert open_splits(TrainSetup(train=iter([]), val=(X, y)))["train"].one_shot


def test_a_mapping_goes_whole_only_to_a_forward_that_cannot_take_its_keys() -> None:
    """forward(self, batch) got model(**batch) and failed ("unexpected keyword argument 'features'"); the
    decision binds the signature, never calls the model, and keeps keywords wherever they bind."""
    class Whole:
        def forward(self, batch):
            return batch

    class Keywords:
        def forward(self, features, labels=None):
            return features

    class Open:
        def forward(self, **inputs):
            return inputs

    class Hugging:
        def forward(self, input_ids=None, attention_mask=None, labels=None):
            return input_ids

    class Optional:  # every parameter optional, none a key (a Hugging Face forward given other keys)
        def forward(self, input_ids=None, attention_mask=None):
            return input_ids

    class Missing:  # names a key but needs another: the keyword call's own error is the right one
        def forward(self, features, extra):
            return features

    flat = detect_form({"features": np.zeros((2, 3)), "labels": np.zeros(2)}, "train")
    pair = detect_form(({"features": np.zeros((2, 3))}, np.zeros(2)), "train")
    assert takes_whole(flat, Whole()).whole and takes_whole(pair, Whole()).whole
    for model in (Keywords(), Open(), Hugging(), Optional(), Missing()):
        assert not takes_whole(flat, model).whole, type(model).__name__
    assert not takes_whole(detect_form((np.zeros((2, 3)), np.zeros(2)), "train"), Whole()).whole  # (x, y): model(x)
    batch = {"features": np.ones((2, 3)), "labels": np.zeros(2)}
    assert takes_whole(flat, Whole()).call_args(batch) == ((batch,), {})  # as yielded, the target included
    assert "given whole to the model's forward" in takes_whole(flat, Whole()).structure()


def test_a_forward_of_one_input_reads_a_third_item_of_float_weights_as_sample_weights() -> None:
    from pytest_trainsanity.adapters.batches import detect_form

    x, y = np.zeros((4, 3), np.float32), np.arange(4)
    w = np.ones(4, np.float32)
    form = detect_form((x, y, w), "train", input_names=("x",))
    assert form.weighted and form.kind == "(x, y)" and form.target((x, y, w)) is y and form.weights((x, y, w)) is w
    assert list(form.inputs((x, y, w))) == ["x"]
    # two inputs in the forward, an integer third item, or per-feature floats: SPEC's (x1, x2, y)
    assert not detect_form((x, y, w), "train", input_names=("a", "b")).weighted
    assert not detect_form((x, w, y), "train", input_names=("x",)).weighted
    assert not detect_form((x, y, np.ones((4, 2), np.float32)), "train", input_names=("x",)).weighted
    assert not detect_form((x, y, w), "train").weighted  # no model: nothing says the forward takes one input
