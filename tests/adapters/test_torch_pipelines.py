"""The torch adapter on the user's own pipeline: loaders with augmentation and workers replay
bit for bit, inputs are never cast, the loader's collate decides the batch, Lightning's
optimizer forms and datamodules, streams."""

from __future__ import annotations

import copy

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch.utils.data import DataLoader, Dataset, TensorDataset  # noqa: E402

from pytest_trainsanity import SetupError, TrainSetup, check_epoch1_overfit, check_leakage, check_lr_spikes  # noqa: E402
from pytest_trainsanity.adapters.splits import open_splits  # noqa: E402
from pytest_trainsanity.adapters.torch import TorchAdapter  # noqa: E402
from pytest_trainsanity.settings import RunSettings  # noqa: E402


def mlp() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.BatchNorm1d(64), torch.nn.ReLU(), torch.nn.Dropout(0.2),
                               torch.nn.Linear(64, 10))


class Noisy(Dataset):
    def __init__(self, X: np.ndarray, y: np.ndarray) -> None:
        self.X, self.y = X, y

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int):
        return self.X[i] + np.random.normal(0, 0.3, self.X[i].shape).astype(np.float32), self.y[i]


@pytest.mark.parametrize("workers", [0, 2])
def test_replays_regenerate_the_epochs_batches_bit_for_bit(digits, workers: int) -> None:
    Xtr, ytr, Xv, yv = digits
    model = mlp()
    loader = DataLoader(Noisy(Xtr, ytr), batch_size=32, shuffle=True, num_workers=workers,
                        generator=torch.Generator().manual_seed(7))
    setup = TrainSetup(model=model, train=loader, val=(Xv, yv), optimizer=torch.optim.SGD(model.parameters(), 0.05, momentum=0.9),
                       loss=torch.nn.CrossEntropyLoss())
    state = loader.generator.get_state().clone()
    adapter = TorchAdapter(model, setup, open_splits(setup), RunSettings(device="cpu"))
    with adapter:
        trace = adapter.train(epochs=3, detail=True)
        np.testing.assert_array_equal(trace.loss, adapter.train(epochs=3, detail=True).loss)  # every pass: same batches
        for epoch in (1, 2):
            again = adapter.replay(trace, epoch)
            assert again["val_acc"] == trace.val_metric[epoch] and again["train_loss"] == trace.train_loss[epoch]
        assert adapter.replay(trace, 2, "reshuffle")["train_loss"] != trace.train_loss[2]
        sizes = trace.label_counts.sum(axis=1)  # the loader's own batches: 44 of 32 and a last one of 29
        assert trace.label_counts.shape == (135, 10) and sorted(set(sizes)) == [29, 32] and sizes.sum() == 3 * 1437
    assert torch.equal(loader.generator.get_state(), state)


def test_a_loader_that_never_shuffles_cannot_be_reshuffled(digits) -> None:
    Xtr, ytr, Xv, yv = digits
    model = mlp()
    loader = DataLoader(TensorDataset(torch.as_tensor(Xtr), torch.as_tensor(ytr)), batch_size=32)
    setup = TrainSetup(model=model, train=loader, val=(Xv, yv), optimizer=torch.optim.Adam(model.parameters()), loss="ce")
    adapter = TorchAdapter(model, setup, open_splits(setup), RunSettings(device="cpu"))
    assert adapter.interventions()["reshuffle"] == "the train loader does not shuffle (its order never changes)"


def test_inputs_are_never_cast(digits) -> None:
    Xtr, ytr, Xv, yv = digits
    model = mlp()
    setup = TrainSetup(model=model, train=(Xtr.astype(np.float64), ytr), val=(Xv.astype(np.float64), yv),
                       optimizer=torch.optim.Adam(model.parameters()), loss="ce")
    with pytest.raises(SetupError, match=r"x: float64 \(2, 64\) raised RuntimeError: mat1 and mat2 must have the same dtype.*"
                                         r"Linear\(in_features=64, out_features=64, bias=True\) \(module '0'\) with float32 weights"):
        check_epoch1_overfit(setup)
    double = mlp().double()
    ok = TrainSetup(model=double, train=(Xtr.astype(np.float64), ytr), val=(Xv.astype(np.float64), yv),
                    optimizer=torch.optim.Adam(double.parameters()), loss="ce")
    assert check_epoch1_overfit(ok, probes=False).passed  # what the model takes, it gets


def test_the_loaders_collate_makes_the_batch(digits) -> None:
    Xtr, ytr, Xv, yv = digits

    def collate(items):  # the user's collate builds dict batches with a mask the model needs
        x = torch.stack([torch.as_tensor(i[0]) for i in items])
        return {"x": x, "keep": (x.abs() < 3).float(), "label": torch.as_tensor([int(i[1]) for i in items])}

    class Masked(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = mlp()

        def forward(self, x, keep):
            return self.net(x * keep)

    model = Masked()
    pairs = lambda X, y: list(zip(X, y))  # noqa: E731 - a plain list is a map-style dataset
    setup = TrainSetup(model=model, train=DataLoader(pairs(Xtr, ytr), batch_size=32, shuffle=True, collate_fn=collate),
                       val=DataLoader(pairs(Xv, yv), batch_size=64, collate_fn=collate),
                       optimizer=torch.optim.Adam(model.parameters(), 1e-3), loss="ce", target_key="label")
    report = check_epoch1_overfit(setup, probes=False)
    assert report.passed and "dict batches {x, keep} with the target under 'label'" in report.message
    assert check_leakage(setup).passed


def test_lightning_optimizer_forms_that_cannot_be_used_are_clear(digits) -> None:
    L = pytest.importorskip("lightning")
    Xtr, ytr, Xv, yv = digits

    class Module(L.LightningModule):
        def __init__(self, out):
            super().__init__()
            self.out, self.net = out, mlp()

        def forward(self, x):
            return self.net(x)

        def training_step(self, batch):  # no batch_idx: Lightning then passes only the batch
            return torch.nn.functional.cross_entropy(self(batch[0]), batch[1])

        def configure_optimizers(self):
            opt = torch.optim.SGD(self.parameters(), 0.1)
            sched = torch.optim.lr_scheduler.StepLR(opt, 1)
            return {"none": None, "two_scheds": ([opt], [sched, sched]), "plateau_per_step": {"optimizer": opt,
                    "lr_scheduler": {"scheduler": torch.optim.lr_scheduler.ReduceLROnPlateau(opt), "interval": "step"}},
                    "bad_interval": {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "batch"}},
                    "ok": opt}[self.out]

    def setup(out):
        return TrainSetup(model=Module(out), train=(Xtr, ytr), val=(Xv, yv))

    for out, message in (("none", "returned None: there is no optimizer"), ("two_scheds", "returned 2 schedulers"),
                         ("plateau_per_step", "ReduceLROnPlateau steps on a metric measured once per epoch"), ("bad_interval", "interval='batch'")):
        with pytest.raises(SetupError, match=message):
            check_epoch1_overfit(setup(out))
    assert check_epoch1_overfit(setup("ok"), probes=False).passed


def test_reduce_lr_on_plateau_steps_on_each_epochs_measurement(digits) -> None:
    """ReduceLROnPlateau steps after each epoch on what it watches: Lightning's monitor, else the val loss
    (mode 'min') or the val metric (mode 'max'). Watching the falling val loss in mode 'max' reads every
    epoch after the first as worse: with patience 0 the lr drops tenfold after epochs 2 and 3."""
    L = pytest.importorskip("lightning")
    Xtr, ytr, Xv, yv = digits

    class Module(L.LightningModule):
        def __init__(self, monitor):
            super().__init__()
            self.monitor, self.net = monitor, mlp()

        def forward(self, x):
            return self.net(x)

        def training_step(self, batch, batch_idx):
            return torch.nn.functional.cross_entropy(self(batch[0]), batch[1])

        def configure_optimizers(self):
            opt = torch.optim.SGD(self.parameters(), 0.1)
            plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="max", patience=0)
            return {"optimizer": opt, "lr_scheduler": {"scheduler": plateau, "monitor": self.monitor}}

    def epoch_lrs(setup):
        adapter = TorchAdapter(setup.model, setup, open_splits(setup), RunSettings(device="cpu"))
        with adapter:
            trace = adapter.train(epochs=4)
        return [float(trace.lr[np.flatnonzero(trace.epoch == e)[0], 0]) for e in range(4)], adapter.info().notes

    lrs, notes = epoch_lrs(TrainSetup(model=Module("val_loss"), train=(Xtr, ytr), val=(Xv, yv)))
    assert lrs == pytest.approx([0.1, 0.1, 0.01, 0.001])
    assert "ReduceLROnPlateau steps after each epoch on the val loss (monitor 'val_loss')" in notes
    lrs, _ = epoch_lrs(TrainSetup(model=Module("val_acc"), train=(Xtr, ytr), val=(Xv, yv)))
    assert lrs[:2] == pytest.approx([0.1, 0.1])  # val accuracy rises after epoch 1: no drop there
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), 0.1)
    plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, patience=0)  # mode 'min': the val loss
    state = copy.deepcopy(plateau.state_dict())
    setup = TrainSetup(model=model, train=(Xtr, ytr), val=(Xv, yv), optimizer=opt, loss="ce", scheduler=plateau)
    report = check_lr_spikes(setup, epochs=3)
    assert "ReduceLROnPlateau steps after each epoch on the val loss (mode 'min')" in report.message
    assert plateau.state_dict() == state and opt.param_groups[0]["lr"] == 0.1  # the user's scheduler as it was
    with pytest.raises(SetupError, match=r"use TrainSetup\(scheduler_step='epoch'\)"):
        check_lr_spikes(TrainSetup(model=model, train=(Xtr, ytr), val=(Xv, yv), optimizer=opt, loss="ce",
                                   scheduler=plateau, scheduler_step="batch"), epochs=2)


def test_a_datamodule_is_prepared_once_and_fills_the_missing_splits(digits) -> None:
    L = pytest.importorskip("lightning")
    Xtr, ytr, Xv, yv = digits
    calls = []

    class Data(L.LightningDataModule):
        def prepare_data(self):
            calls.append("prepare")

        def setup(self, stage):
            calls.append(stage)

        def train_dataloader(self):
            return DataLoader(TensorDataset(torch.as_tensor(Xtr), torch.as_tensor(ytr)), batch_size=32, shuffle=True)

        def test_dataloader(self):
            return DataLoader(TensorDataset(torch.as_tensor(Xv), torch.as_tensor(yv)), batch_size=64)

    data = Data()
    setup = TrainSetup(datamodule=data, val=(Xv[:100], yv[:100]))
    assert sorted(open_splits(setup)) == ["test", "train", "val"]
    report = check_leakage(setup)
    assert report.metrics["val_test_exact"] == 100  # val given by hand, test from the datamodule
    check_leakage(setup)
    assert calls == ["prepare", "fit", "test"]
    with pytest.raises(SetupError, match="no_epoch1_overfit needs TrainSetup.model=...."):
        check_epoch1_overfit(TrainSetup(datamodule=Data()))


def test_token_level_targets_ignore_minus_100() -> None:
    """(batch, tokens, classes) logits against (batch, tokens) labels with -100 at padding, as
    Hugging Face token classification yields them: accuracy counts the real tokens only."""
    rng = np.random.default_rng(0)
    ids = rng.integers(1, 20, (300, 12))
    labels = (ids % 3).astype(np.int64)
    labels[:, 9:] = -100  # padding
    ids[:, 9:] = 0

    class Tagger(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(0)
            self.emb, self.out = torch.nn.Embedding(20, 16), torch.nn.Linear(16, 3)

        def forward(self, input_ids):
            return self.out(self.emb(input_ids))

    model = Tagger()
    loss = lambda logits, y: torch.nn.functional.cross_entropy(logits.reshape(-1, 3), y.reshape(-1))  # noqa: E731
    pairs = lambda a, b: [{"input_ids": torch.as_tensor(i), "labels": torch.as_tensor(t)} for i, t in zip(a, b)]  # noqa: E731
    setup = TrainSetup(model=model, train=DataLoader(pairs(ids[:240], labels[:240]), batch_size=16, shuffle=True),
                       val=DataLoader(pairs(ids[240:], labels[240:]), batch_size=30),
                       optimizer=torch.optim.Adam(model.parameters(), 3e-2), loss=loss)
    report = check_epoch1_overfit(setup, epochs=5, probes=False)
    assert report.metrics["val_metric"] > 0.95 and report.metrics["chance"] == pytest.approx(1 / 3)


def test_a_loader_over_part_of_a_dataset_is_that_part(digits) -> None:
    """One Dataset split by SubsetRandomSampler (a common pattern): train and val share no sample."""
    from torch.utils.data import SubsetRandomSampler

    Xtr, ytr, _, _ = digits
    full = TensorDataset(torch.as_tensor(Xtr), torch.as_tensor(ytr))
    model = mlp()
    setup = TrainSetup(model=model, train=DataLoader(full, batch_size=32, sampler=SubsetRandomSampler(range(1200))),
                       val=DataLoader(full, batch_size=64, sampler=SubsetRandomSampler(range(1200, 1437))),
                       optimizer=torch.optim.Adam(model.parameters(), 1e-3), loss="ce")
    report = check_epoch1_overfit(setup, probes=False)
    assert report.passed and (report.metrics["n_train"], report.metrics["n_val"]) == (1200, 237)
    assert report.metrics["val_overlap"] == 0.0 and "1,200 of its 1,437 samples by SubsetRandomSampler" in report.message
    assert check_leakage(setup).metrics["train_val_copies"] == 0


def test_persistent_workers_start_anew_each_pass_and_the_loader_keeps_none(digits) -> None:
    Xtr, ytr, Xv, yv = digits
    model = mlp()
    loader = DataLoader(Noisy(Xtr, ytr), batch_size=64, shuffle=True, num_workers=2, persistent_workers=True)
    setup = TrainSetup(model=model, train=loader, val=(Xv, yv), optimizer=torch.optim.Adam(model.parameters(), 1e-3), loss="ce")
    a, b = check_epoch1_overfit(setup), check_epoch1_overfit(setup)
    assert {k: v for k, v in a.metrics.items() if k != "seconds"} == {k: v for k, v in b.metrics.items() if k != "seconds"}
    assert loader._iterator is None and "started anew each pass" in a.message


def test_reshuffle_changes_the_order_of_a_loader_with_its_own_generator(digits) -> None:
    Xtr, ytr, Xv, yv = digits
    model = mlp()
    loader = DataLoader(TensorDataset(torch.as_tensor(Xtr), torch.as_tensor(ytr)), batch_size=32, shuffle=True,
                        generator=torch.Generator().manual_seed(3))
    setup = TrainSetup(model=model, train=loader, val=(Xv, yv), optimizer=torch.optim.SGD(model.parameters(), 0.05), loss="ce")
    adapter = TorchAdapter(model, setup, open_splits(setup), RunSettings(device="cpu"))
    with adapter:
        trace = adapter.train(epochs=3, detail=True)
        assert adapter.replay(trace, 2)["train_loss"] == trace.train_loss[2]
        assert adapter.replay(trace, 2, "reshuffle")["train_loss"] != trace.train_loss[2]


def test_a_scheduler_built_by_the_check_leaves_the_users_optimizer_as_it_was(digits) -> None:
    import copy

    Xtr, ytr, Xv, yv = digits
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    before, attributes = copy.deepcopy(opt.state_dict()), set(vars(opt))
    setup = TrainSetup(model=model, train=(Xtr, ytr), val=(Xv, yv), optimizer=opt, loss="ce", scheduler_step="batch",
                       scheduler=lambda o: torch.optim.lr_scheduler.OneCycleLR(o, max_lr=1.0, total_steps=100))
    check_epoch1_overfit(setup, max_steps=20, probes=False)
    assert opt.state_dict() == before and set(vars(opt)) == attributes


def test_per_position_targets_and_unreduced_losses(digits) -> None:
    """Segmentation in CrossEntropyLoss's own layout (classes on axis 1), with reduction='none'."""
    rng = np.random.RandomState(1)
    X = rng.randn(300, 1, 6, 10).astype(np.float32)
    Y = (X[:, 0] > 0).astype(np.int64)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(8, 2, 1))
    pairs = lambda a, b: TensorDataset(torch.as_tensor(a), torch.as_tensor(b))  # noqa: E731
    setup = TrainSetup(model=model, train=DataLoader(pairs(X[:240], Y[:240]), batch_size=16, shuffle=True),
                       val=DataLoader(pairs(X[240:], Y[240:]), batch_size=16), optimizer=torch.optim.Adam(model.parameters(), 1e-2),
                       loss=torch.nn.CrossEntropyLoss(reduction="none"))
    report = check_epoch1_overfit(setup)
    assert report.metrics["chance"] == 0.5 and report.metrics["val_metric"] > 0.8
    assert "probes not run: the random-label probe gives each sample another sample's labels" in report.message


def test_what_a_lightning_step_records_on_the_module_is_put_back(digits) -> None:
    """Lightning's documented epoch-end pattern (training_step appends to self.training_step_outputs)
    kept every call of the check: 139 entries after no_epoch1_overfit, 542 after preflight, and the
    user's next Trainer epoch would average them in."""
    L = pytest.importorskip("lightning")
    from pytest_trainsanity import check_preflight

    Xtr, ytr, Xv, yv = digits

    class Recording(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10))
            self.training_step_outputs: list = []
            self.by_stage = {"train": [], "seen": 0}
            self.seen, self.total, self.in_place = 0, torch.zeros(()), torch.zeros(())

        def forward(self, x):
            return self.net(x)

        def training_step(self, batch, batch_idx):
            x, t = batch
            loss = torch.nn.functional.cross_entropy(self(x), t)
            self.training_step_outputs.append(loss.detach())
            self.by_stage["train"].append(batch_idx)
            self.by_stage["seen"] += 1
            self.seen += 1
            self.total = self.total + loss.detach()
            self.in_place += 1  # a plain tensor changed in place
            self.last_batch_idx = batch_idx  # an attribute the step adds
            return loss

        def configure_optimizers(self):
            return torch.optim.Adam(self.parameters(), lr=1e-3)

    torch.manual_seed(0)
    model = Recording()
    outputs, by_stage, total = model.training_step_outputs, model.by_stage, model.total
    train = DataLoader(TensorDataset(torch.as_tensor(Xtr), torch.as_tensor(ytr)), batch_size=32, shuffle=True)
    val = DataLoader(TensorDataset(torch.as_tensor(Xv), torch.as_tensor(yv)), batch_size=64)
    for check in (check_epoch1_overfit, check_preflight, check_lr_spikes):
        kwargs = {"epochs": 2} if check is check_lr_spikes else {}
        check(TrainSetup(model=model, train=train, val=val), **kwargs)
        assert model.training_step_outputs is outputs and outputs == []
        assert model.by_stage is by_stage and by_stage == {"train": [], "seen": 0}
        assert model.seen == 0 and model.total is total and float(total) == 0.0 and float(model.in_place) == 0.0
        assert not hasattr(model, "last_batch_idx")


def test_what_a_forward_changes_on_the_model_is_put_back(digits) -> None:
    """An Embedding(max_norm=...) renormalises its weight rows in the forward, even under no_grad, and the
    check's first forward (inputs_normalized's probe, a training check's validating forward) ran before any
    weight snapshot: the user's weights changed. A submodule created in forward stayed, so the user's next
    run differed. A LazyLinear it materialised came back as Linear(in_features=0) holding a 32x64 weight."""
    from pytest_trainsanity import check_normalization

    r = np.random.RandomState(0)
    ids, y = r.randint(0, 50, (120, 6)), r.randint(0, 2, 120)

    class Renorms(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(0)
            self.tokens = torch.nn.Embedding(50, 8, max_norm=1.0)
            self.head = torch.nn.Linear(8, 2)

        def forward(self, x):
            if not hasattr(self, "extra"):
                self.extra = torch.nn.Linear(8, 8)  # built on the first call
            return self.head(self.extra(self.tokens(x).mean(1)))

    model = Renorms()
    weights = model.tokens.weight.detach().clone()
    assert float(model.tokens.weight.norm(dim=1).max()) > 1.0  # rows a forward would renormalise
    check_normalization(TrainSetup(model=model, train=(ids, y), val=(ids, y)))
    check_epoch1_overfit(TrainSetup(model=model, train=(ids, y), val=(ids, y), optimizer=torch.optim.Adam(model.parameters()),
                                    loss=torch.nn.CrossEntropyLoss(), batch_size=16), probes=False)
    assert torch.equal(model.tokens.weight, weights)
    assert [n for n, _ in model.named_modules()] == ["", "tokens", "head"]

    Xtr, ytr = digits[0], digits[1]
    torch.manual_seed(0)
    lazy = torch.nn.Sequential(torch.nn.LazyLinear(32), torch.nn.ReLU(), torch.nn.Linear(32, 10))
    check_epoch1_overfit(TrainSetup(model=lazy, train=(Xtr, ytr), val=(Xtr, ytr), optimizer=torch.optim.Adam(lazy.parameters()),
                                    loss=torch.nn.CrossEntropyLoss()), probes=False)
    assert lazy[0].in_features == 64 and tuple(lazy[0].weight.shape) == (32, 64)  # materialised, and consistent
    assert lazy(torch.as_tensor(Xtr[:4])).shape == (4, 10)
