"""The user's training step for torch: optimizer, scheduler and loss as configured, the model
called with a batch in its form, the loss and predictions read from whatever it returns.

Precedence for the loss: ``TrainSetup(step=...)``, a LightningModule's ``training_step``,
``loss(predictions, target)``, the model's own ``.loss`` (Hugging Face). A LightningModule
without ``TrainSetup(optimizer=...)`` brings its own through ``configure_optimizers()``; a
Hugging Face ``PreTrainedModel`` gets the transformers Trainer's default AdamW.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from ..errors import OptionError, SetupError
from .base import first_line
from .batches import describe, tree_leaves
from .devices import auto_gpu_index, xdist_worker_index
from .lightning import HF_DEFAULT_LR, SchedulerPlan, configured, refuse_manual, takes_batch_idx
from .torch_data import _torch

LOSS_NAMES = {
    "cross_entropy": "cross_entropy",
    "crossentropy": "cross_entropy",
    "ce": "cross_entropy",
    "nll": "nll_loss",
    "mse": "mse_loss",
    "l1": "l1_loss",
    "mae": "l1_loss",
    "smooth_l1": "smooth_l1_loss",
    "huber": "huber_loss",
    "bce": "binary_cross_entropy",
    "bce_with_logits": "binary_cross_entropy_with_logits",
}


def resolve_device(spec: str) -> Any:
    torch = _torch()
    cuda_ok = torch.cuda.is_available()
    if spec == "auto":
        index = auto_gpu_index(torch.cuda.device_count() if cuda_ok else 0, xdist_worker_index())
        if index is not None:
            return torch.device("cuda", index)
        mps = getattr(torch.backends, "mps", None)
        return torch.device("mps" if mps is not None and mps.is_available() else "cpu")
    if spec.startswith("cuda"):
        if not cuda_ok:
            raise OptionError(
                f"trainsanity device {spec!r} was asked for but torch.cuda.is_available() is False "
                f"(torch {torch.__version__}, CUDA build: {torch.version.cuda}). Use 'cpu' or 'auto'."
            )
        index = int(spec.split(":")[1]) if ":" in spec else 0
        if index >= torch.cuda.device_count():
            raise OptionError(
                f"trainsanity device {spec!r}: only {torch.cuda.device_count()} CUDA device(s) are visible."
            )
        return torch.device("cuda", index)
    if spec == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise OptionError("trainsanity device 'mps' was asked for but torch.backends.mps is not available.")
    return torch.device(spec)


def first_layer(model: Any) -> str:
    """The first module holding parameters, with its weights' dtype: where a batch enters."""
    for name, module in model.named_modules():
        params = list(module.parameters(recurse=False))
        if params:
            text = repr(module).splitlines()[0]
            where = f" (module {name!r})" if name else ""
            return f"{text}{where} with {str(params[0].dtype).replace('torch.', '')} weights"
    return type(model).__name__


def batch_text(form: Any, batch: Any) -> str:
    """Each input field's dtype and shape, e.g. ``x: uint8 (32, 3, 32, 32)``."""
    parts = []
    for name, value in form.inputs(batch).items():
        leaves = tree_leaves(value)
        parts.append(f"{name}: " + (", ".join(describe(v) for v in leaves) if len(leaves) > 1 else describe(leaves[0])))
    return "; ".join(parts)


ELEMENTWISE_LOSSES = ("BCEWithLogitsLoss", "BCELoss", "MSELoss", "L1Loss", "SmoothL1Loss", "HuberLoss",
                      "binary_cross_entropy_with_logits", "binary_cross_entropy", "mse_loss", "l1_loss",
                      "smooth_l1_loss", "huber_loss")
ID_LOSSES = ("CrossEntropyLoss", "NLLLoss", "cross_entropy", "nll_loss")


def sentence(hint: str, fallback: str) -> str:
    """``hint`` (else ``fallback``) as the sentence that ends a paragraph."""
    text = hint or fallback
    return f"{text[0].upper()}{text[1:]}."


def label_hint(pred: Any, target: Any, loss_name: str, task: str = "classification") -> str:
    """What to change when the loss refused the labels as the pipeline yields them, read off the
    output's and the labels' shapes and dtypes ("" when they give no clue)."""
    out, t = tuple(getattr(pred, "shape", ())), tuple(getattr(target, "shape", ()))
    if not out or not t or not hasattr(target, "is_floating_point"):
        return ""
    floating = bool(target.is_floating_point())
    if out[1:] == (1,) and t[1:] == ():
        return (f"the model gives one value per sample as a column {out} and the labels come as a vector {t}; "
                f"{loss_name} needs the two in one shape: yield each label with shape (1,) (y.float().unsqueeze(1) in "
                f"the dataset or collate_fn), or return the output as a vector (output.squeeze(1))")
    if out[1:] == () and t[1:] == (1,):
        return (f"the model gives one value per sample as a vector {out} and the labels come as a column {t}; "
                f"{loss_name} needs the two in one shape: yield each label as a scalar (y.squeeze(1)), or return the "
                f"output as a column (output.unsqueeze(1))")
    if out == t and not floating and loss_name in ELEMENTWISE_LOSSES:
        return (f"the labels are {str(target.dtype).replace('torch.', '')} and {loss_name} takes them as floats of "
                f"the output's dtype: yield y.float() from the dataset or collate_fn")
    if len(out) == 2 and out[1] > 1 and task == "classification":
        if t[1:] == (1,):
            return (f"the labels are class ids in a column {t}; {loss_name} takes one id per sample as a vector: "
                    f"yield y.squeeze(1) (shape (N,)) from the dataset or collate_fn")
        if len(t) == 1 and floating and loss_name in ID_LOSSES:
            return (f"the labels are {str(target.dtype).replace('torch.', '')} but {loss_name} reads a vector of "
                    f"class ids, which must be int64: yield y.long() from the dataset or collate_fn (float labels "
                    f"must be rows of {out[1]} class probabilities)")
        if len(t) == 1 and loss_name in ELEMENTWISE_LOSSES:
            return (f"the model gives {out[1]} class scores per sample and the labels one class id each; {loss_name} "
                    f"compares values element by element: class ids take CrossEntropyLoss")
    return ""


def predictions(out: Any, torch: Any) -> Any:
    """The predictions in a model's output: a tensor; ``.logits`` of a mapping or output object
    (Hugging Face ``ModelOutput``); the first item of a tuple or list."""
    if isinstance(out, torch.Tensor):
        return out
    logits = out.get("logits") if isinstance(out, Mapping) else getattr(out, "logits", None)
    if isinstance(logits, torch.Tensor):
        return logits
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        return out[0]
    raise SetupError(
        f"The model returned {type(out).__name__}; pytest-trainsanity reads predictions from a tensor, a tuple or "
        f"list whose first item is a tensor, or an output with .logits (a mapping or object, e.g. a Hugging Face "
        f"ModelOutput)."
    )


def loss_value(out: Any, source: str, torch: Any) -> Any:
    """The loss in what a step returns: a scalar tensor, a mapping or object with ``loss``, or a
    tuple whose first item is the loss; None (a skipped batch, as Lightning allows)."""
    if out is None:
        return None
    if isinstance(out, torch.Tensor):
        loss = out
    elif isinstance(out, Mapping):
        loss = out.get("loss")
    elif isinstance(out, (tuple, list)) and out:
        loss = out[0]
    else:
        loss = getattr(out, "loss", None)
    if not isinstance(loss, torch.Tensor):
        raise SetupError(
            f"{source} returned {type(out).__name__}{' without a loss' if isinstance(out, Mapping) else ''}; it must "
            f"return the loss: a scalar tensor, a dict with 'loss', or a tuple whose first item is the loss."
        )
    if loss.numel() != 1:
        loss = loss.mean()
    return loss



class TorchStep:
    """Mixin of ``TorchAdapter``: builds the optimizer, scheduler and loss, and runs one batch
    through the user's step (``self.model``, ``self.setup``, ``self.form``, ``self.params``,
    ``self.notes``, ``self.lightning``, ``self.hugging_face`` are the adapter's)."""

    def _optimizer_and_plan(self, setup: Any) -> tuple[Any, SchedulerPlan | None]:
        plan = (SchedulerPlan(setup.scheduler, "epoch" if setup.scheduler_step == "epoch" else "step")
                if setup.scheduler is not None else None)
        if setup.optimizer is None and self.lightning:
            optimizer, plan = configured(self.model, self.torch)
            self._check_own(optimizer)
            self.owns_optimizer = True
            sched = "" if plan is None else (f" and its {type(plan.scheduler).__name__} (stepped every "
                                             f"{plan.frequency} {plan.interval}{'s' if plan.frequency > 1 else ''})")
            self.notes.append(f"optimizer {type(optimizer).__name__}{sched} from {type(self.model).__name__}.configure_optimizers()")
            return optimizer, plan
        if setup.optimizer is None and self.hugging_face:
            self.owns_optimizer = True
            self.notes.append(f"optimizer AdamW(lr={HF_DEFAULT_LR:g}), the transformers Trainer's default "
                              f"(TrainSetup(optimizer=...) was not given)")
            return self.torch.optim.AdamW(self.params, lr=HF_DEFAULT_LR), plan
        if setup.optimizer is None:
            raise SetupError(
                "TrainSetup(optimizer=...) is needed for a torch model that is neither a LightningModule (which "
                "brings configure_optimizers()) nor a Hugging Face PreTrainedModel; give a torch.optim.Optimizer "
                "or a callable(params) -> Optimizer."
            )
        return self._optimizer(setup.optimizer), plan

    def _check_own(self, optimizer: Any) -> None:
        ours = {id(p) for p in self.model.parameters()}
        foreign = sum(1 for g in optimizer.param_groups for p in g["params"] if id(p) not in ours)
        if foreign:
            raise SetupError(
                f"TrainSetup(optimizer=...) holds {foreign} parameter tensor(s) that are not this "
                f"model's; it was built for another model instance. With a model factory, pass "
                f"optimizer=lambda params: torch.optim.Adam(params, lr=1e-3)."
            )

    def _optimizer(self, given: Any) -> Any:
        torch = self.torch
        if isinstance(given, torch.optim.Optimizer):
            self._check_own(given)
            self.owns_optimizer = False
            return given
        if callable(given):
            try:
                optimizer = given(self.model.parameters())
            except Exception as exc:  # noqa: BLE001
                raise SetupError(f"TrainSetup(optimizer=...) callable failed on the model's parameters: {exc}") from None
            if not isinstance(optimizer, torch.optim.Optimizer):
                raise SetupError(
                    f"TrainSetup(optimizer=...) callable returned {type(optimizer).__name__}, not a torch Optimizer."
                )
            self.owns_optimizer = True
            return optimizer
        raise SetupError(
            f"TrainSetup(optimizer={given!r}) is not usable with a torch model; give a "
            f"torch.optim.Optimizer over model.parameters() or a callable(params) -> Optimizer."
        )

    def _scheduler(self, given: Any) -> Any:
        if given is None:
            return None
        lr_sched = self.torch.optim.lr_scheduler
        base = getattr(lr_sched, "LRScheduler", getattr(lr_sched, "_LRScheduler", object))
        if isinstance(given, (base, lr_sched.ReduceLROnPlateau)):
            scheduler = given
        elif callable(given):
            if not self.owns_optimizer:  # building a scheduler changes its optimizer: keep the user's as it was
                self._user_optimizer = (copy.deepcopy(self.optimizer.state_dict()), set(vars(self.optimizer)))
            scheduler = given(self.optimizer)
        else:
            raise SetupError(f"TrainSetup(scheduler={given!r}) must be an LRScheduler or callable(optimizer).")
        if getattr(scheduler, "optimizer", None) is not self.optimizer:
            raise SetupError(
                "TrainSetup(scheduler=...) drives a different optimizer than TrainSetup(optimizer=...); "
                "build it on the same optimizer, or pass scheduler=lambda opt: ...(opt, ...)."
            )
        return scheduler

    def _plateau(self, plan: SchedulerPlan) -> tuple[str, str] | None:
        """(split, "loss" or "metric") a ReduceLROnPlateau steps on after each epoch's measurements, or None
        for any other scheduler. Lightning's ``monitor`` names it ("val_loss", "train_acc"); without one,
        the val loss for mode="min" and the val metric (accuracy, R^2) for mode="max"."""
        if not isinstance(self.scheduler, self.torch.optim.lr_scheduler.ReduceLROnPlateau):
            return None
        if plan.interval != "epoch":
            raise SetupError(
                "ReduceLROnPlateau steps on a metric measured once per epoch, and the scheduler is set to step "
                "after every optimizer step; use TrainSetup(scheduler_step='epoch') (Lightning: interval 'epoch').")
        monitor = (plan.monitor or "").lower()
        split = "train" if monitor.startswith("train") or "val" not in self.samples else "val"
        kind = "loss" if "loss" in monitor or (not monitor and self.scheduler.mode == "min") else "metric"
        metric = "accuracy" if self.setup.task == "classification" else "R^2"
        watched = f"the {split} {'loss' if kind == 'loss' else metric}"
        self.notes.append(f"ReduceLROnPlateau steps after each epoch on {watched}"
                          + (f" (monitor {plan.monitor!r})" if plan.monitor else f" (mode {self.scheduler.mode!r})"))
        return split, kind

    def _loss_mode(self, setup: Any) -> tuple[str, Any]:
        """How a batch becomes the training loss: 'step', 'lightning', 'loss' or 'own'."""
        if setup.step is not None:
            if not callable(setup.step):
                raise SetupError(f"TrainSetup(step={setup.step!r}) must be a callable(model, batch) -> loss.")
            self.notes.append("loss from TrainSetup(step=...)")
            return "step", None
        if setup.loss is None and self.lightning:
            refuse_manual(self.model, optimizer_given=setup.optimizer is not None)
            self.notes.append(f"loss from {type(self.model).__name__}.training_step(batch, batch_idx)")
            self._batch_idx = takes_batch_idx(self.model)
            return "lightning", None
        if setup.loss is None:
            return "own", None
        if isinstance(setup.loss, str):
            name = LOSS_NAMES.get(setup.loss.lower().replace("-", "_"))
            if name is None:
                raise SetupError(f"TrainSetup(loss={setup.loss!r}) is not a known loss name; use one of {sorted(LOSS_NAMES)} or a callable.")
            return "loss", getattr(self.torch.nn.functional, name)
        if callable(setup.loss):
            return "loss", setup.loss
        raise SetupError(f"TrainSetup(loss={setup.loss!r}) must be a callable(output, target) or a loss name.")

    def _forward(self, batch: Any, with_target: bool = False) -> Any:
        args, kwargs = self.form.call_args(batch, with_target)
        return self.model(*args, **kwargs)

    def restore_user_optimizer(self) -> None:
        """Undo what building a scheduler from ``TrainSetup(scheduler=callable)`` did to the user's
        optimizer (its param groups' keys, the step wrapper)."""
        saved = getattr(self, "_user_optimizer", None)
        if saved is not None:
            state, attributes = saved
            self.optimizer.load_state_dict(copy.deepcopy(state))
            for name in set(vars(self.optimizer)) - attributes:  # the step wrapper, the step counters
                delattr(self.optimizer, name)

    def _train_loss(self, batch: Any, index: int) -> Any:
        torch = self.torch
        if self.mode == "loss":
            return self._reduced(self.loss_fn(predictions(self._forward(batch), torch), self.form.target(batch)), batch)
        if self.mode == "own":
            return loss_value(self._forward(batch, with_target=True), "the model's output", torch)
        if self.mode == "step":
            return loss_value(self.setup.step(self.model, batch), "TrainSetup(step=...)", torch)
        step = self.model.training_step
        out = step(batch, index) if self._batch_idx else step(batch)
        return loss_value(out, f"{type(self.model).__name__}.training_step", torch)

    def _optimizer_step(self) -> None:
        """The optimizer's step, after a LightningModule's own on_before_optimizer_step and
        configure_gradient_clipping (where it overrides them), as a Trainer runs them."""
        for hook in self._step_hooks:
            try:
                hook(self.optimizer)
            except Exception as exc:  # noqa: BLE001 - the module's hook, called with no Trainer: one paragraph
                raise SetupError(
                    f"{type(self.model).__name__}.{hook.__name__}(optimizer) failed: {type(exc).__name__}: "
                    f"{first_line(exc)}. The check calls the module's own on_before_optimizer_step and "
                    f"configure_gradient_clipping before each optimizer step, as a Trainer does, but it runs no "
                    f"Trainer: a hook that needs one (self.clip_gradients(...), self.trainer) cannot run here. Clip "
                    f"with torch.nn.utils.clip_grad_norm_(self.parameters(), max_norm) in the hook instead.") from None
        self.optimizer.step()

    def _reduced(self, loss: Any, batch: Any) -> Any:
        """A per-sample loss (reduction='none') as one number: its mean, weighted by the batch's sample
        weights when it has them (mean(loss * w), as Keras weighs a loss)."""
        w = self.form.weights(batch)
        weighed = w is not None and isinstance(loss, self.torch.Tensor) and loss.ndim > 0 and loss.shape[0] == w.shape[0]
        self.weights_applied = weighed
        if weighed:
            return (loss.reshape(w.shape[0], -1).mean(1) * w.to(loss.dtype)).mean()
        return loss.mean() if isinstance(loss, self.torch.Tensor) and loss.numel() != 1 else loss

    def _eval_loss(self, batch: Any, out: Any, pred: Any, index: int) -> Any:
        """The loss of an eval batch whose forward gave ``out`` (a second call only for a user's step)."""
        torch = self.torch
        if self.mode == "loss":
            return self._reduced(self.loss_fn(pred, self.form.target(batch)), batch)
        if self.mode == "own":
            loss = out.get("loss") if isinstance(out, Mapping) else getattr(out, "loss", None)
            return loss.mean() if isinstance(loss, torch.Tensor) else None
        return self._train_loss(batch, index)

    # ------------------------------------------------------------ measuring

