"""What the pre-flight checks ask of an adapter: plain numpy measurements of one model.

Every probe runs inside an entered adapter (``with adapter:``), so the
snapshot is restored bit for bit afterwards whatever a probe did; probes that
train restore the snapshot themselves before they start. The checks in
``checks/preflight/`` turn these numbers into verdicts and messages; an
adapter never decides one.

Each framework implements ``Preflight`` beside its training adapter
(``torch_preflight.py``, ``keras_preflight.py``). Batches are the pipeline's
own: the first train batch as the user's loader (or the plugin's batching of
arrays) yields it, never cast.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class InitProbe:
    """The untrained model on a seeded train sample, in eval mode."""

    outputs: np.ndarray  # (n, C) raw model outputs as the loss receives them (float64)
    targets: np.ndarray  # (n,) class ids
    loss: float  # the user's loss, mean over the sample
    loss_kind: str  # "logits" (CE / sparse CE from logits / BCE with logits), "log_probs" (NLL), "probs" (expects probabilities), "unknown"
    loss_name: str  # e.g. "CrossEntropyLoss", "SparseCategoricalCrossentropy(from_logits=True)"
    final_bias: np.ndarray | None  # the last layer's bias (C,), when there is one
    final_layer: str  # its name
    ends_in_softmax: str = ""  # the module/activation that turns outputs into probabilities, when one does
    summed: bool = False  # the loss sums over a batch (reduction="sum"): ``loss`` is already per sample
    per_batch: float = float("nan")  # mean samples (labelled positions) per loss call
    # Keras 3 keeps a softmax's (sigmoid's) logits on its output and its cross-entropies read them: the same
    # loss on a copy of the outputs without that record (the softmax applied twice); NaN when nothing was kept
    twice_loss: float = float("nan")


@dataclass
class BatchRun:
    """Training on one fixed batch for ``steps`` steps."""

    losses: np.ndarray  # (steps,)
    accuracy: float  # final accuracy on the batch (classification; NaN for regression)
    r2: float  # final R^2 on the batch (regression; NaN for classification)
    batch_size: int
    conflicts: int  # samples whose input equals another's in the batch but whose label differs
    moved: dict[str, float] = field(default_factory=dict)  # parameter -> relative change over the run
    lr: float = float("nan")
    update_ratio: float = float("nan")  # median ||update|| / ||weights|| per step
    train_mode_layers: list[str] = field(default_factory=list)  # dropout / batch-norm layers active in train mode
    lrs: np.ndarray = field(default_factory=lambda: np.zeros(0))  # (steps,) the lr each step applied (its schedule)
    schedule_end: int = 0  # the probe step after which a fixed-length schedule had no step left (its lr held); 0: none
    schedule_note: str = ""  # that, in words


@dataclass
class Mixing:
    """Gradient of probed samples' outputs w.r.t. every input of the batch, in eval mode."""

    batch_size: int
    probed: list[int]
    leak: float  # largest |d out_i / d x_j| (j != i) over the largest of it and |d out_i / d x_i|: 0 independent, 1 fully mixed
    module: str = ""  # the module whose input mixes samples while its output does not leak further
    between: tuple[str, str] = ("", "")  # (last module whose output leaks, first module confined): a functional op in between
    batchnorm_train: list[str] = field(default_factory=list)  # batch-norm layers (mix only in train mode: expected)
    skipped: str = ""  # why it could not be measured (no differentiable float input, ...)
    through: str = ""  # where the inputs were differentiated when they are token ids ("the output of embedding 'emb'")
    module_kind: str = ""  # the class of ``module`` (MultiheadAttention, BatchNorm1d, ...)


@dataclass
class ParamRecord:
    name: str
    trainable: bool  # requires_grad / Keras trainable
    frozen_by_prefix: bool
    in_optimizer: bool
    grad: str  # "ok", "none" (no gradient path), "zero", "nonfinite"
    changed: bool
    size: int


@dataclass
class FiniteRun:
    steps: int  # steps run
    bad_step: int  # first step (1-based) with a non-finite loss, gradient or weight; 0 when none
    what: str = ""  # "loss", "gradient", "weights"
    module: str = ""  # first module whose output went non-finite on the replay of that step
    module_kind: str = ""  # its type (Linear, Conv2d, log, ...)
    lr: float = float("nan")
    input_min: float = float("nan")
    input_max: float = float("nan")
    losses: np.ndarray = field(default_factory=lambda: np.zeros(0))
    first_loss: float = float("nan")
    bad_params: list[str] = field(default_factory=list)
    dtype: str = ""
    input_nonfinite: int = 0  # NaN/Inf values among the inputs of the bad step's batch
    skipped: int = 0  # batches the training_step skipped (returned None)
    schedule_note: str = ""  # a fixed-length schedule that ran out inside the probe (its last lr held), in words
    eps_underflow: str = ""  # an optimizer eps that is 0 in the weights' dtype (ModelInfo.eps_underflow)


def input_range(arrays: list[np.ndarray]) -> tuple[float, float, int]:
    """(min, max of the finite values, how many are NaN/Inf) over a batch's input arrays: the range is of
    the numbers (NaN would hide it), the non-finite ones are counted."""
    values = np.concatenate([np.asarray(a, dtype=np.float64).ravel() for a in arrays] or [np.zeros(0)])
    finite = values[np.isfinite(values)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (float("nan"), float("nan"))
    return lo, hi, int(values.size - finite.size)


@dataclass
class BatchMix:
    counts: np.ndarray  # (batches, classes) label counts of each batch as the loader yields them
    source: str  # "the DataLoader (shuffle=False, SequentialSampler)", "arrays, shuffled by the plugin", ...
    skipped: str = ""


class Preflight:
    """The probes a pre-flight check calls on an entered adapter."""

    def init_probe(self) -> InitProbe:
        raise NotImplementedError

    def one_batch(self, steps: int, lr_scale: float = 1.0) -> BatchRun:
        raise NotImplementedError

    def mixing(self, probes: int = 3) -> Mixing:
        raise NotImplementedError

    def param_step(self, frozen: tuple[str, ...]) -> list[ParamRecord]:
        raise NotImplementedError

    def finite_run(self, steps: int) -> FiniteRun:
        raise NotImplementedError

    def batch_mix(self, max_batches: int | None) -> BatchMix:
        raise NotImplementedError


def relative_change(before: Any, after: Any) -> float:
    """||after - before|| / max(||before||, tiny) of two numpy arrays (float64)."""
    b, a = np.asarray(before, dtype=np.float64), np.asarray(after, dtype=np.float64)
    return float(np.linalg.norm(a - b) / max(float(np.linalg.norm(b)), 1e-12))
