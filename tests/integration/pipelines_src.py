"""Source of the ``pipelines`` module written into pytester projects: real torch pipelines as
users write them (DataLoaders over Datasets, several inputs, dict batches, custom outputs, a
training step of their own, augmentation from ``np.random``), on real digits data."""

PIPELINES = r'''
import random
import types

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, TensorDataset
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler
from pytest_trainsanity import TrainSetup

d = load_digits()
_Xtr, _Xv, ytr, yv = train_test_split(d.data.astype(np.float32), d.target, test_size=360, random_state=0, stratify=d.target)
_sc = StandardScaler().fit(_Xtr)
Xtr, Xv = _sc.transform(_Xtr).astype(np.float32), _sc.transform(_Xv).astype(np.float32)
RAW_TR, RAW_V = _Xtr, _Xv  # pixels 0..16


def mlp(inputs=64, seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(inputs, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10))


def setup(model, train, val, lr=1e-3, **kw):
    kw.setdefault("loss", torch.nn.CrossEntropyLoss())
    return TrainSetup(model=model, train=train, val=val, optimizer=torch.optim.Adam(model.parameters(), lr=lr), **kw)


def loader(dataset, shuffle=True, batch_size=32, **kw):
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, **kw)


def tensors(X, y):
    return TensorDataset(torch.as_tensor(X), torch.as_tensor(y))


# ------------------------------------------------------------------ two inputs: numbers and category ids

_cat_tr = ((Xtr[:, 36:39] > 0).astype(np.int64) + 2 * (Xtr[:, 20:23] > 0)).astype(np.int64)  # ids 0..3
_cat_v = ((Xv[:, 36:39] > 0).astype(np.int64) + 2 * (Xv[:, 20:23] > 0)).astype(np.int64)


class TwoInputs(torch.nn.Module):
    """forward(x_num, x_cat): 64 float features and 3 category ids through an embedding."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.emb = torch.nn.Embedding(4, 4)
        self.net = torch.nn.Sequential(torch.nn.Linear(64 + 12, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10))

    def forward(self, x_num, x_cat):
        return self.net(torch.cat([x_num, self.emb(x_cat).flatten(1)], dim=1))


class DictInputs(Dataset):
    """(dict, y) samples: {"x_num": ..., "x_cat": ...}, label."""

    def __init__(self, X, cat, y):
        self.X, self.cat, self.y = X, cat, y

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return {"x_num": self.X[i], "x_cat": self.cat[i]}, self.y[i]


class FlatDict(Dataset):
    """A flat dict per sample with the target under a key of the user's choosing."""

    def __init__(self, X, y, key="digit"):
        self.X, self.y, self.key = X, y, key

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return {"pixels": self.X[i], self.key: self.y[i]}


class FlatMLP(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.net = mlp()

    def forward(self, pixels):
        return self.net(pixels)


def multi_input(x_num_tr=Xtr, x_num_v=Xv):
    ds = lambda X, c, y: TensorDataset(torch.as_tensor(X), torch.as_tensor(c), torch.as_tensor(y))  # (x1, x2, y)
    model = TwoInputs()
    return setup(model, loader(ds(x_num_tr, _cat_tr, ytr)), loader(ds(x_num_v, _cat_v, yv), shuffle=False))


def nested_arrays():
    model = TwoInputs()
    return setup(model, ((Xtr, _cat_tr), ytr), ((Xv, _cat_v), yv))


def dict_inputs(x_num_tr=Xtr, x_num_v=Xv, val_from_train=0):
    cat_v, y_v = _cat_v.copy(), yv.copy()
    x_num_v = x_num_v.copy()
    if val_from_train:
        x_num_v[:val_from_train], cat_v[:val_from_train], y_v[:val_from_train] = (
            x_num_tr[:val_from_train], _cat_tr[:val_from_train], ytr[:val_from_train])
    model = TwoInputs()
    return setup(model, loader(DictInputs(x_num_tr, _cat_tr, ytr)), loader(DictInputs(x_num_v, cat_v, y_v), shuffle=False))


def flat_dict():
    model = FlatMLP()
    return setup(model, loader(FlatDict(Xtr, ytr)), loader(FlatDict(Xv, yv), shuffle=False), target_key="digit")


# ------------------------------------------------------------------ output forms and the user's step


class TupleOut(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.net = mlp()

    def forward(self, x):
        logits = self.net(x)
        return logits, logits.detach().abs().mean()  # (predictions, an auxiliary output)


class DictOut(TupleOut):
    def forward(self, x):
        return {"logits": self.net(x), "features": x}


class ObjectOut(TupleOut):
    def forward(self, x):
        return types.SimpleNamespace(logits=self.net(x))


class OwnLoss(FlatMLP):
    """Computes its own loss when given the labels, as a Hugging Face model does."""

    def forward(self, pixels, digit=None):
        logits = self.net(pixels)
        out = {"logits": logits}
        if digit is not None:
            out["loss"] = torch.nn.functional.cross_entropy(logits, digit)
        return out


def output_form(kind):
    model = {"tuple": TupleOut, "dict": DictOut, "object": ObjectOut}[kind]()
    return setup(model, loader(tensors(Xtr, ytr)), (Xv, yv))


def own_loss():
    model = OwnLoss()
    return TrainSetup(model=model, train=loader(FlatDict(Xtr, ytr)), val=loader(FlatDict(Xv, yv), shuffle=False),
                      optimizer=torch.optim.Adam(model.parameters(), 1e-3), target_key="digit")


STEP_CALLS = []


def smoothed_step(model, batch):
    """The user's own step: label smoothing and an auxiliary L2 term, returned as a dict."""
    STEP_CALLS.append(1)
    x, y = batch
    logits = model(x)
    loss = torch.nn.functional.cross_entropy(logits, y, label_smoothing=0.1) + 1e-4 * logits.pow(2).mean()
    return {"loss": loss, "logits": logits}


def with_step():
    model = mlp()
    return TrainSetup(model=model, train=loader(tensors(Xtr, ytr)), val=(Xv, yv),
                      optimizer=torch.optim.Adam(model.parameters(), 1e-3), step=smoothed_step)


# ------------------------------------------------------------------ pipelines with faults, and bookkeeping


def sorted_by_class():
    order = np.argsort(ytr, kind="stable")
    return setup(mlp(), loader(tensors(Xtr[order], ytr[order]), shuffle=False), (Xv, yv))


def uint8_pixels():
    """Raw uint8 pixels fed to a float model: the user's own training crashes on this."""
    to8 = lambda X: torch.as_tensor((X * 15).astype(np.uint8))
    return setup(mlp(), loader(TensorDataset(to8(RAW_TR), torch.as_tensor(ytr))), loader(TensorDataset(to8(RAW_V), torch.as_tensor(yv))))


class Augmented(Dataset):
    """Noise from np.random and python random on every read, as many augmentations do."""

    def __init__(self, X, y):
        self.X, self.y = X, y

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return self.X[i] + np.random.normal(0, 0.2, self.X[i].shape).astype(np.float32) * random.random(), self.y[i]


def augmented(workers=0):
    generator = torch.Generator().manual_seed(1234)
    return setup(mlp(), loader(Augmented(Xtr, ytr), generator=generator, num_workers=workers), (Xv, yv))


class Counting(Dataset):
    def __init__(self, X, y):
        self.X, self.y, self.reads = X, y, 0

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        self.reads += 1
        return self.X[i], self.y[i]


class Stream(IterableDataset):
    def __init__(self, X, y):
        self.X, self.y = X, y

    def __iter__(self):
        return iter(zip(self.X, self.y))


def counting():
    return setup(mlp(), loader(Counting(Xtr, ytr)), loader(Counting(Xv, yv), shuffle=False))


def streamed():
    return setup(mlp(), DataLoader(Stream(Xtr, ytr), batch_size=32), DataLoader(Stream(Xv, yv), batch_size=64))


def rng_states():
    return (random.getstate(), np.random.get_state()[1].tolist(), torch.get_rng_state().tolist())
'''

LIGHTNING = r'''
import dataclasses

import lightning as L
import torch
from torch.utils.data import DataLoader, TensorDataset
from pipelines import Xtr, Xv, ytr, yv

FORMS = ("optimizer", "list", "two_lists", "dict", "dict_config", "tuple_of_dicts")


CALLS = {}  # training_step calls per module, kept outside it (what a step records on the module is put back)


class Classifier(L.LightningModule):
    """A LightningModule as users write it: label smoothing in training_step, self.log, and
    configure_optimizers in one of Lightning's documented return forms."""

    def __init__(self, form="optimizer", smoothing=0.1):
        super().__init__()
        torch.manual_seed(0)
        self.form, self.smoothing = form, smoothing
        self.net = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10))
        self.seen = 0

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        self.seen += 1
        CALLS[id(self)] = CALLS.get(id(self), 0) + 1
        loss = torch.nn.functional.cross_entropy(self(x), y, label_smoothing=self.smoothing)
        self.log("train_loss", loss)
        return loss

    def configure_optimizers(self):
        opt = torch.optim.Adam(self.parameters(), lr=1e-3)
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
        return {
            "optimizer": opt,
            "list": [opt],
            "two_lists": ([opt], [sched]),
            "dict": {"optimizer": opt, "lr_scheduler": sched},
            "dict_config": {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step", "frequency": 20}},
            "tuple_of_dicts": ({"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}},),
        }[self.form]


class Manual(Classifier):
    def __init__(self):
        super().__init__()
        self.automatic_optimization = False


class DigitsData(L.LightningDataModule):
    def __init__(self, leak=0):
        super().__init__()
        self.leak = leak

    def setup(self, stage):
        Xv_, yv_ = Xv.copy(), yv.copy()
        Xv_[: self.leak], yv_[: self.leak] = Xtr[: self.leak], ytr[: self.leak]
        self.train_set = TensorDataset(torch.as_tensor(Xtr), torch.as_tensor(ytr))
        self.val_set = TensorDataset(torch.as_tensor(Xv_), torch.as_tensor(yv_))

    def train_dataloader(self):
        return DataLoader(self.train_set, batch_size=32, shuffle=True)

    def val_dataloader(self):
        return DataLoader(self.val_set, batch_size=64)


class TwoValSets(DigitsData):
    """Lightning's several val sets: a list of loaders, one dataloader_idx each."""

    def val_dataloader(self):
        return [DataLoader(self.val_set, batch_size=64), DataLoader(self.train_set, batch_size=64)]


@dataclasses.dataclass
class ConfiguredData(L.LightningDataModule):
    """A datamodule written as a dataclass: unhashable (eq=True sets __hash__ to None)."""

    batch_size: int = 32
    setups: int = 0

    def __post_init__(self):
        super().__init__()

    def setup(self, stage):
        self.setups += 1
        self.train_set = TensorDataset(torch.as_tensor(Xtr), torch.as_tensor(ytr))
        self.val_set = TensorDataset(torch.as_tensor(Xv), torch.as_tensor(yv))

    def train_dataloader(self):
        return DataLoader(self.train_set, batch_size=self.batch_size, shuffle=True)

    def val_dataloader(self):
        return DataLoader(self.val_set, batch_size=64)
'''

HUGGING_FACE = r'''
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from transformers import BertConfig, BertForSequenceClassification

rng = np.random.default_rng(0)


def sentences(n, length=16):
    """Token ids with padding and an attention mask; the label is carried by the first token."""
    ids = rng.integers(5, 100, (n, length))
    lengths = rng.integers(6, length + 1, n)
    mask = (np.arange(length)[None, :] < lengths[:, None]).astype(np.int64)
    return ids * mask, mask, (ids[:, 0] % 2).astype(np.int64)


class Encoded(Dataset):
    def __init__(self, ids, mask, labels):
        self.ids, self.mask, self.labels = ids, mask, labels

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return {"input_ids": torch.as_tensor(self.ids[i]), "attention_mask": torch.as_tensor(self.mask[i]),
                "labels": torch.as_tensor(self.labels[i])}


def tiny_bert():
    torch.manual_seed(0)
    return BertForSequenceClassification(BertConfig(
        vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=32, num_labels=2))


TRAIN, VAL = sentences(640), sentences(160)
'''
