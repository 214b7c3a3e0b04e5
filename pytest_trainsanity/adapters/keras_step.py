"""Pieces of the Keras adapter that need no model: the device, the predictions in an output,
the per-step records of a pass."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ..errors import OptionError, SetupError
from .base import TrainingTrace
from .devices import auto_gpu_index, xdist_worker_index
from .keras_data import _tf


def resolve_device(spec: str) -> str:
    tf, _ = _tf()
    gpus = tf.config.list_logical_devices("GPU")
    if spec == "auto":
        index = auto_gpu_index(len(gpus), xdist_worker_index())
        return "/CPU:0" if index is None else f"/GPU:{index}"
    if spec.startswith("cuda"):
        index = int(spec.split(":")[1]) if ":" in spec else 0
        if index >= len(gpus):
            raise OptionError(
                f"trainsanity device {spec!r} was asked for but TensorFlow sees {len(gpus)} GPU(s) "
                f"(tensorflow {tf.__version__}). Use 'cpu' or 'auto'."
            )
        return f"/GPU:{index}"
    if spec == "mps":
        raise OptionError("trainsanity device 'mps' is a torch device; TensorFlow models run on 'cpu', 'cuda' or 'auto'.")
    return "/CPU:0"


def predictions(out: Any) -> Any:
    """A tensor; the first output of several; ``logits`` of a dict output."""
    if isinstance(out, Mapping):
        if "logits" in out:
            return out["logits"]
        raise SetupError(f"The model returns a dict of outputs {sorted(out)}; pytest-trainsanity reads predictions "
                         f"from one tensor, the first of a list, or the 'logits' of a dict.")
    if isinstance(out, (list, tuple)):
        return out[0]
    return out


class StepRecord:
    """Per-step tensors, converted to numpy once at the end of the pass."""

    def __init__(self) -> None:
        self.losses: list[Any] = []
        self.grad_norms: list[Any] = []
        self.lrs: list[Any] = []
        self.step_epoch: list[int] = []
        self.sampled: list[tuple[int, Any, Any, Any]] = []
        self.checkpoints: list[dict[str, Any]] = []
        self.bn: list[float] = []
        self.counts: list[np.ndarray] = []

    def trace(self, tf: Any, counts: list[np.ndarray] | None, **per_epoch: Any) -> TrainingTrace:
        n = len(self.losses)
        as_np = lambda xs: np.asarray(tf.stack(xs).numpy(), dtype=np.float64) if xs else np.zeros(0)  # noqa: E731
        update_ratio, momentum = np.full(n, np.nan), np.full(n, np.nan)
        if self.sampled:
            steps = [s[0] for s in self.sampled]
            upd, wnorm, mom = (as_np([s[i] for s in self.sampled]) for i in (1, 2, 3))
            update_ratio[steps] = upd / np.maximum(wnorm, 1e-12)
            momentum[steps] = mom
        return TrainingTrace(
            loss=as_np(self.losses), lr=as_np(self.lrs).reshape(n, 1), grad_norm=as_np(self.grad_norms),
            update_ratio=update_ratio, epoch=np.asarray(self.step_epoch, dtype=np.int64), steps=n,
            momentum_norm=momentum, bn_drift=np.asarray(self.bn, dtype=np.float64),
            checkpoints=self.checkpoints, label_counts=np.asarray(counts, dtype=np.float64) if counts else np.zeros((0, 0)),
            **per_epoch,
        )
