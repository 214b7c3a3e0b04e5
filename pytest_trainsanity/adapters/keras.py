"""Keras 3 adapter (TensorFlow backend): short, instrumented, fully restorable training passes.

The twin of the torch adapter: the same ``TrainingTrace``, the same probes and
replays. Training runs our own loop (one traced ``tf.function`` step with
``tf.GradientTape``; batches gathered in-graph from tensors held on the
device), not ``model.fit``, so every step can be measured and every epoch
checkpointed; ``benchmarks/overhead.py`` compares it with a plain
``model.fit``.

Learning rate. For the length of a check the optimizer's rate is swapped for a
variable of ours (Keras reads ``optimizer._learning_rate``; restored on exit).
Each step computes the rate in-graph from the user's own rate or
``LearningRateSchedule`` (at the optimizer's iteration count) times a scale
(the lr probe), or a held value (the hold-lr replay), so no probe or replay
re-traces the step. A ``keras.callbacks.LearningRateScheduler`` (or a
callable ``(epoch, lr) -> lr``) given as ``TrainSetup(scheduler=...)`` is
applied before every epoch, as ``model.fit`` would.

Loss callables follow the Keras convention ``loss(y_true, y_pred)``.
"""

from __future__ import annotations

import importlib.util
import random
import time
from typing import Any

import numpy as np

from ..data import SplitData, class_ids
from ..errors import OptionError, SetupError, missing_extra
from .base import Adapter, ModelInfo, TrainingTrace, batch_starts, check_label_range, first_line
from .devices import auto_gpu_index, xdist_worker_index

EVAL_BATCH = 2048
UPDATE_EVERY = 4  # as torch: ||update|| / ||weights|| and the momentum norm on every 4th step


def _tf() -> tuple[Any, Any]:
    if importlib.util.find_spec("torch") is not None:  # one process: torch before tensorflow
        import torch  # noqa: F401
    try:
        import keras
        import tensorflow as tf
    except ModuleNotFoundError:
        raise missing_extra("tensorflow", "tensorflow") from None
    return tf, keras


def iter_batches(name: str, split: Any) -> Any:
    """(X, y) numpy blocks from a tf.data.Dataset (batched or not) or a keras PyDataset."""
    tf, keras = _tf()
    if isinstance(split, tf.data.Dataset):
        spec = split.element_spec
        if not isinstance(spec, tuple) or len(spec) < 2:
            raise SetupError(
                f"TrainSetup({name}=...) is a tf.data.Dataset whose elements are {type(spec).__name__}; each "
                f"element must be an (x, y) pair (e.g. tf.data.Dataset.from_tensor_slices((X, y)))."
            )
        batched = spec[0].shape.rank is not None and spec[0].shape.rank >= 1 and spec[0].shape[0] is None
        items = (split if batched else split.batch(4096)).as_numpy_iterator()
    elif isinstance(split, keras.utils.PyDataset):
        items = (split[i] for i in range(len(split)))
    else:
        raise SetupError(f"TrainSetup({name}=...) is a {type(split).__name__}, not a tf.data.Dataset or keras PyDataset.")
    try:
        for batch in items:
            if not isinstance(batch, (tuple, list)) or len(batch) < 2:
                raise SetupError(f"TrainSetup({name}=...) yields {type(batch).__name__} items; each must be an (x, y) pair.")
            yield np.asarray(batch[0]), np.asarray(batch[1])
    except SetupError:
        raise
    except Exception as exc:  # noqa: BLE001 - the user's dataset failed; say where, briefly
        raise SetupError(f"Reading TrainSetup({name}=...) failed: {type(exc).__name__}: {exc}".split("\n")[0]) from None


def resolve_device(spec: str) -> str:
    tf, _ = _tf()
    gpus = tf.config.list_logical_devices("GPU")
    if spec == "auto":
        index = auto_gpu_index(len(gpus), xdist_worker_index())
        return "/CPU:0" if index is None else f"/GPU:{index}"
    if spec.startswith("cuda"):
        index = int(spec.split(":")[1]) if ":" in spec else 0
        if index >= len(gpus):
            raise OptionError(
                f"trainsanity device {spec!r} was asked for but TensorFlow sees {len(gpus)} GPU(s) "
                f"(tensorflow {tf.__version__}). Use 'cpu' or 'auto'."
            )
        return f"/GPU:{index}"
    if spec == "mps":
        raise OptionError("trainsanity device 'mps' is a torch device; TensorFlow models run on 'cpu', 'cuda' or 'auto'.")
    return "/CPU:0"


class KerasAdapter(Adapter):
    framework = "tensorflow"

    def __init__(self, model: Any, setup: Any, data: dict[str, SplitData], settings: Any) -> None:
        tf, keras = _tf()
        self.tf, self.keras = tf, keras
        if not isinstance(model, keras.Model):
            raise SetupError(f"TrainSetup(model=...) is a {type(model).__name__}, not a keras.Model.")
        self.model, self.setup, self.settings, self.data = model, setup, settings, data
        self.device = resolve_device(settings.device)
        train = data["train"]
        self.batch_size = train.batch_size or setup.batch_size
        with tf.device(self.device):
            out = self._validate_forward(train)
            self.n_outputs = int(np.prod(out.shape[1:])) if len(out.shape) > 1 else 1
            check_label_range(self.data, self.setup.task, self.n_outputs)
            self.params = list(model.trainable_variables)
            if not self.params:
                raise SetupError("TrainSetup(model=...) has no trainable weights; there is nothing to train.")
            self.optimizer = self._optimizer(setup.optimizer)
            self.loss_fn = self._loss(setup.loss)
            self._check_loss(train, out)
        self.scheduler = self._scheduler(setup.scheduler)
        self._step_fns: dict[bool, Any] = {}  # sampled? -> the traced training step
        self._predict_fn: Any = None

    # ------------------------------------------------------------ set-up checks

    def _optimizer(self, given: Any) -> Any:
        keras = self.keras
        if given is None and getattr(self.model, "optimizer", None) is not None:
            given = self.model.optimizer  # compiled: the optimizer model.fit would use
        if isinstance(given, str):
            try:
                given = keras.optimizers.get(given)
            except ValueError:
                raise SetupError(f"TrainSetup(optimizer={given!r}) is not a Keras optimizer name (e.g. 'adam', 'sgd').") from None
        if not isinstance(given, keras.optimizers.Optimizer):
            raise SetupError(
                f"TrainSetup(optimizer={given!r}) is not usable with a Keras model; give a keras optimizer "
                f"instance (keras.optimizers.Adam(1e-3)) or a name ('adam')."
            )
        if given.built:
            ours = {id(v) for v in self.params}
            tracked = getattr(given, "_trainable_variables", None) or []
            if tracked and any(id(v) not in ours for v in tracked):
                raise SetupError(
                    "TrainSetup(optimizer=...) was built for another model's weights; give a fresh optimizer "
                    "(or the one this model was compiled with)."
                )
        else:
            given.build(self.params)
        return given

    def _loss(self, given: Any) -> Any:
        keras = self.keras
        if given is None:
            given = getattr(self.model, "loss", None)
        if isinstance(given, str):
            try:
                return keras.losses.get(given)
            except ValueError:
                raise SetupError(f"TrainSetup(loss={given!r}) is not a Keras loss name (e.g. 'sparse_categorical_crossentropy').") from None
        if callable(given):
            return given
        raise SetupError(f"TrainSetup(loss={given!r}) must be a Keras loss, a callable(y_true, y_pred) or a loss name.")

    def _scheduler(self, given: Any) -> Any:
        if given is None:
            return None
        if isinstance(given, self.keras.callbacks.LearningRateScheduler):
            return given.schedule
        if callable(given):
            return given
        raise SetupError(
            f"TrainSetup(scheduler={given!r}) for a Keras model must be a keras.callbacks.LearningRateScheduler or a "
            f"callable(epoch, lr) -> lr; a LearningRateSchedule belongs inside the optimizer."
        )

    def _validate_forward(self, train: SplitData) -> Any:
        """One inference-mode forward of two samples, before any training: its output."""
        try:
            out = self.model(self._inputs(train.X[:2]), training=False)
        except Exception as exc:  # noqa: BLE001 - one line, not a framework traceback
            first = first_line(exc)
            raise SetupError(
                f"The model could not run on the train inputs: model(X[:2]) with X of shape {tuple(train.X.shape)} "
                f"and dtype {train.X.dtype} raised {type(exc).__name__}: {first}. Check that the input layer matches "
                f"the data's shape."
            ) from None
        if isinstance(out, (list, tuple, dict)):
            raise SetupError("The model returns several outputs; pytest-trainsanity needs one tensor of logits or predictions.")
        return out

    def _check_loss(self, train: SplitData, out: Any) -> None:
        try:
            self.loss_fn(self._targets(train.y[:2]), out)
        except Exception as exc:  # noqa: BLE001
            first = first_line(exc)
            raise SetupError(
                f"The loss could not compare the train labels with the model's output: loss(labels of shape "
                f"{tuple(train.y[:2].shape)} and dtype {train.y.dtype}, output of shape {tuple(out.shape)}) raised "
                f"{type(exc).__name__}: {first}. Check that the loss fits the task ({self.setup.task}) and the label "
                f"format (sparse ids vs one-hot)."
            ) from None

    # ------------------------------------------------------------ data

    def _inputs(self, X: np.ndarray) -> Any:
        tf = self.tf
        if X.dtype.kind in "iu" and X.dtype != np.uint8:
            return tf.convert_to_tensor(X.astype(np.int64))
        return tf.convert_to_tensor(X.astype(np.float32, copy=False))

    def _targets(self, y: np.ndarray) -> Any:
        tf = self.tf
        if self.setup.task == "classification" and y.dtype.kind in "biu":
            return tf.convert_to_tensor(y.astype(np.float32) if self.n_outputs == 1 else y.astype(np.int64))
        return tf.convert_to_tensor(y.astype(np.float32, copy=False))

    # ------------------------------------------------------------ snapshot / restore

    def __enter__(self) -> "KerasAdapter":
        tf = self.tf
        gen = tf.random.get_global_generator()
        self._rng = (random.getstate(), np.random.get_state(), gen.state.numpy().copy())
        self._orig_lr = self.optimizer._learning_rate  # Keras 3 reads the rate from here
        self._snapshot = self._capture()
        with tf.device(self.device):
            schedule = isinstance(self._orig_lr, self.keras.optimizers.schedules.LearningRateSchedule)
            start = float(self._orig_lr(0)) if schedule else float(np.asarray(self._orig_lr))
            self._start_lr = start
            self._lr = tf.Variable(start, dtype=tf.float32, trainable=False, name="trainsanity_lr")
            self._base = tf.Variable(start, dtype=tf.float32, trainable=False, name="trainsanity_base_lr")
            self._scale = tf.Variable(1.0, dtype=tf.float32, trainable=False, name="trainsanity_lr_scale")
            self._hold = tf.Variable(-1.0, dtype=tf.float32, trainable=False, name="trainsanity_hold_lr")
            self._schedule = self._orig_lr if schedule else None
            self.optimizer._learning_rate = self._lr
            try:
                self.tensors = {name: (self._inputs(s.X), self._targets(s.y)) for name, s in self.data.items()}
                X, Y = self.tensors["train"]
                self._X, self._Y = X, tf.Variable(Y, trainable=False, name="trainsanity_train_labels")
            except BaseException:  # e.g. out of device memory: the optimizer gets its own rate back
                self.__exit__()
                raise
        return self

    def __exit__(self, *exc: Any) -> None:
        self.optimizer._learning_rate = self._orig_lr
        self._restore(self._snapshot)
        py, npy, tfs = self._rng
        random.setstate(py)
        np.random.set_state(npy)
        self.tf.random.get_global_generator().state.assign(tfs)
        self._step_fns.clear()
        self._predict_fn = None

    def _capture(self) -> dict[str, Any]:
        return {
            "model": [v.numpy().copy() for v in self.model.variables],
            "optimizer": [v.numpy().copy() for v in self.optimizer.variables],
        }

    def _restore(self, state: dict[str, Any]) -> None:
        for v, value in zip(self.model.variables, state["model"]):
            v.assign(value)
        for v, value in zip(self.optimizer.variables, state["optimizer"]):
            v.assign(value)

    # ------------------------------------------------------------ measuring

    def _layers(self) -> list[Any]:
        """Every layer, nested ones included."""
        return list(self.model._flatten_layers(include_self=False))

    def info(self) -> ModelInfo:
        layers = self._layers()
        first = next((layer for layer in layers if layer.weights), None)
        return ModelInfo(
            framework="keras",
            n_params=int(sum(np.prod(v.shape) for v in self.params)),
            n_outputs=self.n_outputs,
            device=self.device,
            model_name=type(self.model).__name__,
            has_batchnorm=any(isinstance(layer, self.keras.layers.BatchNormalization) for layer in layers),
            embeds_inputs=isinstance(first, self.keras.layers.Embedding),
        )

    def _bn_layers(self) -> list[Any]:
        return [layer for layer in self._layers() if isinstance(layer, self.keras.layers.BatchNormalization)]

    def _momentum_vars(self) -> list[Any]:
        return list(getattr(self.optimizer, "_momentums", None) or getattr(self.optimizer, "momentums", None) or [])

    def _predict(self, name: str) -> tuple[float, float, np.ndarray]:
        tf = self.tf
        X, Y = self.tensors[name]
        if name == "train":
            Y = self._Y
        if self._predict_fn is None:
            self._predict_fn = tf.function(lambda x: self.model(x, training=False), reduce_retracing=True)
        fn = self._predict_fn
        out = tf.concat([fn(X[i : i + EVAL_BATCH]) for i in range(0, int(X.shape[0]), EVAL_BATCH)], axis=0)
        loss = float(np.mean(np.asarray(self.loss_fn(Y, out))))
        out_np, y_np = np.asarray(out), np.asarray(Y)
        if self.setup.task == "classification":
            flat = out_np.reshape(len(out_np), -1)
            if flat.shape[1] == 1:
                threshold = 0.0 if (flat.min() < 0 or flat.max() > 1) else 0.5
                pred = (flat[:, 0] > threshold).astype(np.int64)
            else:
                pred = flat.argmax(axis=1)
            metric = float(np.mean(pred == class_ids(y_np)))
        else:
            pred = out_np.reshape(y_np.shape) if out_np.size == y_np.size else out_np
            total = float(((y_np - y_np.mean(axis=0)) ** 2).sum())
            metric = float(1.0 - ((y_np - pred) ** 2).sum() / total) if total > 0 else float("nan")
        return metric, loss, pred

    def _step_fn(self, sampled: bool) -> Any:
        """The traced training step: gather the batch, forward, loss (+ model losses), gradients,
        the step's learning rate, apply; ``sampled`` also measures the update and momentum norms."""
        if sampled in self._step_fns:
            return self._step_fns[sampled]
        tf = self.tf
        model, opt, loss_fn, params = self.model, self.optimizer, self.loss_fn, self.params
        momentum = self._momentum_vars()

        def step(idx: Any) -> Any:
            x, y = tf.gather(self._X, idx), tf.gather(self._Y, idx)
            with tf.GradientTape() as tape:
                out = model(x, training=True)
                loss = tf.reduce_mean(loss_fn(y, out))
                if model.losses:
                    loss += tf.add_n(model.losses)
            grads = tape.gradient(loss, params)
            gnorm = tf.linalg.global_norm([g for g in grads if g is not None])
            base = self._schedule(opt.iterations) if self._schedule is not None else self._base
            lr = tf.where(self._hold >= 0, self._hold, tf.cast(base, tf.float32) * self._scale)
            self._lr.assign(lr)
            if sampled:
                before = [tf.identity(p) for p in params]
            opt.apply_gradients(zip(grads, params))
            if not sampled:
                return loss, gnorm, lr
            upd = tf.linalg.global_norm([p - b for p, b in zip(params, before)])
            wnorm = tf.linalg.global_norm(before)
            mom = tf.linalg.global_norm(momentum) if momentum else tf.constant(0.0)
            return loss, gnorm, lr, upd, wnorm, mom

        fn = tf.function(step, input_signature=[tf.TensorSpec([None], tf.int32)])
        self._step_fns[sampled] = fn
        return fn

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
        self._restore(self._snapshot)
        self._scale.assign(lr_scale)
        self._hold.assign(-1.0)
        self._base.assign(self._start_lr)
        saved = self._Y.numpy()
        if train_labels is not None:  # the random-label probe trains and measures on these
            self._Y.assign(self._targets(train_labels))
        try:
            with self.tf.device(self.device):
                return self._train(epochs, max_steps, start, detail)
        finally:
            self._Y.assign(saved)
            self._scale.assign(1.0)

    def _train(self, epochs: int, max_steps: int | None, start: float, detail: bool) -> TrainingTrace:
        rng = np.random.RandomState(self.settings.seed)
        n = int(self._X.shape[0])
        rec = _Record()
        epoch_train, epoch_val, loss_train, loss_val = [], [], [], []
        preds = {"train": np.zeros(0), "val": np.zeros(0)}
        truncated = False
        last_bn = self._bn_stats() if detail else None
        for epoch in range(epochs):
            if detail:
                rec.checkpoints.append({**self._capture(), "rng": rng.get_state(), "base": float(self._base.numpy())})
            self._epoch_lr(epoch)
            order = rng.permutation(n).astype(np.int32)
            if detail:
                rec.orders.append(order)
            budget = None if max_steps is None else max_steps - len(rec.losses)
            ran = self._epoch(epoch, order, rec, budget)
            if ran == 0 and epoch > 0:
                truncated = True
                break
            for name, metrics, losses_of in (("train", epoch_train, loss_train), ("val", epoch_val, loss_val)):
                if name in self.tensors:
                    metric, split_loss, preds[name] = self._predict(name)
                    metrics.append(metric)
                    losses_of.append(split_loss)
            if detail:
                stats = self._bn_stats()
                rec.bn.append(float("nan") if stats is None or last_bn is None else
                              float(np.linalg.norm(stats - last_bn) / max(np.linalg.norm(last_bn), 1e-12)))
                last_bn = stats
            if budget is not None and ran < len(batch_starts(n, self.batch_size)):
                truncated = True
                break
        return rec.trace(
            train_metric=np.asarray(epoch_train, dtype=np.float64), val_metric=np.asarray(epoch_val, dtype=np.float64),
            train_loss=np.asarray(loss_train, dtype=np.float64), val_loss=np.asarray(loss_val, dtype=np.float64),
            train_pred=preds["train"], val_pred=preds["val"], seconds=time.perf_counter() - start, truncated=truncated,
            tf=self.tf,
        )

    def _epoch_lr(self, epoch: int) -> None:
        """A LearningRateScheduler callback's rate for this epoch (before it, as model.fit does)."""
        if self.scheduler is not None:
            self._base.assign(float(self.scheduler(epoch, float(self._base.numpy()))))

    def _epoch(self, epoch: int, order: np.ndarray, rec: "_Record", budget: int | None) -> int:
        tf = self.tf
        plain, sampled_fn = self._step_fn(False), self._step_fn(True)
        bs, ran = self.batch_size, 0
        for s in batch_starts(len(order), self.batch_size):
            if budget is not None and ran >= budget:
                break
            idx = tf.constant(order[s : s + bs])
            if ran % UPDATE_EVERY == 0:
                loss, gnorm, lr, upd, wnorm, mom = sampled_fn(idx)
                rec.sampled.append((len(rec.losses), upd, wnorm, mom))
            else:
                loss, gnorm, lr = plain(idx)
            rec.losses.append(loss)
            rec.grad_norms.append(gnorm)
            rec.lrs.append(lr)
            rec.step_epoch.append(epoch)
            ran += 1
        return ran

    def _bn_stats(self) -> np.ndarray | None:
        stats = [np.asarray(v).reshape(-1) for layer in self._bn_layers() for v in (layer.moving_mean, layer.moving_variance)]
        return np.concatenate(stats) if stats else None

    def interventions(self) -> dict[str, str]:
        out = {"hold_lr": "", "reshuffle": ""}
        out["reset_momentum"] = "" if self._momentum_vars() else f"{type(self.optimizer).__name__} keeps no momentum"
        out["freeze_bn"] = "" if self._bn_layers() else "the model has no batch-norm layer"
        return out

    def replay(self, trace: TrainingTrace, epoch: int, intervention: str | None = None, seed_offset: int = 1) -> dict[str, float]:
        ckpt = trace.checkpoints[epoch]
        self._restore(ckpt)
        self._base.assign(ckpt["base"])
        self._hold.assign(-1.0)
        rng = np.random.RandomState()
        rng.set_state(ckpt["rng"])
        if intervention == "reshuffle":
            rng = np.random.RandomState(self.settings.seed + 7919 * seed_offset + epoch)
        n = int(self._X.shape[0])
        with self.tf.device(self.device):
            self._epoch_lr(epoch)
            order = rng.permutation(n).astype(np.int32)
            if intervention == "hold_lr":
                before = np.flatnonzero(trace.epoch == epoch - 1)
                if len(before):
                    self._hold.assign(float(trace.lr[before[-1]].max()))
            if intervention == "reset_momentum":
                for v in self._momentum_vars():
                    v.assign(np.zeros(v.shape, dtype=np.float32))
            bn = [(v, v.numpy().copy()) for layer in self._bn_layers() for v in (layer.moving_mean, layer.moving_variance)]
            try:
                self._epoch(epoch, order, _Record(), None)
            finally:
                self._hold.assign(-1.0)
            if intervention == "freeze_bn":  # the running statistics stay where the checkpoint left them
                for v, value in bn:
                    v.assign(value)
            out = {}
            for name in ("train", "val"):
                if name in self.tensors:
                    metric, loss, _ = self._predict(name)
                    out[f"{name}_acc"], out[f"{name}_loss"] = metric, loss
        return out


class _Record:
    """Per-step tensors, converted to numpy once at the end of the pass."""

    def __init__(self) -> None:
        self.losses: list[Any] = []
        self.grad_norms: list[Any] = []
        self.lrs: list[Any] = []
        self.step_epoch: list[int] = []
        self.sampled: list[tuple[int, Any, Any, Any]] = []
        self.checkpoints: list[dict[str, Any]] = []
        self.orders: list[np.ndarray] = []
        self.bn: list[float] = []

    def trace(self, tf: Any, **per_epoch: Any) -> TrainingTrace:
        n = len(self.losses)
        as_np = lambda xs: np.asarray(tf.stack(xs).numpy(), dtype=np.float64) if xs else np.zeros(0)  # noqa: E731
        update_ratio, momentum = np.full(n, np.nan), np.full(n, np.nan)
        if self.sampled:
            steps = [s[0] for s in self.sampled]
            upd, wnorm, mom = (as_np([s[i] for s in self.sampled]) for i in (1, 2, 3))
            update_ratio[steps] = upd / np.maximum(wnorm, 1e-12)
            momentum[steps] = mom
        return TrainingTrace(
            loss=as_np(self.losses), lr=as_np(self.lrs).reshape(n, 1), grad_norm=as_np(self.grad_norms),
            update_ratio=update_ratio, epoch=np.asarray(self.step_epoch, dtype=np.int64), steps=n,
            momentum_norm=momentum, bn_drift=np.asarray(self.bn, dtype=np.float64), orders=self.orders,
            checkpoints=self.checkpoints, **per_epoch,
        )
