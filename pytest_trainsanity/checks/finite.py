"""Non-finite training (numpy only): a gate never passes on NaN/Inf.

A pass whose loss or weights went NaN/Inf has no meaningful metric: argmax of
NaN outputs is class 0 everywhere, so train and val "accuracy" agree and a gap
check would pass. Every training check asks ``find`` first and fails with the
step, the lr at that step, and the measured causes, strongest first:
weights already non-finite before training, non-finite train inputs, a loss
that is non-finite on the first batch (the loss or step computes it), a loss
that grew before it broke (the lr), or a single batch that broke it.

NaN/Inf in the eval samples' inputs fail the check even when training stayed
finite: a loss that clips its input (Keras' probability losses) or a model
that masks NaN absorbs them, and the metrics on those samples are then
measured on values that mean nothing. (A model that reads NaN as "missing" on
purpose is rare; it fails here and says why.)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from .causes import Cause, rank

GROWTH = 10.0  # the loss grew this many times over its first value before it broke: the lr drove it
NAMES = 4  # tensors named in the message, at most


@dataclass(frozen=True)
class NonFinite:
    """Where a training pass broke; ``step`` is 1-based, 0 when every loss stayed finite."""

    step: int
    steps: int
    epoch: int  # 1-based, 0 when every loss stayed finite
    value: str  # "NaN", "+Inf" or "-Inf"; "" when the loss stayed finite
    lr: float | None  # the largest group lr at that step
    first_loss: float | None  # the first step's loss, when finite
    peak_loss: float | None  # the largest finite loss before the break
    weights_start: tuple[str, ...]  # non-finite tensors before the first step
    weights_end: tuple[str, ...]  # non-finite tensors after the pass
    inputs: dict[str, int]  # per input field: non-finite values in the train eval sample
    input_rows: int  # rows of that sample
    eval_splits: tuple[str, ...] = ()  # splits whose loss measured in eval mode after training is NaN/Inf
    other_inputs: tuple[tuple[str, int, int], ...] = ()  # (split, non-finite input values, rows) of other eval samples
    grad_step: int = 0  # every loss finite: the first step (1-based) whose gradient norm was NaN/Inf, when measured
    grad_epoch: int = 0

    @property
    def inputs_only(self) -> bool:
        """Training, weights and eval losses all stayed finite: only the inputs hold NaN/Inf."""
        return not self.step and not self.weights_end and not self.weights_start and not self.eval_splits

    def where(self) -> str:
        if self.step:
            lr = f", lr {self.lr:.3g}" if self.lr is not None else ""
            return f"the training loss was {self.value} at step {self.step} of {self.steps} (epoch {self.epoch}{lr})"
        if self.weights_end and self.grad_step:
            return (f"the gradient was NaN/Inf at step {self.grad_step} of {self.steps} (epoch {self.grad_epoch}) while "
                    f"every training loss stayed finite, and the weights hold NaN/Inf after the pass "
                    f"({_names(self.weights_end)})")
        if self.weights_end:
            return f"the weights hold NaN/Inf after {self.steps} step(s) ({_names(self.weights_end)})"
        if self.inputs_only:
            return f"the {input_text(self)}"
        return (f"every training loss was finite, but the loss measured in eval mode after {self.steps} step(s) is "
                f"NaN/Inf on the {' and '.join(self.eval_splits)} eval sample(s)")

    def metrics(self) -> dict[str, Any]:
        return {"nonfinite_step": self.step, "nonfinite_weights": len(self.weights_end),
                "nonfinite_inputs": int(sum(self.inputs.values()))}


def _names(names: tuple[str, ...]) -> str:
    more = f" and {len(names) - NAMES} more" if len(names) > NAMES else ""
    return ", ".join(names[:NAMES]) + more


def nonfinite_inputs(fields: Mapping[str, np.ndarray]) -> dict[str, int]:
    """Per floating-point input field, how many of its values are NaN/Inf."""
    out = {}
    for name, values in fields.items():
        arr = np.asarray(values)
        if arr.dtype.kind in "fc":
            bad = int(arr.size - np.count_nonzero(np.isfinite(arr)))
            if bad:
                out[name] = bad
    return out


def find(trace: Any, inputs: Mapping[str, np.ndarray] | None = None,
         others: Mapping[str, Mapping[str, np.ndarray]] | None = None) -> NonFinite | None:
    """The first non-finite step of ``trace`` (a TrainingTrace), or None when the pass stayed finite
    and ``inputs`` (the train eval sample's fields) and ``others`` (other splits' fields) hold no NaN/Inf."""
    loss = np.asarray(trace.loss, dtype=np.float64)
    start = tuple(getattr(trace, "bad_weights_start", ()))
    end = tuple(getattr(trace, "bad_weights_end", ()))
    bad = np.flatnonzero(~np.isfinite(loss))
    evals = tuple(name for name in ("train", "val")
                  if not np.isfinite(np.asarray(getattr(trace, f"{name}_loss", ()), dtype=np.float64)).all())
    counts = nonfinite_inputs(inputs or {})
    elsewhere = tuple((name, n, len(next(iter(fields.values())))) for name, fields in (others or {}).items()
                      if (n := sum(nonfinite_inputs(fields).values())))
    if not len(bad) and not end and not start and not evals and not counts and not elsewhere:
        return None
    rows = len(next(iter(inputs.values()))) if inputs else 0
    if not len(bad):
        grads = np.asarray(getattr(trace, "grad_norm", ()), dtype=np.float64)
        # measured from the first step (torch leaves it NaN outside lr_spike_explained's pass: not measured)
        broke = np.flatnonzero(~np.isfinite(grads)) if len(grads) and np.isfinite(grads[0]) else ()
        g = int(broke[0]) + 1 if len(broke) else 0
        g_epoch = int(trace.epoch[g - 1]) + 1 if g and len(trace.epoch) >= g else 0
        return NonFinite(0, len(loss), 0, "", None, None, None, start, end, counts, rows, evals, elsewhere, g, g_epoch)
    i = int(bad[0])
    value = "NaN" if np.isnan(loss[i]) else ("+Inf" if loss[i] > 0 else "-Inf")
    lr = float(np.max(trace.lr[i])) if np.size(trace.lr) and len(trace.lr) > i else None
    before = loss[:i]
    first = float(loss[0]) if i > 0 else None
    peak = float(before.max()) if i > 0 else None
    epoch = int(trace.epoch[i]) + 1 if len(trace.epoch) > i else 1
    return NonFinite(i + 1, len(loss), epoch, value, lr, first, peak, start, end, counts, rows, evals, elsewhere)


def input_text(nf: NonFinite) -> str:
    """Where the eval samples' inputs hold NaN/Inf, e.g. "train inputs hold 3 NaN/Inf value(s) in the
    eval sample of 300 rows (field x: 3); the val inputs hold 1"."""
    parts = []
    total = sum(nf.inputs.values())
    if total:
        fields = ", ".join(f"field {k}: {v}" for k, v in nf.inputs.items())
        parts.append(f"train inputs hold {total} NaN/Inf value(s) in the eval sample of {nf.input_rows} rows ({fields})")
    parts += [f"{name} inputs hold {n} NaN/Inf value(s) in the eval sample of {rows} rows" for name, n, rows in nf.other_inputs]
    return "; the ".join(parts)


EPS_FIX = ("keep float32 weights and train in mixed precision (torch.autocast(device_type, dtype=torch.float16) with "
           "torch.amp.GradScaler), or use bfloat16; with pure float16 weights give the optimizer an eps float16 holds "
           "(eps=1e-4)")


def eps_cause(underflow: str, step: int, name: str = "optimizer_eps_underflow") -> Cause:
    """An adaptive optimizer whose eps is 0 in the weights' dtype: the update is 0 / 0 = NaN where a gradient is 0.
    Strongest when the loss first broke on step 2: the first update did it. Never for a break on step 1, whose
    loss and gradient come from the weights before any update (callers leave it out then)."""
    return Cause(
        name, 0.9 if step == 2 else 0.5,
        f"{underflow}: the update m / (sqrt(v) + eps) is 0 / 0 = NaN for every weight whose gradient is exactly 0 "
        f"(a dead ReLU unit, a class absent from the batch)"
        + (f", and the loss broke at step {step}, right after the first update" if step == 2 else
           f"; it broke at step {step}"),
        EPS_FIX)


def causes(nf: NonFinite, eps_underflow: str = "") -> tuple[list[Cause], list[Cause]]:
    """The measured causes of a non-finite pass, ranked (likely, ruled out); ``eps_underflow`` (ModelInfo's)
    names an optimizer eps that is 0 in the weights' dtype."""
    found = []
    # an update made the NaN: not a break on step 1, which no update preceded
    if eps_underflow and (nf.step > 1 or (not nf.step and nf.weights_end and nf.grad_step != 1)):
        found.append(eps_cause(eps_underflow, nf.step or nf.grad_step or nf.steps))
    if nf.weights_start:
        found.append(Cause(
            "weights_nonfinite_at_start", 1.0,
            f"{len(nf.weights_start)} weight tensor(s) already hold NaN/Inf before the first step: "
            f"{_names(nf.weights_start)}",
            "re-initialise those tensors (or reload a checkpoint saved before training diverged); check code "
            "that writes into the weights (a custom init dividing by zero)."))
    else:
        found.append(Cause("weights_nonfinite_at_start", 0.0, "every weight was finite before the first step", ""))
    total = sum(nf.inputs.values())
    if total or nf.other_inputs:
        absorbed = (": training, the weights and the eval losses stayed finite, so the model or its loss absorbed "
                    "them (a clipping loss, a mask), and the metrics on those samples mean nothing" if nf.inputs_only else "")
        found.append(Cause(
            "nonfinite_inputs", 0.95, f"the {input_text(nf)}{absorbed}",
            "impute or drop them before the loader (np.nan_to_num, sklearn SimpleImputer, or filter the rows; a model "
            "that reads NaN as missing on purpose: do that in the data pipeline instead); inputs_normalized names them "
            "too."))
    elif nf.input_rows:
        found.append(Cause("nonfinite_inputs", 0.0, f"no NaN/Inf in the train eval sample ({nf.input_rows} rows)", ""))
    if nf.grad_step:
        found.append(Cause(
            "nonfinite_gradient_finite_loss", 0.6,
            f"the gradient was NaN/Inf at step {nf.grad_step} while its loss was finite: a NaN/Inf input in that step's "
            f"batch that the forward hid (a fused ReLU can map NaN to 0, a clipping loss clips it), or an overflow in "
            f"backward",
            "count NaN/Inf over the whole split with inputs_normalized (it names the feature), and run finite_training "
            "to name the first module that goes non-finite; impute or drop those rows before the loader"))
    if nf.step == 0 and not nf.weights_end and nf.eval_splits:
        found.append(Cause(
            "nonfinite_eval_data", 0.9,
            f"training stayed finite and the weights are finite, yet the {' and '.join(nf.eval_splits)} eval loss "
            f"is NaN/Inf: those samples (inputs or labels) hold NaN/Inf, or the loss overflows on them",
            "impute or drop the non-finite samples of that split; inputs_normalized names NaN/Inf per split."))
    if nf.step == 1 and not nf.weights_start and not total:
        found.append(Cause(
            "loss_computes_nonfinite", 0.8,
            f"the loss was {nf.value} on the very first batch, with finite weights and inputs",
            "the loss or training step computes it: look for log(0) (use log_softmax / clamp_min(1e-12)), a "
            "division by a zero count, sqrt of a negative number, or a NaN constant."))
    if nf.step > 1 and nf.first_loss is not None and nf.peak_loss is not None:
        growth = nf.peak_loss / nf.first_loss if nf.first_loss > 0 else float("inf")
        lr = f"lr {nf.lr:.3g}" if nf.lr is not None else "the lr"
        if growth >= GROWTH:
            found.append(Cause(
                "lr_too_high", 0.9,
                f"the loss grew from {nf.first_loss:.4g} (step 1) to {nf.peak_loss:.4g} ({growth:.3g}x) before "
                f"it became {nf.value} at step {nf.step}: the updates diverge at {lr}",
                "lower the learning rate 10x (or warm it up), clip gradients "
                "(torch.nn.utils.clip_grad_norm_ / keras clipnorm=1.0), and standardise raw inputs."))
        else:
            found.append(Cause(
                "one_batch_broke_it", 0.6,
                f"the loss {'stayed finite' if growth < 1.5 else f'grew at most {growth:.3g}x'} ({nf.first_loss:.4g} at "
                f"step 1, peak {nf.peak_loss:.4g}) and then was {nf.value} at step {nf.step}: one batch broke it "
                f"rather than a diverging lr",
                "find that batch (a rare extreme input, an empty class, an overflow in float16) and guard it: "
                "clip inputs, use a numerically stable loss, or train in float32."))
    return rank(found)


def headline(check: str, nf: NonFinite) -> str:
    if nf.inputs_only:
        return (f"{check} FAILED: the inputs hold NaN/Inf: the {input_text(nf)}. Training stayed finite, but metrics "
                f"measured on such inputs mean nothing, so no gap or spike was judged.")
    weights = (f"; afterwards {len(nf.weights_end)} weight tensor(s) hold NaN/Inf ({_names(nf.weights_end)})"
               if nf.weights_end and nf.step else "")
    return (f"{check} FAILED: training went non-finite: {nf.where()}{weights}. Accuracy and loss of a "
            f"non-finite model mean nothing (NaN outputs all map to one class), so no gap or spike was judged.")
