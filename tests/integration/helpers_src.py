"""Source of the ``helpers`` module written into every pytester project.

User-style test files import it to build real digits setups (torch models,
real data); the scenarios are the ones the issue's acceptance list names.
"""

HELPERS = r'''
import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler
from pytest_trainsanity import TrainSetup


def digits(scaled=True):
    """The 1437/360 stratified digits split, standardised on train by default."""
    d = load_digits()
    Xtr, Xv, ytr, yv = train_test_split(
        d.data.astype(np.float32), d.target, test_size=360, random_state=0, stratify=d.target)
    if scaled:
        sc = StandardScaler().fit(Xtr)
        Xtr, Xv = sc.transform(Xtr).astype(np.float32), sc.transform(Xv).astype(np.float32)
    return Xtr, ytr, Xv, yv


def mlp(inputs=64, hidden=128, seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(inputs, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 10))


def setup(Xtr, ytr, Xv, yv, model=None, lr=1e-3, **kw):
    model = model if model is not None else mlp(Xtr.shape[1])
    return TrainSetup(model=model, train=(Xtr, ytr), val=(Xv, yv),
                      optimizer=torch.optim.Adam(model.parameters(), lr=lr),
                      loss=torch.nn.CrossEntropyLoss(), **kw)


def clean():
    return setup(*digits())


def memorise():
    """64 unique train samples with random labels, each repeated 30 times."""
    Xtr, ytr, Xv, yv = digits()
    rng = np.random.RandomState(0)
    idx = rng.choice(len(Xtr), 64, replace=False)
    return setup(np.repeat(Xtr[idx], 30, axis=0), np.repeat(rng.randint(0, 10, 64), 30), Xv, yv)


def label_column():
    """An extra column 64 equal to the label in train and random in val."""
    Xtr, ytr, Xv, yv = digits()
    rng = np.random.RandomState(0)
    Xtr = np.c_[Xtr, ytr.astype(np.float32)]
    Xv = np.c_[Xv, rng.randint(0, 10, len(yv)).astype(np.float32)]
    return setup(Xtr, ytr, Xv, yv)


def raw255():
    """Pixels scaled to [0, 255] (digits are [0, 16])."""
    Xtr, ytr, Xv, yv = digits(scaled=False)
    return setup(Xtr * 255 / 16, ytr, Xv * 255 / 16, yv)


def val_raw():
    """Train standardised, val left raw."""
    Xtr, ytr, _, _ = digits()
    _, _, Xv, yv = digits(scaled=False)
    return setup(Xtr, ytr, Xv, yv)


def splits_only(Xtr, ytr, Xv, yv, **kw):
    return TrainSetup(train=(Xtr, ytr), val=(Xv, yv), **kw)


def copied(n=72):
    Xtr, ytr, Xv, yv = digits()
    Xv, yv = Xv.copy(), yv.copy()
    Xv[:n], yv[:n] = Xtr[100:100 + n], ytr[100:100 + n]
    return splits_only(Xtr, ytr, Xv, yv)


def near_copies(n=50):
    """n val rows replaced by train rows with 1e-3 relative gaussian noise."""
    Xtr, ytr, Xv, yv = digits()
    rng = np.random.default_rng(0)
    Xv, yv = Xv.copy(), yv.copy()
    Xv[:n] = Xtr[:n] * (1 + 1e-3 * rng.standard_normal((n, Xtr.shape[1]))).astype(np.float32)
    yv[:n] = ytr[:n]
    return splits_only(Xtr, ytr, Xv, yv)


def conflicts(n=10):
    """n val rows copied from train with a different label."""
    Xtr, ytr, Xv, yv = digits()
    Xv, yv = Xv.copy(), yv.copy()
    Xv[:n], yv[:n] = Xtr[:n], (ytr[:n] + 1) % 10
    return splits_only(Xtr, ytr, Xv, yv)


def grouped(shared):
    Xtr, ytr, Xv, yv = digits()
    gtr = np.arange(len(Xtr)) // 4
    gv = np.arange(len(Xv)) // 4 + (gtr.max() - 4 if shared else gtr.max() + 1)
    return splits_only(Xtr, ytr, Xv, yv, groups={"train": gtr, "val": gv})


def timed(overlap):
    Xtr, ytr, Xv, yv = digits()
    ttr = np.datetime64("2024-01-01") + np.arange(len(Xtr)).astype("timedelta64[h]")
    start = ttr[-1] - np.timedelta64(30, "h") if overlap else ttr[-1] + np.timedelta64(1, "h")
    return splits_only(Xtr, ytr, Xv, yv, timestamps={"train": ttr, "val": start + np.arange(len(Xv)).astype("timedelta64[h]")})


def loaders(n=72):
    """The copied() scenario with DataLoader splits."""
    from torch.utils.data import DataLoader, TensorDataset
    s = copied(n)
    dl = lambda X, y, shuffle: DataLoader(TensorDataset(torch.as_tensor(X), torch.as_tensor(y)), batch_size=64, shuffle=shuffle)
    return TrainSetup(train=dl(*s.train, True), val=dl(*s.val, False))


def leaked_val(n=72):
    """The first n val rows replaced by copies of train rows (with their labels)."""
    Xtr, ytr, Xv, yv = digits()
    Xv, yv = Xv.copy(), yv.copy()
    Xv[:n], yv[:n] = Xtr[:n], ytr[:n]
    return setup(Xtr, ytr, Xv, yv)
def warmup():
    """The issue's scenario: Adam lr=1e-2 held at 1e-5 for five epochs, then the full rate."""
    Xtr, ytr, Xv, yv = digits()
    model = mlp(Xtr.shape[1])
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    return TrainSetup(model=model, train=(Xtr, ytr), val=(Xv, yv), optimizer=opt, loss=torch.nn.CrossEntropyLoss(),
                      scheduler=torch.optim.lr_scheduler.LambdaLR(opt, lambda e: 1e-3 if e < 5 else 1.0))


def per_step_decay():
    """The seed-002 article's Example 1 in torch: lr 0.01 halved every 10 *steps* (Keras
    ExponentialDecay(decay_steps=10, decay_rate=0.5, staircase=True) counts optimizer steps),
    Dense(128)-Dense(10) on rand(1000, 10) with random labels, batch 32."""
    rng = np.random.RandomState(0)
    X, y = rng.rand(1000, 10).astype(np.float32), rng.randint(0, 10, 1000)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(10, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10))
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    return TrainSetup(model=model, train=(X, y), optimizer=opt, loss=torch.nn.CrossEntropyLoss(),
                      scheduler=torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 0.5 ** (step // 10)),
                      scheduler_step="batch")
'''

KERAS_HELPERS = r'''
import numpy as np
import torch  # noqa: F401 - one process: torch before tensorflow
import keras
import tensorflow as tf
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler
from pytest_trainsanity import TrainSetup

SNAPSHOTS = {}


def digits(scaled=True):
    d = load_digits()
    Xtr, Xv, ytr, yv = train_test_split(
        d.data.astype(np.float32), d.target, test_size=360, random_state=0, stratify=d.target)
    if scaled:
        sc = StandardScaler().fit(Xtr)
        Xtr, Xv = sc.transform(Xtr).astype(np.float32), sc.transform(Xv).astype(np.float32)
    return Xtr, ytr, Xv, yv


def mlp(inputs=64, hidden=128, seed=0):
    keras.utils.set_random_seed(seed)
    return keras.Sequential([keras.Input((inputs,)), keras.layers.Dense(hidden, activation="relu"), keras.layers.Dense(10)])


def setup(Xtr, ytr, Xv, yv, model=None, lr=1e-3, **kw):
    model = model if model is not None else mlp(Xtr.shape[1])
    SNAPSHOTS[id(model)] = [v.numpy().copy() for v in model.variables]
    return TrainSetup(model=model, train=(Xtr, ytr), val=(Xv, yv), optimizer=keras.optimizers.Adam(lr),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), **kw)


def unchanged(model):
    return all(np.array_equal(a, v.numpy()) for a, v in zip(SNAPSHOTS[id(model)], model.variables))


def clean():
    return setup(*digits())


def memorise():
    Xtr, ytr, Xv, yv = digits()
    rng = np.random.RandomState(0)
    idx = rng.choice(len(Xtr), 64, replace=False)
    return setup(np.repeat(Xtr[idx], 30, axis=0), np.repeat(rng.randint(0, 10, 64), 30), Xv, yv)


def raw255():
    Xtr, ytr, Xv, yv = digits(scaled=False)
    return setup(Xtr * 255 / 16, ytr, Xv * 255 / 16, yv)


def leaked_tfdata():
    """72 val rows copied from train; both splits as tf.data (train batched, val not)."""
    Xtr, ytr, Xv, yv = digits()
    Xv, yv = Xv.copy(), yv.copy()
    Xv[:72], yv[:72] = Xtr[100:172], ytr[100:172]
    return TrainSetup(train=tf.data.Dataset.from_tensor_slices((Xtr, ytr)).batch(64),
                      val=tf.data.Dataset.from_tensor_slices((Xv, yv)))


def warmup():
    """Adam 1e-2 held at 1e-5 for five epochs by a LearningRateScheduler callback."""
    Xtr, ytr, Xv, yv = digits()
    return setup(Xtr, ytr, Xv, yv, lr=1e-2,
                 scheduler=keras.callbacks.LearningRateScheduler(lambda epoch, lr: 1e-5 if epoch < 5 else 1e-2))


def article_decay():
    """The seed-002 article's Example 1 as written, compiled: ExponentialDecay counted in steps."""
    rng = np.random.RandomState(0)
    X, y = rng.rand(1000, 10).astype(np.float32), keras.utils.to_categorical(rng.randint(0, 10, 1000), num_classes=10)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((10,)), keras.layers.Dense(128, activation="relu"),
                              keras.layers.Dense(10, activation="softmax")])
    schedule = keras.optimizers.schedules.ExponentialDecay(0.01, decay_steps=10, decay_rate=0.5, staircase=True)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=schedule), loss="categorical_crossentropy")
    SNAPSHOTS[id(model)] = [v.numpy().copy() for v in model.variables]
    return TrainSetup(model=model, train=(X, y), batch_size=32)
'''
