"""The torch pre-flight probes on what users' pipelines hold (found by probing the public functions):
a warm-up schedule stepped per batch, token-level labels padded per batch with -100, a Lightning
training_step that skips batches (returns None) or reads batch_idx, NaN inputs, a frozen= prefix that
names nothing, multi-label targets, a LightningModule whose forward takes the whole dict batch, token-id models
and attention that reads the batch as the sequence. Each test failed on the code before its fix."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

from pytest_trainsanity import (  # noqa: E402
    SetupError,
    TrainSetup,
    check_batch_independence,
    check_epoch1_overfit,
    check_finite_training,
    check_loss_at_init,
    check_overfit_one_batch,
    check_params_update,
)

rng = np.random.default_rng(0)
X = rng.normal(size=(300, 8)).astype(np.float32)
y = (X[:, 0] > 0).astype(np.int64) + (X[:, 1] > 0)  # 3 classes


def mlp(out: int = 3) -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.ReLU(), torch.nn.Linear(32, out))


def test_a_schedule_stepped_per_batch_drives_the_probes() -> None:
    """A warm-up from 0 (get_linear_schedule_with_warmup's shape) left the probes at lr 0: params_update said
    every parameter stayed unchanged and overfits_one_batch failed; a warm-up from lr x1e-3 to a rate that
    diverges let finite_training pass at the warm-up's first rate."""
    def warm(model, lr, schedule):
        opt = torch.optim.SGD(model.parameters(), lr)
        return TrainSetup(model=model, train=(X, y), val=(X[:50], y[:50]), optimizer=opt, loss="ce",
                          scheduler=schedule(opt), scheduler_step="batch")

    from_zero = lambda opt: torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, s / 10))  # noqa: E731
    assert check_params_update(warm(mlp(), 0.1, from_zero)).passed
    assert check_overfit_one_batch(warm(mlp(), 0.1, from_zero), steps=300).passed
    linear = lambda opt: torch.optim.lr_scheduler.LinearLR(opt, 1e-3, 1.0, total_iters=20)  # noqa: E731
    report = check_finite_training(warm(mlp(), 50.0, linear))
    assert not report.passed and report.metrics["lr"] > 1.0


def test_token_labels_padded_per_batch_with_minus_100() -> None:
    """(batch, tokens, classes) logits, labels -100 on padding, each batch padded to its own length: a raw
    numpy concatenate error; with one length, 'ln 48 expected' and 'the labels use -99 classes'."""
    class Tagger(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(0)
            self.emb, self.out = torch.nn.Embedding(20, 8), torch.nn.Linear(8, 3)

        def forward(self, ids):
            return self.out(self.emb(ids))

    def collate(items):
        length = max(len(i) for i, _ in items)
        ids = torch.zeros(len(items), length, dtype=torch.long)
        labels = torch.full((len(items), length), -100)
        for row, (i, t) in enumerate(items):
            ids[row, : len(i)], labels[row, : len(t)] = torch.as_tensor(i), torch.as_tensor(t)
        labels[:, 0] = -100  # the [CLS] position
        return ids, labels

    items = [(r.tolist(), (r % 3).tolist()) for r in (rng.integers(1, 20, rng.integers(3, 12)) for _ in range(200))]
    model = Tagger()
    setup = TrainSetup(model=model, train=DataLoader(items, batch_size=16, collate_fn=collate),
                       val=DataLoader(items[:40], batch_size=16, collate_fn=collate), optimizer=torch.optim.Adam(model.parameters()),
                       loss=lambda out, t: torch.nn.functional.cross_entropy(out.reshape(-1, 3), t.reshape(-1)))
    report = check_loss_at_init(setup)
    assert report.passed and "ln 3 = 1.099" in report.message and "the labels use 3 classes" in report.message


def test_lightning_training_step_that_skips_batches_or_reads_batch_idx() -> None:
    L = pytest.importorskip("lightning")
    seen = []

    class Net(L.LightningModule):
        def __init__(self, guard: str) -> None:
            super().__init__()
            self.guard, self.net = guard, mlp()

        def forward(self, x):
            return self.net(x)

        def training_step(self, batch, batch_idx):
            seen.append(batch_idx)
            if self.guard == "all" or (self.guard == "short" and len(batch[0]) < 32):
                return None  # Lightning skips the batch
            return torch.nn.functional.cross_entropy(self(batch[0]), batch[1])

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), 0.1)

    loader = lambda: DataLoader(TensorDataset(torch.as_tensor(X), torch.as_tensor(y)), batch_size=32)  # noqa: E731
    short = lambda: TrainSetup(model=Net("short"), train=loader(), val=(X[:50], y[:50]))  # noqa: E731
    for check in (check_finite_training, check_loss_at_init, check_overfit_one_batch, check_params_update):
        assert check(short()).passed, check.__name__
    seen.clear()
    check_finite_training(short(), steps=12)
    assert sorted(set(seen)) == list(range(10))  # batch_idx as the pipeline counts (10 batches an epoch), not 0
    every = lambda: TrainSetup(model=Net("all"), train=loader(), val=(X[:50], y[:50]))  # noqa: E731
    report = check_finite_training(every())
    assert not report.passed and "training_step returned None (skip the batch) for all 100 batch(es)" in report.message
    with pytest.raises(SetupError, match="returned None for every train batch of the sample"):
        check_loss_at_init(every())
    with pytest.raises(SetupError, match="returned None for the first train batch"):
        check_params_update(every())
    with pytest.raises(SetupError, match=r"returned None for all 10 batch\(es\) of the pass"):
        check_epoch1_overfit(every(), probes=False)


def test_a_lightning_forward_that_takes_the_whole_dict_batch() -> None:
    """forward(self, batch) reading batch["features"], called self(batch) in training_step: every check was a
    setup error ("M.forward() got an unexpected keyword argument 'features'"): the plugin called model(**batch)."""
    L = pytest.importorskip("lightning")

    class Dicts(torch.utils.data.Dataset):
        def __init__(self, rows: slice) -> None:
            self.X, self.y = X[rows], y[rows]

        def __len__(self):
            return len(self.X)

        def __getitem__(self, i):
            return {"features": torch.as_tensor(self.X[i]), "labels": torch.as_tensor(self.y[i])}

    class Net(L.LightningModule):
        def __init__(self, centre: bool = False) -> None:
            super().__init__()
            self.centre, self.net = centre, mlp()

        def forward(self, batch):
            x = batch["features"]
            return self.net(x - x.mean(0) if self.centre else x)  # centring on the batch mixes samples

        def training_step(self, batch, batch_idx):
            return torch.nn.functional.cross_entropy(self(batch), batch["labels"])

        def configure_optimizers(self):
            return torch.optim.Adam(self.parameters(), 1e-2)

    def setup(centre: bool = False) -> TrainSetup:
        return TrainSetup(model=Net(centre), train=DataLoader(Dicts(slice(0, 240)), batch_size=16, shuffle=True),
                          val=DataLoader(Dicts(slice(240, 300)), batch_size=30))

    report = check_epoch1_overfit(setup(), probes=False)
    assert report.passed and report.metrics["steps"] == 15, report.message
    assert "dict batches {features} with the target under 'labels', given whole to the model's forward" in report.message
    for check in (check_loss_at_init, check_overfit_one_batch, check_params_update, check_finite_training,
                  check_batch_independence):
        assert check(setup()).passed, check.__name__
    mixed = check_batch_independence(setup(centre=True))  # the gradient reaches the inputs inside the dict
    assert not mixed.passed and mixed.metrics["leak"] > 0, mixed.message


def test_nan_inputs_are_the_named_cause_of_a_non_finite_step() -> None:
    bad = X.copy()
    bad[200, 3] = np.nan
    model = mlp()
    report = check_finite_training(TrainSetup(model=model, train=DataLoader(TensorDataset(torch.as_tensor(bad), torch.as_tensor(y)),
                                                                            batch_size=32), val=(X[:50], y[:50]),
                                              optimizer=torch.optim.SGD(model.parameters(), 1e-3), loss="ce"))
    assert not report.passed and "and 1 NaN/Inf input value(s) at that step" in report.message
    assert "1. non-finite inputs (evidence score 0.95): the batch of step" in report.message  # not the learning rate


def test_frozen_prefix_that_names_no_parameter_and_multi_label_targets_are_errors() -> None:
    model = mlp()
    setup = TrainSetup(model=model, train=(X, y), val=(X[:50], y[:50]), optimizer=torch.optim.SGD(model.parameters(), 0.1), loss="ce")
    with pytest.raises(SetupError, match=r"params_update\(frozen=\('encoder\.',\)\): 'encoder\.' starts no parameter name.*"
                                         r"Parameter names start with: 0, 2"):
        check_params_update(setup, frozen=("encoder.",))
    multi = np.stack([X[:, 0] > 0, X[:, 1] > 0, X[:, 2] > 0], axis=1).astype(np.float32)  # several labels per sample
    model = mlp()
    setup = TrainSetup(model=model, train=(X, multi), val=(X[:50], multi[:50]), optimizer=torch.optim.SGD(model.parameters(), 0.1),
                       loss=torch.nn.BCEWithLogitsLoss())
    for check in (check_loss_at_init, check_overfit_one_batch):
        with pytest.raises(SetupError, match=r"has multi-label targets: rows of 0/1 over the 3 outputs holding several 1s"):
            check(setup)


def test_token_id_models_are_measured_at_the_embedding_and_seq_first_attention_is_named() -> None:
    """Token ids have no gradient: batch_independent was skipped for every text model, so a transformer layer
    without batch_first=True (it attends across the batch) went unseen; nn.MultiheadAttention computes with its
    out_proj's weights without calling it, and was named 'a functional op between 'emb' and 'out''."""
    ids = rng.integers(1, 30, (64, 10))
    labels = rng.integers(0, 3, 64)

    class Text(torch.nn.Module):
        def __init__(self, kind: str) -> None:
            super().__init__()
            torch.manual_seed(0)
            self.kind, self.emb, self.out = kind, torch.nn.Embedding(30, 16), torch.nn.Linear(16, 3)
            layer = torch.nn.TransformerEncoderLayer(16, 2, 32, batch_first=kind != "seq_first")
            self.enc = torch.nn.TransformerEncoder(layer, 1, enable_nested_tensor=False)

        def forward(self, x):
            h = self.emb(x)
            if self.kind == "batch_mean":
                h = h - h.mean(0)  # a functional op across the batch
            return self.out(self.enc(h).mean(1))

    def check(kind: str):
        return check_batch_independence(TrainSetup(model=Text(kind), train=(ids, labels), loss="ce",
                                                   optimizer=lambda p: torch.optim.SGD(p, 0.1)))

    clean = check("clean")
    assert clean.passed and not clean.skipped and "token ids: measured at the output of embedding 'emb'" in clean.message
    mean = check("batch_mean")
    assert not mean.passed and "after the output of module 'emb'" in mean.message, mean.message
    seq = check("seq_first")
    assert not seq.passed and seq.causes[0]["name"] == "samples mix across the batch", seq.message
    assert "in 'enc.layers.0.self_attn' (MultiheadAttention): built without batch_first=True" in seq.message
    assert "build 'enc.layers.0.self_attn' with batch_first=True" in seq.message

    class NoEmbedding(torch.nn.Module):  # ids read some other way: still "cannot be measured", never a pass
        def __init__(self) -> None:
            super().__init__()
            self.out = torch.nn.Linear(10, 3)

        def forward(self, x):
            return self.out(x.float())

    skipped = check_batch_independence(TrainSetup(model=NoEmbedding(), train=(ids, labels), loss="ce",
                                                  optimizer=lambda p: torch.optim.SGD(p, 0.1)))
    assert skipped.skipped.startswith("batch_independent cannot be measured: no floating-point input"), skipped.message
