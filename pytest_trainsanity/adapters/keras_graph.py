"""How a Keras model's graph first uses each input field, read from the graph without calling it.

``inputs_normalized`` is model-free, but when the setup gives a built functional or Sequential
Keras model, the layers that read each input tell two things the data alone cannot:

- an integer field read by ``Dense`` (or a convolution, a merge) is numbers (age, income), not
  ids: it is judged as a feature, never skipped as "ids that feed an embedding";
- a field read only by the model's own ``Rescaling`` or ``Normalization`` layer reaches the
  network through it: it is judged after that layer, so the check neither asks to normalise twice
  nor misses a wrong rescale.

Any other first use (an ``Embedding``, a lookup, a ``Lambda``, a subclassed model) is ``unknown``:
the field is judged as before. Imports nothing; reads attributes of the user's model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

IDS = ("Embedding", "Lookup", "Hashing", "CategoryEncoding")  # class-name parts of layers that read ids
NUMBERS = {"Dense", "EinsumDense", "Conv1D", "Conv2D", "Conv3D", "Concatenate", "Add", "Subtract", "Multiply",
           "Average", "Maximum", "Minimum", "Dot"}
NORMALISERS = {"Rescaling", "Normalization"}


@dataclass(frozen=True)
class FirstUse:
    role: str  # "ids" | "numbers" | "normalised"
    layer: Any  # the (first) layer that reads the field

    @property
    def label(self) -> str:
        return f"{self.layer.name} ({type(self.layer).__name__})"


def first_uses(model: Any, fields: tuple[str, ...]) -> dict[str, FirstUse]:
    """The known first use of each field (by the split's field names) in ``model``'s graph; fields
    the graph does not settle are left out."""
    inputs = model_inputs(model)
    if not inputs:
        return {}
    by_name = {getattr(t, "name", None): t for t in inputs}
    if all(f in by_name for f in fields):
        pairs = [(f, by_name[f]) for f in fields]
    elif len(fields) == len(inputs):  # positional: (x, y), (x1, ..., xk, y), ((x1, ..., xk), y)
        pairs = list(zip(fields, inputs))
    else:
        return {}
    out = {}
    for field, tensor in pairs:
        readers = _readers(model, tensor)
        kinds = {type(layer).__name__ for layer in readers}
        if not readers:
            continue
        if any(part in kind for kind in kinds for part in IDS):
            out[field] = FirstUse("ids", readers[0])
        elif len(readers) == 1 and kinds <= NORMALISERS:
            out[field] = FirstUse("normalised", readers[0])
        elif kinds <= NUMBERS:
            out[field] = FirstUse("numbers", readers[0])
    return out


def model_inputs(model: Any) -> list[Any]:
    """A built functional or Sequential Keras model's input tensors; [] when not known."""
    try:
        return list(model.inputs or [])
    except (AttributeError, TypeError, ValueError):  # subclassed, or a Sequential with no Input yet
        return []


def _readers(model: Any, tensor: Any) -> list[Any]:
    """The layers whose calls in the model's graph take ``tensor`` itself."""
    flatten = getattr(model, "_flatten_layers", None)
    if flatten is None:
        return []
    found = []
    for layer in flatten(include_self=False):
        for node in getattr(layer, "_inbound_nodes", None) or []:
            arguments = getattr(node, "arguments", None)
            if arguments is not None and any(t is tensor for t in getattr(arguments, "keras_tensors", ())):
                found.append(layer)
                break
    return found
