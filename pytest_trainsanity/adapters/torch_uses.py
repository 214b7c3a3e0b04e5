"""How a torch model's forward first uses each integer input field, seen by running it once.

A torch model has no graph to read (``keras_graph`` reads Keras's), and integer inputs reach it
two ways that the data alone cannot tell apart: token or category ids that index an embedding
(nothing to scale), or numbers (age, income, counts; ``df.to_numpy()`` of integer columns) that
``forward`` casts with ``x.float()`` before a ``Linear``. ``inputs_normalized`` and the training
checks skip the first and must judge the second.

One eval-mode forward on a few samples under a ``TorchFunctionMode`` follows each integer field's
tensor through the torch calls it meets:

- an index use (``embedding``, ``embedding_bag``, ``one_hot``, ``weight[x]``, ``index_select``,
  ``gather``) makes it **ids**;
- a call that turns it into floating-point values (``x.float()``, ``x.to(torch.float32)``,
  ``x / 100``, ``torch.log1p(x)``) makes it **numbers**;
- a call that keeps it integer (``x[:, 0]``, ``x.long()``, ``x.view(...)``, ``x + 1``,
  ``torch.cat([cls, x])``: tensors inside a list argument too) is followed on its result;
  comparisons (``x != pad_id``), reads (``x.shape``) and new tensors of its shape
  (``torch.ones_like(x, dtype=torch.float32)``) settle nothing. A trip through numpy
  (``x.numpy()``) leaves torch, so it is not seen.

Numbers the forward standardises itself before any layer reads them (``(x.float() - mean) / std``,
``batch_norm``, ``layer_norm`` on the cast values) are ``standardised``: torch has no layer to pass
them through as Keras's ``Normalization`` is, so they are not judged (as before), and a note says
so rather than asking for a second standardisation. A field read both ways (category codes and
counts in one int64 array) is ``mixed``: its columns
cannot be told apart, so it keeps the data-only reading (ids, skipped) and a note says why. A
field never settled is left out (the data's dtype decides, as before). The forward runs under ``no_grad`` in eval mode; the modules' train flags, their
buffers, what it records on them and ``max_norm`` embedding rows are put back (``torch_attrs``); a
lazy module it materialises stays materialised.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Iterator

INDEX_AT = {"index_select": 2, "gather": 2, "scatter": 2, "scatter_add": 2, "scatter_reduce": 2, "index_add": 2,
            "index_copy": 2, "index_fill": 2, "take": 1, "take_along_dim": 1}  # where the index sits: (input, dim, index)
KEYWORD_AT: dict[str, Any] = {"input": 0, "index": "index", "indices": "index"}  # by keyword: the input, or the index
IDS = {"embedding", "embedding_bag", "one_hot", "index_select", "gather", "take", "take_along_dim",
       "index_add", "index_copy", "index_fill", "scatter", "scatter_add", "scatter_reduce", "bincount"}
NORMALISE = {"batch_norm", "layer_norm", "instance_norm", "group_norm", "normalize"}  # standardising calls
RESHAPE = {"view", "reshape", "unsqueeze", "squeeze", "flatten", "contiguous", "to", "float", "clone", "detach",
           "transpose", "permute", "getitem", "cat", "stack", "unbind", "split", "chunk"}  # the same values, moved
SHAPE_ONLY = {"ones_like", "zeros_like", "empty_like", "full_like", "rand_like", "randn_like", "randint_like",
              "new_ones", "new_zeros", "new_empty", "new_full", "new_tensor", "size", "dim", "numel"}
SHOWN = {"getitem": "an index (weight[x])", "truediv": "a division", "mul": "a product", "div": "a division"}


@dataclass(frozen=True)
class TorchUse:
    role: str  # "ids" | "numbers" | "standardised" (cast, then standardised by the forward) | "mixed" (ids and numbers)
    call: str  # the torch call that settled it, e.g. "embedding()" or "float()"
    module: str  # the module whose forward made that call ("" for the model's own forward)
    layer: Any = None  # no layer object (Keras's FirstUse has one)

    @property
    def label(self) -> str:
        if self.role == "mixed":
            return self.call
        where = f" in module {self.module!r}" if self.module else " in the model's forward"
        return f"{self.call}{where}"


def _name(func: Any) -> str:
    name = getattr(func, "__name__", "") or ""
    if name == "__get__":  # a property (x.shape, x.dtype): a read
        return ""
    return name.strip("_")


def first_uses(model: Any, args: tuple[Any, ...], kwargs: dict[str, Any], fields: dict[str, Any]) -> dict[str, TorchUse]:
    """Each integer tensor of ``fields`` (by name; the same objects the call passes) that the
    eval-mode forward ``model(*args, **kwargs)`` settles, with its use. Raises what the forward raises."""
    import torch

    from .torch_attrs import ModuleAttrs, evaluating

    attrs = ModuleAttrs(model)  # what the forward records on the modules (and max_norm embeddings' rows) put back
    buffers = [(b, b.detach().clone()) for b in model.buffers()]  # a buffer a forward updates in place (no adapter here)
    try:
        with evaluating(model), torch.no_grad(), following(model, fields) as found:
            model(*args, **kwargs)
    finally:
        with torch.no_grad():
            for b, saved in buffers:
                if b.shape == saved.shape and not torch.equal(b, saved):
                    b.copy_(saved)
        attrs.restore()
    return found


@contextlib.contextmanager
def following(model: Any, fields: dict[str, Any]) -> Iterator[dict[str, TorchUse]]:
    """Inside the block, the uses of ``fields``' integer tensors by whatever the block runs are
    gathered into the dict it yields (a no-op when no field is integer)."""
    import torch

    found: dict[str, TorchUse] = {}
    watched = {id(t): name for name, t in fields.items() if _integer_field(name, t, torch)}
    if not watched:
        yield found
        return
    from torch.overrides import TorchFunctionMode

    keep: list[Any] = list(fields.values())  # the followed tensors stay alive, so no id is reused
    stack: list[str] = []
    names = {id(m): n for n, m in model.named_modules()}

    def enter(module: Any, _inputs: Any) -> None:
        stack.append(names.get(id(module), type(module).__name__))

    def leave(module: Any, _inputs: Any, _output: Any) -> None:
        if stack:
            stack.pop()

    class Follow(TorchFunctionMode):
        def __torch_function__(self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: Any = None) -> Any:
            kwargs = kwargs or {}
            out = func(*args, **kwargs)
            hit = [(i, watched[id(a)]) for i, a in enumerate(args) if id(a) in watched]
            hit += [(KEYWORD_AT.get(k, -1), watched[id(v)]) for k, v in kwargs.items() if id(v) in watched]
            hit += [(i, watched[id(t)]) for i, a in enumerate(args) if isinstance(a, (list, tuple))  # cat, stack
                    for t in a if id(t) in watched]
            name = _name(func) if hit or floats else ""
            for position, field in hit:
                role = _role(name, position, out, torch) if name else None
                if role == "follow":
                    watch(out, watched, field)
                elif role is not None:
                    note(field, role, name)
                    if role == "numbers":  # where the floats made of it go next: a layer, or a standardisation
                        watch(out, floats, (field, 0))
            listed = [t for a in args if isinstance(a, (list, tuple)) for t in a]  # torch.cat([x.float(), emb])
            for a in (*args, *kwargs.values(), *listed):
                if id(a) not in floats or not name:
                    continue
                field, stage = floats[id(a)]
                if name in NORMALISE or stage == 1 and name in ("div", "truediv", "mul"):
                    note(field, "standardised", name)
                elif name in ("sub", "rsub") and stage == 0:
                    watch(out, floats, (field, 1))
                elif name in RESHAPE:
                    watch(out, floats, (field, stage))
            return out

    def watch(out: Any, into: dict[int, Any], value: Any) -> None:
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor):
                keep.append(t)
                into[id(t)] = value

    def note(field: str, role: str, name: str) -> None:
        seen.setdefault(field, {}).setdefault(role, TorchUse(role, SHOWN.get(name, f"{name}()"), stack[-1] if stack else ""))

    floats: dict[int, tuple[str, int]] = {}  # float tensors made of a field: (field, 1 once a mean was subtracted)

    seen: dict[str, dict[str, TorchUse]] = {}  # per field, the first use of each role
    handles = [torch.nn.modules.module.register_module_forward_pre_hook(enter),
               torch.nn.modules.module.register_module_forward_hook(leave)]
    try:
        with Follow():
            yield found
    finally:
        for h in handles:
            h.remove()
        for field, roles in seen.items():
            if "ids" in roles and "numbers" in roles:  # part ids, part numbers (category codes and counts in one array)
                ids, numbers = roles["ids"], roles["numbers"]
                found[field] = TorchUse("mixed", f"{ids.label} and {numbers.label}", "")
            else:  # standardised by the forward itself, else the one role seen
                found[field] = roles.get("standardised") or next(iter(roles.values()))


def _integer_field(name: str, t: Any, torch: Any) -> bool:
    """An integer input tensor whose use decides what it is; a mask (by name, as ``field_role`` reads
    it) is a mask however the forward uses it (``h * mask.unsqueeze(-1)``, ``(1.0 - mask) * min``)."""
    return (isinstance(t, torch.Tensor) and not t.is_floating_point() and not t.is_complex() and t.dtype != torch.bool
            and "mask" not in name.lower())


def _role(name: str, position: Any, out: Any, torch: Any) -> str | None:
    """What one call tells of the watched integer tensor at argument ``position``."""
    if name in SHAPE_ONLY:
        return None  # torch.ones_like(ids, dtype=float): a new tensor of its shape, not its values
    if name in IDS:  # ids where it is the index (the values of scatter/index_add, their input, are not)
        index = position == INDEX_AT.get(name) or position == "index"
        if name in ("embedding", "embedding_bag", "one_hot", "bincount") or index:
            return "ids"  # (as the input or the values of gather/scatter its values go on: read below)
    if name == "getitem":
        return "ids" if position != 0 else "follow"  # weight[x]: an index; x[:, 0]: a part of it
    tensors = [t for t in (out if isinstance(out, (tuple, list)) else (out,)) if isinstance(t, torch.Tensor)]
    if not tensors:
        return None  # x.size(), x.tolist(), x.item(): a read
    if any(t.is_floating_point() or t.is_complex() for t in tensors):
        return "numbers"
    if all(t.dtype == torch.bool for t in tensors):
        return None  # x != pad_id, x > 0: a mask made from it
    return "follow"


PROBE_SAMPLES = 8  # samples of the one forward that shows how the model reads its integer inputs


def forward_uses(model: Any, split: Any, seed: int) -> tuple[dict[str, TorchUse], str]:
    """(``first_uses`` of a few of ``split``'s samples, as its pipeline yields them, fed to
    ``model`` as the training checks feed it; a note instead when that forward fails)."""
    import warnings

    import numpy as np
    import torch

    from .batches import takes_whole, tree_map
    from .torch_data import to_device

    sample = split.sample(PROBE_SAMPLES, seed)
    form = takes_whole(sample.form, model)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a read-only array: torch warns, and nothing writes to it
            batch = tree_map(lambda v: torch.from_numpy(v) if isinstance(v, np.ndarray) else v, sample.head(PROBE_SAMPLES))
            device = next((q.device for q in model.parameters()), torch.device("cpu"))
            batch = to_device(batch, device)
            args, kwargs = form.call_args(batch)
            fields = form.inputs(batch)
            uses = first_uses(model, args, kwargs, fields)
    except Exception as exc:  # noqa: BLE001 - the check stays model-free: the inputs' dtype decides, said in a note
        from .base import first_line

        return {}, (f"\nNote: the model's forward failed on {PROBE_SAMPLES} samples of {split.where} "
                    f"({type(exc).__name__}: {first_line(exc)}), so whether it reads the integer inputs as ids or "
                    f"as numbers was decided by their dtype alone.")
    unseen = [name for name, t in fields.items() if name not in uses and _integer_field(name, t, torch)]
    if not unseen:
        return uses, ""
    what = "the integer inputs" if len(fields) == 1 else "field(s) " + ", ".join(map(repr, unseen))
    return uses, (f"\nNote: the model's forward used {what} in no embedding, index or cast that torch shows (a trip "
                  f"through numpy, x.numpy(), leaves torch), so their kind was decided by their dtype alone.")
