"""The torch pre-flight probes on every batch form: arrays, a DataLoader of (x, y), two inputs,
Hugging Face dict batches (the model's own loss, integer token ids), a LightningModule's
training_step; and the measurements each planted fault should move (batch norm, frozen
parameters, a binary head with one output). The model is bit for bit the same after each probe."""

from __future__ import annotations

import copy

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch.utils.data import DataLoader, Dataset, TensorDataset  # noqa: E402

from pytest_trainsanity import (  # noqa: E402
    TrainSetup,
    check_batch_independence,
    check_batch_mix,
    check_finite_training,
    check_loss_at_init,
    check_overfit_one_batch,
    check_params_update,
    check_preflight,
)


def mlp(*extra: torch.nn.Module, out: int = 10) -> torch.nn.Sequential:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(64, 64), *extra, torch.nn.ReLU(), torch.nn.Linear(64, out))


def unchanged(model: torch.nn.Module, fn, *args, **kwargs):
    """Run ``fn`` and assert the model's state is bit for bit what it was."""
    before = copy.deepcopy(model.state_dict())
    out = fn(*args, **kwargs)
    after = model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    return out


def test_batch_norm_in_eval_mode_is_independent_and_named(digits) -> None:
    Xtr, ytr, Xv, yv = digits
    model = mlp(torch.nn.BatchNorm1d(64), torch.nn.Dropout(0.1))
    setup = TrainSetup(model=model, train=(Xtr, ytr), val=(Xv, yv), optimizer=torch.optim.Adam(model.parameters()), loss="ce")
    report = unchanged(model, check_batch_independence, setup)
    assert report.passed and report.metrics["leak"] == 0.0
    assert "1 batch-norm layer(s) (1) mix samples in train mode, which is expected, and were checked in eval mode" in report.message
    one = unchanged(model, check_overfit_one_batch, setup)
    assert one.passed, one.message


def test_two_inputs_from_a_loader(digits) -> None:
    Xtr, ytr, Xv, yv = digits

    class Two(torch.nn.Module):
        def __init__(self, mix: bool = False) -> None:
            super().__init__()
            torch.manual_seed(0)
            self.a, self.b, self.head, self.mix = torch.nn.Linear(32, 16), torch.nn.Linear(32, 16), torch.nn.Linear(32, 10), mix

        def forward(self, left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
            r = self.b(right)
            if self.mix:
                r = r - r.mean(dim=0, keepdim=True)  # batch statistics in forward
            return self.head(torch.cat([self.a(left), r], dim=1))

    data = TensorDataset(torch.as_tensor(Xtr[:, :32]), torch.as_tensor(Xtr[:, 32:]), torch.as_tensor(ytr))
    for mix, passed in ((False, True), (True, False)):
        model = Two(mix)
        loader = DataLoader(data, batch_size=32, shuffle=True, generator=torch.Generator().manual_seed(0))
        setup = TrainSetup(model=model, train=loader, val=(Xv, yv), optimizer=torch.optim.Adam(model.parameters()), loss="ce")
        report = unchanged(model, check_batch_independence, setup)
        assert report.passed is passed, report.message
        if not passed:
            assert "they mix between the output of module 'b' and the input of module 'head'" in report.message
        assert unchanged(model, check_batch_mix, setup).passed


def test_frozen_parameters_and_an_unused_module(digits) -> None:
    Xtr, ytr, Xv, yv = digits

    class Unused(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(0)
            self.body, self.spare = mlp(), torch.nn.Linear(64, 10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.body(x)

    model = Unused()
    model.body[0].bias.requires_grad_(False)
    setup = TrainSetup(model=model, train=(Xtr, ytr), val=(Xv, yv),
                       optimizer=torch.optim.AdamW(model.parameters(), weight_decay=0.1), loss="ce")
    report = unchanged(model, check_params_update, setup)
    assert not report.passed and report.metrics["offenders"] == 2
    assert "  - spare.weight: no gradient path: unused in forward, or detached (.detach(), .data" in report.message
    assert "body.0.bias" not in report.message.split("Likely")[0].split("\n", 2)[-1]  # frozen and unchanged: fine
    assert "1 of 1 frozen stayed bit-identical" in report.message


def test_binary_head_with_one_output_and_regression(digits) -> None:
    Xtr, ytr, Xv, yv = digits
    yb, yvb = (ytr >= 5).astype(np.int64), (yv >= 5).astype(np.int64)
    model = mlp(out=1)
    setup = TrainSetup(model=model, train=(Xtr, yb), val=(Xv, yvb), optimizer=torch.optim.Adam(model.parameters()),
                       loss=torch.nn.BCEWithLogitsLoss())
    report = unchanged(model, check_loss_at_init, setup)
    assert report.passed and abs(report.metrics["expected_loss"] - np.log(2)) < 0.01, report.message
    regression = mlp(out=1)
    reg = TrainSetup(model=regression, train=(Xtr, ytr.astype(np.float32)[:, None]), val=(Xv, yv.astype(np.float32)[:, None]),
                     optimizer=torch.optim.Adam(regression.parameters(), lr=1e-2), loss=torch.nn.MSELoss(), task="regression")
    skipped = check_loss_at_init(reg)
    assert skipped.skipped.startswith("loss_at_init applies to classification") and skipped.verdict == "skipped"
    assert check_batch_mix(reg).skipped == "batches_mixed does not apply: regression: batches have no class mix"
    fit = unchanged(regression, check_overfit_one_batch, reg, steps=400)
    assert fit.passed and fit.metrics["one_batch_score"] >= 0.99, fit.message


def test_lightning_training_step(digits) -> None:
    L = pytest.importorskip("lightning")
    Xtr, ytr, Xv, yv = digits

    class Module(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = mlp()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net(x)

        def training_step(self, batch, batch_idx):
            x, y = batch
            return torch.nn.functional.cross_entropy(self(x), y)

        def configure_optimizers(self):
            return torch.optim.Adam(self.parameters(), lr=1e-3)

    module = Module()
    loader = DataLoader(TensorDataset(torch.as_tensor(Xtr), torch.as_tensor(ytr)), batch_size=32, shuffle=True)
    report = unchanged(module, check_preflight, TrainSetup(model=module, train=loader, val=(Xv, yv)))
    assert report.passed, report.message
    assert "- loss_at_init passed" in report.message and "training_step" not in report.message.split("\n")[0]


def test_hugging_face_dict_batches() -> None:
    transformers = pytest.importorskip("transformers")
    rng = np.random.default_rng(0)
    ids = rng.integers(5, 100, (256, 12))
    labels = (ids[:, 0] % 2).astype(np.int64)

    class Encoded(Dataset):
        def __len__(self) -> int:
            return len(labels)

        def __getitem__(self, i: int) -> dict:
            return {"input_ids": torch.as_tensor(ids[i]), "attention_mask": torch.ones(12, dtype=torch.long),
                    "labels": torch.as_tensor(labels[i])}

    torch.manual_seed(0)
    bert = transformers.BertForSequenceClassification(transformers.BertConfig(
        vocab_size=100, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=16, num_labels=2))
    loader = DataLoader(Encoded(), batch_size=16, shuffle=True)
    setup = TrainSetup(model=bert, train=loader, val=loader, optimizer=torch.optim.AdamW(bert.parameters(), lr=1e-3))
    mixing = unchanged(bert, check_batch_independence, setup)
    # token ids have no gradient: the word embeddings' output is differentiated (it was skipped before)
    assert mixing.passed and not mixing.skipped and "measured at the output of embedding " \
        "'bert.embeddings.word_embeddings'" in mixing.message, mixing.message
    init = unchanged(bert, check_loss_at_init, setup)
    assert init.passed and abs(init.metrics["expected_loss"] - np.log(2)) < 0.01, init.message
    params = unchanged(bert, check_params_update, setup)
    assert "bert.pooler" not in params.message or params.passed, params.message
    assert unchanged(bert, check_finite_training, setup, steps=5).passed
    assert bert.config.problem_type is None  # transformers sets it on its first loss; the checks put it back


def test_nan_from_a_log_of_zero_names_the_step_and_the_module(digits) -> None:
    Xtr, ytr, Xv, yv = digits

    class LogHead(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.log(torch.relu(x))  # log(0) = -inf where a unit is off

    model = torch.nn.Sequential(*mlp(), LogHead())  # log of the logits: -inf wherever a logit is <= 0
    setup = TrainSetup(model=model, train=(Xtr, ytr), val=(Xv, yv), optimizer=torch.optim.Adam(model.parameters()), loss="ce")
    report = unchanged(model, check_finite_training, setup)
    assert not report.passed and report.metrics["bad_step"] == 1, report.message
    assert "the first module whose output was non-finite on a replay of that step: '3' (LogHead)" in report.message
    assert "log of zero / division (evidence score 0.80)" in report.message


def test_one_batch_records_the_lr_of_every_step_as_the_scheduler_sets_it(digits) -> None:
    """The one-batch run keeps the lr each step applied, so a schedule that decays to ~0 within the run is measured,
    and ``lr`` stays the schedule's peak (a warm-up starts low); the user's optimizer and scheduler are restored."""
    from pytest_trainsanity.adapters.splits import open_splits
    from pytest_trainsanity.adapters.torch import TorchAdapter
    from pytest_trainsanity.settings import RunSettings

    Xtr, ytr, _, _ = digits
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: min(k + 1, 4) * 0.5 ** max(k - 3, 0))  # warm-up, then halve
    setup = TrainSetup(model=model, train=(Xtr, ytr), optimizer=opt, loss="ce", scheduler=sched, scheduler_step="batch")
    adapter = TorchAdapter(model, setup, open_splits(setup, ("train",)), RunSettings(device="cpu"))

    def one_batch(steps: int):
        with adapter:
            return adapter.one_batch(steps)

    run = unchanged(model, one_batch, 8)
    assert np.allclose(run.lrs, [0.1, 0.2, 0.3, 0.4, 0.2, 0.1, 0.05, 0.025]) and run.lr == pytest.approx(0.4)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1) and sched.last_epoch == 0
