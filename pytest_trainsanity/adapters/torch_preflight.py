"""The pre-flight probes on a torch model (mixin of ``TorchAdapter``; see ``preflight.py``).

Each probe runs in an entered adapter and starts from its snapshot; what it
returns is numpy and names. Batches are the pipeline's own: the first train
batch as the loader (or the adapter's seeded batching of arrays) yields it.
"""

from __future__ import annotations

import itertools
import warnings
from typing import Any, Iterator

import numpy as np

from ..errors import SetupError, TrainSanityError
from .batches import tree_leaves
from .preflight import BatchMix, BatchRun, FiniteRun, InitProbe, Mixing, ParamRecord, Preflight, input_range, relative_change
from .torch_data import tensor_to_numpy
from .torch_step import predictions

LOGIT_LOSSES = {"CrossEntropyLoss": "logits", "BCEWithLogitsLoss": "logits", "NLLLoss": "log_probs",
                "BCELoss": "probs", "cross_entropy": "logits", "binary_cross_entropy_with_logits": "logits",
                "nll_loss": "log_probs", "binary_cross_entropy": "probs"}
DROPOUT_OR_BN = ("Dropout", "BatchNorm", "AlphaDropout", "FeatureAlphaDropout")


class TorchPreflight(Preflight):
    """Probes on ``self.model`` with ``self.optimizer`` and the user's loss (attributes of ``TorchAdapter``)."""

    # ------------------------------------------------------------ shared pieces

    def _first_batch(self) -> Any:
        """The first training batch as the pipeline yields it (seeded), on the device."""
        batch = next(iter(self._batches(self._seed(), None, None)), None)
        if batch is None:
            raise SetupError("The train split yielded no batch: there is nothing to probe.")
        return batch

    def _fresh(self) -> None:
        """The user's state, for a probe that only reads the model (no copy when nothing changed it)."""
        if not self.pristine:
            self._load_snapshot()

    def _will_train(self) -> None:
        """The user's state, snapshotted, for a probe that changes the model."""
        self.ensure_snapshot()
        self._fresh()
        self.pristine = False
        self.schedule_ended = 0

    def _step_loss(self, batch: Any, index: int = 0, skip: bool = False) -> Any:
        """The training loss of ``batch`` (the ``index``-th of the pipeline: Lightning's batch_idx). A
        training_step that returns None skips the batch, as Lightning does: None with ``skip``, else an
        error (a probe of one fixed batch has no other batch to take)."""
        try:
            loss = self._train_loss(batch, index)
        except (SetupError, TrainSanityError):
            raise
        except Exception as exc:  # noqa: BLE001 - the user's model or loss failed: one paragraph
            raise SetupError(self._step_error(batch, exc, index + 1)) from None
        if loss is None and not skip:
            raise SetupError(
                f"{type(self.model).__name__}.training_step returned None for the first train batch, which Lightning "
                f"reads as 'skip this batch'; this probe trains on that one batch, so there is nothing to probe. "
                f"Make training_step return the loss for it (a None guard for non-finite losses hides the problem "
                f"that finite_training reports).")
        return loss

    def _schedule(self, steps: int, per_epoch: int | None) -> None:
        """The user's scheduler after optimizer step ``steps`` of a probe, as the pass steps it: every
        ``frequency`` steps, or every ``frequency`` epochs of ``per_epoch`` steps (ReduceLROnPlateau,
        which needs a measured metric, is left where it is: it only lowers the rate)."""
        plan = self.plan
        if self.scheduler is None or plan is None or self.plateau is not None:
            return
        every = plan.frequency * (1 if plan.interval == "step" else per_epoch or 0)
        if every and steps % every == 0:
            if self._schedule_spent():  # ran out at an earlier step (or before the probe): its lr is held
                self.schedule_ended = self.schedule_ended or steps
                return
            self._scheduler_step(steps)
            if self._schedule_spent():  # that was its last step: the next one would be refused
                self.schedule_ended = self.schedule_ended or steps

    def _schedule_spent(self) -> bool:
        """Whether a schedule of a fixed length (OneCycleLR's ``total_steps``) has taken its last step, so that
        torch refuses the next. A probe takes its own number of steps (300 on one batch), not the run's: a
        schedule sized for a shorter run ends inside it, and the probe holds its last lr from there on."""
        total = getattr(self.scheduler, "total_steps", None)
        return isinstance(total, int) and getattr(self.scheduler, "last_epoch", -1) >= total

    def _schedule_note(self, steps: int) -> str:
        """What the probe of ``steps`` steps did after the user's schedule ran out ("" when it did not)."""
        ended = getattr(self, "schedule_ended", 0)
        if not ended:
            return ""
        sched = self.scheduler
        return (f"{type(sched).__name__}(total_steps={sched.total_steps}) took its last step after probe step {ended} "
                f"of {steps}, so the probe held its last lr {float(self.optimizer.param_groups[0]['lr']):.3g} for the "
                f"other {steps - ended} step(s) (torch refuses a step past total_steps; a run sized so ends there)")

    def _named_trainable(self) -> list[tuple[str, Any]]:
        return [(n, p) for n, p in self.model.named_parameters() if p.requires_grad]

    def _leaf_modules(self) -> list[tuple[str, Any]]:
        return [(n, m) for n, m in self.model.named_modules() if n and not any(True for _ in m.children())]

    def _loss_kind(self) -> tuple[str, str]:
        """(how the loss reads the outputs, its name)."""
        if self.mode != "loss":
            return "unknown", {"own": "the model's own loss", "step": "TrainSetup(step=...)",
                               "lightning": "training_step"}.get(self.mode, self.mode)
        name = self._loss_name()
        return LOGIT_LOSSES.get(name, "unknown"), name

    def _loss_name(self) -> str:
        """The class name of a loss module, the name of a loss function."""
        fn = self.loss_fn
        return type(fn).__name__ if isinstance(fn, self.torch.nn.Module) else getattr(fn, "__name__", type(fn).__name__)

    # ------------------------------------------------------------ loss at init

    def init_probe(self) -> InitProbe:
        torch = self.torch
        self._fresh()
        self.model.eval()
        outs, targets, losses, weights = [], [], [], []
        summed = self.mode == "loss" and getattr(self.loss_fn, "reduction", None) == "sum"
        with torch.no_grad(), self._quiet():
            for index, batch in enumerate(self._chunks("train")):
                pred = predictions(self._forward(batch, with_target=self.mode == "own"), torch)
                loss = self._eval_loss(batch, None, pred, index) if self.mode == "loss" else self._train_loss(batch, index)
                if loss is None:  # training_step skipped the batch
                    continue
                n = pred.shape[0]
                ids = self._target_ids(self.form.target(batch)).reshape(n, -1)
                if ids.shape[1] > 1 and pred.ndim >= 3 and pred.numel() == ids.numel() * pred.shape[-1]:
                    # a label per position (tokens): one row of outputs per position, ignored positions (-100) left out
                    ids, pred = ids.reshape(-1), pred.reshape(-1, pred.shape[-1])
                    keep = ids >= 0
                    ids, pred, n = ids[keep], pred[keep], int(keep.sum())
                else:
                    ids, pred = ids[:, 0], pred.reshape(n, -1)
                outs.append(tensor_to_numpy(pred).astype(np.float64))
                targets.append(tensor_to_numpy(ids).astype(np.int64))
                losses.append(float(loss) * (1 if summed else n))
                weights.append(n)
        if not outs:
            raise SetupError(f"{type(self.model).__name__}.training_step returned None for every train batch of the "
                             f"sample (Lightning skips such batches): there is no loss to compare.")
        kind, name = self._loss_kind()
        # the last module whose bias has the outputs' width (a multi-head model's auxiliary head, registered
        # after the main one, is not the bias of the outputs the loss reads); else the last with a bias
        biased = [(m, module) for m, module in self._leaf_modules() if isinstance(getattr(module, "bias", None), torch.Tensor)]
        width = outs[0].shape[1]
        last_name, last = next((pair for pair in reversed(biased) if pair[1].bias.numel() == width),
                               biased[-1] if biased else ("", None))
        softmax = ""
        leaves = self._leaf_modules()
        if leaves and isinstance(leaves[-1][1], (torch.nn.Softmax, torch.nn.Sigmoid)):
            softmax = f"module '{leaves[-1][0]}' ({type(leaves[-1][1]).__name__})"
        bias = tensor_to_numpy(last.bias.detach()).astype(np.float64).reshape(-1) if last is not None else None
        return InitProbe(np.concatenate(outs), np.concatenate(targets), sum(losses) / max(sum(weights), 1), kind, name,
                         bias, last_name, softmax, summed, sum(weights) / len(weights))

    # ------------------------------------------------------------ one batch

    def one_batch(self, steps: int, lr_scale: float = 1.0) -> BatchRun:
        torch = self.torch
        self._will_train()
        batch = self._first_batch()
        named = self._named_trainable()
        start = [p.detach().clone() for _, p in named]
        if lr_scale != 1.0:
            self._scale_lr(lr_scale)
        losses, ratios, lrs = [], [], []
        flat_before = None
        self.model.train()
        per_epoch = self.steps_per_epoch()
        with self._quiet():
            for step in range(steps):
                self.optimizer.zero_grad(set_to_none=True)
                loss = self._step_loss(batch)
                loss.backward()
                if step % 10 == 0:
                    flat_before = torch.cat([p.detach().reshape(-1) for _, p in named]).clone()
                lrs.append(float(self.optimizer.param_groups[0]["lr"]))
                self._optimizer_step()
                self._schedule(step + 1, per_epoch)
                if step % 10 == 0 and flat_before is not None:
                    after = torch.cat([p.detach().reshape(-1) for _, p in named])
                    ratios.append(torch.linalg.vector_norm(after - flat_before) / torch.linalg.vector_norm(flat_before).clamp_min(1e-12))
                losses.append(loss.detach())
        loss_np = tensor_to_numpy(torch.stack(losses)).astype(np.float64) if losses else np.zeros(0)
        acc = r2 = float("nan")
        self.model.eval()
        with torch.no_grad(), self._quiet():
            pred = predictions(self._forward(batch, with_target=self.mode == "own"), torch)
            target = self.form.target(batch)
            if self.setup.task == "classification":
                _, correct, counted = self._hits(pred, target)
                acc = float(correct) / max(float(counted), 1.0)
            else:
                p = tensor_to_numpy(pred).astype(np.float64).reshape(len(pred), -1)
                t = tensor_to_numpy(target).astype(np.float64).reshape(len(pred), -1)
                total = float(((t - t.mean(0)) ** 2).sum())
                r2 = 1.0 - float(((t - p) ** 2).sum()) / total if total > 0 else float("nan")
        moved = {n: relative_change(tensor_to_numpy(s), tensor_to_numpy(p.detach())) for (n, p), s in zip(named, start)}
        active = [f"{n} ({type(m).__name__})" for n, m in self._leaf_modules() if type(m).__name__.startswith(DROPOUT_OR_BN)]
        ratio = float(np.median(tensor_to_numpy(torch.stack(ratios)))) if ratios else float("nan")
        lr = max(lrs) if lrs else float(self.optimizer.param_groups[0]["lr"])  # the schedule's peak (a warm-up starts low)
        return BatchRun(loss_np, acc, r2, _batch_len(self.form, batch), self._conflicts(batch), moved, lr, ratio, active,
                        np.asarray(lrs, dtype=np.float64), self.schedule_ended, self._schedule_note(steps))

    def _conflicts(self, batch: Any) -> int:
        """Samples whose inputs equal another's in the batch while the labels differ."""
        leaves = [tensor_to_numpy(v) for v in tree_leaves(self.form.inputs(batch)) if isinstance(v, self.torch.Tensor)]
        if not leaves:
            return 0
        n = len(leaves[0])
        rows = np.concatenate([np.ascontiguousarray(v.reshape(n, -1)).view(np.uint8).reshape(n, -1) for v in leaves], axis=1)
        y = tensor_to_numpy(self._target_ids(self.form.target(batch))).reshape(n, -1)
        _, inverse = np.unique(rows, axis=0, return_inverse=True)
        inverse = inverse.reshape(-1)
        bad = 0
        for group in np.unique(inverse):
            members = np.flatnonzero(inverse == group)
            if len(members) > 1 and len(np.unique(y[members], axis=0)) > 1:
                bad += len(members)
        return bad

    # ------------------------------------------------------------ batch independence

    def mixing(self, probes: int = 3) -> Mixing:
        torch = self.torch
        self._fresh()
        batch = self._first_batch()
        bn = [n for n, m in self._leaf_modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
        inputs = {k: v for k, v in self.form.inputs(batch).items()
                  if isinstance(v, torch.Tensor) and v.is_floating_point()}
        n = _batch_len(self.form, batch)
        if n < 2:
            return Mixing(n, [], 0.0, batchnorm_train=bn, skipped="the first batch holds one sample")
        leaves = {k: v.detach().clone().requires_grad_(True) for k, v in inputs.items()}
        batch = _replace_inputs(self.form, batch, leaves)
        # integer inputs (token ids) have no gradient: an embedding's output for them is differentiated instead
        ids = {t.data_ptr() for t in tree_leaves(self.form.inputs(batch))
               if isinstance(t, torch.Tensor) and not t.is_floating_point() and t.ndim and t.shape[0] == n}
        embedded: dict[str, Any] = {}
        records: list[tuple[str, Any, Any]] = []  # (module, its input, its output) in execution order

        def embed(module: Any, args: Any, out: Any, name: str = "") -> Any:
            x = args[0] if args else None
            if (isinstance(x, torch.Tensor) and x.data_ptr() in ids and isinstance(out, torch.Tensor)
                    and out.is_floating_point() and out.ndim and out.shape[0] == n and name not in embedded):
                embedded[name] = out.detach().requires_grad_(True)
                return embedded[name]
            return None

        def hook(module: Any, args: Any, out: Any, name: str = "") -> None:
            x = next((a for a in args if isinstance(a, torch.Tensor) and a.requires_grad), None)
            if isinstance(out, (tuple, list)) and out:  # MultiheadAttention: (output, weights)
                out = out[0]
            if isinstance(out, torch.Tensor) and out.requires_grad and out.ndim and out.shape[0] == n:
                records.append((name, x if x is not None and x.ndim and x.shape[0] == n else None, out))

        # leaves, and MultiheadAttention, which computes with its out_proj's weights without calling it
        leaf_modules = self._leaf_modules()
        watched = leaf_modules + [(name, m) for name, m in self.model.named_modules()
                                  if isinstance(m, torch.nn.MultiheadAttention)]
        handles = [m.register_forward_hook(lambda mod, a, o, name=name: embed(mod, a, o, name))
                   for name, m in leaf_modules if isinstance(m, torch.nn.Embedding) and ids]
        handles += [m.register_forward_hook(lambda mod, a, o, name=name: hook(mod, a, o, name)) for name, m in watched]
        probed = sorted({0, n // 2, n - 1})[:probes]
        self.model.eval()
        try:
            with self._quiet():
                out = predictions(self._forward(batch), torch)
        finally:
            for h in handles:
                h.remove()
        leaves.update({f"{name} (embedding output)": leaf for name, leaf in embedded.items()})
        if not leaves:
            return Mixing(n, [], 0.0, batchnorm_train=bn, skipped="no floating-point input to differentiate, and no "
                          "nn.Embedding takes the integer inputs (token ids) with the batch axis first")
        # one backward for every probed sample: a row outside the probed set with a nonzero gradient is
        # an input (or activation) some probed output depends on
        tensors = list(leaves.values()) + [t for _, x, y in records for t in (x, y) if t is not None]
        unique = list({id(t): t for t in tensors}.values())
        with self._quiet():
            grads = torch.autograd.grad(out[probed].sum(), unique, allow_unused=True)
        grad_of = {id(t): g for t, g in zip(unique, grads)}
        mask = torch.zeros(n, dtype=torch.bool, device=out.device)
        mask[probed] = True

        def rows(t: Any) -> tuple[float, float]:
            g = grad_of.get(id(t)) if t is not None else None
            if g is None:
                return 0.0, 0.0
            per_row = g.detach().reshape(n, -1).abs().amax(dim=1).float()
            return float(per_row[mask].max()), float(per_row[~mask].max()) if (~mask).any() else 0.0

        own = other = 0.0
        for v in leaves.values():
            o, x = rows(v)
            own, other = max(own, o), max(other, x)
        leak = other / max(own, other, 1e-30)  # 0: independent; 1: as much from others as from itself
        flags = [(name, rows(x)[1] > 0, rows(y)[1] > 0, x, y) for name, x, y in records]
        where, between = _mixer(flags) if leak > 0 else ("", ("", ""))
        through = ", ".join(f"'{name}'" for name in embedded)
        kinds = {name: type(m).__name__ for name, m in watched}
        return Mixing(n, probed, leak, where, between, bn, through=f"the output of embedding {through}" if through else "",
                      module_kind=kinds.get(where, ""))

    # ------------------------------------------------------------ parameters update

    def param_step(self, frozen: tuple[str, ...]) -> list[ParamRecord]:
        torch = self.torch
        self._will_train()
        batch = self._first_batch()
        in_opt = {id(p) for g in self.optimizer.param_groups for p in g["params"]}
        named = list(self.model.named_parameters())
        saved = self._snapshot["tensors"]  # the state before the step, already copied once
        before = [saved[n] if n in saved else p.detach().clone() for n, p in named]
        self._past_zero_lr()
        self.model.train()
        with self._quiet():
            self.optimizer.zero_grad(set_to_none=True)
            for _, p in named:
                p.grad = None
            self._step_loss(batch).backward()
            have = [p.grad for _, p in named if p.grad is not None]
            # one pass over each gradient: its min and max say finite (NaN/Inf propagate), all zero, or neither
            # (aminmax is ~15x faster than an inf-norm here); one device sync for all
            ends = (tensor_to_numpy(torch.stack([torch.stack(torch.aminmax(g.reshape(-1))) for g in have]).float())
                    if have else np.zeros((0, 2)))
            it = iter(ends)
            grads = []
            for _, p in named:
                if p.grad is None:
                    grads.append("none")
                    continue
                lo, hi = (float(v) for v in next(it))
                grads.append("nonfinite" if not (np.isfinite(lo) and np.isfinite(hi)) else
                             "zero" if lo == 0 and hi == 0 else "ok")
            self._optimizer_step()
        out = []
        for (name, p), b, g in zip(named, before, grads):
            changed = not bool(torch.equal(p.detach(), b))
            out.append(ParamRecord(name, bool(p.requires_grad), name.startswith(frozen) if frozen else False,
                                   id(p) in in_opt, g, changed, int(p.numel())))
        return out

    def _past_zero_lr(self, limit: int = 10_000) -> None:
        """A schedule that holds every rate at 0 (a warm-up from 0: the run's first step moves nothing) is
        stepped on, one scheduler step at a time, to its first nonzero rate, so the probe's step is one the
        run takes (the scheduler's state is the snapshot's, restored after the check)."""
        if self.scheduler is None or self.plateau is not None:
            return
        with warnings.catch_warnings():  # torch warns of a scheduler step before any optimizer step: deliberate here
            warnings.simplefilter("ignore", UserWarning)
            for k in range(limit):
                if any(g["lr"] > 0 for g in self.optimizer.param_groups):
                    return
                self._scheduler_step(k + 1)

    # ------------------------------------------------------------ finite training

    def finite_run(self, steps: int) -> FiniteRun:
        torch = self.torch
        self._will_train()
        named = self._named_trainable()
        losses, gnorms = [], []
        ran = 0
        self.model.train()
        per_epoch = self.steps_per_epoch()
        skipped = 0
        with self._quiet():
            for index, batch in itertools.islice(self._cycle(), steps):
                self.optimizer.zero_grad(set_to_none=True)
                loss = self._step_loss(batch, index, skip=True)
                if loss is None:  # training_step skipped the batch, as Lightning does
                    skipped += 1
                    continue
                loss.backward()
                grads = [p.grad for _, p in named if p.grad is not None]
                gnorms.append(torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads))) if grads else loss.new_zeros(()))
                self._optimizer_step()
                losses.append(loss.detach().float())
                ran += 1
                self._schedule(ran, per_epoch)
        loss_np = tensor_to_numpy(torch.stack(losses)).astype(np.float64) if losses else np.zeros(0)
        g_np = tensor_to_numpy(torch.stack(gnorms)).astype(np.float64) if gnorms else np.zeros(0)
        weights_ok = not self._bad_weights(self.model.named_parameters())
        bad = np.flatnonzero(~np.isfinite(loss_np) | ~np.isfinite(g_np))
        result = FiniteRun(ran, 0, losses=loss_np, first_loss=float(loss_np[0]) if len(loss_np) else float("nan"),
                           dtype=str(self.dtype).replace("torch.", ""), skipped=skipped,
                           schedule_note=self._schedule_note(ran), eps_underflow=self.eps_underflow())
        if not len(bad) and weights_ok:
            return result
        step = int(bad[0]) + 1 if len(bad) else ran
        result.bad_step = step
        result.what = ("loss" if len(bad) and not np.isfinite(loss_np[step - 1]) else
                       "gradient" if len(bad) else "weights")
        self._replay_to(step, result)
        return result

    def _cycle(self) -> Iterator[tuple[int, Any]]:
        """(index within its epoch, batch) over epoch after epoch of the pipeline."""
        generator = self._seed()
        while True:
            empty = True
            for index, batch in enumerate(self._batches(generator, None, None)):
                empty = False
                yield index, batch
            if empty:
                return

    def _replay_to(self, step: int, result: FiniteRun) -> None:
        """Re-run from the snapshot to the bad step; on it, the first module whose output is non-finite."""
        torch = self.torch
        self._will_train()
        self.model.train()
        found: list[tuple[str, str]] = []

        def hook(module: Any, args: Any, out: Any, name: str = "") -> None:
            if found:
                return
            for t in tree_leaves(out) if not isinstance(out, torch.Tensor) else [out]:
                if isinstance(t, torch.Tensor) and t.is_floating_point() and not bool(torch.isfinite(t).all()):
                    found.append((name, type(module).__name__))
                    return

        per_epoch = self.steps_per_epoch()
        taken = 0
        with self._quiet():
            for index, batch in self._cycle():
                self.optimizer.zero_grad(set_to_none=True)
                handles = []
                if taken + 1 == step:
                    result.lr = float(self.optimizer.param_groups[0]["lr"])
                    result.input_min, result.input_max, result.input_nonfinite = input_range(
                        [tensor_to_numpy(v) for v in tree_leaves(self.form.inputs(batch)) if isinstance(v, torch.Tensor)])
                    handles = [m.register_forward_hook(lambda mod, a, o, name=name: hook(mod, a, o, name))
                               for name, m in self._leaf_modules()]
                try:
                    loss = self._step_loss(batch, index, skip=True)
                finally:
                    for h in handles:
                        h.remove()
                if loss is None:
                    continue
                loss.backward()
                self._optimizer_step()
                taken += 1
                if taken == step:
                    break
                self._schedule(taken, per_epoch)
        if found:
            result.module, result.module_kind = found[0]
        result.bad_params = list(self._bad_weights(self.model.named_parameters()))

    # ------------------------------------------------------------ batch mix

    def batch_mix(self, max_batches: int | None) -> BatchMix:
        classes = max(self.n_outputs, 2)
        if self.setup.task != "classification":
            return BatchMix(np.zeros((0, 0)), "", skipped="regression: batches have no class mix")
        rows = []
        for batch in itertools.islice(self._batches(self._seed(), None, None), max_batches):
            ids = tensor_to_numpy(self._target_ids(self.form.target(batch))).reshape(-1).astype(np.int64)
            ids = ids[(ids >= 0) & (ids < classes)]
            rows.append(np.bincount(ids, minlength=classes)[:classes])
        counts = np.asarray(rows, dtype=np.float64).reshape(-1, classes)
        if self.arrays:
            source = "arrays, batched and shuffled by the plugin each epoch (give a DataLoader to check your own)"
        else:
            loader = self.train_split.loader
            sampler = getattr(loader, "sampler", None)
            source = f"your {type(loader).__name__}" + (f" (sampler {type(sampler).__name__})" if sampler is not None else "")
        return BatchMix(counts, source)


def _batch_len(form: Any, batch: Any) -> int:
    target = form.target(batch)
    return int(target.shape[0]) if hasattr(target, "shape") and len(target.shape) else len(target)


def _replace_inputs(form: Any, batch: Any, leaves: dict[str, Any]) -> Any:
    """The batch with some input fields replaced (by name), in the same containers."""
    from .batches import FLAT, KWARGS, MULTI, NESTED, _rebuild

    if form.kind == FLAT:
        return _rebuild(batch, {k: leaves.get(k, v) for k, v in batch.items()})
    if form.kind == KWARGS:
        return _rebuild(batch, [_rebuild(batch[0], {k: leaves.get(k, v) for k, v in batch[0].items()}), *batch[1:]])
    if form.kind == NESTED:
        return _rebuild(batch, [_rebuild(batch[0], [leaves.get(n, v) for n, v in zip(form.names, batch[0])]), *batch[1:]])
    if form.kind == MULTI:
        return _rebuild(batch, [*[leaves.get(n, v) for n, v in zip(form.names, batch[:-1])], batch[-1]])
    return _rebuild(batch, [leaves.get(form.names[0], batch[0]), *batch[1:]])


def _mixer(records: list[tuple[str, bool, bool, Any, Any]]) -> tuple[str, tuple[str, str]]:
    """Where samples mix, from whether each leaf module's input and output gradients reach rows outside
    the probed samples (in execution order): a module whose input leaks while its output does not
    mixes them itself; else a functional op between the last module whose output leaks and the first
    later module whose input is computed from that output (autograd's graph, not execution order:
    a parallel branch that runs in between is not it)."""
    for name, x_leaks, y_leaks, _, _ in records:
        if x_leaks and not y_leaks:
            return name, ("", "")
    last = max((i for i, r in enumerate(records) if r[2]), default=None)
    if last is None:
        return "", ("", "")
    source = records[last][4].grad_fn
    for name, _, _, x, _ in records[last + 1:]:
        if x is not None and _reaches(x.grad_fn, source):
            return "", (records[last][0], name)
    return "", (records[last][0], "")


def _reaches(start: Any, target: Any, limit: int = 10_000) -> bool:
    """Whether autograd node ``target`` lies upstream of ``start``."""
    seen, stack = set(), [start]
    while stack and len(seen) < limit:
        node = stack.pop()
        if node is None or id(node) in seen:
            continue
        if node is target:
            return True
        seen.add(id(node))
        stack.extend(n for n, _ in getattr(node, "next_functions", ()))
    return False
