"""PyTorch adapter: short, instrumented, fully restorable passes over the user's own pipeline.

Framework code stays at this edge; what leaves it is numpy. Training runs
the user's own batches and step:

- arrays ``(X, y)`` are moved to the device once and batched here with a
  seeded permutation (the fastest honest loop, see benchmarks/overhead.py);
- a DataLoader is iterated as it is (its sampler, collate, augmentation,
  workers) under a seeded RNG, at most ``max_steps`` batches a pass;
- the loss is ``TrainSetup(step=...)``, a LightningModule's
  ``training_step``, ``loss(predictions, target)``, or the model's own
  ``.loss`` (Hugging Face), in that order of precedence.

Batches reach the model exactly as yielded, only moved to the device: no
input is ever cast. Metrics come from each split's eval sample (at most
``eval_samples`` samples, read once per check).
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import math
import random
import time
import warnings
from typing import Any, Iterator

import numpy as np

from ..checks.labels import class_ids
from ..errors import SetupError, TrainSanityError
from ..rng import seed_torch
from .base import Adapter, LabelNoise, ModelInfo, TrainingTrace, batch_starts, check_label_range, finite_pass, first_line
from .batches import describe, takes_whole, tree_map
from .lightning import STEP_HOOKS, UNCALLED_HOOKS, is_hugging_face, is_lightning, overridden
from .splits import Split, as_numpy, named_fields
from .torch_attrs import ModuleAttrs, evaluating
from .torch_data import _torch, clone, clone_tree, tensor_to_numpy, to_device
from .torch_preflight import TorchPreflight
from .torch_record import StepRecord
from .torch_step import (ELEMENTWISE_LOSSES, TorchStep, batch_text, first_layer, label_hint, predictions,
                         resolve_device, sentence)
from .torch_uses import following

UPDATE_EVERY = 4  # ||update|| / ||weights|| on every 4th step of a detail pass (NaN between): see TrainingTrace
NO_CAST = ("The plugin feeds batches exactly as the pipeline yields them (only moved to the device, never "
           "cast), so this is what your own training would hit: make the pipeline yield what the model takes "
           "(e.g. a transform that converts uint8 pixels with x.float() / 255).")


def class_axis(pred: Any, target: Any) -> int | None:
    """The axis of ``pred`` holding the classes when the target has a label per position: last for
    (batch, tokens, classes) as Hugging Face yields them, 1 for (batch, classes, *positions) as
    ``CrossEntropyLoss`` takes them (segmentation); None for a label per sample."""
    if target.is_floating_point() or target.ndim < 2 or pred.ndim != target.ndim + 1:
        return None
    if tuple(pred.shape[1:-1]) == tuple(target.shape[1:]):
        return -1
    if tuple(pred.shape[2:]) == tuple(target.shape[1:]):
        return 1
    return None


def _cat_padded(preds: list[Any]) -> np.ndarray:
    """Predictions of every eval chunk as numpy; per-position predictions of batches padded to
    their own length are padded with -1 to the longest."""
    if not preds:
        return np.zeros(0)
    parts = [tensor_to_numpy(p) for p in preds]
    if len({p.shape[1:] for p in parts}) > 1 and len({p.ndim for p in parts}) == 1:
        top = [max(p.shape[d] for p in parts) for d in range(1, parts[0].ndim)]
        parts = [np.pad(p, [(0, 0)] + [(0, t - n) for t, n in zip(top, p.shape[1:])], constant_values=-1) for p in parts]
    return np.concatenate(parts)


def _model_name(model: Any) -> str:
    """The model's class; a ``torch.compile`` wrapper (OptimizedModule) by the class it compiled."""
    inner = getattr(model, "_orig_mod", None)
    if type(model).__name__ == "OptimizedModule" and inner is not None:
        return f"{type(inner).__name__} via torch.compile"
    return type(model).__name__


class TorchAdapter(TorchStep, TorchPreflight, Adapter):
    framework = "torch"

    def __init__(self, model: Any, setup: Any, data: dict[str, Split], settings: Any) -> None:
        torch = _torch()
        self.torch = torch
        if not isinstance(model, torch.nn.Module):
            raise SetupError(f"TrainSetup(model=...) is a {type(model).__name__}, not a torch.nn.Module.")
        params = list(model.parameters())
        if not params:
            raise SetupError("TrainSetup(model=...) has no parameters; there is nothing to train.")
        meta = [n for n, p in model.named_parameters() if p.is_meta]
        if meta:
            raise SetupError(
                f"TrainSetup(model=...) has {len(meta)} parameter(s) on torch's meta device ({', '.join(meta[:3])}"
                f"{', ...' if len(meta) > 3 else ''}): shapes without values, which cannot be trained. Materialise "
                f"the model first: model.to_empty(device='cpu') and then initialise it or load_state_dict(...)."
            )
        self.model, self.setup, self.settings, self.splits = model, setup, settings, data
        self._attrs = ModuleAttrs(model)  # what the user's steps record on the modules, put back after each use
        config = getattr(model, "config", None)  # a transformers model sets config.problem_type on its first loss
        self._problem_type = (config, config.problem_type) if hasattr(config, "problem_type") else None
        self.home = params[0].device
        self.device = resolve_device(settings.device)
        self.dtype = params[0].dtype if params[0].is_floating_point() else torch.float32
        self.params = [p for p in params if p.requires_grad]
        if not self.params:  # (it crashed later with an IndexError in the step records)
            raise SetupError(
                f"TrainSetup(model=...) has no trainable parameters: requires_grad is False on all {len(params)} of "
                f"them, so there is nothing to train. Unfreeze the layers the run trains (model.requires_grad_(True), "
                f"or the head's parameters) before the check.")
        self.notes: list[str] = []
        self.lightning, self.hugging_face = is_lightning(model), is_hugging_face(model)
        self._step_hooks = [getattr(model, n) for n in overridden(model, STEP_HOOKS)] if self.lightning else []
        uncalled = overridden(model, UNCALLED_HOOKS) if self.lightning else []
        if uncalled:
            self.notes.append(f"{type(model).__name__} overrides {', '.join(uncalled)}, which the check does not call "
                              f"(it takes a Trainer's closure): what it does beyond optimizer.step() (an lr warm-up) is "
                              f"not in the check's passes")
        self.optimizer, plan = self._optimizer_and_plan(setup)
        try:
            self.scheduler = self._scheduler(plan.scheduler) if plan is not None else None
            self.plan = plan if self.scheduler is not None else None
            self.mode, self.loss_fn = self._loss_mode(setup)
            self.train_split = data["train"]
            self.arrays = self.train_split.kind == "arrays"
            self.samples = {name: split.sample(settings.eval_samples, settings.seed) for name, split in data.items()}
            self.form = takes_whole(self.samples["train"].form, model)
            self.plateau = self._plateau(self.plan) if self.plan is not None else None
            self.batch_size = self.train_split.batch_size or setup.batch_size
            self.n_outputs = self._validate_forward()
        except BaseException:  # misuse found while preparing: the user's optimizer and config are left as they were
            self.restore_user_optimizer()
            self._restore_config()
            raise
        finally:  # configure_optimizers and the validating step may have recorded on the modules
            self._attrs.restore()

    # ------------------------------------------------------------ set-up checks

    def _validate_forward(self) -> int:
        """One eval-mode forward and loss on the first train samples, before any training: the
        batch form, the output, the label range and the loss, each with its own clear error."""
        torch = self.torch
        sample = self.samples["train"]
        batch = self._device(sample.head(2), shape_targets=False, device=self.home)  # the model moves only on enter
        with evaluating(self.model), torch.no_grad(), self._quiet():
            try:  # how the forward reads integer inputs (ids, or numbers it casts) is seen on the way
                with following(self.model, self.form.inputs(batch)) as uses:
                    out = self._forward(batch, with_target=self.mode == "own")
            except Exception as exc:  # noqa: BLE001 - one paragraph, not a framework traceback
                raise SetupError(self._cannot_run(batch, exc, "the first train samples")) from None
            self.input_uses = dict(uses)
            pred = predictions(out, torch)
            n_outputs = self._outputs_of(pred, self.form.target(batch))
            self.n_outputs, self._output_ndim = n_outputs, pred.ndim
            check_label_range({n: s.numpy()[1] for n, s in self.samples.items()}, self.setup.task, n_outputs,
                              sampled=any(s.sampled for s in self.samples.values()))
            if self.arrays:
                batch = self.form.with_target(batch, self._targets(self.form.target(batch)))
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # a broadcasting warning here precedes the real error
                    loss = self._eval_loss(batch, out, pred, 0)
            except SetupError:
                raise
            except Exception as exc:  # noqa: BLE001
                raise SetupError(self._loss_error(batch, pred, exc)) from None
            if self.mode == "loss":
                self._refuse_broadcast(pred, self.form.target(batch))
            if self.form.weighted:
                self.notes.append(self._weights_note())
            if loss is None and self.mode == "own":
                raise SetupError(
                    f"The model's output ({type(out).__name__}) holds no loss and TrainSetup(loss=...) was not "
                    f"given. Give loss= (e.g. torch.nn.CrossEntropyLoss()) or step=..., or, for a model that "
                    f"computes its own loss (Hugging Face), batches that hold the labels."
                )
        return n_outputs

    def _weights_note(self) -> str:
        """How the (x, y, sample_weight) batches' weights reach the loss."""
        read = "each batch's third item is read as per-sample weights (x, y, sample_weight), as the forward takes one input"
        if self.mode != "loss":
            return f"{read}; the training step gets the batch as yielded, and the metrics compare model(x) with y"
        if not getattr(self, "weights_applied", False):
            return (f"{read}; loss=... reduces each batch to one number, so the weights are not applied: give the loss "
                    f"reduction='none' (the check then takes mean(loss * w), as Keras does), or step=... that weighs them")
        return f"{read}; the loss is taken as mean(loss * w) over each batch, as Keras weighs it"

    def number_fields(self) -> tuple[str, ...]:
        return tuple(f for f, use in getattr(self, "input_uses", {}).items() if use.role == "numbers")

    def _cannot_run(self, batch: Any, exc: BaseException, what: str) -> str:
        sample = self.samples["train"]
        return (
            f"The model could not run on {what} as the pipeline yields them ({sample.form.structure()}): "
            f"{batch_text(self.form, batch)} raised {type(exc).__name__}: {first_line(exc)}. The model's first "
            f"layer is {first_layer(self.model)}. {NO_CAST}"
        )

    def _refuse_broadcast(self, pred: Any, target: Any) -> None:
        """An element-wise loss (MSELoss, BCEWithLogitsLoss) that broadcast the output against labels of
        another shape ((N, 1) against (N,) gives N x N pairs; (N, C) against (N,) pairs classes with
        samples) computed without an error, and lowers the wrong number: torch only warns."""
        name = self._loss_name()
        if name not in ELEMENTWISE_LOSSES or not hasattr(target, "shape") or tuple(pred.shape) == tuple(target.shape):
            return
        try:
            shape = tuple(self.torch.broadcast_shapes(pred.shape, target.shape))
        except RuntimeError:
            return
        grows = math.prod(shape) > max(pred.numel(), target.numel())
        hint = label_hint(pred, target, name, self.setup.task)
        raise SetupError(
            f"{name} broadcasts the model's output {describe(pred)} against the train labels {describe(target)} "
            + (f"to {shape}: it compares every output with every sample's label" if grows else
               "(their shapes differ; it aligns them from the last axis)")
            + ", so the loss it lowers is not the error of each prediction (torch only warns: 'Using a target size "
            "that is different to the input size'). " + sentence(hint, "give the labels the output's shape"))

    def _loss_error(self, batch: Any, pred: Any, exc: BaseException) -> str:
        target = self.form.target(batch)
        if self.mode == "loss":
            hint = label_hint(pred, target, self._loss_name(), self.setup.task)
            return (
                f"The loss could not compare the model's output with the train labels: loss(output {describe(pred)}, "
                f"labels {describe(target)}) raised {type(exc).__name__}: {first_line(exc)}. "
                + sentence(hint, f"check that the loss fits the task ({self.setup.task}) and the label format")
            )
        source = {"step": "TrainSetup(step=...)", "lightning": f"{type(self.model).__name__}.training_step",
                  "own": "the model's own loss"}[self.mode]
        return (f"{source} failed on a train batch ({batch_text(self.form, batch)}; target {describe(target)}): "
                f"{type(exc).__name__}: {first_line(exc)}.")

    def _outputs_of(self, pred: Any, target: Any) -> int:
        axis = class_axis(pred, target)
        if axis is not None:  # a label per position: the classes are on one axis
            return int(pred.shape[axis])
        return int(pred.reshape(pred.shape[0], -1).shape[1])

    @contextlib.contextmanager
    def _quiet(self) -> Iterator[None]:
        """Lightning warns on every self.log() without a Trainer; the check has none by design."""
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r".*self\.log\(\).*")
            warnings.filterwarnings("ignore", message=r".*self\.trainer.*")
            yield

    # ------------------------------------------------------------ snapshot / restore

    def __enter__(self) -> "TorchAdapter":
        torch = self.torch
        if self.device.type == "cuda":
            torch.cuda.init()  # queued seeds apply now, so the state read below is the one to restore
        self._rng = (
            random.getstate(),
            np.random.get_state(),
            torch.get_rng_state(),
            torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else None,
        )
        self._flags = [(m, m.training) for m in self.model.modules()]
        # lazy_snapshot (pre-flight): captured by the first probe that changes the model, so checks that
        # only read it (batch_independent) copy nothing; __exit__ then has nothing to put back
        self._snapshot = None if self.lazy_snapshot else self._snap()
        self.pristine = True  # the weights, buffers and optimizer are the user's, untouched
        # the user's gradients are set aside as they are (no copy: nothing writes them while set aside)
        self._grads = [(p, p.grad) for p in self.model.parameters()]
        for param, _ in self._grads:
            param.grad = None
        try:
            if self.device != self.home:
                self.model.to(self.device)
            if self._snapshot is not None:
                self._work_optimizer()  # after the move: its copies lie on each parameter's device
            self._tensor_data()
        except BaseException:  # e.g. out of device memory: leave nothing moved or changed
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        torch = self.torch
        if self.device != self.home:
            self.model.to(self.home)
        self._load_snapshot(final=True)
        self.restore_user_optimizer()
        for param, grad in self._grads:
            param.grad = grad
        for module, mode in self._flags:
            module.training = mode
        self._restore_config()
        for split in self.splits.values():
            split.rewind()
        self.tensors: dict[str, Any] = {}
        py, npy, cpu, cuda = self._rng
        random.setstate(py)
        np.random.set_state(npy)
        torch.set_rng_state(cpu)
        if cuda is not None:
            torch.cuda.set_rng_state_all(cuda)
        self._attrs.restore()  # last: nothing above depends on it

    def _restore_config(self) -> None:
        if self._problem_type is not None:
            config, problem_type = self._problem_type
            config.problem_type = problem_type

    def _named_state(self) -> list[tuple[str, Any]]:
        """Parameters and every buffer (persistent or not), by name. By name because
        ``Module.to`` keeps Parameter objects but replaces buffer tensors."""
        return [*self.model.named_parameters(remove_duplicate=False), *self.model.named_buffers(remove_duplicate=False)]

    def _copies(self) -> dict[str, Any]:
        """Weights and every buffer by name, and the scheduler's state, copied."""
        return {
            "tensors": {name: clone(t) for name, t in self._named_state()},
            "scheduler": clone_tree(self.scheduler.state_dict()) if self.scheduler is not None else None,
        }

    def _capture(self) -> dict[str, Any]:
        """Weights, every buffer, optimizer and scheduler state, copied: each checkpoint of a detail pass."""
        return {**self._copies(), "optimizer": clone_tree(self.optimizer.state_dict())}

    def _restore(self, state: dict[str, Any]) -> None:
        """Back to ``state`` (a checkpoint, or the snapshot: whose optimizer ``_load_snapshot`` handles)."""
        with self.torch.no_grad():
            for name, tensor in self._named_state():
                saved = state["tensors"].get(name)
                if saved is not None:  # (a module the forward creates on its first call is not in the snapshot)
                    tensor.copy_(saved)
        for param in self.model.parameters():
            param.grad = None
        if "optimizer" in state:
            self.optimizer.load_state_dict(clone_tree(state["optimizer"]))
        if self.scheduler is not None:
            self.scheduler.load_state_dict(clone_tree(state["scheduler"]))

    lazy_snapshot = False

    def _snap(self) -> dict[str, Any]:
        """The snapshot the check returns to: copies of the weights, every buffer and the scheduler's
        state; the optimizer's own state and param groups are set aside untouched while the check
        steps copies of them (``_work_optimizer``), so putting them back costs nothing. An optimizer
        whose ``state`` / ``param_groups`` cannot be assigned (a wrapper exposing its inner optimizer's
        as read-only properties) is stepped in place instead and put back from a copy of its
        ``state_dict()``, as a checkpoint is."""
        opt = self.optimizer
        try:
            opt.state, opt.param_groups = opt.state, opt.param_groups  # the same objects: a no-op where allowed
        except AttributeError:
            return {**self._copies(), "optimizer": clone_tree(opt.state_dict())}
        return {**self._copies(), "aside": (opt.state, opt.param_groups)}

    def _work_optimizer(self) -> None:
        """The optimizer gets copies of the user's state (on each parameter's device) and param groups."""
        torch, opt = self.torch, self.optimizer
        if "aside" not in self._snapshot:  # stepped in place: loading casts the state to each parameter's device
            opt.load_state_dict(clone_tree(self._snapshot["optimizer"]))
            return
        state, groups = self._snapshot["aside"]

        def copied(key: Any, entry: dict[Any, Any]) -> dict[Any, Any]:
            device = key.device if isinstance(key, torch.Tensor) else None
            return {k: clone(v, None if k == "step" else device) if isinstance(v, torch.Tensor) else clone_tree(v)
                    for k, v in entry.items()}

        opt.state = collections.defaultdict(dict, {key: copied(key, entry) for key, entry in state.items()})
        opt.param_groups = [{k: list(v) if k == "params" else clone_tree(v) for k, v in g.items()} for g in groups]

    def _load_snapshot(self, final: bool = False) -> None:
        """Back to the snapshot; ``final`` (on exit): the user's own optimizer state and groups put back."""
        if self._snapshot is not None:
            self._restore(self._snapshot)  # the optimizer too, when it is stepped in place
            if "aside" in self._snapshot:  # set aside: the user's own back on exit, fresh copies otherwise
                if final:
                    self.optimizer.state, self.optimizer.param_groups = self._snapshot["aside"]
                else:
                    self._work_optimizer()
        self.pristine = True

    def ensure_snapshot(self) -> None:
        """Take the snapshot now if entering deferred it (the state is still the user's)."""
        if self._snapshot is None:
            self._snapshot = self._snap()
            self._work_optimizer()

    # ------------------------------------------------------------ data

    def _tensor(self, leaf: Any, device: Any = None) -> Any:
        torch = self.torch
        device = self.device if device is None else device
        if isinstance(leaf, torch.Tensor):
            return leaf.to(device, non_blocking=True)
        if isinstance(leaf, np.ndarray):
            return torch.as_tensor(leaf, device=device)  # dtype kept: no cast
        return leaf

    def _device(self, batch: Any, shape_targets: bool = True, device: Any = None) -> Any:
        """A batch on the device; arrays (which this adapter batches itself) get tensor targets in the
        loss's format. Inputs keep their dtype."""
        device = self.device if device is None else device
        batch = tree_map(lambda leaf: self._tensor(leaf, device), batch) if self.arrays else to_device(batch, device)
        if self.arrays and shape_targets:
            batch = self.form.with_target(batch, self._targets(self.form.target(batch)))
        return batch

    def _targets(self, t: Any) -> Any:
        """Array targets in the loss's format, as a training loop hands them to it: for one output per
        sample (BCEWithLogitsLoss, a regression head), floats in the output's own shape, (N, 1) or (N,),
        so that no loss broadcasts one against the other; class ids (integers, or floats holding whole
        numbers, as a vector or an (N, 1) column) as a long vector; other targets (soft or one-hot rows,
        token ids, several regression outputs) as they are, floats in the model's dtype. (Only array
        splits, whose batches the check cuts; inputs are never converted.)"""
        ndim = getattr(self, "_output_ndim", 2)
        if self.n_outputs == 1 and (self.setup.task != "classification" or ndim <= 2):
            t = t.to(self.dtype)
            if t.ndim == 1 and ndim == 2:
                return t.reshape(-1, 1)
            return t.reshape(-1) if t.ndim == 2 and t.shape[1] == 1 and ndim == 1 else t
        if self.setup.task == "classification":
            if t.ndim == 2 and t.shape[1] == 1 and ndim == 2:
                t = t.reshape(-1)  # a column of class ids
            if not t.is_floating_point() or t.ndim == 1:
                return t.long()
        return t.to(self.dtype)

    def _tensor_data(self) -> None:
        """Eval samples (and array train data) on the device once per check; CPU tensors are shared."""
        self.tensors = {}
        for name, sample in self.samples.items():
            if sample.columns is not None:
                self.tensors[name] = [self._tensor(c) for c in sample.columns]
        if self.arrays:
            split = self.train_split
            X = tree_map(self._tensor, split.X)
            self.train_X, self.train_Y = X, self._targets(self._tensor(split.y))
            self._train_ids = class_ids(as_numpy(split.y, "y")) if self.setup.task == "classification" else None
        self.pool: Any = None

    def _chunks(self, name: str) -> Iterator[Any]:
        sample = self.samples[name]
        if name in self.tensors:
            cols, rows = self.tensors[name], sample.chunk_rows(self.batch_size)
            for start in range(0, sample.n, rows):
                yield self._shape(tree_map(lambda i: cols[i][start: start + rows], sample.template))
        else:
            for batch in sample.raw or []:
                yield self._device(batch)

    def _shape(self, batch: Any) -> Any:
        if self.arrays:
            return self.form.with_target(batch, self._targets(self.form.target(batch)))
        return batch

    # ------------------------------------------------------------ the user's step

    def info(self) -> ModelInfo:
        nn = self.torch.nn
        modules = list(self.model.modules())
        first = next((m for m in modules if any(True for _ in m.parameters(recurse=False))), None)
        pipeline = f"{self.form.structure()} from {self.train_split.describe()}"
        return ModelInfo(
            framework="torch",
            n_params=sum(p.numel() for p in self.params),
            n_outputs=self.n_outputs,
            device=str(self.device),
            model_name=_model_name(self.model),
            has_batchnorm=any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in modules),
            embeds_inputs=isinstance(first, (nn.Embedding, nn.EmbeddingBag)),
            notes=(pipeline, *self.notes),
            eps_underflow=self.eps_underflow(),
        )

    def eps_underflow(self) -> str:
        """The optimizer's ``eps`` when it rounds to 0 in the dtype of weights it updates (Adam's 1e-8 in
        float16, whose smallest positive value is 6e-8): its update m / (sqrt(v) + eps) is then 0 / 0 = NaN
        wherever a gradient is 0 (a dead ReLU unit, a class absent from the batch)."""
        torch = self.torch
        try:
            for group in self.optimizer.param_groups:
                eps = group.get("eps")
                # fused Adam/AdamW computes in float32 whatever the weights' dtype
                if not isinstance(eps, (int, float)) or isinstance(eps, bool) or eps <= 0 or group.get("fused"):
                    continue
                for dtype in {p.dtype for p in group["params"] if isinstance(p, torch.Tensor) and p.is_floating_point()}:
                    if float(torch.tensor(eps, dtype=dtype)) == 0.0:
                        tiny = torch.finfo(dtype).smallest_normal * torch.finfo(dtype).eps  # the smallest subnormal
                        return (f"{type(self.optimizer).__name__}'s eps {eps:g} is 0 in "
                                f"{str(dtype).replace('torch.', '')}, the dtype of the weights it updates (its "
                                f"smallest positive value is {tiny:.2g})")
        except Exception:  # noqa: BLE001 - an optimizer of an unusual shape: no such cause, never a traceback
            return ""
        return ""

    def _scale_lr(self, scale: float) -> None:
        """Every learning rate the optimizer and scheduler keep (OneCycleLR's max_lr/min_lr in the
        groups, CyclicLR's max_lrs, the base_lrs of each scheduler a SequentialLR or ChainedScheduler
        holds), so the schedule cannot restore the full rate."""
        for group in self.optimizer.param_groups:
            for key in ("lr", "initial_lr", "max_lr", "min_lr"):
                if key in group:
                    group[key] = group[key] * scale
        for sched in _schedulers_in(self.scheduler):
            for attr in ("base_lrs", "max_lrs", "min_lrs"):
                if hasattr(sched, attr):
                    setattr(sched, attr, [lr * scale for lr in getattr(sched, attr)])
            sched._last_lr = [g["lr"] for g in self.optimizer.param_groups]

    def _target_ids(self, target: Any) -> Any:
        """Class ids per sample (one-hot rows -> argmax); token-level targets keep their shape."""
        if target.is_floating_point() and target.ndim >= 2 and target.shape[-1] > 1:
            return target.argmax(dim=-1)
        if target.ndim == 2 and target.shape[1] == 1:
            return target.reshape(-1)
        return target.long()

    def _measure(self, name: str, noise: LabelNoise | None = None) -> tuple[float, float, np.ndarray]:
        """(metric, loss, predictions) of one split's eval sample, in eval mode."""
        try:
            return self._measure_sample(name, noise)
        except (SetupError, TrainSanityError):
            raise
        except Exception as exc:  # noqa: BLE001 - the user's model or loss failed in eval mode: one paragraph
            raise SetupError(f"Measuring the {name} eval sample in eval mode failed: {type(exc).__name__}: "
                             f"{first_line(exc)}. The model's first layer is {first_layer(self.model)}.") from None

    def _measure_sample(self, name: str, noise: LabelNoise | None) -> tuple[float, float, np.ndarray]:
        """One forward per eval chunk; the sums leave the device once per chunk (a few per epoch)."""
        torch = self.torch
        self.model.eval()
        classification = self.setup.task == "classification"
        n, loss_sum, correct, counted = 0, 0.0, 0, 0
        sums: list[Any] = []
        preds = []
        with torch.no_grad(), self._quiet():
            for i, batch in enumerate(self._chunks(name)):
                if noise is not None:
                    batch = self._relabel(batch, noise)
                out = self._forward(batch, with_target=self.mode == "own")
                pred = predictions(out, torch)
                target = self.form.target(batch)
                size = int(target.shape[0])
                loss = self._eval_loss(batch, out, pred, i)
                if loss is not None:
                    loss_sum += float(loss) * size
                n += size
                if classification:
                    ids, hit, valid = self._hits(pred, target)
                    correct, counted = correct + int(hit), counted + int(valid)
                    preds.append(ids)
                else:
                    y = target.reshape(size, -1).double()
                    p = (pred.reshape(target.shape) if pred.numel() == target.numel() else pred).reshape(size, -1).double()
                    sums.append(torch.stack([((y - p) ** 2).sum(0), y.sum(0), (y * y).sum(0)]))
                    preds.append(p if p.shape[1] > 1 else p[:, 0])
        loss_mean = loss_sum / n if n else float("nan")
        if classification:
            metric = correct / counted if counted else float("nan")
        else:
            s = torch.stack(sums).sum(0)
            total = float((s[2] - s[1] ** 2 / n).sum())
            metric = float(1.0 - float(s[0].sum()) / total) if total > 0 else float("nan")
        return metric, loss_mean, _cat_padded(preds)

    def _hits(self, pred: Any, target: Any) -> tuple[Any, Any, Any]:
        """(predicted ids, correct count, counted) of a classification batch; -100 targets are ignored."""
        ids_t = self._target_ids(target)
        axis = class_axis(pred, ids_t)
        if axis is not None:  # a label per position (tokens, pixels)
            ids = pred.argmax(dim=axis)
        else:
            flat = pred.reshape(pred.shape[0], -1)
            if flat.shape[1] == 1:
                threshold = 0.0 if (flat.min() < 0 or flat.max() > 1) else 0.5
                ids = (flat[:, 0] > threshold).long()
            else:
                ids = flat.argmax(dim=1)
            ids_t = ids_t.reshape(ids.shape[0], -1)[:, 0] if ids_t.ndim > 1 else ids_t
        if ids_t.ndim > 1:  # token level: -100 marks positions that are not labels
            valid = ids_t != -100
            return ids, ((ids == ids_t) & valid).sum(), valid.sum()
        return ids, (ids == ids_t).sum(), ids_t.shape[0]

    def _relabel(self, batch: Any, noise: LabelNoise) -> Any:
        """The batch with the random-label probe's targets (picked by a hash of its inputs)."""
        pool = self._pool(noise)
        idx = self.torch.as_tensor(noise.pick(named_fields(self.form, batch, tensor_to_numpy)), device=pool.device)
        return self.form.with_target(batch, pool[idx].to(self.form.target(batch).device))

    def _pool(self, noise: LabelNoise) -> Any:
        if self.pool is None or self._pool_of is not noise:
            pool = self.torch.as_tensor(noise.pool)
            self.pool, self._pool_of = (self._targets(pool.to(self.device)) if self.arrays else pool), noise
        return self.pool

    def train(
        self,
        *,
        epochs: int,
        lr_scale: float = 1.0,
        noise: LabelNoise | None = None,
        max_steps: int | None = None,
        detail: bool = False,
    ) -> TrainingTrace:
        start = time.perf_counter()
        self.ensure_snapshot()
        if not self.pristine:
            self._load_snapshot()
        for param in self.model.parameters():  # a probe that only read the model may have left gradients
            param.grad = None
        self.pristine = False
        for split in self.splits.values():
            split.rewind()
        if lr_scale != 1.0:
            self._scale_lr(lr_scale)
        trace = self._train(epochs, max_steps, start, detail, noise)
        # the weights after every pass (one device sync): a finite loss can hide NaN weights a layer zeroes out
        trace.bad_weights_end = self._bad_weights(self._named_state())
        if trace.bad_weights_end or not finite_pass(trace):  # only then: where they were NaN/Inf already
            trace.bad_weights_start = self._bad_weights(self._snapshot["tensors"].items())
        return trace

    def _bad_weights(self, named: Any) -> tuple[str, ...]:
        """Names of the floating-point tensors holding NaN/Inf (one device sync)."""
        named = [(n, t) for n, t in named if t.is_floating_point() and t.numel()]
        if not named:
            return ()
        ok = tensor_to_numpy(self.torch.stack([t.detach().isfinite().all() for _, t in named]))
        return tuple(dict.fromkeys(n for (n, _), good in zip(named, ok) if not good))

    def _seed(self) -> Any:
        seed = self.settings.seed
        random.seed(seed)
        np.random.seed(seed)
        seed_torch(self.torch, seed)
        return self.torch.Generator().manual_seed(seed)

    def _rng_state(self) -> dict[str, Any]:
        torch = self.torch
        return {"rng": torch.get_rng_state(), "py": random.getstate(), "np": np.random.get_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else None,
                "loader": [(g, g.get_state()) for g, _ in getattr(self.train_split, "_states", [])]}

    def _set_rng_state(self, state: dict[str, Any]) -> None:
        torch = self.torch
        torch.set_rng_state(state["rng"])
        random.setstate(state["py"])
        np.random.set_state(state["np"])
        if state["cuda"] is not None:
            torch.cuda.set_rng_state_all(state["cuda"])
        for g, s in state["loader"]:
            g.set_state(s)

    def steps_per_epoch(self) -> int | None:
        if self.arrays:
            return len(batch_starts(self.train_split.n_samples(), self.batch_size))
        try:
            return len(self.train_split.loader)
        except TypeError:
            return None

    def _batches(self, generator: Any, noise: LabelNoise | None, orders: list[np.ndarray] | None) -> Iterator[Any]:
        """One epoch of training batches on the device (relabelled for the random-label probe)."""
        torch = self.torch
        if self.arrays:
            n = self.train_split.n_samples()
            order = torch.randperm(n, generator=generator)
            if orders is not None:
                orders.append(tensor_to_numpy(order))
            order = order.to(self.device)
            X, Y = self.train_X, self._noise_Y(noise) if noise is not None else self.train_Y
            bs = self.batch_size
            if self.form.kind == "(x, y)":
                return ((X[order[s: s + bs]], Y[order[s: s + bs]]) for s in batch_starts(n, bs))
            return ((tree_map(lambda t, i=order[s: s + bs]: t[i], X), Y[order[s: s + bs]]) for s in batch_starts(n, bs))
        batches = self.train_split.batches()
        if noise is not None:
            batches = (self._relabel(b, noise) for b in batches)
        return (to_device(b, self.device) for b in batches)

    def _noise_Y(self, noise: LabelNoise) -> Any:
        if getattr(self, "_noise_cache", (None, None))[0] is not noise:
            fields = named_fields(self.form, (self.train_split.X, None), lambda v: as_numpy(v, "X"))
            idx = self.torch.as_tensor(noise.pick(fields), device=self.device)
            self._noise_cache = (noise, self._pool(noise)[idx])
        return self._noise_cache[1]

    def _train(self, epochs: int, max_steps: int | None, start: float, detail: bool, noise: LabelNoise | None) -> TrainingTrace:
        torch = self.torch
        self._skipped = 0
        generator = self._seed()
        rec = StepRecord(torch, self.params, detail)
        epoch_train, epoch_val, loss_train, loss_val = [], [], [], []
        preds = {"train": np.zeros(0), "val": np.zeros(0)}
        truncated = False
        per_epoch = self.steps_per_epoch()
        rec.last_bn = self._bn_stats() if detail else None
        total = min(max_steps, epochs * per_epoch) if max_steps is not None and per_epoch else (max_steps or (epochs * per_epoch if per_epoch else None))
        if self.progress is not None:
            self.progress.start(self.progress_label, total, epochs)
        orders: list[np.ndarray] = []
        for epoch in range(epochs):
            if detail:
                rec.checkpoints.append({**self._capture(), "generator": generator.get_state(), **self._rng_state()})
            budget = None if max_steps is None else max_steps - len(rec.losses)
            ran = self._epoch(epoch, self._batches(generator, noise, orders if self.arrays else None), rec, budget)
            if ran == 0 and epoch > 0:
                truncated = True
                break  # the budget ran out exactly at an epoch boundary
            measured = {}
            for name, metrics, losses_of in (("train", epoch_train, loss_train), ("val", epoch_val, loss_val)):
                if name in self.samples:
                    metric, split_loss, preds[name] = self._measure(name, noise if name == "train" else None)
                    metrics.append(metric)
                    losses_of.append(split_loss)
                    measured[name] = {"metric": metric, "loss": split_loss}
            if self.plateau is not None and ran and (epoch + 1) % self.plan.frequency == 0:
                split, kind = self.plateau  # on the epoch's measurement, as Lightning steps it on a logged metric
                self._scheduler_step(len(rec.losses), measured[split][kind])
            if detail:
                rec.bn_drift(self._bn_stats())
            if budget is not None and ran >= budget and (per_epoch is None or ran < per_epoch):
                truncated = True
                break
        if not rec.losses and self._skipped:
            raise SetupError(
                f"{type(self.model).__name__}.training_step returned None for all {self._skipped} batch(es) of the pass, "
                f"which Lightning reads as 'skip this batch': nothing was trained. A guard that skips non-finite losses "
                f"hides them here (inputs_normalized counts NaN/Inf inputs per feature).")
        if self.progress is not None:
            self.progress.done(len(rec.losses))
        if self.arrays and self._train_ids is not None:
            rec.counts_from_orders(orders, self._train_ids, self.batch_size, max(self.n_outputs, 2))
        return rec.trace(
            max(self.n_outputs, 2),
            train_metric=np.asarray(epoch_train, dtype=np.float64), val_metric=np.asarray(epoch_val, dtype=np.float64),
            train_loss=np.asarray(loss_train, dtype=np.float64), val_loss=np.asarray(loss_val, dtype=np.float64),
            train_pred=preds["train"], val_pred=preds["val"], seconds=time.perf_counter() - start, truncated=truncated,
            orders=orders if detail else [],
        )

    progress_label = "training pass"

    def _epoch(self, epoch: int, batches: Iterator[Any], rec: "StepRecord", budget: int | None,
               hold_lr: list[float] | None = None) -> int:
        """One epoch over ``batches``; returns the steps run (fewer when ``budget`` runs out)."""
        model, optimizer, scheduler, plan = self.model, self.optimizer, self.scheduler, self.plan
        per_step = plan is not None and plan.interval == "step"
        count_labels = not self.arrays and self.setup.task == "classification"
        progress = self.progress
        ran = index = 0
        model.train()
        with self._quiet():
            for batch in itertools.islice(batches, budget):
                if hold_lr is not None:
                    for group, lr in zip(optimizer.param_groups, hold_lr):
                        group["lr"] = lr
                optimizer.zero_grad(set_to_none=True)
                sampled = rec.detail and ran % UPDATE_EVERY == 0
                try:
                    loss = self._train_loss(batch, index)
                    index += 1
                    if loss is None:  # training_step returned None: Lightning skips the batch
                        self._skipped += 1
                        continue
                    loss.backward()
                    rec.before_step(optimizer, sampled)
                    self._optimizer_step()
                except (SetupError, TrainSanityError):
                    raise
                except Exception as exc:  # noqa: BLE001 - the user's model, loss, step or optimizer failed: one paragraph
                    raise SetupError(self._step_error(batch, exc, len(rec.losses) + 1)) from None
                rec.after_step(loss, optimizer, epoch, sampled)
                if count_labels:
                    rec.count(self._target_ids(self.form.target(batch)))
                ran += 1
                if per_step and len(rec.losses) % plan.frequency == 0:
                    self._scheduler_step(len(rec.losses))
                if progress is not None:
                    progress.step(epoch, len(rec.losses))
        if scheduler is not None and not per_step and self.plateau is None and ran and (epoch + 1) % plan.frequency == 0:
            self._scheduler_step(len(rec.losses))
        return ran

    def _scheduler_step(self, steps: int, monitored: float | None = None) -> None:
        """The user's scheduler steps as configured (ReduceLROnPlateau on its ``monitored`` value); its refusal
        (OneCycleLR past ``total_steps``) is one paragraph."""
        try:
            self.scheduler.step() if monitored is None else self.scheduler.step(monitored)
        except Exception as exc:  # noqa: BLE001 - the user's scheduler refused a step
            sched = type(self.scheduler).__name__
            total = getattr(self.scheduler, "total_steps", None)
            per_epoch = self.steps_per_epoch()
            sized = f" (total_steps={total})" if total is not None else ""
            raise SetupError(
                f"The scheduler {sched}{sized} refused to step after training step {steps} of the check's pass: "
                f"{type(exc).__name__}: {first_line(exc)}. The check trains"
                + (f" {per_epoch} step(s) per epoch" if per_epoch else " the pipeline's batches")
                + (f", capped at --trainsanity-max-steps {self.settings.max_steps}" if self.settings.max_steps else "")
                + ". Size the scheduler for the run (OneCycleLR(total_steps=epochs * len(train_loader)) or "
                "steps_per_epoch=len(train_loader), epochs=...), or build it in a factory "
                "TrainSetup(scheduler=lambda opt: ...)."
            ) from None

    def _step_error(self, batch: Any, exc: BaseException, step: int) -> str:
        return (f"Training step {step} failed on a batch as the pipeline yields it ({batch_text(self.form, batch)}; "
                f"target {describe(self.form.target(batch))}): {type(exc).__name__}: {first_line(exc)}. The model's "
                f"first layer is {first_layer(self.model)}.")

    def _bn_modules(self) -> list[Any]:
        return [m for m in self.model.modules() if isinstance(m, self.torch.nn.modules.batchnorm._BatchNorm)]

    def _bn_stats(self) -> Any:
        stats = [t.detach().reshape(-1).float() for m in self._bn_modules() for t in (m.running_mean, m.running_var) if t is not None]
        return self.torch.cat(stats).clone() if stats else None

    def interventions(self) -> dict[str, str]:
        """The replay interventions this model supports, and why the others do not apply."""
        out = {"hold_lr": "", "reshuffle": ""}
        if not self.arrays and not self.train_split.shuffles():
            out["reshuffle"] = "the train loader does not shuffle (its order never changes)"
        has_momentum = any(
            g.get("momentum", 0) or (g.get("betas") or (0,))[0] for g in self.optimizer.param_groups
        )
        out["reset_momentum"] = "" if has_momentum else f"{type(self.optimizer).__name__} keeps no momentum"
        out["freeze_bn"] = "" if self._bn_modules() else "the model has no batch-norm layer"
        return out

    def replay(
        self, trace: TrainingTrace, epoch: int, intervention: str | None = None, seed_offset: int = 1
    ) -> dict[str, float]:
        """Re-run ``epoch`` from the checkpoint before it (``trace`` from ``train(detail=True)``),
        as recorded or under one intervention; the metrics after it (``val_acc`` ...: accuracy or
        R^2, and losses). The batches are re-generated: the same order and augmentation from the
        restored RNG states, or another order for ``reshuffle``."""
        torch = self.torch
        ckpt = trace.checkpoints[epoch]
        self._restore(ckpt)
        self._set_rng_state(ckpt)
        generator = torch.Generator().manual_seed(0)
        generator.set_state(ckpt["generator"])
        if intervention == "reshuffle":
            reseed = self.settings.seed + 7919 * seed_offset + epoch
            generator = torch.Generator().manual_seed(reseed)
            if not self.arrays:  # another order: the global RNG and the loader's own generator (rewound after)
                seed_torch(torch, reseed)
                for g, _ in ckpt["loader"]:
                    g.manual_seed(reseed)
        hold = None
        if intervention == "hold_lr":
            before = np.flatnonzero(trace.epoch == epoch - 1)
            hold = trace.lr[before[-1]].tolist() if len(before) else None
        if intervention == "reset_momentum":
            for state in self.optimizer.state.values():
                for key in ("momentum_buffer", "exp_avg"):
                    if isinstance(state.get(key), torch.Tensor):
                        state[key].zero_()
        frozen = [(m, m.momentum) for m in self._bn_modules()] if intervention == "freeze_bn" else []
        steps = int(np.sum(trace.epoch == epoch))
        try:
            for m, _ in frozen:
                m.momentum = 0.0  # running statistics stay where the checkpoint left them
            self._epoch(epoch, self._batches(generator, None, None), StepRecord(self.torch, self.params, False), steps or None, hold)
        finally:
            for m, momentum in frozen:
                m.momentum = momentum
        out = {}
        for name in ("train", "val"):
            if name in self.samples:
                metric, loss, _ = self._measure(name)
                out[f"{name}_acc"], out[f"{name}_loss"] = metric, loss
        return out


def _schedulers_in(scheduler: Any) -> list[Any]:
    """``scheduler`` and every scheduler it runs (SequentialLR's and ChainedScheduler's ``_schedulers``, nested)."""
    if scheduler is None:
        return []
    found = [scheduler]
    for child in getattr(scheduler, "_schedulers", None) or ():
        found += _schedulers_in(child)
    return found
