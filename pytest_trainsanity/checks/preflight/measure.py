"""Pre-flight verdicts from the probes' numbers (numpy only; no framework, no pytest).

Each ``judge_*`` takes the plain measurements an adapter returned
(``adapters/preflight.py``) and returns a ``Verdict``: pass/fail, the
numbers, ranked causes with their evidence and a fix, and the lines of the
message. Thresholds are named constants the tests import.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ...adapters.preflight import BatchMix, BatchRun, FiniteRun, InitProbe, Mixing, ParamRecord
from ..causes import Cause, rank
from ..finite import eps_cause
from ..labels import sorting

SUM_TO_ONE = 1e-3  # rows within this of 1 (and >= 0) are probabilities, not logits
LOGIT_STD_HIGH = 3.0  # logits this spread at init make a confident, wrong start (a loss well above ln C)
BIAS_OFF = 1.0  # nats: a final bias this far from the log class prior (centred) sets the start's mix
LEAK = 1e-6  # relative gradient from another sample's input: float rounding stays far below this
STALL = 0.05  # one-batch loss that fell by less than this fraction: the run did not learn
TINY_UPDATE = 1e-6  # median ||update|| / ||weights|| per step below this: the lr is too small to move the weights
ONE_BATCH_R2 = 0.99
LR_COLLAPSE = 0.01  # a schedule whose lr ends below this share of its peak has stopped the run
SPENT = 0.99  # the share of the run's summed lr by which a collapsed schedule has done its work


@dataclass
class Verdict:
    name: str
    passed: bool
    headline: str
    metrics: dict[str, Any] = field(default_factory=dict)
    lines: list[str] = field(default_factory=list)
    likely: list[Cause] = field(default_factory=list)
    ruled_out: list[Cause] = field(default_factory=list)
    skipped: str = ""
    notes: list[str] = field(default_factory=list)  # what the probe did that the user should know, pass or fail


def f3(x: float) -> str:
    if x is None or not math.isfinite(x):
        return "nan" if x is None or math.isnan(x) else str(x)
    return f"{x:.3f}" if 1e-3 <= abs(x) < 1e5 or x == 0 else f"{x:.3g}"


def entropy(ids: np.ndarray, classes: int) -> float:
    """Natural-log entropy of the label distribution: the loss of a model that predicts the class prior."""
    p = np.bincount(ids[(ids >= 0) & (ids < classes)], minlength=classes).astype(np.float64)
    p = p[p > 0] / max(p.sum(), 1.0)
    return float(-(p * np.log(p)).sum())


def is_probabilities(outputs: np.ndarray, end: str = "") -> bool:
    """Every row non-negative and summing to 1: softmax already applied; one output column in [0, 1]
    behind a final sigmoid (``end``) for a binary head."""
    if outputs.ndim == 2 and outputs.shape[1] == 1:
        return bool(end and len(outputs) and ((outputs >= 0) & (outputs <= 1)).all())
    return bool(outputs.ndim == 2 and outputs.shape[1] >= 2 and len(outputs) and (outputs >= 0).all()
                and np.abs(outputs.sum(axis=1) - 1).max() <= SUM_TO_ONE)


def reading(outputs: np.ndarray, end: str = "") -> str:
    """What the outputs are: "probs" (softmax/sigmoid applied), "log_probs" (rows' logsumexp 0,
    a log_softmax applied), "logits", or "" (one column in [0, 1] with no final sigmoid seen: either)."""
    if not outputs.size or outputs.ndim != 2:
        return ""
    if is_probabilities(outputs, end):
        return "probs"
    if outputs.shape[1] == 1:
        return "logits" if ((outputs < 0) | (outputs > 1)).any() else ""
    with np.errstate(invalid="ignore", over="ignore"):  # NaN/Inf outputs: not log-probabilities (their own cause)
        lse = np.logaddexp.reduce(outputs, axis=1)
    return "log_probs" if bool(np.all(np.abs(lse) <= SUM_TO_ONE)) else "logits"


def per_sample_loss(outputs: np.ndarray, ids: np.ndarray, read_as: str) -> float:
    """The mean cross-entropy of ``outputs`` against class ids ``ids`` when read as ``read_as``
    ("logits", "log_probs", "probs"): what a loss that reads them so gives per sample."""
    if not outputs.size or outputs.ndim != 2 or len(ids) != len(outputs) or read_as not in ("logits", "log_probs", "probs"):
        return float("nan")
    tiny = 1e-7
    if outputs.shape[1] == 1:  # a binary head: one logit / probability of class 1
        o, y = outputs[:, 0], (ids > 0).astype(np.float64)
        if read_as == "logits":
            return float(np.mean(np.logaddexp(0.0, o) - y * o))
        if read_as == "probs":
            q = np.clip(o, tiny, 1 - tiny)
            return float(np.mean(-(y * np.log(q) + (1 - y) * np.log(1 - q))))
        return float("nan")
    ok = (ids >= 0) & (ids < outputs.shape[1])
    o, y = outputs[ok], ids[ok]
    if not len(y):
        return float("nan")
    picked = o[np.arange(len(y)), y]
    if read_as == "logits":
        return float(np.mean(np.logaddexp.reduce(o, axis=1) - picked))
    if read_as == "log_probs":
        return float(np.mean(-picked))
    return float(np.mean(-np.log(np.clip(picked / np.maximum(o.sum(axis=1), tiny), tiny, None))))


NAMES = {"logits": "raw logits", "log_probs": "log-probabilities", "probs": "probabilities"}


def read_outputs(p: InitProbe) -> tuple[str, bool, str]:
    """(what the outputs are, as ``reading``; a double softmax: probabilities, a softmax or a sigmoid on a binary
    head already applied, fed to a loss on logits; what the outputs are when the loss reads them as something
    else, softmax into NLLLoss or logits into a loss on probabilities, "" when it reads them as they are)."""
    fed = reading(p.outputs, p.ends_in_softmax)
    double = fed == "probs" and p.loss_kind == "logits"
    wrong = p.loss_kind in ("log_probs", "probs") and fed not in ("", p.loss_kind) and bool(np.isfinite(p.outputs).all())
    return fed, double, fed if wrong else ""


def kept_logits(p: InitProbe) -> bool:
    """Keras 3 read the logits it kept behind the model's softmax: the loss differs from the same loss on a
    copy of the outputs (which applies the softmax twice)."""
    return math.isfinite(p.twice_loss) and abs(p.twice_loss - p.loss) > 1e-6 * max(1.0, abs(p.loss))


def _mismatch_fix(fed: str, reads: str, loss_name: str, framework: str, binary: bool) -> str:
    if reads == "log_probs" and fed == "probs":
        return (f"take the log of the softmax: end the model in LogSoftmax(dim=1) instead of Softmax for {loss_name}, "
                f"or drop the softmax and use CrossEntropyLoss on the raw logits")
    if reads == "log_probs":
        return (f"end the model in LogSoftmax(dim=1) for {loss_name}, or keep the raw logits and use CrossEntropyLoss "
                f"(it applies log_softmax itself)")
    squash = "sigmoid" if binary else "softmax"
    if framework != "torch":
        return (f"keep the raw logits and pass from_logits=True to the loss ({loss_name.split('(')[0]}(from_logits=True)), "
                f"or end the model in activation='{squash}'")
    return (f"keep the raw logits and use {'BCEWithLogitsLoss' if binary else 'CrossEntropyLoss'} instead of "
            f"{loss_name}, or end the model in {squash.capitalize()}")


def _bias_offset(bias: np.ndarray | None, ids: np.ndarray, classes: int) -> float:
    """Largest |centred final bias - centred log class prior| (nats); NaN when it does not apply."""
    if bias is not None and classes == 1 and len(bias) == 1:  # a binary head: its bias against the prior's log-odds
        share = float(np.clip(np.mean(ids > 0), 0.5 / max(len(ids), 1), 1 - 0.5 / max(len(ids), 1))) if len(ids) else 0.5
        return float(abs(bias[0] - math.log(share / (1 - share))))
    if bias is None or len(bias) != classes or classes < 2:
        return float("nan")
    prior = np.bincount(ids[(ids >= 0) & (ids < classes)], minlength=classes).astype(np.float64) + 0.5
    logp = np.log(prior / prior.sum())
    return float(np.abs((bias - bias.mean()) - (logp - logp.mean())).max())


# ------------------------------------------------------------------ loss at init


def judge_loss_at_init(p: InitProbe, tol: float, task: str, framework: str = "torch") -> Verdict:
    name = "loss_at_init"
    if task != "classification":
        return Verdict(name, True, "", skipped="loss_at_init applies to classification with a cross-entropy-like "
                       "loss; for regression there is no label-entropy baseline (the check does not apply)")
    outputs, ids = p.outputs, p.targets
    classes_out = outputs.shape[1] if outputs.ndim == 2 else 1
    seen = int(ids.max()) + 1 if len(ids) else 0
    classes = max(classes_out, seen, 2)
    expected = entropy(ids, classes)
    gap = p.loss - expected
    fed, double, wrong = read_outputs(p)
    probs, mismatch = fed == "probs", bool(wrong)
    if classes_out == 1:  # one logit of class 1: the spread of a two-class head with logits (o, 0), centred
        std = float(np.sqrt(np.mean(outputs ** 2)) / 2) if outputs.size else float("nan")
    else:
        std = float(np.std(outputs - outputs.mean(axis=1, keepdims=True))) if outputs.size else float("nan")
    offset = _bias_offset(p.final_bias, ids, classes_out)
    metrics = {"init_loss": p.loss, "expected_loss": expected, "tol": tol, "logit_std": std, "classes": classes_out,
               "bias_offset": offset, "double_softmax": double}
    finite = math.isfinite(p.loss)
    failed = not finite or abs(gap) > tol or double or mismatch  # a NaN gap compares False both ways: it must not pass
    metrics["outputs_read_wrongly"] = mismatch
    if math.isfinite(p.twice_loss):
        metrics["twice_loss"] = p.twice_loss
    causes = []
    if p.loss_kind in ("log_probs", "probs"):
        right = per_sample_loss(outputs, ids, fed)
        causes.append(Cause(
            "loss reads the outputs as something else", (0.95 if abs(right - expected) <= tol else 0.8) if mismatch else 0.0,
            (f"the outputs are {NAMES[fed]} but {p.loss_name} reads {NAMES[p.loss_kind]}: read as {NAMES[fed]}, the "
             f"same outputs give {f3(right)} per sample vs {f3(expected)} expected") if mismatch else
            f"{p.loss_name} reads {NAMES[p.loss_kind]} and the outputs are {NAMES.get(fed, 'in [0, 1] (either)')}",
            _mismatch_fix(fed, p.loss_kind, p.loss_name, framework, classes_out == 1)))
    if not p.summed and finite and p.per_batch >= 2 and not mismatch and abs(gap) > tol:
        own = per_sample_loss(outputs, ids, p.loss_kind if p.loss_kind in NAMES else (fed or "logits"))
        ratio = p.loss / own if own > 0 else float("nan")
        summing = abs(ratio / p.per_batch - 1) <= 0.25 and abs(own - expected) <= tol
        causes.append(Cause(
            "loss summed over the batch", 0.8 if summing else 0.0,
            f"the loss is {ratio:.3g}x the per-sample cross-entropy of the same outputs ({f3(own)}), and the "
            f"sample's batches hold {p.per_batch:.3g} samples on average" + (": it sums over the batch" if summing else ""),
            "average over the batch (reduction='mean'); a summed loss also scales the gradient, and so the effective "
            "learning rate, with the batch size"))
    if not finite:
        bad = int(outputs.size - np.count_nonzero(np.isfinite(outputs))) if outputs.size else 0
        causes.append(Cause(
            "non-finite loss at init", 1.0,
            f"the untrained loss is {f3(p.loss)}, and {bad} of the {outputs.size} output values of the {len(ids)} "
            f"samples are NaN/Inf" + (": NaN/Inf inputs or weights reach the outputs" if bad else
                                      ": the outputs are finite, so the loss computes it (log(0), a NaN constant)"),
            "impute or drop NaN/Inf inputs (inputs_normalized names them), re-initialise NaN/Inf weights, or make the "
            "loss numerically stable (log_softmax, from_logits=True)"))
    squash = "softmax" if classes_out > 1 else "sigmoid"
    applies = squash if classes_out > 1 else f"a {squash}"
    harm = ("the loss sits near ln C whatever the model predicts, gradients shrink by about 1/C, and the model learns "
            "slowly or not at all" if classes_out > 1 else
            "every prediction lands in [0.5, 0.73], the loss cannot fall below 0.31, and the gradients shrink")
    kept = double and kept_logits(p)
    if kept:  # measured: the loss read the logits behind the softmax, and a copy of the same outputs reads them twice
        harm = (f"Keras 3 notices and computes the loss from the logits it kept behind the {squash} ({f3(p.loss)} per "
                f"sample; a copy of the same outputs, which has lost them, gives {f3(p.twice_loss)}), so nothing is applied "
                f"twice while the {squash} is the output layer's own; the loss still contradicts the model, and the "
                f"rescue ends once the probabilities pass through another op (a Lambda or custom layer after it, a model "
                f"that wraps it, a loss computed outside Keras)")
    shape = f"every row >= 0 and sums to 1 within {SUM_TO_ONE:g}" if classes_out > 1 else "in [0, 1]"
    causes.append(Cause(
        "double softmax", 0.95 if double else 0.0,
        (f"the outputs are already probabilities ({shape}{'; the model ends in ' + p.ends_in_softmax if p.ends_in_softmax else ''}) "
         f"and {p.loss_name} {'is told they are logits' if kept else f'applies {applies} again'}: {harm}") if double else
        (f"outputs are {'probabilities' if probs else 'not probabilities'} ("
         + (f"rows sum to 1: {probs}" if classes_out > 1 else f"in [0, 1] behind a final sigmoid: {probs}")
         + f"); loss reads {p.loss_kind}"),
        f"remove the final {squash} ({p.ends_in_softmax or 'the activation'}) and keep {p.loss_name} on raw logits, "
        f"or keep the {squash} and use a loss on probabilities (Keras: from_logits=False; torch: "
        + ("NLLLoss on log_softmax)" if classes_out > 1 else "BCELoss)")))
    wide = std > LOGIT_STD_HIGH
    wrong_width = classes_out >= 2 and seen > 0 and classes_out != seen
    causes.append(Cause(
        "logit scale at init", 0.8 if (abs(gap) > tol and wide) else 0.0,
        f"the outputs' spread across classes is {f3(std)} (std of centred outputs; a well-initialised classifier "
        f"starts below 1)" + (": the model starts confident and wrong" if wide else ""),
        "scale the last layer's init down (e.g. multiply its weights by 0.01 or use the framework default), and "
        "normalise the inputs (inputs_normalized)"))
    causes.append(Cause(
        "final bias away from the class prior", 0.6 if (abs(gap) > tol and offset > BIAS_OFF) else 0.0,
        (f"the bias of the final layer '{p.final_layer or '?'}' differs from the log-odds of the class-1 share by "
         f"{f3(offset)} nats" if classes_out == 1 else
         f"the bias of the final layer '{p.final_layer or '?'}' differs from the centred log class prior by up to "
         f"{f3(offset)} nats"),
        (f"initialise the bias of '{p.final_layer}' to " if p.final_layer else "initialise the last bias to ") + ("log(p / (1 - p)) of the class-1 share p (0 for balanced labels)"
                                          if classes_out == 1 else "log(class frequency) (or zeros for balanced classes)")))
    causes.append(Cause(
        "outputs vs classes", 0.7 if (abs(gap) > tol and wrong_width) else 0.0,
        (f"the model has 1 output (a binary head: the logit of class 1) and the labels use {seen} classes"
         if classes_out == 1 else f"the model has {classes_out} outputs and the labels use {seen} classes") + (
            f" (a uniform start costs ln {classes_out} = {f3(math.log(max(classes_out, 1)))}, not {f3(expected)})"
            if wrong_width else ""),
        f"give the last layer one output per class ({seen})"))
    if p.loss_kind == "unknown":
        causes.append(Cause("loss kind unknown", 0.0, f"{p.loss_name}: assumed cross-entropy-like", ""))
    likely, ruled = rank(causes)
    verdict = (f"within {f3(abs(gap))} nats" if abs(gap) <= tol else
               f"off by {f3(abs(gap))} nats" if finite else "not a finite loss")
    head = (f"loss_at_init {'passed' if not failed else 'FAILED'}: untrained loss {f3(p.loss)} vs {f3(expected)} "
            f"expected (entropy of the train labels; ln {classes} = {f3(math.log(classes))} for balanced classes), "
            f"{verdict} (tol {tol:g}), on {len(ids)} train samples in eval mode")
    if kept:
        head += (f"; but the outputs are already probabilities fed to a loss told they are logits (Keras reads the logits "
                 f"it kept behind the {squash}, so nothing is applied twice yet)")
    elif double:
        head += f"; but the outputs are already probabilities fed to a loss that applies {applies} (double {squash})"
    elif mismatch:
        head += f"; but the outputs are {NAMES[fed]} fed to {p.loss_name}, which reads {NAMES[p.loss_kind]}"
    lines = [f"Per sample: {p.loss_name} sums over each batch (reduction='sum'), so each batch's loss was divided "
             f"by its {p.per_batch:.3g} samples (on average) before the comparison."] if p.summed else []
    return Verdict(name, not failed, head, metrics, lines, likely if failed else [], ruled if failed else likely + ruled)


# ------------------------------------------------------------------ one batch


def curve(losses: np.ndarray, points: int = 8) -> str:
    if not len(losses):
        return "(no steps)"
    idx = sorted({int(round(i)) for i in np.linspace(0, len(losses) - 1, points)})
    return ", ".join(f"{i + 1}: {f3(float(losses[i]))}" for i in idx)


def one_batch_passed(run: BatchRun, task: str) -> bool:
    if task == "classification":
        return run.accuracy >= 1.0
    return run.r2 >= ONE_BATCH_R2


def _lr_collapse(run: BatchRun, steps: int, framework: str) -> Cause | None:
    """A schedule that spends its learning rate in the first steps of the run (a decay sized in epochs
    or for a much shorter run): named only when the lr ends below ``LR_COLLAPSE`` of its peak."""
    lrs = run.lrs
    if len(lrs) < 2 or len(run.losses) != len(lrs) or not np.isfinite(lrs).all() or lrs.max() <= 0:
        return None
    if run.schedule_end:  # a fixed-length schedule ran out inside the probe: judged on its own steps, not the held lr
        lrs = lrs[: run.schedule_end]
        if len(lrs) < 2:
            return None
    peak = float(lrs.max())
    if lrs[-1] > peak * LR_COLLAPSE:
        return None
    spent = np.cumsum(lrs) / lrs.sum()
    k = int(np.searchsorted(spent, SPENT))  # by step k + 1 the run has had 99% of all the lr it gets
    early = k + 1 <= len(lrs) // 2
    at, end = float(run.losses[k]), float(run.losses[-1])
    peaked = f", peak {peak:.3g} at step {int(lrs.argmax()) + 1}" if peak > lrs[0] else ""
    evidence = (f"the schedule spends {SPENT:.0%} of the run's summed learning rate in its first {k + 1} of {len(lrs)} "
                f"steps: lr {float(lrs[0]):.3g} at step 1{peaked}, {float(lrs[k]):.3g} at step {k + 1} and "
                f"{float(lrs[-1]):.3g} at step {len(lrs)}; the loss is {f3(at)} at step {k + 1} and {f3(end)} at the end")
    sized = ("decay_steps counts optimizer steps, not epochs: ExponentialDecay(lr, decay_steps=steps_per_epoch * "
             "epochs_per_decay, ...), or a decay_rate nearer 1" if framework != "torch" else
             "a scheduler stepped per batch counts batches, not epochs: StepLR(step_size=...) / "
             "ExponentialLR(gamma=...) sized in batches, or step it once per epoch")
    return Cause("learning-rate schedule decays to ~0", 0.9 if early else 0.0, evidence,
                 f"size the schedule for the run's steps ({sized}); the checks step it as the run does",
                 {"lr_first": float(lrs[0]), "lr_peak": peak, "lr_last": float(lrs[-1]), "lr_spent_by_step": k + 1})


def judge_one_batch(run: BatchRun, steps: int, task: str, higher: BatchRun | None, lower: BatchRun | None,
                    init: InitProbe | None, framework: str = "torch") -> Verdict:
    name = "overfits_one_batch"
    passed = one_batch_passed(run, task)
    score = f"accuracy {f3(run.accuracy)}" if task == "classification" else f"R^2 {f3(run.r2)}"
    goal = "accuracy 1.0" if task == "classification" else f"R^2 >= {ONE_BATCH_R2}"
    head = (f"overfits_one_batch {'passed' if passed else 'FAILED'}: {score} on one fixed batch of {run.batch_size} "
            f"after {steps} steps (needs {goal}); loss {f3(float(run.losses[0])) if len(run.losses) else 'nan'} -> "
            f"{f3(float(run.losses[-1])) if len(run.losses) else 'nan'}")
    metrics = {"one_batch_score": run.accuracy if task == "classification" else run.r2, "steps": steps,
               "first_loss": float(run.losses[0]) if len(run.losses) else float("nan"),
               "last_loss": float(run.losses[-1]) if len(run.losses) else float("nan"),
               "lr": run.lr, "update_ratio": run.update_ratio, "batch_size": run.batch_size}
    lines = [f"Loss curve (step: loss): {curve(run.losses)}"]
    notes = [run.schedule_note] if run.schedule_note else []
    if passed:
        return Verdict(name, True, head, metrics, lines, notes=notes)
    causes = []
    fell = 1 - float(run.losses[-1]) / float(run.losses[0]) if len(run.losses) and run.losses[0] else 0.0
    for probe, factor in ((higher, 10), (lower, 0.1)):
        if probe is None:
            continue
        ok = one_batch_passed(probe, task)
        s = probe.accuracy if task == "classification" else probe.r2
        metrics[f"one_batch_score_lr_x{factor:g}"] = s
        causes.append(Cause(
            "learning rate too low" if factor > 1 else "learning rate too high",
            0.9 if ok else (0.5 if s > (run.accuracy if task == "classification" else run.r2) + 0.2 else 0.0),
            f"at lr x{factor:g} ({run.lr * factor:.3g}) the same batch reaches {f3(s)} (loss {f3(float(probe.losses[-1]))})"
            f" vs {f3(run.accuracy if task == 'classification' else run.r2)} at lr {run.lr:.3g}",
            f"set the learning rate near {run.lr * factor:.3g} (or run an lr range test)"))
    zero = bool(len(run.losses)) and bool(np.all(run.losses == 0))  # no gradient at all: the lr is not why
    if math.isfinite(run.update_ratio) and run.update_ratio < TINY_UPDATE and fell < STALL and not zero:
        causes.append(Cause(
            "learning rate too low", 0.95,
            f"each step moves the weights by {run.update_ratio:.2e} of their norm (median) and the loss fell "
            f"{100 * fell:.1f}% in {steps} steps at lr {run.lr:.3g}",
            f"raise the learning rate (1e-3 is a common start for Adam; try {max(run.lr * 1e4, 1e-4):.3g})"))
    collapse = _lr_collapse(run, steps, framework)
    if collapse is not None:
        causes.append(collapse)
    if zero:
        causes.append(Cause(
            "the loss is zero from the first step", 0.95,
            f"the loss is 0 at every one of the {len(run.losses)} steps, so no gradient asks the model to fit the batch",
            "give the batch a loss that depends on the model: sample weights that are not all 0, labels that are not all "
            "masked (-100), a step that returns the loss it computed"))
    bad = np.flatnonzero(~np.isfinite(run.losses))
    if len(bad):  # nothing else is worth reading off a run that diverged
        causes.append(Cause(
            "the loss went non-finite", 0.95,
            f"the loss was NaN/Inf from step {int(bad[0]) + 1} of {steps} (lr {run.lr:.3g})",
            "run finite_training for the first module that overflows; lower the lr or normalise the inputs"))
    still = [n for n, change in run.moved.items() if change == 0.0]
    causes.append(Cause(
        "parameters that never update", 0.85 if still and not zero else 0.0,
        (f"{len(still)} trainable parameter(s) did not change in {steps} steps: {', '.join(still[:5])}"
         f"{', ...' if len(still) > 5 else ''}" + ("; a loss of 0 gives them no gradient" if zero else ""))
        if still else f"all {len(run.moved)} trainable parameters moved",
        "add them to the optimizer and check they are used in forward (run params_update for the reason)"))
    causes.append(Cause(
        "conflicting labels in the batch", 0.8 if run.conflicts else 0.0,
        f"{run.conflicts} sample(s) in the batch share identical inputs with a different label: no model can fit both",
        "deduplicate the data or fix the labels (no_leakage(within_split=True) counts these)"))
    if init is not None:
        seen, double, fed = read_outputs(init)
        kept = double and kept_logits(init)
        causes.append(Cause(
            "double softmax", 0.8 if double and not kept else 0.0,
            ("the outputs are probabilities fed to a loss that applies softmax again" if not kept else
             "the outputs are probabilities and the loss is told they are logits, but Keras computes the loss from the "
             "logits it kept behind the softmax, so nothing is applied twice") if double else
            "outputs are not probabilities (or the loss reads probabilities)",
            "remove the final softmax or use a loss on probabilities"))
        if init.loss_kind in ("log_probs", "probs"):
            causes.append(Cause(
                "loss reads the outputs as something else", 0.85 if fed else 0.0,
                (f"the untrained outputs are {NAMES[fed]} but {init.loss_name} reads {NAMES[init.loss_kind]}: the loss "
                 f"it lowers is not the error of the predictions" + (
                     "; it clips outputs outside [0, 1], which then pass no gradient" if init.loss_kind == "probs" else ""))
                if fed else
                f"{init.loss_name} reads {NAMES[init.loss_kind]} and the untrained outputs are "
                f"{NAMES.get(seen, 'in [0, 1] (either)')}",
                _mismatch_fix(fed or "logits", init.loss_kind, init.loss_name, framework, init.outputs.ndim == 2 and init.outputs.shape[1] == 1)))
    causes.append(Cause(
        "dropout / batch-norm in train mode", 0.3 if run.train_mode_layers else 0.0,
        (f"{len(run.train_mode_layers)} layer(s) behave differently in training: "
         f"{', '.join(run.train_mode_layers[:4])}: the batch is fitted with noise and judged without")
        if run.train_mode_layers else "no dropout or batch-norm layers",
        "expected to slow a one-batch fit a little; if it never fits, try the same with dropout 0"))
    likely, ruled = rank(causes)
    return Verdict(name, False, head, metrics, lines, likely, ruled, notes=notes)


# ------------------------------------------------------------------ batch independence


BATCH_AXIS_FIX = ("keep the batch axis first and separate: reduce over the feature axes, never dim 0 (x - x.mean(-1, "
                  "keepdim=True), LayerNorm instead of a batch statistic), and reshape with x.reshape(x.shape[0], -1) "
                  "/ x.flatten(1) (Keras: keras.layers.Flatten()), never x.view(-1, batch) or a transpose that moves "
                  "axis 0")


def judge_mixing(m: Mixing) -> Verdict:
    name = "batch_independent"
    metrics = {"leak": m.leak, "batch_size": m.batch_size, "probed": len(m.probed)}
    bn = (f"; {len(m.batchnorm_train)} batch-norm layer(s) ({', '.join(m.batchnorm_train[:3])}) mix samples in "
          f"train mode, which is expected, and were checked in eval mode") if m.batchnorm_train else ""
    if m.skipped:
        return Verdict(name, True, "", metrics, skipped=f"batch_independent cannot be measured: {m.skipped}")
    passed = m.leak <= LEAK
    head = (f"batch_independent {'passed' if passed else 'FAILED'}: in eval mode, the outputs of sample(s) "
            f"{', '.join(map(str, m.probed))} of a batch of {m.batch_size} take a relative gradient of {m.leak:.3g} "
            f"from the other samples' inputs"
            + (f" (token ids: measured at {m.through})" if m.through else "")
            + f" (0: independent, 1: as much from other samples as from its own; limit {LEAK:g}){bn}")
    if passed:
        return Verdict(name, True, head, metrics)
    if m.module and m.module_kind == "MultiheadAttention":
        where = (f"in '{m.module}' (MultiheadAttention): built without batch_first=True it reads its input as "
                 f"(sequence, batch, feature), so a batch-first input makes it attend across the samples")
        fix = (f"build '{m.module}' with batch_first=True (nn.TransformerEncoderLayer(..., batch_first=True) for "
               f"its attention), or transpose its input to (sequence, batch, feature) and back")
    elif m.module:
        where = f"in '{m.module}': its output for one sample depends on other samples' inputs"
        fix = (f"make '{m.module}' per-sample: reduce over the feature axes, never axis 0 (LayerNorm / "
               f"LayerNormalization instead of a batch statistic)")
    elif m.between[0] and m.between[1]:
        where = (f"between the output of module '{m.between[0]}' and the input of module '{m.between[1]}': a functional op in "
                 f"forward (a view/reshape/transpose/flatten across the batch axis, a mean or sum over dim 0)")
        fix = BATCH_AXIS_FIX
    elif m.between[0]:
        where = (f"after the output of module '{m.between[0]}' (a functional op in forward mixes the batch axis: a "
                 f"mean or sum over dim 0, a view/reshape/transpose across it)")
        fix = BATCH_AXIS_FIX
    else:
        where = ("before the first module (a functional op on the input mixes the batch axis: a mean or sum over dim "
                 "0, a view/reshape/transpose across it)")
        fix = BATCH_AXIS_FIX
    cause = Cause("samples mix across the batch", 0.95, f"they mix {where}", fix, {"leak": m.leak})
    return Verdict(name, False, head, metrics, [], [cause], [])


# ------------------------------------------------------------------ parameters update


DETACHED = {"torch": ".detach(), .data, torch.no_grad, a numpy round trip",
            "tensorflow": "keras.ops.stop_gradient, a numpy round trip, a layer the output does not use"}
CLIP = {"torch": "torch.nn.utils.clip_grad_norm_(params, 1.0)", "tensorflow": "the optimizer's clipnorm=1.0"}


def judge_params(records: list[ParamRecord], frozen: tuple[str, ...], framework: str = "torch") -> Verdict:
    name = "params_update"
    offenders: list[tuple[str, str]] = []
    for r in records:
        frozen_here = (not r.trainable) or r.frozen_by_prefix
        if frozen_here:
            if r.changed:
                why = ("has requires_grad=False / trainable=False" if not r.trainable else
                       f"matches frozen={frozen!r}")
                offenders.append((r.name, f"changed while frozen (it {why}; weight decay or an optimizer that "
                                          f"holds it still moves it)"))
            continue
        if not r.in_optimizer:
            offenders.append((r.name, "not in the optimizer (its param_groups do not hold it)"))
        elif r.grad == "none":
            offenders.append((r.name, f"no gradient path: unused in forward, or detached "
                                      f"({DETACHED.get(framework, DETACHED['torch'])}) before the loss"))
        elif r.grad == "zero":
            offenders.append((r.name, "zero gradient: a dead ReLU, a multiplication by 0, or a branch whose output "
                                      "the loss ignores"))
        elif r.grad == "nonfinite":
            offenders.append((r.name, "non-finite gradient (NaN/Inf): see finite_training"))
        elif not r.changed:
            offenders.append((r.name, "finite nonzero gradient but unchanged after the step (lr 0?)"))
    trainable = [r for r in records if r.trainable and not r.frozen_by_prefix]
    frozen_n = len(records) - len(trainable)
    moved_frozen = sum(1 for _, why in offenders if why.startswith("changed while frozen"))
    metrics = {"parameters": len(records), "trainable": len(trainable), "frozen": frozen_n, "offenders": len(offenders)}
    passed = not offenders
    head = (f"params_update {'passed' if passed else 'FAILED'}: after one step, "
            f"{len(trainable) - (len(offenders) - moved_frozen)} of {len(trainable)} trainable parameter tensors got a "
            f"finite nonzero gradient and changed; {frozen_n - moved_frozen} of {frozen_n} frozen stayed bit-identical"
            + ("" if passed else f"; {len(offenders)} offender(s)"))
    lines = [f"  - {n}: {why}" for n, why in offenders[:20]]
    if len(offenders) > 20:
        lines.append(f"  ... and {len(offenders) - 20} more")
    causes = []
    if any("not in the optimizer" in w for _, w in offenders):
        causes.append(Cause("parameters left out of the optimizer", 0.95,
                            f"{sum('not in the optimizer' in w for _, w in offenders)} tensor(s) never reach optimizer.step",
                            "build the optimizer on model.parameters() (or add the missing module's parameters to a param group)"))
    if any(w.startswith(("no gradient", "zero gradient")) for _, w in offenders):
        causes.append(Cause("no gradient reaches some parameters", 0.9,
                            f"{sum(w.startswith(('no gradient', 'zero gradient')) for _, w in offenders)} tensor(s) get "
                            f"no or zero gradient", "use the module in forward, remove the detach, or fix the dead units"))
    if any(w.startswith("changed while frozen") for _, w in offenders):
        causes.append(Cause("frozen parameters change", 0.9, "see the list", "exclude frozen parameters from the "
                            "optimizer (or set weight_decay=0 for them)"))
    return Verdict(name, passed, head, metrics, lines, causes if not passed else [], [])


# ------------------------------------------------------------------ finite training


def judge_finite(r: FiniteRun, steps: int, framework: str = "torch", capped: str | None = None) -> Verdict:
    """``capped`` says that ``steps`` is fewer than were asked for (the run's step cap): a pass then
    shows fewer steps finite than the test names, and says so."""
    name = "finite_training"
    notes = [r.schedule_note] if r.schedule_note else []
    metrics = {"steps": r.steps, "bad_step": r.bad_step, "lr": r.lr, "input_min": r.input_min,
               "input_max": r.input_max, "first_loss": r.first_loss}
    if not r.steps and r.skipped:  # a guard that returns None for every batch: nothing was shown finite
        return Verdict(name, False, f"finite_training FAILED: no training step ran: training_step returned None (skip "
                       f"the batch) for all {r.skipped} batch(es) tried; a guard that skips non-finite losses hides them "
                       f"(check the inputs: inputs_normalized counts NaN/Inf per feature)", metrics)
    if not r.steps:  # an exhausted or empty pipeline: nothing was shown finite
        return Verdict(name, False, "finite_training FAILED: no training step ran: the train pipeline yielded no batch "
                       "(an empty split, or a one-shot generator another check already consumed)", metrics)
    if not r.bad_step:
        head = (f"finite_training passed: loss, gradients and weights stayed finite for {r.steps} steps "
                f"(loss {f3(r.first_loss)} -> {f3(float(r.losses[-1])) if len(r.losses) else 'nan'})")
        if r.steps < steps:
            head += f" (the pipeline ran out after {r.steps} of {steps} steps)"
        if capped:
            head += (f"; {capped}: raise max_steps (--trainsanity-max-steps N, ini trainsanity_max_steps, or the "
                     f"marker's max_steps=) to test every step asked for")
        return Verdict(name, True, head, metrics, notes=notes)
    where = (f"; the first module whose output was non-finite on a replay of that step: '{r.module}' ({r.module_kind})"
             if r.module else "; every module's output was finite on the replay: the loss or the update itself overflowed")
    inputs = f"inputs in [{r.input_min:.3g}, {r.input_max:.3g}]" if math.isfinite(r.input_max) else "no finite input"
    if r.input_nonfinite:
        inputs += f" and {r.input_nonfinite} NaN/Inf input value(s)"
    head = (f"finite_training FAILED: the {r.what} became non-finite at step {r.bad_step} of {steps}{where}; lr "
            f"{r.lr:.3g}, {inputs} at that step")
    before = r.losses[: r.bad_step]  # up to the bad step, whose loss may still be finite (a gradient broke)
    finite_before = before[np.isfinite(before)]
    grew = float(finite_before.max() / max(abs(r.first_loss), 1e-12)) if len(finite_before) else 1.0
    raw = max(abs(r.input_min), abs(r.input_max)) if math.isfinite(r.input_max) else 0.0
    kind = r.module_kind.lower()
    causes = [
        Cause("non-finite inputs", 0.95 if r.input_nonfinite else 0.0,
              f"the batch of step {r.bad_step} holds {r.input_nonfinite} NaN/Inf input value(s): one of them makes the "
              f"loss non-finite whatever the learning rate" if r.input_nonfinite else "the batch of that step holds no NaN/Inf input",
              "drop or impute the NaN/Inf values in the data pipeline (inputs_normalized counts them per feature)"),
        Cause("learning rate too high", 0.9 if (r.bad_step > 1 and (grew >= 10 or r.lr >= 1.0)) else 0.3 if r.bad_step > 1 else 0.0,
              f"the loss grew {grew:.3g}x from step 1 before it broke (lr {r.lr:.3g})" if grew > 1 else
              f"it broke at step {r.bad_step} with lr {r.lr:.3g}",
              f"lower the learning rate (try {r.lr / 100:.3g}), add gradient clipping "
              f"({CLIP.get(framework, CLIP['torch'])}) or warm-up"),
        Cause("raw-scale inputs", 0.6 if raw > 50 else 0.0,
              f"inputs reach {raw:.3g} in magnitude at that step", "normalise the inputs (inputs_normalized)"),
        Cause("log of zero / division", 0.8 if r.bad_step == 1 or any(k in kind for k in ("log", "div")) else 0.0,
              f"non-finite on {'the very first step' if r.bad_step == 1 else 'step ' + str(r.bad_step)}"
              + (f" in '{r.module}' ({r.module_kind})" if r.module else ""),
              "clamp before log (x.clamp_min(1e-12)) / divide by (d + eps); use log_softmax / logits losses"),
        *([eps_cause(r.eps_underflow, r.bad_step, "optimizer eps is 0 in the weights' dtype")]
          if r.eps_underflow and r.bad_step > 1 else []),
        Cause("float16 overflow", 0.7 if r.dtype in ("float16", "bfloat16") else 0.0,
              f"weights are {r.dtype or '?'} (float16 overflows past 65504)", "train in float32 or use autocast with a GradScaler"),
    ]
    likely, ruled = rank(causes)
    lines = [f"Loss by step: {curve(r.losses)}"]
    if r.bad_params:
        lines.append(f"Non-finite after that step: {', '.join(r.bad_params[:6])}{', ...' if len(r.bad_params) > 6 else ''}")
    return Verdict(name, False, head, metrics, lines, likely, ruled, notes=notes)


# ------------------------------------------------------------------ batch mix


def judge_batch_mix(b: BatchMix, max_tv: float) -> Verdict:
    name = "batches_mixed"
    if b.skipped:
        return Verdict(name, True, "", skipped=f"batches_mixed does not apply: {b.skipped}")
    if not len(b.counts):
        return Verdict(name, False, "batches_mixed FAILED: the train pipeline yielded no batch")
    mix = sorting(b.counts)  # against the epoch's own label mix
    split = b.counts.sum(axis=0) / max(float(b.counts.sum()), 1.0)
    top = b.counts.argmax(axis=1)
    share = b.counts.max(axis=1) / np.maximum(b.counts.sum(axis=1), 1.0)
    runs = 1 + int((top[1:] != top[:-1]).sum())
    metrics = {"batch_sorting": mix.score, "batch_label_tv": mix.tv, "shuffled_tv": mix.shuffled,
               "one_class_tv": mix.one_class, "max_tv": max_tv, "batches": len(b.counts),
               "mean_top_share": float(share.mean())}
    passed = mix.score <= max_tv
    head = (f"batches_mixed {'passed' if passed else 'FAILED'}: the label mix of {len(b.counts)} training batches from "
            f"{b.source} scores {mix.words()} (limit {max_tv:g})")
    lines = [f"Per batch, the largest class holds {100 * share.mean():.0f}% of the samples on average (the epoch's "
             f"largest class: {100 * split.max():.0f}%); the batches' majority class changes {runs - 1} time(s) in "
             f"{len(b.counts)} batches"]
    if passed:
        return Verdict(name, True, head, metrics, lines)
    cause = Cause("batches sorted by class", 0.95,
                  f"each batch holds mostly one class ({100 * share.mean():.0f}% on average): the model chases the class "
                  f"it saw last (measured on digits sorted by class with shuffle=False: val accuracy 0.00-0.29 over five "
                  f"epochs where the shuffled loader gives 0.90-0.99)",
                  "DataLoader(..., shuffle=True), or a stratified / class-balanced sampler "
                  "(torch.utils.data.WeightedRandomSampler); with tf.data: dataset.shuffle(buffer >= the split size)")
    return Verdict(name, False, head, metrics, lines, [cause], [])
