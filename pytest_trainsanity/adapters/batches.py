"""What a batch is (SPEC §2.1), read without importing a framework.

A batch is a small tree: tuples, lists and mappings around leaves (tensors,
arrays, anything else). Its *form* says which part is the target and how the
model is called with the rest:

- ``(x, y)``: ``model(x)``;
- ``(x1, ..., xk, y)`` and ``((x1, ..., xk), y)``: ``model(x1, ..., xk)``;
- ``(dict, y)``: ``model(**dict)`` (Keras: ``model(dict)``);
- a flat mapping with the target under ``target_key``: ``model(**inputs)``, with
  the target among the keywords when the model computes its own loss;
- a mapping (flat, or the first item of ``(dict, y)``) given to a model whose
  ``forward`` takes one argument and not the mapping's keys (a LightningModule's
  ``forward(self, batch)``, called ``self(batch)`` in its own ``training_step``):
  ``model(batch)``, the mapping as yielded (see ``takes_whole``).

The form is detected once, from the first batch a split yields, and then
applies to every batch of that split; nothing here copies or casts a leaf.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Callable

from ..errors import SetupError

TARGET_KEYS = ("labels", "label", "target", "targets", "y")
PAIR, MULTI, NESTED, KWARGS, FLAT = "(x, y)", "(x1, ..., xk, y)", "((x1, ..., xk), y)", "(dict, y)", "dict"


def _rebuild(template: Any, items: Any) -> Any:
    """A container of ``template``'s type holding ``items`` (a list, or a dict for mappings)."""
    if isinstance(template, Mapping):
        if type(template) is dict:
            return items
        try:
            return type(template)(items)  # BatchEncoding, OrderedDict, UserDict ...
        except Exception:  # noqa: BLE001 - a mapping type we cannot rebuild: a plain dict holds the same keys
            return dict(items)
    if isinstance(template, tuple) and hasattr(template, "_fields"):  # namedtuple
        return type(template)(*items)
    return type(template)(items)


def tree_map(fn: Callable[[Any], Any], tree: Any) -> Any:
    """``fn`` applied to every leaf; containers are rebuilt with their own types."""
    if isinstance(tree, Mapping):
        return _rebuild(tree, {k: tree_map(fn, v) for k, v in tree.items()})
    if isinstance(tree, (tuple, list)):
        return _rebuild(tree, [tree_map(fn, v) for v in tree])
    return fn(tree)


def tree_leaves(tree: Any) -> list[Any]:
    if isinstance(tree, Mapping):
        return [leaf for v in tree.values() for leaf in tree_leaves(v)]
    if isinstance(tree, (tuple, list)):
        return [leaf for v in tree for leaf in tree_leaves(v)]
    return [tree]


def describe(value: Any) -> str:
    """``dtype shape`` of an array-like leaf (``type`` otherwise), for error messages."""
    shape, dtype = getattr(value, "shape", None), getattr(value, "dtype", None)
    if shape is None or dtype is None:
        return type(value).__name__
    name = str(dtype).replace("torch.", "").replace("<dtype: '", "").replace("'>", "")
    return f"{name} {tuple(int(s) if s is not None else None for s in shape)}"


@dataclass(frozen=True)
class BatchForm:
    """Where the target sits in a batch, how the model is called, and the input fields' names."""

    kind: str
    names: tuple[str, ...]
    target_key: str | None = None
    whole: bool = False  # a mapping batch goes to the model as one argument (``takes_whole``)
    weighted: bool = False  # Keras's (x, y, sample_weight): the last item weighs each sample's loss

    # ------------------------------------------------------------ reading

    def _core(self, batch: Any) -> Any:
        """The batch without its sample weights."""
        return batch[:-1] if self.weighted else batch

    def weights(self, batch: Any) -> Any:
        """The per-sample loss weights (Keras's third item), or None."""
        return batch[-1] if self.weighted else None

    def target(self, batch: Any) -> Any:
        return batch[self.target_key] if self.kind == FLAT else self._core(batch)[-1]

    def inputs(self, batch: Any) -> dict[str, Any]:
        """Every input field by name (the target and sample weights excluded), as yielded."""
        batch = self._core(batch)
        if self.kind == FLAT:
            return {k: v for k, v in batch.items() if k != self.target_key}
        if self.kind == KWARGS:
            return dict(batch[0].items())
        if self.kind == NESTED:
            return dict(zip(self.names, batch[0]))
        if self.kind == MULTI:
            return dict(zip(self.names, batch[:-1]))
        return {self.names[0]: batch[0]}

    def call_args(self, batch: Any, with_target: bool = False) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """(args, kwargs) of the torch-style model call; ``with_target`` passes a flat mapping's
        target too, so a model that computes its own loss (Hugging Face) gets its labels."""
        batch = self._core(batch)
        if self.whole:
            return (batch if self.kind == FLAT else batch[0],), {}
        if self.kind == FLAT:
            return (), dict(batch.items()) if with_target else self.inputs(batch)
        if self.kind == KWARGS:
            return (), dict(batch[0].items())
        if self.kind == NESTED:
            return tuple(batch[0]), {}
        if self.kind == MULTI:
            return tuple(batch[:-1]), {}
        return (batch[0],), {}

    def keras_input(self, batch: Any) -> Any:
        """The one argument a Keras model is called with: a tensor, a list of tensors or a dict."""
        batch = self._core(batch)
        if self.kind == FLAT:
            return self.inputs(batch)
        if self.kind == KWARGS:
            return dict(batch[0].items())
        if self.kind in (NESTED, MULTI):
            return list(self.inputs(batch).values())
        return batch[0]

    # ------------------------------------------------------------ writing

    def with_target(self, batch: Any, target: Any) -> Any:
        """The same batch with another target (the random-label probe), in the same containers."""
        if self.kind == FLAT:
            return _rebuild(batch, {k: (target if k == self.target_key else v) for k, v in batch.items()})
        if self.weighted:
            return _rebuild(batch, [*batch[:-2], target, batch[-1]])
        return _rebuild(batch, [*batch[:-1], target])

    def structure(self) -> str:
        fields = ", ".join(self.names)
        whole = ", given whole to the model's forward" if self.whole else ""
        if self.weighted:
            return f"{replace(self, weighted=False).structure()} with sample weights"
        if self.kind == FLAT:
            return f"dict batches {{{fields}}} with the target under {self.target_key!r}{whole}"
        if self.kind == KWARGS:
            return f"(dict, y) batches with inputs {{{fields}}}{whole}"
        if self.kind in (MULTI, NESTED):
            return f"{self.kind} batches with {len(self.names)} inputs ({fields})"
        return "(x, y) batches"


def detect_form(batch: Any, where: str, target_key: str | None = None, input_names: tuple[str, ...] = (),
                keras_inputs: int | None = None) -> BatchForm:
    """The form of ``batch`` (the first one ``where`` yielded); one clear error when it has none.

    ``input_names`` name positional inputs (e.g. the parameters of the model's ``forward``).
    ``keras_inputs``: for a Keras model, how many inputs it takes (0: not known). A 3-tuple is then
    Keras's ``(x, y, sample_weight)``, as ``model.fit`` reads it, unless the model takes exactly two
    inputs and the first item is one tensor (SPEC's ``(x1, x2, y)``). A torch model whose forward takes
    one input (``input_names`` holds one name) reads a 3-tuple whose last item is one float per sample
    the same way."""
    if isinstance(batch, (tuple, list)) and len(batch) == 3:
        nested = isinstance(batch[0], (tuple, list, Mapping))
        keras = keras_inputs is not None and (nested or keras_inputs != 2)
        # torch: a forward of one input cannot take (x1, x2, y), so a third item of one float per sample is a weight
        torch = (keras_inputs is None and len(input_names) == 1 and not nested
                 and _per_sample_floats(batch[2], batch[0]))
        if keras or torch:
            return replace(detect_form(tuple(batch[:2]), where, target_key, input_names), weighted=True)
    if isinstance(batch, Mapping):
        keys = [str(k) for k in batch.keys()]
        key = target_key if target_key is not None else next((k for k in TARGET_KEYS if k in batch), None)
        if key is None or key not in batch:
            wanted = f"TrainSetup(target_key={target_key!r})" if target_key is not None else f"one of {list(TARGET_KEYS)}"
            raise SetupError(
                f"{where} yields dict batches with keys {keys}, but none holds the target ({wanted}). "
                f"Name the target's key with TrainSetup(target_key='...')."
            )
        names = tuple(k for k in keys if k != key)
        if not names:
            raise SetupError(f"{where} yields dict batches holding only the target {key!r}; there is no input.")
        return BatchForm(FLAT, names, key)
    if not isinstance(batch, (tuple, list)) or len(batch) < 2:
        got = f"a {type(batch).__name__} of {len(batch)} item(s)" if isinstance(batch, (tuple, list)) else f"a {type(batch).__name__}"
        raise SetupError(
            f"{where} yields {got}; a batch must carry its target: (x, y), (x1, ..., xk, y), ((x1, ..., xk), y), "
            f"(dict, y), or a dict with the target under one of {list(TARGET_KEYS)} (or TrainSetup(target_key=...))."
        )
    first = batch[0]
    if len(batch) == 2 and isinstance(first, Mapping):
        return BatchForm(KWARGS, tuple(str(k) for k in first.keys()))
    if len(batch) == 2 and isinstance(first, (tuple, list)):
        return BatchForm(NESTED, _positional(len(first), input_names))
    if len(batch) == 2:
        return BatchForm(PAIR, ("x",))
    return BatchForm(MULTI, _positional(len(batch) - 1, input_names))


def _per_sample_floats(w: Any, x: Any) -> bool:
    """Whether ``w`` holds one floating-point number per sample of ``x`` (a 1-D float array or tensor)."""
    shape, x_shape = getattr(w, "shape", None), getattr(x, "shape", None)
    if shape is None or x_shape is None or len(shape) != 1 or not len(x_shape) or shape[0] != x_shape[0]:
        return False
    floating = getattr(w, "is_floating_point", None)
    return bool(floating()) if callable(floating) else getattr(getattr(w, "dtype", None), "kind", "") == "f"


def _positional(k: int, names: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(names[:k]) if len(names) >= k else tuple(f"input {i + 1}" for i in range(k))


def takes_whole(form: BatchForm, model: Any) -> BatchForm:
    """``form`` with ``whole`` set when the model cannot take a mapping batch's keys as keywords
    but takes one argument: ``forward(self, batch)`` that reads ``batch["features"]`` itself.

    Decided by binding the call to the forward's signature, never by calling it: keywords that bind
    (``forward(input_ids, attention_mask, ...)``, ``**kwargs``) keep ``model(**inputs)``."""
    import inspect

    forward = getattr(model, "forward", None)
    if form.kind not in (FLAT, KWARGS) or forward is None:
        return form
    try:
        signature = inspect.signature(forward)
    except (TypeError, ValueError):
        return form
    keys = form.names if form.kind == KWARGS else form.names + ((form.target_key,) if form.target_key else ())
    try:
        signature.bind(**{k: None for k in form.names})
        return form
    except TypeError:
        pass
    try:
        signature.bind(None)
    except TypeError:
        return form
    first = next(iter(signature.parameters.values()), None)
    if first is None or first.default is not first.empty or any(k in signature.parameters for k in keys):
        return form  # all optional (forward(input_ids=None, ...)) or naming a key: the keyword call's error is right
    return BatchForm(form.kind, form.names, form.target_key, whole=True)


def forward_names(model: Any) -> tuple[str, ...]:
    """The positional parameters of ``model.forward`` (``x_num``, ``x_cat``), for field names."""
    import inspect

    forward = getattr(model, "forward", None) or getattr(model, "call", None)
    if forward is None:
        return ()
    try:
        params = inspect.signature(forward).parameters.values()
    except (TypeError, ValueError):
        return ()
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return tuple(p.name for p in params if p.kind in kinds and p.name not in ("self", "training", "mask"))
