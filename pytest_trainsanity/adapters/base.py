"""The adapter boundary: framework objects on one side, numpy traces on the other.

An adapter owns one model for the duration of one check. Entering it
snapshots every piece of state the check could touch; each training pass
starts from that snapshot; leaving it (also on an exception) restores the
snapshot bit for bit. Checks only ever see the plain ``TrainingTrace``.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..data import SplitData, class_ids
from ..errors import SetupError


@dataclass(frozen=True)
class ModelInfo:
    framework: str
    n_params: int
    n_outputs: int
    device: str
    model_name: str
    has_batchnorm: bool = False
    embeds_inputs: bool = False  # first layer looks up integer ids


@dataclass
class TrainingTrace:
    """What one short training pass measured, as numpy and plain numbers.

    Per step: ``loss``, ``lr`` (steps x param groups), ``grad_norm`` (global L2
    norm of the gradients), ``epoch`` (the epoch each step belongs to), and
    ``update_ratio`` (||update|| / ||weights||) on sampled steps, NaN on the
    others: it needs a copy of the weights around the step, which on small
    models costs more than the whole instrumentation budget, so adapters
    sample it (torch: every 4th step of each epoch, starting with the first). Per epoch: ``train_metric`` and
    ``val_metric`` (accuracy, or R^2 for regression) and losses, measured in
    eval mode after the epoch. ``*_pred`` are the final predictions.
    """

    loss: np.ndarray
    lr: np.ndarray
    grad_norm: np.ndarray
    update_ratio: np.ndarray
    epoch: np.ndarray
    train_metric: np.ndarray
    val_metric: np.ndarray
    train_loss: np.ndarray
    val_loss: np.ndarray
    train_pred: np.ndarray
    val_pred: np.ndarray
    steps: int
    seconds: float
    truncated: bool = False
    notes: list[str] = field(default_factory=list)
    # recorded with ``train(detail=True)`` (lr_spike_explained): momentum-buffer norm on the
    # sampled steps (NaN between), relative drift of the batch-norm running statistics per epoch
    # (NaN without batch norm), each epoch's batch order, and a checkpoint before each epoch
    momentum_norm: np.ndarray = field(default_factory=lambda: np.zeros(0))
    bn_drift: np.ndarray = field(default_factory=lambda: np.zeros(0))
    orders: list[np.ndarray] = field(default_factory=list)
    checkpoints: list[Any] = field(default_factory=list)

    @property
    def final_train(self) -> float:
        return float(self.train_metric[-1])

    @property
    def final_val(self) -> float:
        return float(self.val_metric[-1])


class Adapter(abc.ABC):
    """One model of one framework, prepared for short, restorable training passes."""

    framework: str = "?"

    @abc.abstractmethod
    def info(self) -> ModelInfo:
        """Parameter count, output width and where it runs."""

    @abc.abstractmethod
    def train(
        self,
        *,
        epochs: int,
        lr_scale: float = 1.0,
        train_labels: np.ndarray | None = None,
        max_steps: int | None = None,
        detail: bool = False,
    ) -> TrainingTrace:
        """Train from the snapshot for ``epochs`` and measure (``detail``: also momentum norms,
        batch-norm drift, batch orders and a checkpoint per epoch, for replays).

        ``lr_scale`` multiplies every learning rate (the lr probe);
        ``train_labels`` replaces the train labels (the random-label probe).
        """

    def interventions(self) -> dict[str, str]:
        """Replay interventions this adapter supports ("" when it does, else why not):
        ``hold_lr``, ``reshuffle``, ``reset_momentum``, ``freeze_bn``."""
        return {}

    def replay(self, trace: TrainingTrace, epoch: int, intervention: str | None = None, seed_offset: int = 1) -> dict[str, float]:
        """Re-run ``epoch`` from the checkpoint before it and return ``{"val_acc": ..., "val_loss":
        ..., "train_acc": ..., "train_loss": ...}``; adapters without checkpoints raise
        NotImplementedError and spikes are then attributed by evidence alone (the report says so)."""
        raise NotImplementedError(f"{type(self).__name__} does not replay epochs")

    @abc.abstractmethod
    def __enter__(self) -> "Adapter":
        """Snapshot weights, buffers, optimizer, scheduler and RNG states."""

    @abc.abstractmethod
    def __exit__(self, *exc: Any) -> None:
        """Restore the snapshot bit for bit, whatever happened."""


def first_line(exc: BaseException) -> str:
    """An exception's first line, for one-paragraph setup errors (no framework traceback)."""
    text = str(exc).strip()
    return text.splitlines()[0].rstrip(".") if text else type(exc).__name__


def check_label_range(data: dict[str, SplitData], task: str, n_outputs: int) -> None:
    """Classification labels must index the model's outputs (0/1 for a single output)."""
    if task != "classification":
        return
    for split in data.values():
        ids = class_ids(split.y)
        low, high = int(ids.min()), int(ids.max())
        limit = 2 if n_outputs == 1 else n_outputs
        if low < 0 or high >= limit:
            raise SetupError(
                f"TrainSetup({split.name}=...) has labels in [{low}, {high}] but the model outputs "
                f"{n_outputs} value(s) per sample, so labels must lie in [0, {limit - 1}]. "
                f"Widen the output layer or re-map the labels."
            )


def batch_starts(n: int, batch_size: int) -> list[int]:
    """Start of every batch of an epoch; a lone last sample is dropped (it breaks batch norm)."""
    return [s for s in range(0, n, batch_size) if not (n - s == 1 and n > 1)]
