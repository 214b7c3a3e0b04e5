"""Which framework an object belongs to, from its type's module: imports nothing."""

from __future__ import annotations

from typing import Any


def framework_of(obj: Any) -> str | None:
    """'torch', 'tensorflow' or None."""
    for cls in type(obj).__mro__:
        root = cls.__module__.split(".", 1)[0]
        if root == "torch":
            return "torch"
        if root in ("tensorflow", "keras", "tf_keras"):
            return "tensorflow"
    return None
