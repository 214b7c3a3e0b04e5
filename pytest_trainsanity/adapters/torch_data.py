"""torch splits: the user's DataLoader (or a Dataset we batch), read as it is.

Training passes iterate the user's own loader (its sampler, collate,
augmentation, workers) under a seeded global RNG, so every pass and replay
sees the same batches; the eval sample reads a seeded subset of a map-style
dataset through the loader's own collate (an iterable one: its first
samples). Nothing here reads a dataset whole except ``blocks``, which the
model-free checks stream.
"""

from __future__ import annotations

import copy
import ctypes
import sys
import weakref
from typing import Any, Iterator

import numpy as np

from ..errors import SetupError, missing_extra
from .batches import BatchForm, detect_form
from .splits import STREAM_CAP, Block, EvalSample, Gather, Split, as_numpy, refuse_loader_collection, sample_how, sample_indices

EVAL_READ_BATCH = 256  # batch size of eval-sample reads when the loader has none of its own


def _torch() -> Any:
    try:
        import torch
    except ModuleNotFoundError:
        raise missing_extra("torch", "torch") from None
    return torch


def tensor_to_numpy(t: Any) -> np.ndarray:
    """For measuring only (a model never sees the result): bfloat16/half widen to float32."""
    torch = _torch()
    t = t.detach()
    if t.device.type == "meta":
        raise SetupError(
            f"A tensor of shape {tuple(t.shape)} is on torch's meta device: it has a shape but no data, so there "
            f"is nothing to measure or train on. Materialise it first (torch.empty_like(t, device='cpu') filled "
            f"with real values, or load the data onto cpu/cuda)."
        )
    if t.dtype in (torch.bfloat16, torch.float16):
        t = t.float()
    return t.cpu().resolve_conj().resolve_neg().numpy()


HUGE_PAGE = 2 << 20  # the kernel's transparent huge page (x86-64, aarch64 with 4 KiB pages)
HUGE_FROM = 8 << 20  # copies of at least this many bytes ask for huge pages
MADV_HUGEPAGE = 14  # linux/mman.h
_madvise: Any = None  # libc's madvise once looked up; False where there is none (not Linux)


def _huge_pages(t: Any) -> None:
    """Ask the kernel to back ``t``'s (not yet written) memory with transparent huge pages."""
    global _madvise
    if _madvise is None:
        _madvise = False
        if sys.platform.startswith("linux"):
            try:
                fn = ctypes.CDLL(None, use_errno=True).madvise
                fn.argtypes, fn.restype = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int], ctypes.c_int
                _madvise = fn
            except (OSError, AttributeError):
                pass
    if _madvise:
        ptr = t.data_ptr()
        start, end = -(-ptr // HUGE_PAGE) * HUGE_PAGE, (ptr + t.numel() * t.element_size()) // HUGE_PAGE * HUGE_PAGE
        if end > start:
            _madvise(start, end - start, MADV_HUGEPAGE)  # refused (THP off): the 4 KiB pages it would get anyway


def clone(t: Any, device: Any = None) -> Any:
    """A detached copy of tensor ``t`` (on ``device`` if given): what snapshots and checkpoints hold.

    A large CPU copy asks for transparent huge pages before it is written (madvise, as torch's own
    ``THP_MEM_ALLOC_ENABLE`` does for every allocation): a fresh buffer of 4 KiB pages costs a page
    fault per page, which made the copy of a 64 MB weight 3.6x slower than copying into memory
    already mapped (20.6 ms vs 5.7 ms on the 2-core CI machine). Without THP (``never``), or off
    Linux, it is a plain copy."""
    torch = _torch()
    t = t.detach()
    device = t.device if device is None else torch.device(device)
    if (device.type != "cpu" or t.layout != torch.strided or t.is_quantized
            or t.numel() * t.element_size() < HUGE_FROM):
        return t.to(device, copy=True)
    out = torch.empty_like(t, device=device)  # strides as clone() keeps them
    _huge_pages(out)
    return out.copy_(t)


def clone_tree(obj: Any) -> Any:
    """``copy.deepcopy`` for a state dict (plain dicts, lists, tuples), tensors copied by ``clone``."""
    torch = _torch()
    if isinstance(obj, torch.Tensor):
        return clone(obj)
    if type(obj) in (dict, list, tuple):
        items = obj.items() if isinstance(obj, dict) else None
        return dict((k, clone_tree(v)) for k, v in items) if items is not None else type(obj)(map(clone_tree, obj))
    return copy.deepcopy(obj)


def to_device(batch: Any, device: Any) -> Any:
    """Every tensor of the batch moved to ``device`` (dtype untouched); other leaves as they are."""
    torch = _torch()
    from .batches import tree_map

    def move(leaf: Any) -> Any:
        return leaf.to(device, non_blocking=True) if isinstance(leaf, torch.Tensor) else leaf

    if isinstance(batch, torch.Tensor):
        return move(batch)
    if isinstance(batch, (tuple, list)) and all(isinstance(t, torch.Tensor) and t.device == device for t in batch):
        return batch  # already there (the CPU case): nothing to rebuild
    if hasattr(batch, "to") and not isinstance(batch, (tuple, list, dict)):  # e.g. a BatchEncoding
        try:
            return batch.to(device)
        except Exception:  # noqa: BLE001 - fall back to moving the leaves
            pass
    return tree_map(move, batch)


def _generators(loader: Any) -> list[Any]:
    """The torch.Generators a loader's order depends on (loader, sampler, batch sampler)."""
    torch = _torch()
    found: list[Any] = []
    for owner in (loader, getattr(loader, "sampler", None), getattr(loader, "batch_sampler", None),
                  getattr(getattr(loader, "batch_sampler", None), "sampler", None)):
        g = getattr(owner, "generator", None)
        if isinstance(g, torch.Generator) and all(g is not f for f in found):
            found.append(g)
    return found


class TorchSplit(Split):
    """A torch DataLoader as given, or a Dataset batched by a DataLoader of ours
    (``TrainSetup(batch_size=...)``, shuffled like arrays)."""

    kind = "loader"

    def __init__(self, name: str, source: Any, target_key: str | None, input_names: tuple[str, ...], batch_size: int) -> None:
        super().__init__(name, source, target_key, input_names)
        torch = _torch()
        from torch.utils.data import DataLoader, Dataset, IterableDataset

        if isinstance(source, DataLoader):
            self.loader, self.dataset, self.own = source, source.dataset, False
        elif isinstance(source, Dataset):
            self.dataset, self.own = source, True
            self.loader = DataLoader(source, batch_size=batch_size, shuffle=not isinstance(source, IterableDataset))
        else:
            raise SetupError(f"TrainSetup({name}=...) is a {type(source).__name__}, not a torch Dataset or DataLoader.")
        self.map_style = not isinstance(self.dataset, IterableDataset) and self._len(self.dataset) is not None
        self._form: BatchForm | None = None
        self._total: int | None = None  # a stream's length, once a read reached its end
        self._states = [(g, g.get_state()) for g in _generators(self.loader)]
        self.torch = torch
        self._members: np.ndarray | None = None
        self._members_read = False
        self._fresh: Any = None

    @staticmethod
    def _len(obj: Any) -> int | None:
        try:
            return len(obj)
        except Exception:  # noqa: BLE001 - no length: a stream
            return None

    # ------------------------------------------------------------ facts

    def members(self) -> np.ndarray | None:
        """The dataset indices the loader's sampler draws from, sorted (None: every index). A loader
        over part of a shared Dataset (``SubsetRandomSampler``, a custom sampler or batch sampler) is
        that part; only indices are drawn, no sample is read."""
        if not self._members_read:
            self._members_read = True
            if self.map_style:
                self._members = self._sampled_indices()
        return self._members

    def _sampled_indices(self) -> np.ndarray | None:
        from torch.utils.data import BatchSampler, RandomSampler, SequentialSampler, SubsetRandomSampler, WeightedRandomSampler

        batch_sampler = self.loader.batch_sampler
        if batch_sampler is not None and not isinstance(batch_sampler, BatchSampler):
            return np.unique(np.fromiter((i for batch in batch_sampler for i in batch), dtype=np.int64))
        sampler = batch_sampler.sampler if batch_sampler is not None else self.loader.sampler
        if isinstance(sampler, (SequentialSampler, RandomSampler)):
            return None
        if isinstance(sampler, SubsetRandomSampler):
            return np.unique(np.asarray(list(sampler.indices), dtype=np.int64))
        if isinstance(sampler, WeightedRandomSampler):
            return np.flatnonzero(np.asarray(sampler.weights) > 0)
        return np.unique(np.fromiter(iter(sampler), dtype=np.int64))

    def n_samples(self) -> int | None:
        members = self.members()
        if members is not None:
            return len(members)
        return self._len(self.dataset) if self.map_style else self._total

    @property
    def batch_size(self) -> int | None:
        return self.loader.batch_size

    def shuffles(self) -> bool:
        """Whether the loader's order changes with the RNG (so a reshuffle replay means something)."""
        from torch.utils.data import SequentialSampler

        sampler = self.loader.batch_sampler.sampler if self.loader.batch_sampler is not None else self.loader.sampler
        return not isinstance(sampler, SequentialSampler)

    def stream_copies(self) -> int:
        from torch.utils.data import IterableDataset

        return self.loader.num_workers if isinstance(self.dataset, IterableDataset) and self.loader.num_workers > 1 else 0

    def describe(self) -> str:
        n = self.n_samples()
        what = f"{'a DataLoader of ours over ' if self.own else 'a DataLoader over '}{type(self.dataset).__name__}"
        part = (f"{n:,} of its {self._len(self.dataset):,} samples by {type(self.loader.sampler).__name__}, "
                if self.members() is not None else f"{n:,} samples, " if n is not None else "")
        workers = f"{self.loader.num_workers} worker(s)" + (
            ", started anew each pass" if getattr(self.loader, "persistent_workers", False) else "")
        order = "shuffled" if self.shuffles() else "in order"
        if not self.map_style:  # a stream's order is its __iter__'s; the loader's sampler draws nothing
            order = "in the order its __iter__ yields"
            if self.loader.num_workers > 1:
                workers += (" (each runs its own copy of __iter__: a stream that does not split its samples by "
                            "torch.utils.data.get_worker_info() yields each of them once per worker)")
        return f"{what} ({part}batch {self.loader.batch_size}, {order}, {workers})"

    def form(self, batch: Any = None) -> BatchForm:
        if self._form is None:
            if batch is None:
                batch = next(iter(self._reader(np.arange(1) if self.map_style else None)))
            self._form = detect_form(batch, self.where, self.target_key, self.input_names)
        return self._form

    def rewind(self) -> None:
        for g, state in self._states:
            g.set_state(state)

    # ------------------------------------------------------------ reading

    def batches(self) -> Iterator[Any]:
        """One epoch of the training loader, batches exactly as it yields them."""
        return self._guard(iter(self._training_loader()))

    def _training_loader(self) -> Any:
        """The user's loader; with ``persistent_workers`` the same loader whose workers start anew
        each epoch, so every pass and replay sees the same batches and augmentation (persistent
        workers carry their RNG over) and the user's loader keeps no workers of ours."""
        loader = self.loader
        if not getattr(loader, "persistent_workers", False):
            return loader
        if self._fresh is None:
            from torch.utils.data import BatchSampler, DataLoader

            kw: dict[str, Any] = dict(
                num_workers=loader.num_workers, collate_fn=loader.collate_fn, pin_memory=loader.pin_memory,
                timeout=loader.timeout, worker_init_fn=loader.worker_init_fn, generator=loader.generator,
                multiprocessing_context=loader.multiprocessing_context, prefetch_factor=loader.prefetch_factor,
                persistent_workers=False)
            if isinstance(loader.batch_sampler, BatchSampler) and loader.batch_size is not None:
                kw.update(batch_size=loader.batch_size, sampler=loader.sampler, drop_last=loader.drop_last)
            else:
                kw.update(batch_sampler=loader.batch_sampler, sampler=None if loader.batch_sampler else loader.sampler,
                          batch_size=None if loader.batch_sampler else loader.batch_size)
            self._fresh = DataLoader(self.dataset, **kw)
        return self._fresh

    def _reader(self, indices: np.ndarray | None) -> Iterator[Any]:
        """In-order batches of the given samples through the loader's own collate and workers
        (None: every sample; a stream is read as it comes)."""
        from torch.utils.data import DataLoader, Subset

        if not self.map_style or self.loader.batch_size is None and not self.own:
            return self._guard(iter(self._training_loader()))
        members = self.members()
        if members is not None:  # positions within the loader's part of the dataset
            indices = members if indices is None else members[indices]
        n = self._len(self.dataset)
        dataset = self.dataset if indices is None or len(indices) == n else Subset(self.dataset, indices.tolist())
        reader = DataLoader(
            dataset, batch_size=self.loader.batch_size or EVAL_READ_BATCH, shuffle=False,
            collate_fn=self.loader.collate_fn, num_workers=self.loader.num_workers,
            worker_init_fn=self.loader.worker_init_fn, multiprocessing_context=self.loader.multiprocessing_context,
        )
        return self._guard(iter(reader))

    def blocks(self) -> Iterator[Block]:
        """The whole split, for the model-free checks; a length-less stream past ``STREAM_CAP`` samples is
        refused as endless (the checks would otherwise read, and hash, without end)."""
        capped = not self.map_style and self._len(self.dataset) is None
        read = 0
        for batch in self._reader(None):
            form = self.form(batch)
            target = as_numpy(form.target(batch), self.where)
            inputs = {k: as_numpy(v, self.where) for k, v in form.inputs(batch).items()}
            size = _batch_len(target, self.where)
            read += size
            if capped and read > STREAM_CAP:
                raise SetupError(
                    f"{self.where} is a {type(self.dataset).__name__} (an IterableDataset with no __len__) that yielded "
                    f"more than {STREAM_CAP:,} samples without ending. The model-free checks (no_leakage, "
                    f"inputs_normalized) read every sample of the split, "
                    f"so a stream that never ends (a `while True` in __iter__) would be read without end. Give the "
                    f"check a finite split: the stream's first n samples (an IterableDataset that stops after n), a "
                    f"map-style Dataset or arrays; a finite stream larger than {STREAM_CAP:,} samples is read to its "
                    f"end once its dataset has a __len__.")
            if size:
                yield inputs, target

    def _read_sample(self, n: int, seed: int) -> EvalSample:
        total = self.n_samples()
        stream = total is None or self.loader.batch_size is None and not self.own
        indices = None if stream else sample_indices(total, n, seed)
        gather = Gather(n if stream else len(indices), self._alloc, self._write)  # type: ignore[arg-type]
        count, exhausted = 0, True
        for batch in self._reader(indices):
            self.form(batch)
            size = _batch_len(self.form().target(batch), self.where)
            if stream and count + size > n:  # a stream: keep its first n samples
                batch = _head(batch, n - count)
                size = n - count
            gather.add(batch, size)
            count += size
            if stream and count >= n:
                exhausted = False
                break
        if not count:
            raise SetupError(f"{self.where} is empty (it yielded no samples).")
        if stream and exhausted:
            total = self._total = count
        template, columns, raw = gather.result()
        return EvalSample(self.name, self.form(), count, total, sample_how(count, total, stream),
                          template=template, columns=columns, raw=raw, to_numpy=self._numpy)

    def _alloc(self, like: Any, n: int) -> Any:
        torch = self.torch
        if isinstance(like, torch.Tensor):
            return torch.empty((n, *like.shape[1:]), dtype=like.dtype, device=like.device)
        return np.empty((n, *like.shape[1:]), dtype=like.dtype)

    @staticmethod
    def _write(column: Any, start: int, part: Any) -> None:
        column[start : start + len(part)] = part

    def _numpy(self, value: Any) -> np.ndarray:
        return as_numpy(value, f"a batch of {self.where}")


def _batch_len(target: Any, where: str) -> int:
    """Samples in a batch, by its target; a target without a batch dimension is one paragraph."""
    shape = getattr(target, "shape", None)
    if shape is not None and not len(shape) or isinstance(target, (int, float, np.number)):
        raise SetupError(
            f"{where} yields single samples without a batch dimension (a target of shape ()): a DataLoader with "
            f"batch_size=None over a Dataset of single samples. Give the DataLoader a batch size "
            f"(DataLoader(dataset, batch_size=32)), or a Dataset that yields whole batches.")
    return int(shape[0]) if shape is not None else len(target)


def _head(batch: Any, k: int) -> Any:
    from .batches import tree_map

    return tree_map(lambda leaf: leaf[:k] if hasattr(leaf, "shape") and len(leaf.shape) else leaf, batch)


def open_torch_split(name: str, source: Any, target_key: str | None, input_names: tuple[str, ...], batch_size: int) -> Split:
    torch = _torch()
    if isinstance(source, torch.Tensor):
        raise SetupError(f"TrainSetup({name}=...) is a single tensor; give (X, y) so the labels are known.")
    return TorchSplit(name, source, target_key, input_names, batch_size)


# ---------------------------------------------------------------------- Lightning datamodules

_DATAMODULES: dict[int, tuple[Any, dict[str, Any]]] = {}  # id -> (a reference, what was done and made)


def _datamodule_state(datamodule: Any) -> dict[str, Any]:
    """What was done for ``datamodule`` (prepared, set up, loaders made), kept as long as it lives.

    Keyed by identity, not hash: a ``@dataclass`` datamodule is unhashable, and equal datamodules
    are still set up once each. The entry goes when the datamodule is collected (a datamodule that
    takes no weak reference, ``__slots__`` without ``__weakref__``, keeps its entry)."""
    key = id(datamodule)
    held = _DATAMODULES.get(key)
    if held is not None and (held[0]() if isinstance(held[0], weakref.ref) else held[0]) is datamodule:
        return held[1]
    try:
        ref: Any = weakref.ref(datamodule, lambda _r, k=key: _DATAMODULES.pop(k, None))
    except TypeError:
        ref = datamodule
    _DATAMODULES[key] = (ref, {})
    return _DATAMODULES[key][1]


def _overrides(obj: Any, method: str, base_name: str) -> bool:
    """Whether ``obj``'s class defines ``method`` itself rather than inheriting the Lightning base's."""
    base = next((c for c in type(obj).__mro__ if c.__name__ == base_name), None)
    mine = getattr(type(obj), method, None)
    return mine is not None and (base is None or mine is not getattr(base, method, None))


def datamodule_loaders(datamodule: Any, names: tuple[str, ...]) -> dict[str, Any]:
    """The loaders of a LightningDataModule for ``names`` ('train', 'val', 'test'), as a Trainer
    would make them: ``prepare_data()`` and ``setup('fit')`` (``setup('test')`` for test) once per
    datamodule, then ``<split>_dataloader()``."""
    if not hasattr(datamodule, "train_dataloader"):
        raise SetupError(
            f"TrainSetup(datamodule=...) is a {type(datamodule).__name__}, not a Lightning LightningDataModule "
            f"(it has no train_dataloader())."
        )
    done = _datamodule_state(datamodule)
    out: dict[str, Any] = {}
    for split in names:
        method = f"{split}_dataloader"
        if split != "train" and not _overrides(datamodule, method, "LightningDataModule"):
            continue
        if split not in done:
            stage = "test" if split == "test" else "fit"
            try:
                if not done.get("_prepared"):
                    datamodule.prepare_data()
                    done["_prepared"] = True
                if not done.get(f"_setup_{stage}"):
                    datamodule.setup(stage)
                    done[f"_setup_{stage}"] = True
                made = getattr(datamodule, method)()
                refuse_loader_collection(split, made, f"{type(datamodule).__name__}.{method}()")
                done[split] = made
            except SetupError:
                raise
            except Exception as exc:  # noqa: BLE001 - the user's datamodule failed; one paragraph
                raise SetupError(
                    f"TrainSetup(datamodule=...) failed while making the {split} loader ({type(datamodule).__name__}."
                    f"{method}() after prepare_data() and setup({stage!r}), as a Trainer would call them): "
                    f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
                ) from None
        out[split] = done[split]
    return out
