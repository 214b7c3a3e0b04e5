"""PyTorch adapter: short, instrumented, fully restorable training passes.

Framework code stays at this edge; what leaves it is numpy. The data is
moved to the device once per check and batched here with a seeded
permutation (no DataLoader in the loop), so the instrumented epoch costs
about what a hand-written loop costs (see benchmarks/overhead.py).
"""

from __future__ import annotations

import copy
import random
import time
import warnings
from typing import Any

import numpy as np

from ..data import SplitData
from ..errors import OptionError, SetupError, missing_extra
from .base import Adapter, ModelInfo, TrainingTrace, batch_starts, check_label_range, first_line
from .devices import auto_gpu_index, xdist_worker_index

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


def _torch() -> Any:
    try:
        import torch
    except ModuleNotFoundError:
        raise missing_extra("torch", "torch") from None
    return torch


def tensor_to_numpy(t: Any) -> np.ndarray:
    torch = _torch()
    t = t.detach()
    if t.dtype in (torch.bfloat16, torch.float16):
        t = t.float()
    return t.cpu().resolve_conj().resolve_neg().numpy()


def _loader(name: str, split: Any) -> tuple[Any, int | None]:
    """An in-order loader over a Dataset or DataLoader, and the DataLoader's batch size."""
    torch = _torch()
    from torch.utils.data import DataLoader, Dataset, IterableDataset

    if isinstance(split, DataLoader):
        dataset = split.dataset
        map_style = not isinstance(dataset, IterableDataset) and hasattr(dataset, "__len__")
        if map_style:  # read in order, whatever the loader's sampler does
            return DataLoader(dataset, batch_size=split.batch_size or 256, shuffle=False, collate_fn=split.collate_fn), split.batch_size
        return split, split.batch_size
    if isinstance(split, Dataset):
        return DataLoader(split, batch_size=256, shuffle=False), None
    if isinstance(split, torch.Tensor):
        raise SetupError(f"TrainSetup({name}=...) is a single tensor; give (X, y) so the labels are known.")
    raise SetupError(f"TrainSetup({name}=...) is a {type(split).__name__}, not a torch Dataset or DataLoader.")


def iter_batches(name: str, split: Any) -> Any:
    """(X, y) numpy blocks from a torch Dataset or DataLoader, in order."""
    torch = _torch()
    loader, _ = _loader(name, split)
    try:
        for batch in loader:
            if not isinstance(batch, (tuple, list)) or len(batch) != 2:
                raise SetupError(
                    f"TrainSetup({name}=...) yields {type(batch).__name__} batches; each item must be "
                    f"an (x, y) pair (got {len(batch) if isinstance(batch, (tuple, list)) else 'one'} "
                    f"element(s)). Wrap the dataset so __getitem__ returns (x, y)."
                )
            yield tensor_to_numpy(torch.as_tensor(batch[0])), tensor_to_numpy(torch.as_tensor(batch[1]))
    except SetupError:
        raise
    except Exception as exc:  # noqa: BLE001 - the user's dataset failed; say where, briefly
        raise SetupError(
            f"Reading TrainSetup({name}=...) failed: {type(exc).__name__}: {exc}".split("\n")[0]
        ) from None


def loader_batch_size(name: str, split: Any) -> int | None:
    """A DataLoader's own batch size (None for a Dataset): the training pass uses it."""
    return _loader(name, split)[1]


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


class TorchAdapter(Adapter):
    framework = "torch"

    def __init__(self, model: Any, setup: Any, data: dict[str, SplitData], settings: Any) -> None:
        torch = _torch()
        self.torch = torch
        if not isinstance(model, torch.nn.Module):
            raise SetupError(f"TrainSetup(model=...) is a {type(model).__name__}, not a torch.nn.Module.")
        params = list(model.parameters())
        if not params:
            raise SetupError("TrainSetup(model=...) has no parameters; there is nothing to train.")
        self.model, self.setup, self.settings = model, setup, settings
        self.home = params[0].device
        self.device = resolve_device(settings.device)
        self.dtype = params[0].dtype if params[0].is_floating_point() else torch.float32
        self.params = [p for p in params if p.requires_grad]
        self.optimizer = self._optimizer(setup.optimizer)
        self.scheduler = self._scheduler(setup.scheduler)
        self.loss_fn = self._loss(setup.loss)
        self.data = data
        train = data["train"]
        self.batch_size = train.batch_size or setup.batch_size
        self.n_outputs = self._validate_forward(train)

    # ------------------------------------------------------------ set-up checks

    def _optimizer(self, given: Any) -> Any:
        torch = self.torch
        if isinstance(given, torch.optim.Optimizer):
            ours = {id(p) for p in self.model.parameters()}
            foreign = sum(1 for g in given.param_groups for p in g["params"] if id(p) not in ours)
            if foreign:
                raise SetupError(
                    f"TrainSetup(optimizer=...) holds {foreign} parameter tensor(s) that are not this "
                    f"model's; it was built for another model instance. With a model factory, pass "
                    f"optimizer=lambda params: torch.optim.Adam(params, lr=1e-3)."
                )
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

    def _loss(self, given: Any) -> Any:
        if isinstance(given, str):
            name = LOSS_NAMES.get(given.lower().replace("-", "_"))
            if name is None:
                raise SetupError(f"TrainSetup(loss={given!r}) is not a known loss name; use one of {sorted(LOSS_NAMES)} or a callable.")
            return getattr(self.torch.nn.functional, name)
        if callable(given):
            return given
        raise SetupError(f"TrainSetup(loss={given!r}) must be a callable(output, target) or a loss name.")

    def _validate_forward(self, train: SplitData) -> int:
        """One eval-mode forward of two samples: output shape and label range, before any training."""
        flags = [(m, m.training) for m in self.model.modules()]
        try:
            self.model.eval()
            with self.torch.no_grad():
                out = self.model(self._inputs(train.X[:2], self.home))
        except Exception as exc:  # noqa: BLE001 - one line, not a framework traceback
            first = first_line(exc)
            raise SetupError(
                f"The model could not run on the train inputs: model(X[:2]) with X of shape "
                f"{tuple(train.X.shape)} and dtype {train.X.dtype} raised {type(exc).__name__}: {first}. "
                f"Check that the input layer matches the data's shape."
            ) from None
        finally:
            for module, mode in flags:
                module.training = mode
        if not isinstance(out, self.torch.Tensor):
            raise SetupError(
                f"The model returned {type(out).__name__}; pytest-trainsanity needs a tensor of "
                f"logits or predictions (wrap the model so forward returns one tensor)."
            )
        n_outputs = int(out.reshape(out.shape[0], -1).shape[1])
        self.n_outputs = n_outputs
        check_label_range(self.data, self.setup.task, n_outputs)
        try:
            with self.torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # a broadcasting warning here precedes the real error
                self.loss_fn(out, self._targets(train.y[:2], self.home))
        except Exception as exc:  # noqa: BLE001
            first = first_line(exc)
            raise SetupError(
                f"The loss could not compare the model's output with the train labels: loss(output of "
                f"shape {tuple(out.shape)}, labels of shape {tuple(train.y[:2].shape)} and dtype "
                f"{train.y.dtype}) raised {type(exc).__name__}: {first}. Check that the loss fits the "
                f"task ({self.setup.task}) and the label format."
            ) from None
        return n_outputs

    # ------------------------------------------------------------ snapshot / restore

    def __enter__(self) -> "TorchAdapter":
        torch = self.torch
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

    def _inputs(self, X: np.ndarray, device: Any) -> Any:
        t = self.torch.as_tensor(X, device=device)
        return t.long() if X.dtype.kind in "iu" and X.dtype != np.uint8 else t.to(self.dtype)

    def _targets(self, y: np.ndarray, device: Any = None) -> Any:
        t = self.torch.as_tensor(y, device=self.device if device is None else device)
        if self.setup.task == "classification" and y.dtype.kind in "biu":
            if self.n_outputs == 1:
                return t.to(self.dtype).reshape(-1, 1) if y.ndim == 1 else t.to(self.dtype)
            return t.long()
        return t.to(self.dtype)

    def _tensor_data(self) -> None:
        self.tensors = {
            name: (self._inputs(split.X, self.device), self._targets(split.y))
            for name, split in self.data.items()
        }

    # ------------------------------------------------------------ measuring

    def info(self) -> ModelInfo:
        nn = self.torch.nn
        modules = list(self.model.modules())
        first = next((m for m in modules if any(True for _ in m.parameters(recurse=False))), None)
        return ModelInfo(
            framework="torch",
            n_params=sum(p.numel() for p in self.params),
            n_outputs=self.n_outputs,
            device=str(self.device),
            model_name=type(self.model).__name__,
            has_batchnorm=any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in modules),
            embeds_inputs=isinstance(first, (nn.Embedding, nn.EmbeddingBag)),
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

    def _predict(self, name: str) -> tuple[float, float, np.ndarray]:
        """(metric, loss, predictions) of one split, in eval mode."""
        torch = self.torch
        X, Y = self.tensors[name]
        self.model.eval()
        with torch.no_grad():
            out = torch.cat([self.model(X[i : i + EVAL_BATCH]) for i in range(0, len(X), EVAL_BATCH)])
            loss = self.loss_fn(out, Y)
            loss = float(loss.mean()) if isinstance(loss, torch.Tensor) else float(loss)
            if self.setup.task == "classification":
                flat = out.reshape(len(out), -1)
                if flat.shape[1] == 1:
                    threshold = 0.0 if (flat.min() < 0 or flat.max() > 1) else 0.5
                    pred = (flat[:, 0] > threshold).long()
                else:
                    pred = flat.argmax(dim=1)
                target = Y.argmax(dim=1) if Y.ndim == 2 and Y.shape[1] > 1 else Y.reshape(-1).long()
                metric = float((pred == target).float().mean())
            else:
                pred = out.reshape(Y.shape) if out.numel() == Y.numel() else out
                resid = ((Y - pred) ** 2).sum()
                total = ((Y - Y.mean(dim=0)) ** 2).sum()
                metric = float(1.0 - resid / total) if float(total) > 0 else float("nan")
        return metric, loss, tensor_to_numpy(pred)

    def train(
        self,
        *,
        epochs: int,
        lr_scale: float = 1.0,
        train_labels: np.ndarray | None = None,
        max_steps: int | None = None,
        detail: bool = False,
    ) -> TrainingTrace:
        start = time.perf_counter()
        self._load_snapshot()
        if lr_scale != 1.0:
            self._scale_lr(lr_scale)
        saved = self.tensors["train"]
        if train_labels is not None:  # the random-label probe trains and measures on these
            self.tensors["train"] = (saved[0], self._targets(train_labels))
        try:
            return self._train(epochs, max_steps, start, detail)
        finally:
            self.tensors["train"] = saved

    def _seed(self) -> Any:
        seed = self.settings.seed
        random.seed(seed)
        np.random.seed(seed)
        self.torch.manual_seed(seed)
        return self.torch.Generator().manual_seed(seed)

    def _train(self, epochs: int, max_steps: int | None, start: float, detail: bool) -> TrainingTrace:
        torch = self.torch
        generator = self._seed()
        n = len(self.tensors["train"][0])
        rec = _Record(self.torch, self.params, detail)
        epoch_train, epoch_val, loss_train, loss_val = [], [], [], []
        preds = {"train": np.zeros(0), "val": np.zeros(0)}
        truncated = False
        rec.last_bn = self._bn_stats() if detail else None
        for epoch in range(epochs):
            if detail:
                rec.checkpoints.append({**self._capture(), "generator": generator.get_state(), "rng": torch.get_rng_state()})
            order = torch.randperm(n, generator=generator)
            if detail:
                rec.orders.append(tensor_to_numpy(order))
            budget = None if max_steps is None else max_steps - len(rec.losses)
            ran = self._epoch(epoch, order.to(self.device), rec, budget)
            if ran == 0 and epoch > 0:
                truncated = True
                break  # the budget ran out exactly at an epoch boundary
            for name, metrics, losses_of in (("train", epoch_train, loss_train), ("val", epoch_val, loss_val)):
                if name in self.tensors:
                    metric, split_loss, preds[name] = self._predict(name)
                    metrics.append(metric)
                    losses_of.append(split_loss)
            if detail:
                rec.bn_drift(self._bn_stats())
            if budget is not None and ran < len(batch_starts(n, self.batch_size)):
                truncated = True
                break
        return rec.trace(
            train_metric=np.asarray(epoch_train, dtype=np.float64), val_metric=np.asarray(epoch_val, dtype=np.float64),
            train_loss=np.asarray(loss_train, dtype=np.float64), val_loss=np.asarray(loss_val, dtype=np.float64),
            train_pred=preds["train"], val_pred=preds["val"], seconds=time.perf_counter() - start, truncated=truncated,
        )

    def _epoch(self, epoch: int, order: Any, rec: "_Record", budget: int | None, hold_lr: list[float] | None = None) -> int:
        """One epoch over ``order``; returns the steps run (fewer when ``budget`` runs out)."""
        X, Y = self.tensors["train"]
        model, optimizer, scheduler, loss_fn = self.model, self.optimizer, self.scheduler, self.loss_fn
        per_batch = scheduler is not None and self.setup.scheduler_step == "batch"
        bs, ran = self.batch_size, 0
        model.train()
        for s in batch_starts(len(X), self.batch_size):
            if budget is not None and ran >= budget:
                break
            if hold_lr is not None:
                for group, lr in zip(optimizer.param_groups, hold_lr):
                    group["lr"] = lr
            idx = order[s : s + bs]
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(X[idx]), Y[idx])
            loss.backward()
            sampled = ran % UPDATE_EVERY == 0
            rec.before_step(optimizer, sampled)
            optimizer.step()
            rec.after_step(loss, optimizer, epoch, sampled)
            ran += 1
            if per_batch:
                scheduler.step()
        if scheduler is not None and not per_batch and ran:
            scheduler.step()
        return ran

    def _bn_modules(self) -> list[Any]:
        return [m for m in self.model.modules() if isinstance(m, self.torch.nn.modules.batchnorm._BatchNorm)]

    def _bn_stats(self) -> Any:
        stats = [t.detach().reshape(-1).float() for m in self._bn_modules() for t in (m.running_mean, m.running_var) if t is not None]
        return self.torch.cat(stats).clone() if stats else None

    def interventions(self) -> dict[str, str]:
        """The replay interventions this model supports, and why the others do not apply."""
        out = {"hold_lr": "", "reshuffle": ""}
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
        R^2, and losses)."""
        torch = self.torch
        ckpt = trace.checkpoints[epoch]
        self._restore(ckpt)
        torch.set_rng_state(ckpt["rng"])
        generator = torch.Generator().manual_seed(0)
        generator.set_state(ckpt["generator"])
        n = len(self.tensors["train"][0])
        if intervention == "reshuffle":
            generator = torch.Generator().manual_seed(self.settings.seed + 7919 * seed_offset + epoch)
        order = torch.randperm(n, generator=generator).to(self.device)
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
        try:
            for m, _ in frozen:
                m.momentum = 0.0  # running statistics stay where the checkpoint left them
            self._epoch(epoch, order, _Record(self.torch, self.params, False), None, hold)
        finally:
            for m, momentum in frozen:
                m.momentum = momentum
        out = {}
        for name in ("train", "val"):
            if name in self.tensors:
                metric, loss, _ = self._predict(name)
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

    def bn_drift(self, stats: Any) -> None:
        """Relative change of the batch-norm running statistics over the epoch (NaN without BN)."""
        torch = self.torch
        if stats is None:
            self.bn.append(float("nan"))
            return
        prev = self.last_bn
        self.bn.append(float("nan") if prev is None else float(torch.linalg.vector_norm(stats - prev) / torch.linalg.vector_norm(prev).clamp_min(1e-12)))
        self.last_bn = stats

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
            orders=self.orders,
            checkpoints=self.checkpoints,
            **per_epoch,
        )
