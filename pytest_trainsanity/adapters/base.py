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

from ..checks.labels import NonFiniteLabels, require_finite, target_ids
from ..checks.matching import Canon, common_dtype
from ..errors import SetupError
from ..progress import Progress


@dataclass(frozen=True)
class ModelInfo:
    framework: str
    n_params: int
    n_outputs: int
    device: str
    model_name: str
    has_batchnorm: bool = False
    embeds_inputs: bool = False  # first layer looks up integer ids
    notes: tuple[str, ...] = ()  # what the adapter chose for the user (e.g. a default optimizer)
    # an adaptive optimizer whose eps is 0 in its weights' dtype (Adam's 1e-8 in float16), in words; "" when none
    eps_underflow: str = ""


@dataclass
class TrainingTrace:
    """What one short training pass measured, as numpy and plain numbers.

    Per step: ``loss``, ``lr`` (steps x param groups), ``epoch`` (the epoch each
    step belongs to); ``grad_norm`` (global L2 norm of the gradients) on every
    step of a ``detail`` pass, and ``update_ratio`` (||update|| / ||weights||)
    on its sampled steps, NaN on the others: it needs a copy of the weights
    around the step, which on small models costs more than the whole
    instrumentation budget, so adapters sample it (torch: every 4th step of
    each epoch, starting with the first). Only ``lr_spike_explained`` reads
    them: torch leaves both NaN on the other passes (Keras computes them in
    its traced step at no cost worth saving). Per epoch: ``train_metric`` and
    ``val_metric`` (accuracy, or R^2 for regression) and losses, measured in
    eval mode after the epoch, on each split's eval sample. ``*_pred`` are the final
    predictions on those samples (class ids for classification). ``label_counts`` (steps x
    classes, classification only) is the label mix of every training batch as the pipeline
    yielded it.
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
    label_counts: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    # names of the weight tensors holding NaN/Inf before the first step and after the pass
    bad_weights_start: tuple[str, ...] = ()
    bad_weights_end: tuple[str, ...] = ()

    @property
    def final_train(self) -> float:
        return float(self.train_metric[-1])

    @property
    def final_val(self) -> float:
        return float(self.val_metric[-1])


def finite_pass(trace: TrainingTrace) -> bool:
    """Every step's loss and every eval loss finite (numpy, no device work)."""
    return all(np.isfinite(a).all() for a in (trace.loss, trace.train_loss, trace.val_loss))


class Adapter(abc.ABC):
    """One model of one framework, prepared for short, restorable training passes."""

    framework: str = "?"
    progress: Progress | None = None  # set by the check: passes log their progress through it

    @abc.abstractmethod
    def info(self) -> ModelInfo:
        """Parameter count, output width and where it runs."""

    @abc.abstractmethod
    def train(
        self,
        *,
        epochs: int,
        lr_scale: float = 1.0,
        noise: "LabelNoise | None" = None,
        max_steps: int | None = None,
        detail: bool = False,
    ) -> TrainingTrace:
        """Train from the snapshot for ``epochs`` and measure (``detail``: also momentum norms,
        batch-norm drift and a checkpoint per epoch, for replays).

        ``lr_scale`` multiplies every learning rate (the lr probe); ``noise`` replaces every
        train target, in training and in the train metric (the random-label probe).
        """

    def number_fields(self) -> tuple[str, ...]:
        """The integer input fields the model reads as numbers (a cast before a dense layer), which
        the scale measurement judges as features rather than skipping them as ids."""
        return ()

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


def check_label_range(targets: dict[str, np.ndarray], task: str, n_outputs: int, sampled: bool = False) -> None:
    """Classification labels must index the model's outputs (0/1 for a single output); -100
    (the ignore index of token-level targets) is not a label."""
    if task != "classification":
        return
    for name, y in targets.items():
        try:
            require_finite(y)
        except NonFiniteLabels as exc:
            raise SetupError(f"TrainSetup({name}=...): {exc}{' (in its eval sample)' if sampled else ''}.") from None
        if y.dtype.kind == "f" and y.ndim == 2 and y.shape[1] == n_outputs > 1 and y.size:
            several = y.sum(axis=1) != 1
            if bool(np.isin(y, (0.0, 1.0)).all()) and several.any():
                row = y[int(np.argmax(several))]
                raise SetupError(
                    f"TrainSetup({name}=...) has multi-label targets: rows of 0/1 over the {n_outputs} outputs holding "
                    f"several 1s or none ({int(several.sum())} of {len(y)} rows, e.g. {row[:8].astype(int).tolist()}"
                    f"{' ...' if len(row) > 8 else ''}). The classification checks judge one label per sample (accuracy "
                    f"of the argmax, the entropy of one class distribution), which would misjudge them; multi-label "
                    f"classification is not supported yet. no_leakage and inputs_normalized take these splits as they are.")
        if n_outputs > 1 and y.dtype.kind == "f" and (y.ndim == 1 or y.ndim == 2 and y.shape[1] == 1) and y.size:
            fractional = y.reshape(-1)[np.mod(y.reshape(-1), 1) != 0]
            if len(fractional):
                raise SetupError(
                    f"TrainSetup({name}=...) has classification labels that are not whole numbers ({len(fractional)} "
                    f"of {y.size}{' in its eval sample' if sampled else ''}, e.g. {float(fractional[0]):g}), but the model "
                    f"outputs {n_outputs} class scores per sample, so each label must be a class id in [0, "
                    f"{n_outputs - 1}]. For a numeric target use TrainSetup(task='regression'); for soft labels give "
                    f"rows of {n_outputs} class probabilities.")
        ids = target_ids(y, n_outputs)
        if not len(ids):
            continue
        low, high = int(ids.min()), int(ids.max())
        limit = 2 if n_outputs == 1 else n_outputs
        if low < 0 or high >= limit:
            raise SetupError(
                f"TrainSetup({name}=...) has labels in [{low}, {high}]{' (in its eval sample)' if sampled else ''} "
                f"but the model outputs {n_outputs} value(s) per sample, so labels must lie in [0, {limit - 1}]. "
                f"Widen the output layer or re-map the labels."
            )


@dataclass
class LabelNoise:
    """The random-label probe's targets (Zhang et al. 2017, adapted to pipelines and duplicates).

    Every sample gets the target of the train eval sample's row that a seeded 64-bit hash of its
    inputs picks: labels keep the train label distribution and carry no information about the
    inputs, copies of one input share one label (so duplicated data stays exactly as memorisable),
    and a streamed batch is relabelled on its own, without an index into the dataset.
    """

    pool: np.ndarray  # targets of the train eval sample, one row per sample, as the pipeline yields them
    seed: int

    def pick(self, fields: "list[np.ndarray] | dict[str, np.ndarray]") -> np.ndarray:
        """Row of ``pool`` for each sample of a batch whose inputs are ``fields`` (numpy; named
        fields have their padding made equal first, and the hash ignores trailing zeros, so a
        sample gets one label however its batch was padded)."""
        if isinstance(fields, dict):
            from .splits import canonical_fields

            fields = list(canonical_fields(fields).values())
        n = len(fields[0])
        h = np.zeros(n, dtype=np.uint64)
        for i, f in enumerate(fields):
            flat = f.reshape(n, -1)
            if flat.dtype.kind == "b":
                flat = flat.astype(np.uint8)
            canon = Canon(common_dtype([flat.dtype]), flat.shape[1], seed=self.seed * 1000003 + i)
            with np.errstate(over="ignore"):
                h = h * np.uint64(0x9E3779B97F4A7C15) + canon.hashes(flat, full=True)
        return ((h >> np.uint64(11)) % np.uint64(len(self.pool))).astype(np.int64)

    def targets(self, fields: "list[np.ndarray] | dict[str, np.ndarray]") -> np.ndarray:
        return self.pool[self.pick(fields)]


def batch_starts(n: int, batch_size: int) -> list[int]:
    """Start of every batch of an epoch; a lone last sample is dropped (it breaks batch norm)."""
    return [s for s in range(0, n, batch_size) if not (n - s == 1 and n > 1)]
