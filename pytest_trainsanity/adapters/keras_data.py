"""Keras splits: a tf.data.Dataset or a keras PyDataset, read as it is.

Training passes iterate the dataset with its own batching (an unbatched
tf.data dataset is batched with ``TrainSetup(batch_size=...)``), a PyDataset's
batches in an order shuffled by the seeded python RNG (as ``model.fit``
does). Neither offers random access to samples, so an eval sample is the
first ``eval_samples`` samples the pipeline yields.
"""

from __future__ import annotations

import importlib.util
import random
from typing import Any, Iterator

import numpy as np

from ..errors import SetupError, missing_extra
from .batches import BatchForm, detect_form, tree_leaves
from .splits import STREAM_CAP, Block, EvalSample, Gather, Split, as_numpy, sample_how


def _tf() -> tuple[Any, Any]:
    if importlib.util.find_spec("torch") is not None:  # one process: torch before tensorflow
        import torch  # noqa: F401
    try:
        import keras
        import tensorflow as tf
    except ModuleNotFoundError:
        raise missing_extra("tensorflow", "tensorflow") from None
    return tf, keras


def _is_batched(spec: Any) -> bool:
    """A batched tf.data element has a leading dimension of unknown size."""
    leaves = [s for s in tree_leaves(spec) if hasattr(s, "shape")]
    if not leaves:
        return False
    shape = leaves[0].shape
    return shape.rank is not None and shape.rank >= 1 and shape[0] is None


class KerasSplit(Split):
    """A tf.data.Dataset (batched or not) or a keras PyDataset."""

    def __init__(self, name: str, source: Any, target_key: str | None, input_names: tuple[str, ...], batch_size: int,
                 model_inputs: int = 0) -> None:
        super().__init__(name, source, target_key, input_names)
        self.model_inputs = model_inputs
        tf, keras = _tf()
        self.tf = tf
        if isinstance(source, tf.data.Dataset):
            self.kind = "tf.data"
            self.batched = _is_batched(source.element_spec)
            self.dataset = source if self.batched else source.batch(batch_size)
            self._batch = None if self.batched else batch_size
        elif isinstance(source, keras.utils.PyDataset):
            self.kind = "pydataset"
            self.batched, self._batch = True, None
        else:
            raise SetupError(f"TrainSetup({name}=...) is a {type(source).__name__}, not a tf.data.Dataset or keras PyDataset.")
        self._form: BatchForm | None = None
        self._total: int | None = None  # known once a read reached the end

    @property
    def batch_size(self) -> int | None:
        return self._batch

    def n_samples(self) -> int | None:
        if self._total is not None:
            return self._total
        if self.kind == "tf.data" and not self.batched:
            n = int(self.source.cardinality())
            return n if n >= 0 else None
        return None

    def describe(self) -> str:
        if self.kind == "pydataset":
            return f"a keras PyDataset {type(self.source).__name__} ({len(self.source)} batches, shuffled per epoch)"
        return f"a tf.data.Dataset ({'its own batches' if self.batched else f'batched by {self._batch}'})"

    def form(self, batch: Any = None) -> BatchForm:
        if self._form is None:
            if batch is None:
                batch = next(iter(self._ordered()))
            self._form = detect_form(batch, self.where, self.target_key, self.input_names, keras_inputs=self.model_inputs)
        return self._form

    def _guard(self, it: Iterator[Any]) -> Iterator[Any]:
        for batch in super()._guard(it):
            if isinstance(batch, (tuple, list)) and len(batch) == 1:
                batch = batch[0]  # a PyDataset may wrap a dict batch in a 1-tuple
            yield batch

    def _ordered(self) -> Iterator[Any]:
        if self.kind == "pydataset":
            return self._guard(self.source[i] for i in range(len(self.source)))
        return self._guard(iter(self.dataset))

    def batches(self) -> Iterator[Any]:
        """One epoch of training batches (tf tensors or numpy, as the pipeline makes them)."""
        if self.kind == "pydataset":
            order = list(range(len(self.source)))
            random.shuffle(order)  # as model.fit(shuffle=True) does, from the seeded python RNG
            return self._guard(self.source[i] for i in order)
        return self._guard(iter(self.dataset))

    def reproducible(self) -> bool:
        """Whether two passes over the dataset start with the same batch (reads two batches). An
        unseeded ``shuffle`` or random op makes every pass, probe and replay see other data."""
        if self.kind != "tf.data":
            return True
        first = [_numpy_tree(next(iter(self.dataset))) for _ in range(2)]
        from .batches import tree_leaves

        return all(np.array_equal(a, b) for a, b in zip(tree_leaves(first[0]), tree_leaves(first[1])))

    def steps(self) -> int | None:
        if self.kind == "pydataset":
            return len(self.source)
        n = int(self.dataset.cardinality())
        return n if n >= 0 else None

    @property
    def endless(self) -> bool:
        return self.kind == "tf.data" and int(self.dataset.cardinality()) == -1  # tf.data.INFINITE_CARDINALITY

    def refuse_endless(self, why: str) -> None:
        """One paragraph when the dataset repeats forever and ``why`` says what that breaks."""
        if self.endless:
            raise SetupError(
                f"{self.where} is a tf.data.Dataset that repeats forever (its cardinality is INFINITE: .repeat() "
                f"with no count). {why} Give the check the dataset before .repeat() (build the pipeline with a "
                f"repeat=False switch for the tests), or a finite part of it: ds.take(n_batches), e.g. the "
                f"steps_per_epoch you give model.fit."
            )

    def blocks(self) -> Iterator[Block]:
        """The whole split, for the model-free checks; a dataset that repeats forever is refused, not read."""
        self.refuse_endless("The model-free checks (no_leakage, inputs_normalized) read every sample of the split, so "
                            "it would be read without end and without bound in memory.")
        capped = self.kind == "tf.data" and int(self.dataset.cardinality()) == -2  # tf.data.UNKNOWN_CARDINALITY
        read = 0
        for batch in self._ordered():
            form = self.form(batch)
            target = as_numpy(form.target(batch), self.where)
            read += len(target)
            if capped and read > STREAM_CAP:
                raise SetupError(
                    f"{self.where} is a tf.data.Dataset of unknown length (its cardinality is UNKNOWN: a .filter(), "
                    f"a generator or TFRecord files hide whether it ends) that yielded more than {STREAM_CAP:,} samples "
                    f"without ending. The model-free checks (no_leakage, inputs_normalized) read every sample of the "
                    f"split, so a pipeline that repeats forever "
                    f"(a .repeat() before the .filter()) would be read without end. Give the check a finite split: the "
                    f"dataset before .repeat(), or ds.take(n_batches); a finite dataset larger than {STREAM_CAP:,} "
                    f"samples is read to its end once it states its length "
                    f"(ds.apply(tf.data.experimental.assert_cardinality(n_batches))).")
            if len(target):
                yield {k: as_numpy(v, self.where) for k, v in form.inputs(batch).items()}, target

    def _read_sample(self, n: int, seed: int) -> EvalSample:
        gather = Gather(n, lambda like, k: np.empty((k, *like.shape[1:]), like.dtype), _write)
        count, exhausted = 0, True
        for batch in self._ordered():
            form = self.form(batch)
            batch = _numpy_tree(batch)
            size = len(as_numpy(form.target(batch), self.where))
            self.seen_batch = max(getattr(self, "seen_batch", 0), size)  # a batched pipeline's own batch size
            if count + size > n:
                from .batches import tree_map

                batch = tree_map(lambda a: a[: n - count], batch)
                size = n - count
            gather.add(batch, size)
            count += size
            if count >= n:
                exhausted = False
                break
        if not count:
            raise SetupError(f"{self.where} is empty (it yielded no samples).")
        total = count if exhausted else self.n_samples()
        self._total = total
        template, columns, raw = gather.result()
        return EvalSample(self.name, self.form(), count, total, sample_how(count, total, stream=True),
                          template=template, columns=columns, raw=raw, to_numpy=np.asarray)


def _write(column: np.ndarray, start: int, part: np.ndarray) -> None:
    column[start : start + len(part)] = part


def _numpy_tree(batch: Any) -> Any:
    from .batches import tree_map

    return tree_map(lambda v: np.asarray(v.numpy()) if hasattr(v, "numpy") else np.asarray(v), batch)


def open_keras_split(name: str, source: Any, target_key: str | None, input_names: tuple[str, ...], batch_size: int,
                     model_inputs: int = 0) -> Split:
    return KerasSplit(name, source, target_key, input_names, batch_size, model_inputs)
