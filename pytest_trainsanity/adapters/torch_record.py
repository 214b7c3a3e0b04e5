"""Per-step records of a torch training pass, kept on the device until the pass ends."""

from __future__ import annotations

from typing import Any

import numpy as np

from .base import TrainingTrace, batch_starts
from .torch_data import tensor_to_numpy


class StepRecord:
    """Per-step records kept on the device until the pass ends (no sync per step)."""

    def __init__(self, torch: Any, params: list[Any], detail: bool) -> None:
        self.torch, self.params, self.detail = torch, params, detail
        self.losses: list[Any] = []
        self.lrs: list[list[float]] = []
        self.step_epoch: list[int] = []
        self.update_norms: list[Any] = []
        self.update_steps: list[int] = []
        self.momentum_norms: list[Any] = []
        self.checkpoints: list[dict[str, Any]] = []
        self.orders: list[np.ndarray] = []
        self.bn: list[float] = []
        self.last_bn: Any = None
        self.ids: list[Any] = []  # each step's target class ids (1-D), counted after the pass
        self.label_counts: np.ndarray | None = None
        self.grad_parts: list[Any] = []  # per-parameter gradient norms, flat: reduced after the pass
        self.grad_counts: list[int] = []
        self.grad_steps: list[int] = []
        # a detail pass (lr_spike_explained) copies the weights around its sampled steps; no other pass records them
        size = sum(p.numel() for p in params) if detail else 0
        self.before, self.after = params[0].new_empty(size), params[0].new_empty(size)
        self.zero = self.before.new_zeros(())

    def before_step(self, optimizer: Any, sampled: bool) -> None:
        torch = self.torch
        if self.detail:  # the gradient norm on every step: only lr_spike_explained reads it
            grads = [p.grad for p in self.params if p.grad is not None]
            self.grad_parts += torch._foreach_norm(grads) if grads else [self.zero]  # reduced after the pass
            self.grad_counts.append(max(len(grads), 1))
            self.grad_steps.append(len(self.losses))
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

    def count(self, ids: Any) -> None:
        """Keep one training batch's class ids (one per sample); they are counted after the pass."""
        if ids.ndim == 1:
            self.ids.append(ids)

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

    def _label_counts(self, classes: int) -> np.ndarray:
        """(steps x classes) label counts of the training batches; ids outside [0, classes) (-100:
        ignored positions) are not counted. Empty when the targets were not per-sample ids."""
        if self.label_counts is not None:
            return self.label_counts
        if not self.ids or len(self.ids) != len(self.losses):
            return np.zeros((0, 0))
        ids = tensor_to_numpy(self.torch.cat([i.reshape(-1) for i in self.ids])).astype(np.int64)
        step = np.repeat(np.arange(len(self.ids)), [len(i) for i in self.ids])
        keep = (ids >= 0) & (ids < classes)
        flat = np.bincount(step[keep] * classes + ids[keep], minlength=len(self.ids) * classes)
        return flat.reshape(len(self.ids), classes).astype(np.float64)

    def _grad_norms(self) -> np.ndarray:
        """Each recorded step's global gradient norm from its per-parameter norms (one stack for the
        pass); NaN on the steps not recorded."""
        out = np.full(len(self.losses), np.nan)
        if self.grad_parts:
            parts = tensor_to_numpy(self.torch.stack(self.grad_parts)).astype(np.float64)
            starts = np.concatenate([[0], np.cumsum(self.grad_counts)[:-1]])
            out[self.grad_steps] = np.sqrt(np.add.reduceat(parts * parts, starts))
        return out

    def trace(self, classes: int = 0, **per_epoch: Any) -> TrainingTrace:
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
            grad_norm=self._grad_norms(),
            update_ratio=update_ratio,
            epoch=np.asarray(self.step_epoch, dtype=np.int64),
            steps=n,
            momentum_norm=momentum,
            bn_drift=np.asarray(self.bn, dtype=np.float64),
            checkpoints=self.checkpoints,
            label_counts=self._label_counts(classes),
            **per_epoch,
        )

