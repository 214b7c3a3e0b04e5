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

import contextlib
import copy
import itertools
import random
import time
import warnings
from collections.abc import Mapping
from typing import Any, Iterator

import numpy as np

from ..checks.labels import class_ids
from ..errors import OptionError, SetupError, TrainSanityError
from .base import Adapter, LabelNoise, ModelInfo, TrainingTrace, batch_starts, check_label_range, first_line
from .batches import FLAT, describe, tree_leaves, tree_map
from .devices import auto_gpu_index, xdist_worker_index
from .lightning import HF_DEFAULT_LR, SchedulerPlan, configured, is_hugging_face, is_lightning, takes_batch_idx
from .splits import Split, as_numpy
from .torch_data import _torch, tensor_to_numpy, to_device

EVAL_BATCH = 2048
UPDATE_EVERY = 4  # ||update|| / ||weights|| is recorded on every 4th step (NaN between): see TrainingTrace
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
NO_CAST = ("The plugin feeds batches exactly as the pipeline yields them (only moved to the device, never "
           "cast), so this is what your own training would hit: make the pipeline yield what the model takes "
           "(e.g. a transform that converts uint8 pixels with x.float() / 255).")


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


class TorchAdapter(Adapter):
    framework = "torch"

    def __init__(self, model: Any, setup: Any, data: dict[str, Split], settings: Any) -> None:
        torch = _torch()
        self.torch = torch
        if not isinstance(model, torch.nn.Module):
            raise SetupError(f"TrainSetup(model=...) is a {type(model).__name__}, not a torch.nn.Module.")
        params = list(model.parameters())
        if not params:
            raise SetupError("TrainSetup(model=...) has no parameters; there is nothing to train.")
        self.model, self.setup, self.settings, self.splits = model, setup, settings, data
        self.home = params[0].device
        self.device = resolve_device(settings.device)
        self.dtype = params[0].dtype if params[0].is_floating_point() else torch.float32
        self.params = [p for p in params if p.requires_grad]
        self.notes: list[str] = []
        self.lightning, self.hugging_face = is_lightning(model), is_hugging_face(model)
        self.optimizer, plan = self._optimizer_and_plan(setup)
        self.scheduler = self._scheduler(plan.scheduler) if plan is not None else None
        self.plan = plan if self.scheduler is not None else None
        self.mode, self.loss_fn = self._loss_mode(setup)
        self.train_split = data["train"]
        self.arrays = self.train_split.kind == "arrays"
        self.samples = {name: split.sample(settings.eval_samples, settings.seed) for name, split in data.items()}
        self.form = self.samples["train"].form
        self.batch_size = self.train_split.batch_size or setup.batch_size
        self.n_outputs = self._validate_forward()

    # ------------------------------------------------------------ set-up checks

    def _optimizer_and_plan(self, setup: Any) -> tuple[Any, SchedulerPlan | None]:
        plan = (SchedulerPlan(setup.scheduler, "epoch" if setup.scheduler_step == "epoch" else "step")
                if setup.scheduler is not None else None)
        if setup.optimizer is None and self.lightning:
            optimizer, plan = configured(self.model, self.torch)
            self._check_own(optimizer)
            self.owns_optimizer = True
            self.notes.append(f"optimizer and scheduler from {type(self.model).__name__}.configure_optimizers()")
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
            scheduler = given(self.optimizer)
        else:
            raise SetupError(f"TrainSetup(scheduler={given!r}) must be an LRScheduler or callable(optimizer).")
        if getattr(scheduler, "optimizer", None) is not self.optimizer:
            raise SetupError(
                "TrainSetup(scheduler=...) drives a different optimizer than TrainSetup(optimizer=...); "
                "build it on the same optimizer, or pass scheduler=lambda opt: ...(opt, ...)."
            )
        if isinstance(scheduler, lr_sched.ReduceLROnPlateau):
            raise SetupError(
                "ReduceLROnPlateau needs a monitored metric each step; pytest-trainsanity does not "
                "drive it yet. Leave scheduler=None for this check."
            )
        return scheduler

    def _loss_mode(self, setup: Any) -> tuple[str, Any]:
        """How a batch becomes the training loss: 'step', 'lightning', 'loss' or 'own'."""
        if setup.step is not None:
            if not callable(setup.step):
                raise SetupError(f"TrainSetup(step={setup.step!r}) must be a callable(model, batch) -> loss.")
            self.notes.append("loss from TrainSetup(step=...)")
            return "step", None
        if setup.loss is None and self.lightning:
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

    def _validate_forward(self) -> int:
        """One eval-mode forward and loss on the first train samples, before any training: the
        batch form, the output, the label range and the loss, each with its own clear error."""
        torch = self.torch
        sample = self.samples["train"]
        batch = self._device(sample.head(2), shape_targets=False)
        flags = [(m, m.training) for m in self.model.modules()]
        try:
            self.model.eval()
            with torch.no_grad(), self._quiet():
                try:
                    out = self._forward(batch, with_target=self.mode == "own")
                except Exception as exc:  # noqa: BLE001 - one paragraph, not a framework traceback
                    raise SetupError(self._cannot_run(batch, exc, "a train batch")) from None
                pred = predictions(out, torch)
                n_outputs = self._outputs_of(pred, self.form.target(batch))
                self.n_outputs = n_outputs
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
                if loss is None and self.mode == "own":
                    raise SetupError(
                        f"The model's output ({type(out).__name__}) holds no loss and TrainSetup(loss=...) was not "
                        f"given. Give loss= (e.g. torch.nn.CrossEntropyLoss()) or step=..., or, for a model that "
                        f"computes its own loss (Hugging Face), batches that hold the labels."
                    )
        finally:
            for module, mode in flags:
                module.training = mode
        return n_outputs

    def _cannot_run(self, batch: Any, exc: BaseException, what: str) -> str:
        sample = self.samples["train"]
        return (
            f"The model could not run on {what} as the pipeline yields it ({sample.form.structure()}): "
            f"{batch_text(self.form, batch)} raised {type(exc).__name__}: {first_line(exc)}. The model's first "
            f"layer is {first_layer(self.model)}. {NO_CAST}"
        )

    def _loss_error(self, batch: Any, pred: Any, exc: BaseException) -> str:
        target = self.form.target(batch)
        if self.mode == "loss":
            return (
                f"The loss could not compare the model's output with the train labels: loss(output {describe(pred)}, "
                f"labels {describe(target)}) raised {type(exc).__name__}: {first_line(exc)}. Check that the loss "
                f"fits the task ({self.setup.task}) and the label format."
            )
        source = {"step": "TrainSetup(step=...)", "lightning": f"{type(self.model).__name__}.training_step",
                  "own": "the model's own loss"}[self.mode]
        return (f"{source} failed on a train batch ({batch_text(self.form, batch)}; target {describe(target)}): "
                f"{type(exc).__name__}: {first_line(exc)}.")

    def _outputs_of(self, pred: Any, target: Any) -> int:
        if pred.ndim >= 3 or (pred.ndim == 2 and getattr(target, "ndim", 1) == 2 and not target.is_floating_point()
                              and tuple(target.shape) == tuple(pred.shape[:2])):
            return int(pred.shape[-1])  # token-level: classes on the last axis
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
        self._snapshot = self._capture()
        self._grads = [(p, None if p.grad is None else p.grad.detach().clone()) for p in self.model.parameters()]
        try:
            if self.device != self.home:
                self.model.to(self.device)
            self._tensor_data()
        except BaseException:  # e.g. out of device memory: leave nothing moved or changed
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        torch = self.torch
        if self.device != self.home:
            self.model.to(self.home)
        self._load_snapshot()
        for param, grad in self._grads:
            param.grad = grad
        for module, mode in self._flags:
            module.training = mode
        for split in self.splits.values():
            split.rewind()
        self.tensors: dict[str, Any] = {}
        py, npy, cpu, cuda = self._rng
        random.setstate(py)
        np.random.set_state(npy)
        torch.set_rng_state(cpu)
        if cuda is not None:
            torch.cuda.set_rng_state_all(cuda)

    def _named_state(self) -> list[tuple[str, Any]]:
        """Parameters and every buffer (persistent or not), by name. By name because
        ``Module.to`` keeps Parameter objects but replaces buffer tensors."""
        return [*self.model.named_parameters(remove_duplicate=False), *self.model.named_buffers(remove_duplicate=False)]

    def _capture(self) -> dict[str, Any]:
        """Weights, every buffer, optimizer and scheduler state: the snapshot and each checkpoint."""
        return {
            "tensors": {name: t.detach().clone() for name, t in self._named_state()},
            "optimizer": copy.deepcopy(self.optimizer.state_dict()),
            "scheduler": copy.deepcopy(self.scheduler.state_dict()) if self.scheduler is not None else None,
        }

    def _restore(self, state: dict[str, Any]) -> None:
        with self.torch.no_grad():
            for name, tensor in self._named_state():
                tensor.copy_(state["tensors"][name])
        for param in self.model.parameters():
            param.grad = None
        self.optimizer.load_state_dict(copy.deepcopy(state["optimizer"]))
        if self.scheduler is not None:
            self.scheduler.load_state_dict(copy.deepcopy(state["scheduler"]))

    def _load_snapshot(self) -> None:
        self._restore(self._snapshot)

    # ------------------------------------------------------------ data

    def _tensor(self, leaf: Any) -> Any:
        torch = self.torch
        if isinstance(leaf, torch.Tensor):
            return leaf.to(self.device, non_blocking=True)
        if isinstance(leaf, np.ndarray):
            return torch.as_tensor(leaf, device=self.device)  # dtype kept: no cast
        return leaf

    def _device(self, batch: Any, shape_targets: bool = True) -> Any:
        """A batch on the device; arrays (which this adapter batches itself) get tensor targets in the
        loss's format. Inputs keep their dtype."""
        batch = tree_map(self._tensor, batch) if self.arrays else to_device(batch, self.device)
        if self.arrays and shape_targets:
            batch = self.form.with_target(batch, self._targets(self.form.target(batch)))
        return batch

    def _targets(self, t: Any) -> Any:
        """Array targets in the loss's format: class ids as long (float 0/1 columns for one output)."""
        torch = self.torch
        if self.setup.task == "classification" and not t.is_floating_point():
            if self.n_outputs == 1:
                return t.to(self.dtype).reshape(-1, 1) if t.ndim == 1 else t.to(self.dtype)
            return t.long()
        return t.to(self.dtype) if t.is_floating_point() else t.to(self.dtype)

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
            cols = self.tensors[name]
            for start in range(0, sample.n, EVAL_BATCH):
                yield self._shape(tree_map(lambda i: cols[i][start: start + EVAL_BATCH], sample.template))
        else:
            for batch in sample.raw or []:
                yield self._device(batch)

    def _shape(self, batch: Any) -> Any:
        if self.arrays:
            return self.form.with_target(batch, self._targets(self.form.target(batch)))
        return batch

    # ------------------------------------------------------------ the user's step

    def _forward(self, batch: Any, with_target: bool = False) -> Any:
        args, kwargs = self.form.call_args(batch, with_target)
        return self.model(*args, **kwargs)

    def _train_loss(self, batch: Any, index: int) -> Any:
        torch = self.torch
        if self.mode == "loss":
            return self.loss_fn(predictions(self._forward(batch), torch), self.form.target(batch))
        if self.mode == "own":
            return loss_value(self._forward(batch, with_target=True), "the model's output", torch)
        if self.mode == "step":
            return loss_value(self.setup.step(self.model, batch), "TrainSetup(step=...)", torch)
        step = self.model.training_step
        out = step(batch, index) if self._batch_idx else step(batch)
        return loss_value(out, f"{type(self.model).__name__}.training_step", torch)

    def _eval_loss(self, batch: Any, out: Any, pred: Any, index: int) -> Any:
        """The loss of an eval batch whose forward gave ``out`` (a second call only for a user's step)."""
        torch = self.torch
        if self.mode == "loss":
            return self.loss_fn(pred, self.form.target(batch))
        if self.mode == "own":
            loss = out.get("loss") if isinstance(out, Mapping) else getattr(out, "loss", None)
            return loss.mean() if isinstance(loss, torch.Tensor) else None
        return self._train_loss(batch, index)

    # ------------------------------------------------------------ measuring

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
            model_name=type(self.model).__name__,
            has_batchnorm=any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in modules),
            embeds_inputs=isinstance(first, (nn.Embedding, nn.EmbeddingBag)),
            notes=(pipeline, *self.notes),
        )

    def _scale_lr(self, scale: float) -> None:
        """Every learning rate the optimizer and scheduler keep (OneCycleLR's max_lr/min_lr in the
        groups, CyclicLR's max_lrs), so the schedule cannot restore the full rate."""
        for group in self.optimizer.param_groups:
            for key in ("lr", "initial_lr", "max_lr", "min_lr"):
                if key in group:
                    group[key] = group[key] * scale
        for attr in ("base_lrs", "max_lrs"):
            if self.scheduler is not None and hasattr(self.scheduler, attr):
                setattr(self.scheduler, attr, [lr * scale for lr in getattr(self.scheduler, attr)])
        if self.scheduler is not None:
            self.scheduler._last_lr = [g["lr"] for g in self.optimizer.param_groups]

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
        torch = self.torch
        self.model.eval()
        classification = self.setup.task == "classification"
        n = 0
        loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        correct = torch.zeros((), dtype=torch.float64, device=self.device)
        counted = torch.zeros((), dtype=torch.float64, device=self.device)
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
                    loss_sum += loss.detach().double() * size
                n += size
                if classification:
                    ids, hit, valid = self._hits(pred, target)
                    correct += hit
                    counted += valid
                    preds.append(ids)
                else:
                    y = target.reshape(size, -1).double()
                    p = (pred.reshape(target.shape) if pred.numel() == target.numel() else pred).reshape(size, -1).double()
                    sums.append(torch.stack([((y - p) ** 2).sum(0), y.sum(0), (y * y).sum(0)]))
                    preds.append(p if p.shape[1] > 1 else p[:, 0])
        loss_value_ = float(loss_sum) / n if n else float("nan")
        if classification:
            metric = float(correct / counted) if float(counted) else float("nan")
        else:
            s = torch.stack(sums).sum(0)
            total = float((s[2] - s[1] ** 2 / n).sum())
            metric = float(1.0 - float(s[0].sum()) / total) if total > 0 else float("nan")
        return metric, loss_value_, tensor_to_numpy(torch.cat(preds)) if preds else np.zeros(0)

    def _hits(self, pred: Any, target: Any) -> tuple[Any, Any, Any]:
        """(predicted ids, correct count, counted) of a classification batch; -100 targets are ignored."""
        torch = self.torch
        ids_t = self._target_ids(target)
        if pred.ndim == ids_t.ndim + 1 and ids_t.ndim >= 2:  # token level
            ids = pred.argmax(dim=-1)
        else:
            flat = pred.reshape(pred.shape[0], -1)
            if flat.shape[1] == 1:
                threshold = 0.0 if (flat.min() < 0 or flat.max() > 1) else 0.5
                ids = (flat[:, 0] > threshold).long()
            else:
                ids = flat.argmax(dim=1)
            ids_t = ids_t.reshape(ids.shape[0], -1)[:, 0] if ids_t.ndim > 1 else ids_t
        valid = ids_t != -100
        return ids, ((ids == ids_t) & valid).sum().double(), valid.sum().double()

    def _relabel(self, batch: Any, noise: LabelNoise) -> Any:
        """The batch with the random-label probe's targets (picked by a hash of its inputs)."""
        fields = [tensor_to_numpy(v) for v in tree_leaves(self.form.inputs(batch))]
        idx = self.torch.as_tensor(noise.pick(fields), device=self._pool(noise).device)
        return self.form.with_target(batch, self._pool(noise)[idx])

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
        self._load_snapshot()
        for split in self.splits.values():
            split.rewind()
        if lr_scale != 1.0:
            self._scale_lr(lr_scale)
        return self._train(epochs, max_steps, start, detail, noise)

    def _seed(self) -> Any:
        seed = self.settings.seed
        random.seed(seed)
        np.random.seed(seed)
        self.torch.manual_seed(seed)
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
            fields = [as_numpy(leaf, "X") for leaf in tree_leaves(self.train_split.X)]
            idx = self.torch.as_tensor(noise.pick(fields), device=self.device)
            self._noise_cache = (noise, self._pool(noise)[idx])
        return self._noise_cache[1]

    def _train(self, epochs: int, max_steps: int | None, start: float, detail: bool, noise: LabelNoise | None) -> TrainingTrace:
        torch = self.torch
        generator = self._seed()
        rec = _Record(torch, self.params, detail)
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
            for name, metrics, losses_of in (("train", epoch_train, loss_train), ("val", epoch_val, loss_val)):
                if name in self.samples:
                    metric, split_loss, preds[name] = self._measure(name, noise if name == "train" else None)
                    metrics.append(metric)
                    losses_of.append(split_loss)
            if detail:
                rec.bn_drift(self._bn_stats())
            if budget is not None and ran >= budget and (per_epoch is None or ran < per_epoch):
                truncated = True
                break
        if self.progress is not None:
            self.progress.done(len(rec.losses))
        if self.arrays and self._train_ids is not None:
            rec.counts_from_orders(orders, self._train_ids, self.batch_size, max(self.n_outputs, 2))
        return rec.trace(
            train_metric=np.asarray(epoch_train, dtype=np.float64), val_metric=np.asarray(epoch_val, dtype=np.float64),
            train_loss=np.asarray(loss_train, dtype=np.float64), val_loss=np.asarray(loss_val, dtype=np.float64),
            train_pred=preds["train"], val_pred=preds["val"], seconds=time.perf_counter() - start, truncated=truncated,
            orders=orders if detail else [],
        )

    progress_label = "training pass"

    def _epoch(self, epoch: int, batches: Iterator[Any], rec: "_Record", budget: int | None,
               hold_lr: list[float] | None = None) -> int:
        """One epoch over ``batches``; returns the steps run (fewer when ``budget`` runs out)."""
        model, optimizer, scheduler, plan = self.model, self.optimizer, self.scheduler, self.plan
        per_step = plan is not None and plan.interval == "step"
        count_labels = not self.arrays and self.setup.task == "classification"
        classes = max(self.n_outputs, 2)
        progress = self.progress
        ran = index = 0
        model.train()
        with self._quiet():
            for batch in itertools.islice(batches, budget):
                if hold_lr is not None:
                    for group, lr in zip(optimizer.param_groups, hold_lr):
                        group["lr"] = lr
                optimizer.zero_grad(set_to_none=True)
                try:
                    loss = self._train_loss(batch, index)
                except (SetupError, TrainSanityError):
                    raise
                except Exception as exc:  # noqa: BLE001 - the user's model or step failed: one paragraph
                    raise SetupError(self._step_error(batch, exc, len(rec.losses) + 1)) from None
                index += 1
                if loss is None:  # training_step returned None: Lightning skips the batch
                    continue
                loss.backward()
                sampled = ran % UPDATE_EVERY == 0
                rec.before_step(optimizer, sampled)
                optimizer.step()
                rec.after_step(loss, optimizer, epoch, sampled)
                if count_labels:
                    rec.count(self._target_ids(self.form.target(batch)), classes)
                ran += 1
                if per_step and len(rec.losses) % plan.frequency == 0:
                    scheduler.step()
                if progress is not None:
                    progress.step(epoch, len(rec.losses))
        if scheduler is not None and not per_step and ran and (epoch + 1) % plan.frequency == 0:
            scheduler.step()
        return ran

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
            if not self.arrays:
                torch.manual_seed(reseed)
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
            self._epoch(epoch, self._batches(generator, None, None), _Record(self.torch, self.params, False), steps or None, hold)
        finally:
            for m, momentum in frozen:
                m.momentum = momentum
        out = {}
        for name in ("train", "val"):
            if name in self.samples:
                metric, loss, _ = self._measure(name)
                out[f"{name}_acc"], out[f"{name}_loss"] = metric, loss
        return out


class _Record:
    """Per-step records kept on the device until the pass ends (no sync per step)."""

    def __init__(self, torch: Any, params: list[Any], detail: bool) -> None:
        self.torch, self.params, self.detail = torch, params, detail
        self.losses: list[Any] = []
        self.lrs: list[list[float]] = []
        self.step_epoch: list[int] = []
        self.grad_norms: list[Any] = []
        self.update_norms: list[Any] = []
        self.update_steps: list[int] = []
        self.momentum_norms: list[Any] = []
        self.checkpoints: list[dict[str, Any]] = []
        self.orders: list[np.ndarray] = []
        self.bn: list[float] = []
        self.last_bn: Any = None
        self.counts: list[Any] = []
        self.label_counts: np.ndarray | None = None
        size = sum(p.numel() for p in params)
        self.before, self.after = params[0].new_empty(size), params[0].new_empty(size)
        self.zero = self.before.new_zeros(())

    def before_step(self, optimizer: Any, sampled: bool) -> None:
        torch = self.torch
        grads = [p.grad for p in self.params if p.grad is not None]
        self.grad_norms.append(torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads))) if grads else self.zero)
        if sampled:  # copy the weights only on sampled steps: this is the costly record
            torch.cat([p.detach().reshape(-1) for p in self.params], out=self.before)

    def after_step(self, loss: Any, optimizer: Any, epoch: int, sampled: bool) -> None:
        torch = self.torch
        if sampled:
            torch.cat([p.detach().reshape(-1) for p in self.params], out=self.after)
            self.update_norms.append(torch.stack([torch.linalg.vector_norm(self.after.sub_(self.before)), torch.linalg.vector_norm(self.before)]))
            self.update_steps.append(len(self.losses))
            if self.detail:
                bufs = [st[k] for st in optimizer.state.values() for k in ("momentum_buffer", "exp_avg") if isinstance(st.get(k), torch.Tensor)]
                self.momentum_norms.append(torch.linalg.vector_norm(torch.stack(torch._foreach_norm(bufs))) if bufs else self.zero)
        self.losses.append(loss.detach())
        self.lrs.append([g["lr"] for g in optimizer.param_groups])
        self.step_epoch.append(epoch)

    def count(self, ids: Any, classes: int) -> None:
        """The label mix of one training batch, kept on the device (no sync): -100 and other
        out-of-range ids land in the two spare bins and are dropped at the end."""
        torch = self.torch
        idx = (ids.reshape(-1) + 1).clamp(0, classes + 1)
        self.counts.append(torch.zeros(classes + 2, device=idx.device).index_add_(0, idx, torch.ones(idx.shape, device=idx.device)))

    def counts_from_orders(self, orders: list[np.ndarray], ids: np.ndarray, batch: int, classes: int) -> None:
        """The label mix of every step of an array pass, from its batch orders (numpy, after the pass)."""
        out = []
        for order in orders:
            for s in batch_starts(len(order), batch):
                out.append(np.bincount(ids[order[s: s + batch]], minlength=classes)[:classes])
        self.label_counts = np.asarray(out[: len(self.losses)], dtype=np.float64).reshape(-1, classes)

    def bn_drift(self, stats: Any) -> None:
        """Relative change of the batch-norm running statistics over the epoch (NaN without BN)."""
        torch = self.torch
        if stats is None:
            self.bn.append(float("nan"))
            return
        prev = self.last_bn
        self.bn.append(float("nan") if prev is None else float(torch.linalg.vector_norm(stats - prev) / torch.linalg.vector_norm(prev).clamp_min(1e-12)))
        self.last_bn = stats

    def _label_counts(self) -> np.ndarray:
        if self.label_counts is not None:
            return self.label_counts
        if not self.counts:
            return np.zeros((0, 0))
        return tensor_to_numpy(self.torch.stack(self.counts))[:, 1:-1].astype(np.float64)

    def trace(self, **per_epoch: Any) -> TrainingTrace:
        torch = self.torch
        n = len(self.losses)
        update_ratio = np.full(n, np.nan)
        momentum = np.full(n, np.nan)
        if self.update_norms:
            pairs = tensor_to_numpy(torch.stack(self.update_norms)).astype(np.float64)
            update_ratio[self.update_steps] = pairs[:, 0] / np.maximum(pairs[:, 1], 1e-12)
        if self.momentum_norms:
            momentum[self.update_steps] = tensor_to_numpy(torch.stack(self.momentum_norms)).astype(np.float64)
        return TrainingTrace(
            loss=tensor_to_numpy(torch.stack(self.losses)).astype(np.float64) if n else np.zeros(0),
            lr=np.asarray([[float(v) for v in row] for row in self.lrs], dtype=np.float64).reshape(n, -1),
            grad_norm=tensor_to_numpy(torch.stack(self.grad_norms)).astype(np.float64) if n else np.zeros(0),
            update_ratio=update_ratio,
            epoch=np.asarray(self.step_epoch, dtype=np.int64),
            steps=n,
            momentum_norm=momentum,
            bn_drift=np.asarray(self.bn, dtype=np.float64),
            checkpoints=self.checkpoints,
            label_counts=self._label_counts(),
            **per_epoch,
        )
