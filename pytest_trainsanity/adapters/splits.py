"""Splits in every accepted form, read where they lie: the one place batches are read.

A ``Split`` wraps the user's object without copying it. Training checks take
from it the batches of a pass (the adapters iterate it) and one seeded
``EvalSample`` of at most ``eval_samples`` samples for their metrics and data
measurements; model-free checks stream it in numpy ``blocks``. Framework
containers are recognised by their type's module, so nothing is imported
until a split of that framework arrives (torch readers live in
``torch_data.py``, tf.data and PyDataset readers in ``keras_data.py``).
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping

import numpy as np

from ..errors import SetupError
from ..frameworks import framework_of
from .batches import KWARGS, NESTED, PAIR, BatchForm, describe, tree_leaves, tree_map

SUPPORTED_FORMS = (
    "a tuple (X, y) of numpy arrays or torch/tf tensors (X may be a tuple or dict of arrays for several "
    "inputs), a pandas/polars DataFrame or pyarrow Table (as (frame, y) or with TrainSetup(target=...)), "
    "Parquet files (a path, glob or directory) or a pyarrow dataset, a torch Dataset or DataLoader, a "
    "tf.data.Dataset (batched or not), a keras PyDataset, or an iterator/generator of (X, y) blocks "
    "(model-free checks only)"
)
CHUNK_ROWS = 4096
EVAL_INPUT_BYTES = 4 << 20  # an eval chunk holds about this much input: activations stay bounded for images
EVAL_MAX_ROWS = 2048

Block = tuple[dict[str, np.ndarray], np.ndarray]  # (input fields by name, target), numpy, one row per sample


def as_numpy(value: Any, what: str) -> np.ndarray:
    """One array-like -> numpy for measuring (never fed to a model); no copy when possible."""
    fw = framework_of(value)
    if fw == "torch":
        from .torch_data import tensor_to_numpy

        return tensor_to_numpy(value)
    if fw == "tensorflow" and hasattr(value, "numpy"):
        return np.asarray(value.numpy())
    try:
        array = np.asarray(value)
    except Exception as exc:  # noqa: BLE001 - any conversion failure is a usage error
        raise SetupError(f"{what} could not be read as an array ({type(value).__name__}: {exc}).") from None
    if array.dtype == object:
        first = array.reshape(-1)[:1].tolist()
        if first and isinstance(first[0], (str, bytes)):
            raise SetupError(text_values(what, array, labels=what.endswith(" y")))
        raise SetupError(
            f"{what} has dtype object (ragged or mixed values, shape {array.shape}); "
            f"give a numeric array of equal-shaped samples."
        )
    return array


def text_values(what: str, array: Any, labels: bool) -> str:
    """The paragraph for text where numbers are needed (class names as labels, a text input column)."""
    first = np.asarray(array).reshape(-1)[:1].tolist()
    return f"{what} has dtype {array.dtype}" + (f" (e.g. {first[0]!r}); " if first else "; ") + (
        "labels must be numeric: encode the class names as ids with one mapping for all splits, so that a class has "
        "the same id in each, e.g. enc = sklearn.preprocessing.LabelEncoder().fit(y_train), then enc.transform(y) for "
        "each split." if labels else
        "inputs must be numeric: encode text columns before building the split (sklearn's OrdinalEncoder for ids an "
        "embedding reads, OneHotEncoder for a few categories), fitted on train.")


def require_values(shape: Any, what: str) -> None:
    """A sample must hold at least one value: zero features would be measured as nothing and pass."""
    shape = tuple(shape)
    if len(shape) >= 2 and int(np.prod(shape[1:], dtype=np.int64)) == 0:
        raise SetupError(
            f"{what} has shape {shape}: each sample holds 0 values (0 features), so there is nothing to check or "
            f"train on. Select the feature columns before building the split (an empty column selection?)."
        )


def kind_of(value: Any) -> str:
    """numpy dtype kind of an array-like leaf without converting it: 'f', 'i', 'u', 'b' or 'O'."""
    dtype = getattr(value, "dtype", None)
    if isinstance(dtype, np.dtype):
        return dtype.kind
    text = str(dtype).replace("torch.", "").replace("<dtype: '", "").replace("'>", "")
    if "float" in text or text in ("half", "double"):
        return "f"
    if text.startswith("uint"):
        return "u"
    if text.startswith("int") or text in ("long", "short"):
        return "i"
    if text == "bool":
        return "b"
    return "O"


def _length(value: Any) -> int:
    shape = getattr(value, "shape", None)
    if shape is not None and len(shape):
        return int(shape[0])
    return len(value)


# ---------------------------------------------------------------------- the eval sample


@dataclass
class EvalSample:
    """At most ``eval_samples`` samples of one split, read once per check and kept: the batches
    every metric of the check is computed on, and the numpy the data measurements use.

    ``columns`` hold each leaf of the batch tree concatenated over the sample (framework tensors
    or arrays as the pipeline made them, never cast); ``template`` is the batch tree with each
    leaf replaced by its column's index. Batches whose leaves cannot be concatenated (dynamic
    padding) are kept as they came in ``raw``.
    """

    split: str
    form: BatchForm
    n: int
    total: int | None
    how: str  # e.g. "a seeded sample of 10,000 of 300,000 samples"
    template: Any = None
    columns: list[Any] | None = None
    raw: list[Any] | None = None
    to_numpy: Callable[[Any], np.ndarray] = field(default=lambda v: as_numpy(v, "a batch"), repr=False)
    _numpy: Block | None = field(default=None, repr=False)

    @property
    def sampled(self) -> bool:
        return self.total is None or self.n < self.total

    def chunk_rows(self, batch_size: int | None) -> int:
        """Samples per eval forward: about ``EVAL_INPUT_BYTES`` of input (2,048 tabular rows, a few
        hundred images), never fewer than the training batch."""
        per = sum(_row_bytes(c) for c in self.columns or [])
        rows = EVAL_INPUT_BYTES // per if per else EVAL_MAX_ROWS
        return int(min(EVAL_MAX_ROWS, max(rows, batch_size or 1, 1)))

    def chunks(self, size: int) -> Iterator[Any]:
        """The sample as batches of at most ``size`` samples (the raw batches when kept raw)."""
        if self.columns is None:
            yield from self.raw or []
            return
        for start in range(0, self.n, size):
            yield tree_map(lambda i: self.columns[i][start : start + size], self.template)

    def head(self, k: int) -> Any:
        """The first ``k`` samples as one batch (a validation forward before any training)."""
        if self.columns is None:
            return (self.raw or [None])[0]
        return tree_map(lambda i: self.columns[i][:k], self.template)

    def numpy(self) -> Block:
        """(input fields by name, target) as numpy for measurements, built once."""
        if self._numpy is None:
            batches = [self.head(self.n)] if self.columns is not None else list(self.raw or [])
            fields: dict[str, list[np.ndarray]] = {}
            targets = []
            for batch in batches:
                for key, value in named_fields(self.form, batch, self.to_numpy).items():
                    fields.setdefault(key, []).append(value)
                targets.append(self.to_numpy(self.form.target(batch)))
            self._numpy = ({k: _concat_padded(v) for k, v in fields.items()}, _concat_padded(targets, ignore=True))
        return self._numpy


def _row_bytes(column: Any) -> int:
    shape = getattr(column, "shape", ())
    if not len(shape) or not shape[0]:
        return 0
    size = getattr(column, "nbytes", None)
    if size is None and hasattr(column, "element_size"):  # a torch tensor
        size = column.element_size() * column.numel()
    return int(size or 0) // int(shape[0])


def named_fields(form: BatchForm, batch: Any, to_numpy: Callable[[Any], np.ndarray]) -> dict[str, np.ndarray]:
    """A batch's input fields as numpy by name (``name[i]`` for the leaves of a nested field)."""
    out = {}
    for name, value in form.inputs(batch).items():
        leaves = tree_leaves(value)
        for i, leaf in enumerate(leaves):
            out[name if len(leaves) == 1 else f"{name}[{i}]"] = to_numpy(leaf)
    return out


def _concat_padded(parts: list[np.ndarray], ignore: bool = False) -> np.ndarray:
    """Concatenate on the sample axis; trailing shapes that differ (dynamic padding) are padded with 0,
    or for integer targets (``ignore``) with -100, the index every loss ignores."""
    if len(parts) == 1:
        return parts[0]
    shapes = {p.shape[1:] for p in parts}
    if len(shapes) > 1 and len({len(s) for s in shapes}) == 1:
        top = tuple(max(s[d] for s in shapes) for d in range(len(next(iter(shapes)))))
        fill = -100 if ignore and parts[0].dtype.kind == "i" else 0
        parts = [np.pad(p, [(0, 0)] + [(0, t - s) for t, s in zip(top, p.shape[1:])], constant_values=fill) for p in parts]
    return np.concatenate(parts)


def sample_indices(total: int, n: int, seed: int) -> np.ndarray:
    """Which samples an eval sample reads: all when they fit, else a seeded sorted subset."""
    if total <= n:
        return np.arange(total)
    return np.sort(np.random.default_rng(seed ^ 0xE5A1).choice(total, n, replace=False))


def sample_how(n: int, total: int | None, stream: bool = False) -> str:
    if total is not None and n >= total:
        return f"all {total:,} samples"
    if stream or total is None:
        return f"the first {n:,} samples the pipeline yields"
    return f"a seeded sample of {n:,} of {total:,} samples"


def template_of(batch: Any) -> Any:
    """The batch tree with each leaf replaced by its index."""
    counter = iter(range(1 << 30))
    return tree_map(lambda _: next(counter), batch)


class Gather:
    """Builds an eval sample batch by batch: each leaf is written into a column allocated once for
    ``capacity`` samples, so reading the sample never holds it twice. Batches that do not fit one
    column per leaf (a different structure or trailing shape: dynamic padding; leaves that are not
    arrays) switch it to keeping the batches as they came."""

    def __init__(self, capacity: int, alloc: Callable[[Any, int], Any], write: Callable[[Any, int, Any], None]) -> None:
        self.capacity, self.alloc, self.write = capacity, alloc, write
        self.template: Any = None
        self.columns: list[Any] | None = None
        self.raw: list[Any] | None = None
        self.filled = 0
        self.sizes: list[int] = []

    def _fits(self, leaves: list[Any], size: int) -> bool:
        if any(getattr(leaf, "shape", None) is None or not len(leaf.shape) or leaf.shape[0] != size for leaf in leaves):
            return False
        if self.columns is None:
            return True
        return len(leaves) == len(self.columns) and all(
            tuple(leaf.shape[1:]) == tuple(col.shape[1:]) and leaf.dtype == col.dtype for leaf, col in zip(leaves, self.columns))

    def add(self, batch: Any, size: int) -> None:
        if self.raw is None:
            leaves = tree_leaves(batch)
            if self._fits(leaves, size) and self.filled + size <= self.capacity and (
                    self.template is None or template_of(batch) == self.template):
                if self.columns is None:
                    self.template, self.columns = template_of(batch), [self.alloc(leaf, self.capacity) for leaf in leaves]
                for col, leaf in zip(self.columns, leaves):
                    self.write(col, self.filled, leaf)
                self.filled += size
                self.sizes.append(size)
                return
            self.raw = self._written()
        self.raw.append(batch)

    def _written(self) -> list[Any]:
        """What was written so far, as batches of the sizes they came in (views)."""
        out, start = [], 0
        for size in self.sizes:
            out.append(tree_map(lambda i, a=start, b=start + size: self.columns[i][a:b], self.template))  # type: ignore[index]
            start += size
        return out

    def result(self) -> tuple[Any, list[Any] | None, list[Any] | None]:
        """(template, columns trimmed to the samples read, or None; raw batches, or None)."""
        if self.raw is not None:
            return None, None, self.raw
        if self.columns is None:
            return None, None, []
        return self.template, [c[: self.filled] for c in self.columns], None


# ---------------------------------------------------------------------- splits


# samples a model-free check reads from a stream of unknown length (an IterableDataset with no __len__, a
# tf.data.Dataset of UNKNOWN cardinality) before calling it endless: such a stream (a `while True` in __iter__,
# a .repeat() behind a .filter()) never ends, and a finite one this large can state its length
STREAM_CAP = 1_000_000


class Split:
    """One split as the user gave it. Subclasses read it; nothing is read at construction."""

    kind = "split"
    in_memory = False
    one_shot = False

    def stream_copies(self) -> int:
        """How many workers each run their own copy of the split's stream (a torch IterableDataset read by
        2+ DataLoader workers, each of which yields every sample unless the stream shards itself); 0 otherwise."""
        return 0

    def __init__(self, name: str, source: Any, target_key: str | None = None, input_names: tuple[str, ...] = ()) -> None:
        self.name, self.source, self.target_key, self.input_names = name, source, target_key, input_names
        self._samples: dict[tuple[int, int], EvalSample] = {}

    @property
    def where(self) -> str:
        return f"TrainSetup({self.name}=...)"

    def __len__(self) -> int:
        n = self.n_samples()
        if n is None:
            raise TypeError(f"{self.where} has no known length")
        return n

    def n_samples(self) -> int | None:
        """Samples in the split when known without reading it."""
        return None

    @property
    def batch_size(self) -> int | None:
        """The pipeline's own batch size (a DataLoader's), else None."""
        return None

    def blocks(self) -> Iterator[Block]:
        """Every sample once, in order, as numpy blocks (model-free checks)."""
        raise NotImplementedError

    def sample(self, n: int, seed: int) -> EvalSample:
        """The seeded eval sample (read once per split object, then kept)."""
        key = (n, seed)
        if key not in self._samples:
            self._samples[key] = self._read_sample(n, seed)
        return self._samples[key]

    def _read_sample(self, n: int, seed: int) -> EvalSample:
        raise NotImplementedError

    def form(self, batch: Any = None) -> BatchForm:
        """The batch form (detected from the first batch read)."""
        raise NotImplementedError

    def _guard(self, it: Iterator[Any]) -> Iterator[Any]:
        """The pipeline's batches, its own errors turned into one paragraph naming the split."""
        while True:
            try:
                batch = next(it)
            except StopIteration:
                return
            except SetupError:
                raise
            except Exception as exc:  # noqa: BLE001 - the user's dataset failed; say where, briefly
                raise SetupError(f"Reading {self.where} failed: {type(exc).__name__}: {exc}".split("\n")[0]) from None
            yield batch

    def rewind(self) -> None:
        """Put the pipeline's own random state (a loader's generator) back as it was at opening,
        so every pass and replay sees the same batches and the user's objects are left as found."""

    def describe(self) -> str:
        return type(self.source).__name__


class ArraySplit(Split):
    """``(X, y)`` held in memory; X is an array or a tuple/dict of arrays (several inputs)."""

    kind = "arrays"
    in_memory = True
    column_names: tuple[str, ...] = ()  # a table's feature columns, in X's column order (``TableSplit.as_arrays``)

    def __init__(self, name: str, source: Any, input_names: tuple[str, ...] = ()) -> None:
        super().__init__(name, source, None, input_names)
        if len(source) != 2:
            raise SetupError(
                f"TrainSetup({name}=...) is a {type(source).__name__} of {len(source)} items; "
                f"a split given as a tuple must be (X, y). Supported: {SUPPORTED_FORMS}."
            )
        X, y = source
        if isinstance(X, (tuple, list)) and X and all(hasattr(v, "shape") for v in X):
            X = tuple(X)
        elif isinstance(X, Mapping):
            X = dict(X)
        else:
            X = _array_leaf(X, f"TrainSetup({name}=(X, y)) X")
        y = _array_leaf(y, f"TrainSetup({name}=(X, y)) y")
        self.X, self.y = X, y
        self._form = (BatchForm(KWARGS, tuple(str(k) for k in X)) if isinstance(X, dict) else
                     BatchForm(NESTED, _names(len(X), input_names)) if isinstance(X, tuple) else BatchForm(PAIR, ("x",)))
        self._validate()

    def _validate(self) -> None:
        name, y = self.name, self.y
        leaves = tree_leaves(self.X)
        for leaf in [*leaves, y]:
            if not hasattr(leaf, "shape") or not len(leaf.shape):
                raise SetupError(f"TrainSetup({name}=...) X and y must have a sample axis; got {describe(leaf)}.")
        n = _length(y)
        for field_name, leaf in zip(self._form.names, leaves):
            if _length(leaf) != n:
                what = "inputs" if len(leaves) == 1 else f"inputs in {field_name!r}"
                raise SetupError(
                    f"TrainSetup({name}=...) has {_length(leaf)} {what} but {n} labels; X and y must "
                    f"have the same number of samples."
                )
        if n == 0:
            raise SetupError(f"TrainSetup({name}=...) is empty (0 samples); every given split needs samples.")
        for field_name, leaf in zip(self._form.names, leaves):
            require_values(leaf.shape, f"TrainSetup({name}=...) X" + (f" field {field_name!r}" if len(leaves) > 1 else ""))
        for leaf in leaves:
            if kind_of(leaf) not in "biuf":
                raise SetupError(
                    f"TrainSetup({name}=...) X has dtype {leaf.dtype}; inputs must be numeric "
                    f"(float features or integer ids)."
                )
        if kind_of(y) not in "biuf":
            if kind_of(y) in "USO":
                raise SetupError(text_values(f"TrainSetup({name}=...) y", y, labels=True))
            raise SetupError(f"TrainSetup({name}=...) y has dtype {y.dtype}; labels must be numeric.")

    def n_samples(self) -> int:
        return _length(self.y)

    def form(self, batch: Any = None) -> BatchForm:
        return self._form

    def leaves(self) -> list[Any]:
        return [*tree_leaves(self.X), self.y]

    def batch(self, index: Any) -> Any:
        """The samples at ``index`` (a slice or an index array) in the split's batch form."""
        return (tree_map(lambda a: a[index], self.X), self.y[index])

    def blocks(self) -> Iterator[Block]:
        n = self.n_samples()
        for start in range(0, n, CHUNK_ROWS):
            batch = self.batch(slice(start, start + CHUNK_ROWS))
            yield ({k: as_numpy(v, self.where) for k, v in self._form.inputs(batch).items()},
                   as_numpy(batch[1], self.where))

    def numpy_pair(self) -> tuple[np.ndarray, np.ndarray] | None:
        """(X, y) as numpy without copying, when X is one array (the leakage matcher's fast path)."""
        if self._form.kind != PAIR:
            return None
        return as_numpy(self.X, self.where), as_numpy(self.y, self.where)

    def _read_sample(self, n: int, seed: int) -> EvalSample:
        total = self.n_samples()
        idx = sample_indices(total, n, seed)
        if len(idx) == total:
            batch = (self.X, self.y)
        else:
            batch = self.batch(_index_for(self.y, idx))
        return EvalSample(self.name, self._form, len(idx), total, sample_how(len(idx), total),
                          template=template_of(batch), columns=tree_leaves(batch))

    def describe(self) -> str:
        return f"arrays ({self.n_samples():,} samples)"


def _index_for(like: Any, idx: np.ndarray) -> Any:
    """An index array usable on ``like`` (numpy, or a framework tensor)."""
    if framework_of(like) == "torch":
        import torch

        return torch.as_tensor(idx, device=like.device)
    return idx


def _names(k: int, names: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(names[:k]) if len(names) >= k else tuple(f"input {i + 1}" for i in range(k))


def _array_leaf(value: Any, what: str) -> Any:
    """A numpy array or a framework tensor as given (never copied or cast); lists become numpy."""
    if framework_of(value) in ("torch", "tensorflow") and hasattr(value, "shape"):
        return value
    if isinstance(value, np.ndarray):
        return value
    return as_numpy(value, what)


_CONSUMED: "weakref.WeakSet[Any]" = weakref.WeakSet()


class IteratorSplit(Split):
    """A one-shot iterator (e.g. a generator) of ``(X, y)`` blocks: model-free checks only."""

    kind = "stream"
    one_shot = True

    def blocks(self) -> Iterator[Block]:
        try:
            consumed = self.source in _CONSUMED
            _CONSUMED.add(self.source)
        except TypeError:  # not weak-referenceable: cannot tell, read it
            consumed = False
        if consumed:
            raise SetupError(
                f"{self.where} is a one-shot iterator that an earlier check already consumed; reading it "
                f"again would see no samples. Give a torch DataLoader, a tf.data.Dataset, arrays or an "
                f"np.memmap, which can be read more than once."
            )
        for block in self._guard(iter(self.source)):
            if not isinstance(block, (tuple, list)) or len(block) != 2:
                raise SetupError(
                    f"TrainSetup({self.name}=...) yielded a {type(block).__name__}; each block must be an "
                    f"(X, y) pair of arrays with one row per sample."
                )
            X = as_numpy(block[0], f"a block of TrainSetup({self.name}=...) X")
            y = as_numpy(block[1], f"a block of TrainSetup({self.name}=...) y")
            if len(X) != len(y):
                raise SetupError(f"a block of TrainSetup({self.name}=...) has {len(X)} inputs but {len(y)} labels.")
            require_values(X.shape, f"a block of TrainSetup({self.name}=...) X")
            if len(X):  # an empty block carries nothing
                yield {"x": X}, y

    def _read_sample(self, n: int, seed: int) -> EvalSample:
        raise SetupError(
            f"{self.where} is a one-shot iterator; a training check reads its batches several times (the "
            f"probes and replays re-generate them), so give a torch DataLoader or Dataset, a tf.data.Dataset, "
            f"a keras PyDataset or arrays."
        )


def is_stream(split: Any) -> bool:
    return hasattr(split, "__next__") and framework_of(split) is None


def open_split(name: str, source: Any, setup: Any = None, input_names: tuple[str, ...] = (), model_inputs: int = 0) -> Split:
    """The ``Split`` reading ``source``; errors name the split and the supported forms. ``model_inputs``:
    how many inputs a Keras model takes (0: not known), which tells Keras's ``(x, y, sample_weight)``
    from SPEC's ``(x1, x2, y)`` in a tf.data or PyDataset batch."""
    target_key = getattr(setup, "target_key", None)
    batch_size = getattr(setup, "batch_size", 32)
    from .tables import TableSplit, is_table  # numpy only; pyarrow loads when a table arrives

    if isinstance(source, (tuple, list)) and len(source) == 2 and is_table(source[0]):
        return TableSplit(name, source[0], None, source[1])
    if is_table(source):
        return TableSplit(name, source, getattr(setup, "target", None))
    refuse_loader_collection(name, source)
    if isinstance(source, (tuple, list)):
        return ArraySplit(name, source, input_names)
    fw = framework_of(source)
    if fw == "torch":
        from .torch_data import open_torch_split

        return open_torch_split(name, source, target_key, input_names, batch_size)
    if fw == "tensorflow" and not hasattr(source, "shape"):
        from .keras_data import open_keras_split

        return open_keras_split(name, source, target_key, input_names, batch_size, model_inputs)
    if is_stream(source):
        return IteratorSplit(name, source, target_key, input_names)
    if fw in ("torch", "tensorflow"):
        raise SetupError(f"TrainSetup({name}=...) is a single tensor; give (X, y) so the labels are known.")
    raise SetupError(
        f"TrainSetup({name}=...) is a {type(source).__module__}.{type(source).__name__}, "
        f"which is not a supported split form. Supported: {SUPPORTED_FORMS}."
    )


def refuse_loader_collection(name: str, source: Any, origin: str = "") -> None:
    """Several loaders for one split (Lightning's list or dict of val loaders, each its own
    ``dataloader_idx``): the checks judge one split, and which of them is the user's to say."""
    items = list(source.items()) if isinstance(source, Mapping) else (
        list(enumerate(source)) if isinstance(source, (tuple, list)) else [])
    if len(items) < 2 or not all(framework_of(v) == "torch" and hasattr(v, "__iter__") and not hasattr(v, "shape")
                                 for _, v in items):
        return
    kinds = ", ".join(f"[{k!r}] {type(v).__name__}" for k, v in items[:4]) + (", ..." if len(items) > 4 else "")
    first = items[0][0]
    given = origin or f"TrainSetup({name}=...)"
    choose = (f"TrainSetup(datamodule=dm, {name}=dm.{name}_dataloader()[{first!r}])" if origin
              else f"TrainSetup({name}=loaders[{first!r}])")
    raise SetupError(
        f"{given} gives {len(items)} loaders ({kinds}), as Lightning accepts for several {name} sets (one "
        f"dataloader_idx each). A check judges one {name} split, and which one is yours to say: pass it as "
        f"{choose}, or write one marked test per loader."
    )


def open_splits(setup: Any, names: tuple[str, ...] = ("train", "val", "test")) -> dict[str, Split]:
    """Every given split among ``names`` (a Lightning datamodule fills the ones not given)."""
    given = dict(setup.splits())
    if getattr(setup, "datamodule", None) is not None and any(n not in given for n in names):
        from .torch_data import datamodule_loaders

        for key, loader in datamodule_loaders(setup.datamodule, tuple(n for n in names if n not in given)).items():
            given[key] = loader
    from .batches import forward_names

    model = getattr(setup, "model", None)
    input_names = forward_names(model) if model is not None else ()
    return {n: open_split(n, given[n], setup, input_names, _keras_inputs(model))
            for n in ("train", "val", "test") if n in names and n in given}


def _keras_inputs(model: Any) -> int:
    """How many inputs a built functional or Sequential Keras model takes; 0 when not known (a
    subclassed or unbuilt model, or no Keras model)."""
    from .keras_graph import model_inputs  # attribute reads only: imports no framework

    return len(model_inputs(model)) if model is not None and framework_of(model) == "tensorflow" else 0


def mask_field(fields: Mapping[str, np.ndarray]) -> str | None:
    """The attention mask among the input fields: an integer or bool field named like a mask."""
    return next((k for k, v in fields.items() if "mask" in k.lower() and v.dtype.kind in "biu" and v.ndim == 2), None)


def canonical_fields(fields: Mapping[str, np.ndarray], widths: Mapping[str, int] | None = None) -> dict[str, np.ndarray]:
    """Input fields with what is padding made equal: positions an attention mask marks 0 are 0
    in every field of the mask's shape (pad ids differ between tokenizers), and, with ``widths``,
    each field is zero-padded to that many positions along its second axis (batches padded to
    their own longest sample). So one sentence is one sample however its batch was padded."""
    out = dict(fields)
    mask = mask_field(fields)
    if mask is not None:
        keep = fields[mask] != 0
        for name, value in fields.items():
            if name != mask and value.shape[:2] == keep.shape:
                out[name] = np.where(keep.reshape(keep.shape + (1,) * (value.ndim - 2)), value, np.zeros((), value.dtype))
    if widths:
        for name, value in out.items():
            if value.ndim >= 2 and widths.get(name, value.shape[1]) > value.shape[1]:
                out[name] = np.pad(value, [(0, 0), (0, widths[name] - value.shape[1])] + [(0, 0)] * (value.ndim - 2))
    return out


def common_widths(*fields: Mapping[str, np.ndarray]) -> dict[str, int]:
    """The widest second axis of each field over several splits (what to pad every one to)."""
    out: dict[str, int] = {}
    for group in fields:
        for name, value in group.items():
            if value.ndim >= 2:
                out[name] = max(out.get(name, 0), value.shape[1])
    return out


def fields_rows(fields: Mapping[str, np.ndarray], widths: Mapping[str, int] | None = None) -> np.ndarray:
    """One row per sample over every input field (flattened, side by side): how a sample is
    identified (padding made equal: ``canonical_fields``). One field is returned as a view;
    several share the widest exact dtype (float64 when any field is floating, else int64)."""
    if len(fields) > 1 or widths:
        fields = canonical_fields(fields, widths)
    arrays = list(fields.values())
    if len(arrays) == 1:
        return arrays[0]
    n = len(arrays[0])
    odd = {k: len(a) for k, a in fields.items() if len(a) != n}
    if odd:
        first = next(iter(fields))
        raise SetupError(
            f"The batches' input fields do not hold one row per sample each: {first!r} has {n} row(s) but "
            + ", ".join(f"{k!r} has {m}" for k, m in odd.items())
            + " (flat token lists with offsets, as nn.EmbeddingBag takes them). A sample is identified by all its input "
            "fields, row by row, so such batches cannot be compared sample by sample; for no_leakage give a "
            "per-sample form (padded token ids with a mask).")
    flat = [a.reshape(n, -1) for a in arrays]
    dtype = np.float64 if any(a.dtype.kind == "f" for a in flat) else np.int64
    return np.concatenate([a.astype(dtype, copy=False) for a in flat], axis=1)
