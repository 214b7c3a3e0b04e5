"""The plain Python attributes of a torch model's modules, put back after a check.

A ``LightningModule`` often keeps records in its steps: ``self.training_step_outputs.append(loss)``
(Lightning's own documented pattern for epoch-end hooks), ``self.seen += 1``,
``self.stats["n"] += 1``, ``self.last_batch = batch``. A check calls the user's ``training_step`` and
``forward`` hundreds of times; the weights, buffers, optimizer and RNG come back bit for bit, and so
must these, or the user's next ``Trainer`` epoch averages the check's entries in.

Captured per module (every entry of its ``__dict__`` that a bare ``torch.nn.Module`` does not
have: torch's own bookkeeping, parameters and buffers are restored elsewhere): the object each
attribute names, and the contents of lists, dicts, sets and deques, one level into small ones
(a dict of lists), so they are refilled in place (code holding a reference sees its list as it
was). A plain tensor attribute (not a parameter or buffer) of at most ``TENSOR_COPY`` elements is
copied too, so ``self.total += loss`` (in place) is undone. Attributes, submodules, parameters and
buffers the check added (``self.extra = nn.Linear(...)`` in ``forward``) are removed. The weight of
an embedding with ``max_norm`` is copied too: its forward renormalises rows in place, even under
``no_grad``, before any snapshot of the weights is taken.

Not covered: a larger plain tensor changed in place; other objects' own attributes (a counter
inside a helper object or a namedtuple); a lazy module (``LazyLinear``) the first forward
materialises, which stays materialised (its class has changed; putting its old attributes back
would break it); a forward that converts the model (``self.double()``).
"""

from __future__ import annotations

import contextlib
from collections import deque
from typing import Any, Iterator

SMALL = 64  # containers of at most this many items are also captured one level deeper
REGISTRIES = ("_modules", "_parameters", "_buffers")
TENSOR_COPY = 1 << 20  # plain tensor attributes up to this many elements are copied (4 MB of float32)
MAX_NORM_COPY = 1 << 28  # a max_norm embedding's weight up to this many elements (1 GB of float32) is copied
_BASE: frozenset[str] | None = None


@contextlib.contextmanager
def evaluating(model: Any) -> Iterator[None]:
    """``model.eval()`` inside the block; every module's own train flag put back after it (a user may
    have left some modules in eval mode on purpose)."""
    flags = [(m, m.training) for m in model.modules()]
    try:
        model.eval()
        yield
    finally:
        for module, mode in flags:
            module.training = mode


def _base_keys() -> frozenset[str]:
    global _BASE
    if _BASE is None:
        import torch

        _BASE = frozenset(vars(torch.nn.Module()))
    return _BASE


def _contents(value: Any, depth: int) -> Any:
    """What to refill ``value`` with in place (None: not a container, or nothing to capture)."""
    if depth <= 0:
        return None
    deeper = depth - 1 if len(value) <= SMALL else 0
    if isinstance(value, dict):
        return {k: (v, _contents(v, deeper) if isinstance(v, (list, dict, set, deque)) else None) for k, v in value.items()}
    if isinstance(value, (list, deque)):
        return [(v, _contents(v, deeper) if isinstance(v, (list, dict, set, deque)) else None) for v in value]
    if isinstance(value, set):
        return set(value)
    return None


def _refill(value: Any, contents: Any) -> None:
    if contents is None:
        return
    if isinstance(value, set):
        if value != contents:
            value.clear()
            value.update(contents)
        return
    items = contents.values() if isinstance(value, dict) else contents
    if isinstance(value, dict):
        if value.keys() != contents.keys() or any(value[k] is not v for k, (v, _) in contents.items()):
            value.clear()
            value.update({k: v for k, (v, _) in contents.items()})
    elif len(value) != len(contents) or any(a is not b for a, (b, _) in zip(value, contents)):
        value.clear()
        value.extend(v for v, _ in contents)
    for v, inner in items:
        _refill(v, inner)


class ModuleAttrs:
    """The model's modules' own attributes as they are now; ``restore()`` puts them back."""

    def __init__(self, model: Any) -> None:
        import torch

        base = _base_keys()
        self.saved = []
        self.tensors = []  # (tensor, its values) of small plain tensor attributes
        for module in model.modules():
            own = {k: (v, _contents(v, 2) if isinstance(v, (list, dict, set, deque)) else None)
                   for k, v in vars(module).items() if k not in base}
            keys = {k: set(vars(module)[k]) for k in REGISTRIES}
            self.saved.append((module, type(module), own, keys))
            self.tensors += [(v, v.detach().clone()) for v, _ in own.values()
                             if isinstance(v, torch.Tensor) and v.numel() <= TENSOR_COPY]
            weight = getattr(module, "weight", None)
            if getattr(module, "max_norm", None) is not None and isinstance(weight, torch.Tensor) and weight.numel() <= MAX_NORM_COPY:
                self.tensors.append((module.weight, module.weight.detach().clone()))

    def restore(self) -> None:
        base = _base_keys()
        for module, kind, own, keys in self.saved:
            if type(module) is not kind:  # a lazy module the forward materialised: it stays so
                continue
            attrs = vars(module)
            for registry, before in keys.items():  # submodules, parameters, buffers the check added
                for key in [k for k in attrs[registry] if k not in before]:
                    del attrs[registry][key]
            for key in [k for k in attrs if k not in base and k not in own]:  # added by the check
                del attrs[key]
            for key, (value, contents) in own.items():
                if attrs.get(key, own) is not value:
                    attrs[key] = value  # into __dict__: Module.__setattr__ would register a module or parameter anew
                _refill(value, contents)
        if self.tensors:
            import torch

            with torch.no_grad():
                for tensor, values in self.tensors:
                    try:
                        if tensor.shape == values.shape and not torch.equal(tensor, values):
                            tensor.copy_(values)
                    except RuntimeError:  # moved to another device, or an inference tensor: left as the forward left it
                        continue
