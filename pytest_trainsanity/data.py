"""Splits in every accepted form -> plain numpy ``(X, y)``.

Checks see numpy only. Framework containers (torch Dataset/DataLoader,
tf.data) are recognised by the module of their type, so nothing is
imported until a split of that framework actually arrives.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np

from .errors import SetupError
from .frameworks import framework_of

SUPPORTED_FORMS = (
    "a tuple (X, y) of numpy arrays or torch/tf tensors, a torch Dataset yielding (x, y), "
    "a torch DataLoader yielding (x, y) batches, a tf.data.Dataset of (x, y) (batched or not), "
    "a keras PyDataset, or an iterator/generator of (X, y) blocks"
)
CHUNK_ROWS = 4096


@dataclass(frozen=True)
class SplitData:
    """One split as numpy. ``batch_size`` is set when the split carried its own (DataLoader)."""

    name: str
    X: np.ndarray
    y: np.ndarray
    batch_size: int | None = None

    def __len__(self) -> int:
        return len(self.X)


def as_numpy(value: Any, what: str) -> np.ndarray:
    """One array-like -> numpy without copying when possible; never writes to it."""
    if framework_of(value) == "torch":
        from .adapters.torch import tensor_to_numpy

        return tensor_to_numpy(value)
    if framework_of(value) == "tensorflow" and hasattr(value, "numpy"):
        return np.asarray(value.numpy())
    try:
        array = np.asarray(value)
    except Exception as exc:  # noqa: BLE001 - any conversion failure is a usage error
        raise SetupError(f"{what} could not be read as an array ({type(value).__name__}: {exc}).") from None
    if array.dtype == object:
        raise SetupError(
            f"{what} has dtype object (ragged or mixed values, shape {array.shape}); "
            f"give a numeric array of equal-shaped samples."
        )
    return array


def _pair(name: str, split: Any) -> tuple[np.ndarray, np.ndarray]:
    if len(split) != 2:
        raise SetupError(
            f"TrainSetup({name}=...) is a {type(split).__name__} of {len(split)} items; "
            f"a split given as a tuple must be (X, y). Supported: {SUPPORTED_FORMS}."
        )
    return as_numpy(split[0], f"TrainSetup({name}=(X, y)) X"), as_numpy(split[1], f"TrainSetup({name}=(X, y)) y")


def is_stream(split: Any) -> bool:
    """A one-shot iterator (e.g. a generator) of (X, y) blocks."""
    return hasattr(split, "__next__") and framework_of(split) is None


def load_split(name: str, split: Any) -> SplitData:
    """Read one split whole; errors name the split, the numbers and the supported forms."""
    if isinstance(split, (tuple, list)):
        return validate_split(SplitData(name, *_pair(name, split)))
    parts = list(iter_split(name, split))  # the one reader of loaders and iterators
    if not parts:
        raise SetupError(f"TrainSetup({name}=...) is empty (it yielded no samples).")
    batch_size = None
    if framework_of(split) == "torch":
        from .adapters.torch import loader_batch_size

        batch_size = loader_batch_size(name, split)
    X, y = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
    return validate_split(SplitData(name, X, y, batch_size))


def iter_split(name: str, split: Any, rows: int = CHUNK_ROWS) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """The split in blocks of (X, y), never whole: arrays are sliced (np.memmap stays on disk),
    torch loaders iterated, iterators consumed (once)."""
    if isinstance(split, (tuple, list)):
        X, y = _pair(name, split)
        validate_split(SplitData(name, X, y))  # shapes and dtypes only: reads no rows (np.memmap stays on disk)
        for start in range(0, len(X), rows):
            yield X[start : start + rows], y[start : start + rows]
        return
    if framework_of(split) == "torch":
        from .adapters.torch import iter_batches

        blocks: Iterator[tuple[Any, Any]] = iter_batches(name, split)
    elif framework_of(split) == "tensorflow" and not hasattr(split, "shape"):
        from .adapters.keras import iter_batches as tf_batches

        blocks = tf_batches(name, split)
    elif is_stream(split):
        blocks = split
    else:
        raise SetupError(
            f"TrainSetup({name}=...) is a {type(split).__module__}.{type(split).__name__}, "
            f"which is not a supported split form. Supported: {SUPPORTED_FORMS}."
        )
    for block in blocks:
        if not isinstance(block, (tuple, list)) or len(block) != 2:
            raise SetupError(
                f"TrainSetup({name}=...) yielded a {type(block).__name__}; each block must be an "
                f"(X, y) pair of arrays with one row per sample."
            )
        X = as_numpy(block[0], f"a block of TrainSetup({name}=...) X")
        y = as_numpy(block[1], f"a block of TrainSetup({name}=...) y")
        if len(X) != len(y):
            raise SetupError(f"a block of TrainSetup({name}=...) has {len(X)} inputs but {len(y)} labels.")
        if len(X):  # an empty block carries nothing
            yield X, y


def validate_split(data: SplitData) -> SplitData:
    X, y, name = data.X, data.y, data.name
    if X.ndim == 0 or y.ndim == 0:
        raise SetupError(f"TrainSetup({name}=...) X and y must have a sample axis; got shapes {X.shape} and {y.shape}.")
    if len(X) != len(y):
        raise SetupError(
            f"TrainSetup({name}=...) has {len(X)} inputs but {len(y)} labels; X and y must "
            f"have the same number of samples."
        )
    if len(X) == 0:
        raise SetupError(f"TrainSetup({name}=...) is empty (0 samples); every given split needs samples.")
    if X.dtype.kind not in "biuf":
        raise SetupError(
            f"TrainSetup({name}=...) X has dtype {X.dtype}; inputs must be numeric "
            f"(float features or integer ids)."
        )
    if y.dtype.kind not in "biuf":
        raise SetupError(f"TrainSetup({name}=...) y has dtype {y.dtype}; labels must be numeric.")
    return data


def load_splits(setup: Any, names: tuple[str, ...] = ("train", "val", "test")) -> dict[str, SplitData]:
    return {name: load_split(name, split) for name, split in setup.splits().items() if name in names}


def class_ids(y: np.ndarray) -> np.ndarray:
    """Class indices from integer labels or one-hot / probability rows."""
    if y.ndim >= 2 and y.shape[-1] > 1:
        return np.argmax(y.reshape(len(y), -1), axis=1)
    return np.asarray(y).reshape(len(y)).astype(np.int64)
