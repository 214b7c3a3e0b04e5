"""The torch adapter on real torch models and real digits data: traces,
split forms, state restoration bit for bit, determinism, errors."""

from __future__ import annotations

import copy
import warnings
import random

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

from pytest_trainsanity import (  # noqa: E402
    OptionError,
    SetupError,
    TrainSanityError,
    TrainSetup,
    assert_no_epoch1_overfit,
    check_epoch1_overfit,
)
from pytest_trainsanity.adapters.torch import TorchAdapter  # noqa: E402
from pytest_trainsanity.adapters.splits import open_splits as load_splits  # noqa: E402
from pytest_trainsanity.settings import RunSettings  # noqa: E402


def bn_net() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(64, 64), torch.nn.BatchNorm1d(64), torch.nn.ReLU(), torch.nn.Dropout(0.1), torch.nn.Linear(64, 10)
    )


def used_setup(digits, scheduler_step="epoch") -> TrainSetup:
    """A model whose optimizer, scheduler and BN buffers already hold state, as mid-project."""
    Xtr, ytr, Xv, yv = digits
    model = bn_net()
    opt = torch.optim.SGD(
        [{"params": model[0].parameters(), "lr": 0.05}, {"params": list(model[1].parameters()) + list(model[4].parameters())}],
        lr=0.1, momentum=0.9,
    )
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    for i in range(3):  # leave real state behind
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(torch.as_tensor(Xtr[i * 32 : (i + 1) * 32])), torch.as_tensor(ytr[i * 32 : (i + 1) * 32])).backward()
        opt.step()
    sched.step()
    model.eval()  # the user left it in eval mode; it must stay so
    return TrainSetup(model=model, train=(Xtr, ytr), val=(Xv, yv), optimizer=opt, loss=torch.nn.CrossEntropyLoss(),
                      scheduler=sched, scheduler_step=scheduler_step)


def state_of(setup: TrainSetup) -> dict:
    return {
        "tensors": [t.detach().clone() for t in [*setup.model.parameters(), *setup.model.buffers()]],
        "grads": [None if p.grad is None else p.grad.clone() for p in setup.model.parameters()],
        "training": [m.training for m in setup.model.modules()],
        "opt": copy.deepcopy(setup.optimizer.state_dict()),
        "sched": copy.deepcopy(setup.scheduler.state_dict()),
        "py": random.getstate(),
        "np": np.random.get_state()[1].copy(),
        "torch": torch.get_rng_state().clone(),
    }


def assert_same(before: dict, after: dict) -> None:
    assert all(torch.equal(a, b) for a, b in zip(before["tensors"], after["tensors"]))
    assert all((a is None and b is None) or torch.equal(a, b) for a, b in zip(before["grads"], after["grads"]))
    assert before["training"] == after["training"]
    assert before["sched"] == after["sched"]
    assert before["py"] == after["py"]
    assert np.array_equal(before["np"], after["np"])
    assert torch.equal(before["torch"], after["torch"])
    so, sa = before["opt"], after["opt"]
    assert so["param_groups"] == sa["param_groups"]
    assert so["state"].keys() == sa["state"].keys()
    for k in so["state"]:
        for name, value in so["state"][k].items():
            other = sa["state"][k][name]
            assert torch.equal(value, other) if isinstance(value, torch.Tensor) else value == other


def test_state_is_restored_bit_for_bit_after_a_check(digits) -> None:
    setup = used_setup(digits)
    before = state_of(setup)
    report = check_epoch1_overfit(setup, epochs=2)
    assert report.metrics["steps"] == 90
    assert_same(before, state_of(setup))


def test_state_is_restored_after_a_check_that_raises(digits) -> None:
    setup = used_setup(digits)
    before = state_of(setup)
    with pytest.raises(TrainSanityError, match=r"^no_epoch1_overfit FAILED"):
        assert_no_epoch1_overfit(setup, max_gap=0.0, probes=False)
    assert_same(before, state_of(setup))


def test_state_is_restored_when_training_itself_raises(digits) -> None:
    setup = used_setup(digits)
    calls = {"n": 0}

    def exploding_loss(out, y):
        calls["n"] += 1
        if calls["n"] > 4:
            raise FloatingPointError("loss exploded at step 5")
        return torch.nn.functional.cross_entropy(out, y)

    bad = TrainSetup(model=setup.model, train=setup.train, val=setup.val, optimizer=setup.optimizer, loss=exploding_loss,
                     scheduler=setup.scheduler)
    before = state_of(setup)
    with pytest.raises(SetupError, match=r"Training step 4 failed on a batch as the pipeline yields it \(x: float32 "
                                         r"\(32, 64\); target int64 \(32,\)\): FloatingPointError: loss exploded at step 5"):
        check_epoch1_overfit(bad)  # the 1st call is the validation before training
    assert_same(before, state_of(setup))


def test_trace_records_every_step(digits) -> None:
    setup = used_setup(digits, scheduler_step="batch")
    adapter = TorchAdapter(setup.model, setup, load_splits(setup), RunSettings(device="cpu"))
    with adapter:
        trace = adapter.train(epochs=2)
        again = adapter.train(epochs=2)
        slow = adapter.train(epochs=1, lr_scale=0.1)
        detail = adapter.train(epochs=2, detail=True)
    assert trace.steps == 90 and trace.loss.shape == (90,) and trace.lr.shape == (90, 2)
    # a plain pass records no gradient norm or update ratio (only lr_spike_explained's detail pass reads them)
    assert np.isnan(trace.grad_norm).all() and np.isnan(trace.update_ratio).all()
    np.testing.assert_array_equal(detail.loss, trace.loss)  # recording them changes nothing the pass computes
    sampled = ~np.isnan(detail.update_ratio)
    assert np.all(detail.grad_norm > 0)  # detail: every step
    assert sampled.sum() == 2 * 12 and sampled[0] and sampled[4] and sampled[45] and not sampled[2]  # every 4th of each epoch
    assert np.all(detail.update_ratio[sampled][:3] > 0)
    assert detail.update_ratio[sampled][-1] < 1e-12  # halving every step: the updates vanish, and the trace shows it
    assert list(np.bincount(trace.epoch)) == [45, 45]
    assert trace.train_metric.shape == trace.val_metric.shape == (2,)
    # StepLR(step_size=1, gamma=0.5) stepped per batch from the restored state: lr halves every step
    assert trace.lr[1, 0] == pytest.approx(trace.lr[0, 0] / 2)
    assert slow.lr[0, 0] == pytest.approx(trace.lr[0, 0] / 10)
    np.testing.assert_array_equal(trace.loss, again.loss)  # deterministic from the snapshot
    assert trace.val_pred.shape == (360,)
    assert adapter.info().has_batchnorm and adapter.info().n_params == sum(p.numel() for p in setup.model.parameters())


def test_step_budget_truncates(digits) -> None:
    setup = used_setup(digits)
    adapter = TorchAdapter(setup.model, setup, load_splits(setup), RunSettings(device="cpu"))
    with adapter:
        trace = adapter.train(epochs=3, max_steps=50)
    assert trace.steps == 50 and trace.truncated and trace.train_metric.shape == (2,)


@pytest.mark.parametrize("form", ["tensors", "dataset", "loader"])
def test_split_forms(digits, form: str) -> None:
    Xtr, ytr, Xv, yv = digits
    tr = (torch.as_tensor(Xtr), torch.as_tensor(ytr))
    va = (torch.as_tensor(Xv), torch.as_tensor(yv))
    if form == "dataset":
        tr, va = TensorDataset(*tr), TensorDataset(*va)
    elif form == "loader":
        tr, va = DataLoader(TensorDataset(*tr), batch_size=64, shuffle=True), DataLoader(TensorDataset(*va), batch_size=100)
    setup = TrainSetup(model=bn_net, train=tr, val=va, optimizer=lambda p: torch.optim.Adam(p, 1e-3), loss="cross_entropy")
    report = check_epoch1_overfit(setup, probes=False)
    assert report.passed
    assert report.metrics["steps"] == (23 if form == "loader" else 45)  # the loader's batch size wins
    assert report.metrics["n_train"] == 1437 and report.metrics["n_val"] == 360


def test_factory_is_built_seeded_and_gives_the_same_numbers(digits) -> None:
    Xtr, ytr, Xv, yv = digits
    make = lambda: TrainSetup(model=bn_net, train=(Xtr, ytr), val=(Xv, yv),  # noqa: E731
                              optimizer=lambda p: torch.optim.Adam(p, 1e-3), loss="cross_entropy")
    a, b = check_epoch1_overfit(make(), probes=False), check_epoch1_overfit(make(), probes=False)
    drop = lambda m: {k: v for k, v in m.items() if k != "seconds"}  # noqa: E731 - wall time varies
    assert drop(a.metrics) == drop(b.metrics) and a.message == b.message


def test_factory_with_an_optimizer_instance_is_an_error(digits) -> None:
    Xtr, ytr, Xv, yv = digits
    opt = torch.optim.Adam(bn_net().parameters())
    setup = TrainSetup(model=bn_net, train=(Xtr, ytr), val=(Xv, yv), optimizer=opt, loss="cross_entropy")
    with pytest.raises(SetupError, match="not this model's; it was built for another model instance"):
        check_epoch1_overfit(setup)


def test_binary_single_logit_and_regression(digits) -> None:
    Xtr, ytr, Xv, yv = digits
    torch.manual_seed(0)
    binary = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 1))
    setup = TrainSetup(model=binary, train=(Xtr, (ytr % 2).astype(np.int64)), val=(Xv, (yv % 2).astype(np.int64)),
                       optimizer=torch.optim.Adam(binary.parameters(), 1e-3), loss=torch.nn.BCEWithLogitsLoss())
    report = check_epoch1_overfit(setup)
    assert report.passed and report.metrics["val_metric"] > 0.8 and report.metrics["chance"] == 0.5
    torch.manual_seed(0)
    reg = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 1))
    target = lambda X: (X[:, :8].sum(axis=1, keepdims=True) / 3).astype(np.float32)  # noqa: E731
    setup = TrainSetup(model=reg, train=(Xtr, target(Xtr)), val=(Xv, target(Xv)), task="regression",
                       optimizer=torch.optim.Adam(reg.parameters(), 1e-2), loss="mse")
    report = check_epoch1_overfit(setup, epochs=3)
    assert report.passed and report.metrics["val_metric"] > 0.5
    assert "train R^2" in report.message and report.metrics["chance"] is None


def test_cuda_unavailable_is_a_clear_option_error(digits) -> None:
    if torch.cuda.is_available():
        pytest.skip("a GPU is visible here")
    setup = used_setup(digits)
    with pytest.raises(OptionError, match=r"device 'cuda' was asked for but torch.cuda.is_available\(\) is False"):
        check_epoch1_overfit(setup, device="cuda")


def _schedule(kind: str, opt: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LRScheduler:
    S = torch.optim.lr_scheduler
    if kind == "onecycle":
        return S.OneCycleLR(opt, max_lr=0.1, total_steps=200)
    if kind == "cyclic":
        return S.CyclicLR(opt, base_lr=0.01, max_lr=0.1, step_size_up=20)
    if kind == "sequential":  # warm-up then cosine: at the milestone the cosine recomputes from its own base_lrs
        return S.SequentialLR(opt, [S.LinearLR(opt, 0.1, 1.0, 10), S.CosineAnnealingLR(opt, 80)], [10])
    return S.ChainedScheduler([S.LinearLR(opt, 0.1, 1.0, 10), S.ExponentialLR(opt, 0.99)])


@pytest.mark.parametrize("kind", ["onecycle", "cyclic", "sequential", "chained"])
def test_lr_probe_scales_schedules_that_recompute_the_rate(digits, kind: str) -> None:
    Xtr, ytr, Xv, yv = digits
    model = bn_net()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    sched = _schedule(kind, opt)
    setup = TrainSetup(model=model, train=(Xtr, ytr), val=(Xv, yv), optimizer=opt, loss="cross_entropy",
                       scheduler=sched, scheduler_step="batch")
    adapter = TorchAdapter(model, setup, load_splits(setup), RunSettings(device="cpu"))
    before = copy.deepcopy(sched.state_dict())
    with adapter:
        full = adapter.train(epochs=2)
        low = adapter.train(epochs=2, lr_scale=0.1)
    np.testing.assert_allclose(low.lr[:, 0], full.lr[:, 0] * 0.1, rtol=1e-6)
    assert sched.state_dict() == before


def test_replay_reproduces_the_recorded_epoch_and_interventions_act(digits) -> None:
    setup = used_setup(digits)
    data = load_splits(setup, ("train", "val"))
    adapter = TorchAdapter(setup.model, setup, data, RunSettings(device="cpu"))
    before = state_of(setup)
    with adapter:
        trace = adapter.train(epochs=4, detail=True)
        assert len(trace.checkpoints) == 4 and len(trace.orders) == 4 and len(trace.bn_drift) == 4
        assert np.isfinite(trace.bn_drift).all() and (trace.bn_drift > 0).all()
        assert np.isfinite(trace.momentum_norm).sum() == np.isfinite(trace.update_ratio).sum() > 0
        for epoch in (1, 3):  # as recorded: the same numbers, bit for bit on CPU
            again = adapter.replay(trace, epoch)
            assert again["val_acc"] == trace.val_metric[epoch] and again["train_loss"] == trace.train_loss[epoch]
        assert adapter.interventions() == {"hold_lr": "", "reshuffle": "", "reset_momentum": "", "freeze_bn": ""}
        bn = setup.model[1]
        adapter.replay(trace, 2, "freeze_bn")
        assert torch.equal(bn.running_mean, trace.checkpoints[2]["tensors"]["1.running_mean"])
        assert bn.momentum == 0.1  # restored after the replay
        assert adapter.replay(trace, 2, "reshuffle")["val_loss"] != trace.val_loss[2]
        held = adapter.replay(trace, 2, "hold_lr")
        assert held["val_loss"] != trace.val_loss[2]  # StepLR halves the lr each epoch: holding it matters
        adapter.replay(trace, 2, "reset_momentum")
    assert_same(before, state_of(setup))


def test_a_model_without_batch_norm_or_momentum_says_which_interventions_do_not_apply(digits) -> None:
    Xtr, ytr, Xv, yv = digits
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 10))
    setup = TrainSetup(model=model, train=(Xtr, ytr), val=(Xv, yv), optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
                       loss=torch.nn.CrossEntropyLoss())
    adapter = TorchAdapter(model, setup, load_splits(setup, ("train", "val")), RunSettings(device="cpu"))
    assert adapter.interventions() == {"hold_lr": "", "reshuffle": "", "reset_momentum": "SGD keeps no momentum",
                                       "freeze_bn": "the model has no batch-norm layer"}


def test_a_failure_while_entering_leaves_the_model_as_it_was(digits, monkeypatch) -> None:
    setup = used_setup(digits)
    adapter = TorchAdapter(setup.model, setup, load_splits(setup, ("train", "val")), RunSettings(device="cpu"))
    before = state_of(setup)

    def out_of_memory() -> None:
        raise MemoryError("device full")

    monkeypatch.setattr(adapter, "_tensor_data", out_of_memory)  # our own method, not the framework
    with pytest.raises(MemoryError):
        adapter.__enter__()
    assert_same(before, state_of(setup))


def test_seed_torch_draws_what_manual_seed_draws_and_seeded_puts_the_state_back() -> None:
    from pytest_trainsanity.rng import seed_torch, seeded

    torch.manual_seed(11)
    want = (torch.rand(5), torch.randperm(20), torch.randn(3))
    seed_torch(torch, 11)
    got = (torch.rand(5), torch.randperm(20), torch.randn(3))
    assert all(torch.equal(a, b) for a, b in zip(want, got))
    torch.manual_seed(123)
    before = torch.get_rng_state()
    with seeded(7):
        inside = torch.rand(4)
    assert torch.equal(torch.get_rng_state(), before)
    torch.manual_seed(7)
    assert torch.equal(inside, torch.rand(4))


def test_clone_copies_values_and_strides_whether_or_not_it_asks_for_huge_pages() -> None:
    from pytest_trainsanity.adapters.torch_data import HUGE_FROM, clone, clone_tree

    big = torch.randn(1536, 2048)  # 12 MB: above HUGE_FROM, so the huge-page path
    assert big.numel() * 4 >= HUGE_FROM
    for t in (big, big.t(), big[::2, 1:], torch.randn(8, 3).t(), torch.arange(10)):
        c = clone(t)
        assert torch.equal(c, t) and c.stride() == t.clone().stride() and c.dtype == t.dtype
        assert c.data_ptr() != t.data_ptr() and not c.requires_grad
        c.add_(1)  # a copy: the original is untouched
        assert not torch.equal(c, t)
    state = {"state": {0: {"step": torch.tensor(3.0), "exp_avg": big}}, "param_groups": [{"lr": 0.1, "params": [0]}]}
    copied = clone_tree(state)
    assert copied == {**copied, "param_groups": [{"lr": 0.1, "params": [0]}]}
    assert torch.equal(copied["state"][0]["exp_avg"], big) and copied["state"][0]["exp_avg"] is not big


def test_the_users_own_optimizer_state_groups_and_gradients_come_back_not_copies(digits) -> None:
    """The optimizer's state and param groups are set aside while a check steps copies of them, and
    the gradients the user left are set aside as they are: afterwards the very same objects (same
    memory) hold the same values, through a check that trains once, one that resets between probes,
    and a full training check."""
    from pytest_trainsanity import check_params_update, check_preflight

    Xtr, ytr, Xv, yv = digits
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 2048), torch.nn.ReLU(), torch.nn.Linear(2048, 1024),
                                torch.nn.ReLU(), torch.nn.Linear(1024, 10))  # an 8 MB weight: the huge-page copy
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for i in range(2):  # Adam state and gradients left behind, as mid-project
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(torch.as_tensor(Xtr[:32] / 16)), torch.as_tensor(ytr[:32])).backward()
        opt.step()
    setup = TrainSetup(model=model, train=(Xtr / 16, ytr), val=(Xv / 16, yv), optimizer=opt,
                       loss=torch.nn.CrossEntropyLoss(), batch_size=32)
    state, groups, group0 = opt.state, opt.param_groups, opt.param_groups[0]
    tensors = {(id(p), k): (v, v.data_ptr(), v.clone()) for p, s in state.items() for k, v in s.items()}
    grads = [(p, p.grad, p.grad.clone()) for p in model.parameters()]
    lr_before = dict(group0)
    for check in (check_params_update, check_preflight, lambda s: check_epoch1_overfit(s, probes=False, max_steps=20)):
        check(setup)
        assert opt.state is state and opt.param_groups is groups and opt.param_groups[0] is group0
        assert dict(group0) == lr_before
        for p, s in opt.state.items():
            for k, v in s.items():
                same, ptr, value = tensors[(id(p), k)]
                assert v is same and v.data_ptr() == ptr and torch.equal(v, value)
        for p, g, value in grads:
            assert p.grad is g and torch.equal(g, value)


class ReadOnlyWrapper(torch.optim.Optimizer):
    """An optimizer wrapper in the manner of those that delegate to an inner optimizer and expose its
    ``state`` / ``param_groups`` as read-only properties (they cannot be set aside by assignment)."""

    def __init__(self, inner: torch.optim.Optimizer) -> None:  # no super().__init__: a pure wrapper
        self.inner, self.defaults = inner, inner.defaults

    @property
    def state(self):  # type: ignore[override]
        return self.inner.state

    @property
    def param_groups(self):  # type: ignore[override]
        return self.inner.param_groups

    def step(self, closure=None):  # type: ignore[override]
        return self.inner.step(closure)

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.inner.zero_grad(set_to_none)

    def state_dict(self):  # type: ignore[override]
        return self.inner.state_dict()

    def load_state_dict(self, state_dict) -> None:  # type: ignore[override]
        self.inner.load_state_dict(state_dict)


def test_an_optimizer_whose_state_cannot_be_assigned_is_stepped_in_place_and_put_back(digits) -> None:
    """A wrapper whose ``state`` / ``param_groups`` are read-only properties used to end every check
    in ``AttributeError: property 'state' ... has no setter``. It is stepped in place and put back from
    a copy of its state dict: the model, the optimizer's state (Adam moments, step), its learning rate
    (which the lr/10 probe scales) and the scheduler come back bit for bit, through the probes, a
    pre-flight check that snapshots lazily, and two checks in a row."""
    from pytest_trainsanity import check_params_update, check_preflight

    Xtr, ytr, Xv, yv = digits
    model = bn_net()
    opt = ReadOnlyWrapper(torch.optim.Adam(model.parameters(), lr=2e-3))
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    for i in range(2):  # Adam state left behind, as mid-project
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(torch.as_tensor(Xtr[i * 32 : (i + 1) * 32])),
                                          torch.as_tensor(ytr[i * 32 : (i + 1) * 32])).backward()
        opt.step()
    sched.step()
    setup = TrainSetup(model=model, train=(Xtr, ytr), val=(Xv, yv), optimizer=opt, loss=torch.nn.CrossEntropyLoss(),
                       scheduler=sched, scheduler_step="epoch", batch_size=32)
    before = state_of(setup)
    first = check_epoch1_overfit(setup, max_steps=20)
    assert first.metrics["steps"] == 20 and np.isfinite(first.metrics["gap"])
    assert_same(before, state_of(setup))
    for check in (check_params_update, check_preflight):
        check(setup)
        assert_same(before, state_of(setup))
    again = check_epoch1_overfit(setup, max_steps=20)
    assert again.metrics == {**again.metrics, "train_metric": first.metrics["train_metric"],
                             "val_metric": first.metrics["val_metric"]}
    assert_same(before, state_of(setup))


class _CastsInts(torch.nn.Module):
    """A table of int64 columns (df.to_numpy()) cast in forward: numbers, not ids."""

    def __init__(self) -> None:
        super().__init__()
        self.body = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))

    def forward(self, x):
        x = x[:, :3]  # followed: still the integer field
        mask = x != 0  # a mask made from it settles nothing
        return self.body(x.float() * mask)


class _Embeds(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.tokens = torch.nn.Embedding(100, 4)
        self.head = torch.nn.Linear(4, 2)

    def forward(self, x):
        return self.head(self.tokens(x.long()).mean(1))


class _Indexes(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.table = torch.nn.Parameter(torch.randn(100, 2))

    def forward(self, x):
        return self.table[x].mean(1)


class _Mixed(torch.nn.Module):
    """Category codes and counts in one int64 array: read both ways."""

    def __init__(self) -> None:
        super().__init__()
        self.codes = torch.nn.Embedding(100, 4)
        self.head = torch.nn.Linear(6, 2)

    def forward(self, x):
        return self.head(torch.cat([self.codes(x[:, 0]), x[:, 1:].float()], 1))


class _Stacks(torch.nn.Module):
    """Columns regrouped through a list (torch.stack of unbind) before the cast: still numbers."""

    def __init__(self) -> None:
        super().__init__()
        self.head = torch.nn.Linear(3, 2)

    def forward(self, x):
        return self.head(torch.stack(list(x.unbind(1)), 1).float())


class _PrependsCls(torch.nn.Module):
    """Token ids behind a prepended CLS id (torch.cat of a list), with a float mask of their shape."""

    def __init__(self) -> None:
        super().__init__()
        self.tokens = torch.nn.Embedding(101, 4)
        self.head = torch.nn.Linear(4, 2)

    def forward(self, x):
        ids = torch.cat([torch.full((len(x), 1), 100), x], 1)
        weights = torch.ones_like(ids, dtype=torch.float32)  # its shape, not its values
        return self.head((self.tokens(ids) * weights[..., None]).mean(1))


class _Standardises(torch.nn.Module):
    """Counts cast and standardised by the forward itself, with train statistics in buffers."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean", torch.full((3,), 50.0))
        self.register_buffer("std", torch.full((3,), 29.0))
        self.head = torch.nn.Linear(3, 2)

    def forward(self, x):
        return self.head((x.float() - self.mean) / self.std)


class _BatchNorms(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.bn, self.head = torch.nn.BatchNorm1d(3), torch.nn.Linear(3, 2)

    def forward(self, x):
        return self.head(self.bn(x.float()))


class _GathersByKeyword(torch.nn.Module):
    """Counts scattered as values (scatter's src) and gathered by keyword: the index is another tensor."""

    def __init__(self) -> None:
        super().__init__()
        self.head = torch.nn.Linear(3, 2)

    def forward(self, x):
        order = torch.arange(3).expand(len(x), 3)
        placed = torch.zeros_like(x).scatter(1, order, x)  # x is scatter's src: its values, not an index
        return self.head(torch.gather(input=placed, dim=1, index=order).float())


class _CatsThenNorms(torch.nn.Module):
    """Cast parts put back together in a list (torch.cat) before a batch norm: still standardised."""

    def __init__(self) -> None:
        super().__init__()
        self.bn, self.head = torch.nn.BatchNorm1d(3), torch.nn.Linear(3, 2)

    def forward(self, x):
        return self.head(self.bn(torch.cat([x[:, :1].float(), x[:, 1:].float()], 1)))


@pytest.mark.parametrize("model, role, call", [
    (_CastsInts, "numbers", "float()"), (_Embeds, "ids", "embedding()"), (_Indexes, "ids", "an index (weight[x])"),
    (_Mixed, "mixed", "embedding() in module 'codes' and float() in the model's forward"), (_Stacks, "numbers", "float()"),
    (_PrependsCls, "ids", "embedding()"), (_Standardises, "standardised", "a division"),
    (_BatchNorms, "standardised", "batch_norm()"), (_GathersByKeyword, "numbers", "float()"),
    (_CatsThenNorms, "standardised", "batch_norm()")])
def test_the_forward_shows_whether_integer_inputs_are_ids_or_numbers(model, role, call) -> None:
    from pytest_trainsanity.adapters.torch_uses import first_uses

    torch.manual_seed(0)
    net = model()
    x = torch.randint(0, 100, (4, 3))
    before = [t.clone() for t in net.state_dict().values()]
    uses = first_uses(net, (x,), {}, {"x": x})
    assert (uses["x"].role, uses["x"].call) == (role, call)
    assert net.training and all(torch.equal(a, b) for a, b in zip(before, net.state_dict().values()))
    if role == "numbers":  # float inputs: nothing to decide
        assert first_uses(net, (x.float(),), {}, {"x": x.float()}) == {}


def test_the_adapter_names_integer_fields_its_model_reads_as_numbers() -> None:
    r = np.random.RandomState(0)
    X, y = r.randint(0, 100, (64, 3)), r.randint(0, 2, 64)
    for model, numbers in ((_CastsInts, ("x",)), (_Embeds, ())):
        torch.manual_seed(0)
        net = model()
        setup = TrainSetup(model=net, train=(X, y), val=(X, y), optimizer=torch.optim.SGD(net.parameters(), lr=0.1),
                           loss=torch.nn.CrossEntropyLoss(), batch_size=16)
        adapter = TorchAdapter(net, setup, load_splits(setup), RunSettings(device="cpu"))
        assert adapter.number_fields() == numbers


def test_an_integer_mask_stays_a_mask_however_the_forward_uses_it() -> None:
    """Mean pooling multiplies by the int64 attention mask (a float result): it was read as "numbers" and
    judged as a feature; (1.0 - mask) * min made it "standardised"."""
    from pytest_trainsanity.adapters.torch_uses import first_uses

    class Pools(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.tokens, self.head = torch.nn.Embedding(100, 4), torch.nn.Linear(4, 2)

        def forward(self, input_ids, attention_mask):
            h = self.tokens(input_ids) * attention_mask.unsqueeze(-1)
            bias = (1.0 - attention_mask) * -1e4  # the additive mask of attention layers
            return self.head(h.sum(1) / attention_mask.sum(1, keepdim=True)) + bias[:, :1]

    ids, mask = torch.randint(0, 100, (4, 6)), torch.ones(4, 6, dtype=torch.long)
    uses = first_uses(Pools(), (), {"input_ids": ids, "attention_mask": mask}, {"input_ids": ids, "attention_mask": mask})
    assert uses["input_ids"].role == "ids" and "attention_mask" not in uses


def test_a_compiled_model_is_named_by_the_class_it_compiled_and_comes_back_unchanged(digits) -> None:
    """torch.compile's wrapper was named 'Model: OptimizedModule' in every message."""
    Xtr, ytr, Xv, yv = digits
    torch.manual_seed(0)
    inner = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10))
    model = torch.compile(inner, backend="eager")  # no C compiler needed
    before = {k: v.clone() for k, v in inner.state_dict().items()}
    report = check_epoch1_overfit(TrainSetup(model=model, train=(Xtr, ytr), val=(Xv, yv), loss=torch.nn.CrossEntropyLoss(),
                                             optimizer=torch.optim.Adam(model.parameters(), 1e-3)), probes=False)
    assert "Model: Sequential via torch.compile (torch on cpu), 2,410 trainable parameters" in report.message
    assert "OptimizedModule" not in report.message
    assert all(torch.equal(v, before[k]) for k, v in inner.state_dict().items())


def _head(outputs: int, flat: bool = False) -> torch.nn.Module:
    torch.manual_seed(0)
    layers = [torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, outputs)]
    return torch.nn.Sequential(*layers, *([torch.nn.Flatten(0)] if flat else []))


@pytest.mark.parametrize("case", ["regression_vector", "one_logit_flat", "class_id_column", "float_class_ids"])
def test_array_labels_reach_the_loss_in_the_outputs_format(digits, case: str) -> None:
    """Array splits are cut into batches by the check, so their labels are handed to the loss as a
    training loop would: in the output's shape for one output per sample (no (N, 1) vs (N,)
    broadcasting), class ids as a long vector."""
    Xtr, ytr, Xv, yv = digits
    kw: dict = {}
    if case == "regression_vector":  # y (N,) against an (N, 1) output: MSELoss broadcast it to N x N pairs
        model, ys, loss, kw = _head(1), (ytr.astype(np.float32), yv.astype(np.float32)), torch.nn.MSELoss(), {"task": "regression"}
    elif case == "one_logit_flat":  # integer 0/1 labels for a model that returns a vector of logits
        model, ys, loss = _head(1, flat=True), (ytr % 2, yv % 2), torch.nn.BCEWithLogitsLoss()
    elif case == "class_id_column":
        model, ys, loss = _head(10), (ytr[:, None], yv[:, None]), torch.nn.CrossEntropyLoss()
    else:  # ids read from a float column (pandas gives float64 when a column held NaN once)
        model, ys, loss = _head(10), (ytr.astype(np.float64), yv.astype(np.float64)), torch.nn.CrossEntropyLoss()
    setup = TrainSetup(model=model, train=(Xtr, ys[0]), val=(Xv, ys[1]), optimizer=lambda p: torch.optim.Adam(p, 1e-3),
                       loss=loss, **kw)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch's 'Using a target size that is different to the input size'
        report = check_epoch1_overfit(setup, epochs=3)
    floor = {"regression_vector": 0.3, "one_logit_flat": 0.75}.get(case, 0.8)  # broadcast, R^2 stayed below 0
    assert report.metrics["train_metric"] > floor, report.message
