"""Keras 3 adapter (TensorFlow backend): short, instrumented, fully restorable training passes.

The twin of the torch adapter: the same ``TrainingTrace``, the same probes and
replays. Training runs our own loop (a traced ``tf.function`` step with
``tf.GradientTape``), not ``model.fit``, so every step can be measured and
every epoch checkpointed; ``benchmarks/overhead.py`` compares it with a plain
``model.fit``. Arrays are held on the device and batches gathered in-graph;
a tf.data or PyDataset split is iterated as it is, at most ``max_steps``
batches a pass. Inputs reach the model as the pipeline made them (Keras
layers cast floating inputs to their compute dtype themselves, as in
``model.fit``); dict inputs go to functional models with named inputs.

Learning rate. For the length of a check the optimizer's rate is swapped for a
variable of ours (Keras reads ``optimizer._learning_rate``; restored on exit).
Each step computes the rate in-graph from the user's own rate or
``LearningRateSchedule`` (at the optimizer's iteration count) times a scale
(the lr probe), or a held value (the hold-lr replay), so no probe or replay
re-traces the step. A ``keras.callbacks.LearningRateScheduler`` (or a
callable ``(epoch, lr) -> lr``) given as ``TrainSetup(scheduler=...)`` is
applied before every epoch, as ``model.fit`` would.

Loss callables follow the Keras convention ``loss(y_true, y_pred)``;
``TrainSetup(step=...)`` is called as ``step(model, batch)`` inside the
gradient tape.
"""

from __future__ import annotations

import itertools
import logging
import random
import time
from collections.abc import Mapping
from typing import Any, Iterator

import numpy as np

from ..checks.labels import class_ids
from ..errors import SetupError, TrainSanityError
from .base import Adapter, LabelNoise, ModelInfo, TrainingTrace, batch_starts, check_label_range, finite_pass, first_line
from .batches import describe, tree_map
from .keras_data import _tf
from .keras_preflight import KerasPreflight
from .keras_step import StepRecord, predictions, resolve_device
from .plateau import MEASURED, Plateau
from .splits import Split, as_numpy, named_fields

UPDATE_EVERY = 4  # as torch: ||update|| / ||weights|| and the momentum norm on every 4th step


def _unbuilt_copy(optimizer: Any) -> Any:
    """A fresh copy of an unbuilt optimizer. A schedule without ``get_config`` (a user's own class)
    cannot be serialised: the copy is made around it and then shares it (schedules hold no state)."""
    try:
        return type(optimizer).from_config(optimizer.get_config())
    except NotImplementedError:
        schedule = optimizer._learning_rate
        optimizer._learning_rate = None  # get_config then writes a placeholder rate
        try:
            config = optimizer.get_config()
        finally:
            optimizer._learning_rate = schedule
        copy = type(optimizer).from_config(config)
        copy._learning_rate = schedule
        return copy


def _per_position(out: np.ndarray, y: np.ndarray) -> bool:
    """Integer targets with a label per position and outputs with the classes on the last axis."""
    return y.dtype.kind in "iu" and y.ndim >= 2 and out.ndim == y.ndim + 1 and out.shape[1:-1] == y.shape[1:]


class _OwnRetracing(logging.Filter):
    """Drops TensorFlow's "triggered tf.function retracing" warning about this adapter's own functions (its
    eval and step functions are traced per check and per input structure, which is expected); the same
    warning about the user's functions still shows."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        return not ("triggered tf.function retracing" in text and "KerasAdapter." in text)


def _quiet_own_retracing() -> None:
    logger = logging.getLogger("tensorflow")
    if not any(isinstance(f, _OwnRetracing) for f in logger.filters):
        logger.addFilter(_OwnRetracing())


class KerasAdapter(KerasPreflight, Adapter):
    framework = "tensorflow"
    progress_label = "training pass"

    def __init__(self, model: Any, setup: Any, data: dict[str, Split], settings: Any) -> None:
        tf, keras = _tf()
        self.tf, self.keras = tf, keras
        _quiet_own_retracing()
        if not isinstance(model, keras.Model):
            raise SetupError(f"TrainSetup(model=...) is a {type(model).__name__}, not a keras.Model.")
        self.model, self.setup, self.settings, self.splits = model, setup, settings, data
        self.device = resolve_device(settings.device)
        self.train_split = data["train"]
        self.arrays = self.train_split.kind == "arrays"
        self.samples = {name: split.sample(settings.eval_samples, settings.seed) for name, split in data.items()}
        self.form = self.samples["train"].form
        self.batch_size = self.train_split.batch_size or setup.batch_size
        self.step = setup.step
        if self.step is None and type(model).train_step is not self.keras.Model.train_step:
            raise SetupError(
                f"TrainSetup(model=...) is a {type(model).__name__} that overrides train_step, which model.fit calls "
                f"and these checks cannot: they take their own steps (to replay, probe and restore them) with a loss, "
                f"so training on the compiled loss alone would skip what your train_step does to the batch or the "
                f"loss. Give that loss as TrainSetup(step=...): a callable(model, batch) that runs the forward in "
                f"training mode and returns the loss your train_step minimises; every check then calls it on each "
                f"batch as it comes."
            )
        with tf.device(self.device):
            out = self._validate_forward()
            head_y = np.asarray(self.form.target(self.samples["train"].head(2)))
            self.per_position = _per_position(np.asarray(out), head_y)
            self.n_outputs = (int(out.shape[-1]) if self.per_position else  # a label per position: classes last
                              int(np.prod(out.shape[1:])) if len(out.shape) > 1 else 1)
            check_label_range({n: s.numpy()[1] for n, s in self.samples.items()}, self.setup.task, self.n_outputs,
                              sampled=any(s.sampled for s in self.samples.values()))
            self.params = list(model.trainable_variables)
            if not self.params:
                raise SetupError("TrainSetup(model=...) has no trainable weights; there is nothing to train.")
            self.optimizer = self._optimizer(setup.optimizer)
            # a LossScaleOptimizer (mixed_float16) steps with its inner optimizer's rate, and divides the gradients by
            # its loss scale: the loss is multiplied by it first, as Keras's own train_step does (scale_loss)
            self.rate_owner = getattr(self.optimizer, "inner_optimizer", self.optimizer)
            self.loss_scaled = self.rate_owner is not self.optimizer and hasattr(self.optimizer, "scale_loss")
            self.loss_fn = self._loss(setup.loss) if self.step is None else None
            self._check_loss(out)
        self.plateau: Plateau | None = None
        self.scheduler = self._scheduler(setup.scheduler)
        self.notes: list[str] = []
        if self.plateau is not None:
            monitor = self.plateau.monitor
            if not self.plateau.known or "acc" in monitor and setup.task != "classification":
                self.notes.append(f"ReduceLROnPlateau monitors {monitor!r}, which the check does not measure (it measures "
                                  f"{', '.join(MEASURED)}; accuracy for classification), so the rate was never reduced, "
                                  f"as model.fit leaves it when the metric is missing from its logs")
                self.plateau = None
            elif monitor.startswith("val_") and "val" not in self.samples:
                self.notes.append(f"ReduceLROnPlateau monitors {monitor!r} but the setup has no val split, so the rate "
                                  f"was never reduced (model.fit without validation_data does the same); give "
                                  f"TrainSetup(val=...) to have it stepped")
                self.plateau = None
            else:
                self.notes.append(self.plateau.describe())
        if not self.arrays and not self.train_split.reproducible():  # type: ignore[attr-defined]
            self.notes.append(
                "the tf.data pipeline yields other batches on every pass (a shuffle that reshuffles each iteration, "
                "or a random op), so the probes and replays do not see the main pass's batches, and an unseeded "
                "pipeline changes from run to run: for reproducible checks build it with shuffle(..., seed=..., "
                "reshuffle_each_iteration=False), or give a keras PyDataset, whose order the check controls")
        if getattr(self, "built_users_optimizer", False):
            self.notes.append("the optimizer was unbuilt and could not be copied, so the check built it")
        self._fns: dict[tuple[str, bool], Any] = {}  # (kind, sampled?) -> the traced training step
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
        if not given.built:  # build a copy: the user's optimizer stays as it was (unbuilt)
            try:
                given = _unbuilt_copy(given)
            except Exception:  # noqa: BLE001 - an optimizer Keras cannot rebuild: build the user's own
                self.built_users_optimizer = True
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
        if given is None:
            raise SetupError(
                "TrainSetup(loss=...) is needed for an uncompiled Keras model without TrainSetup(step=...); give a "
                "Keras loss, a callable(y_true, y_pred) or a name, or compile the model with its loss."
            )
        if isinstance(given, str):
            try:
                return self._as_compiled(keras.losses.get(given), given)
            except ValueError:
                raise SetupError(f"TrainSetup(loss={given!r}) is not a Keras loss name (e.g. 'sparse_categorical_crossentropy').") from None
        if callable(given):
            return self._as_compiled(given, getattr(given, "__name__", type(given).__name__))
        raise SetupError(f"TrainSetup(loss={given!r}) must be a Keras loss, a callable(y_true, y_pred) or a loss name.")

    def _as_compiled(self, fn: Any, name: str) -> Any:
        """``fn`` as ``model.compile`` holds it: a function (a name's, or the user's own) inside Keras's
        ``LossFunctionWrapper``, which brings labels of shape (n,) and a (n, 1) head to one rank and
        reduces over the batch. Called bare, ``binary_crossentropy`` refuses labels that ``fit`` takes."""
        if isinstance(fn, self.keras.losses.Loss):
            return fn
        try:
            from keras.src.losses.losses import LossFunctionWrapper
        except ImportError:  # a Keras without it: the function as given
            return fn
        return LossFunctionWrapper(fn, name=name)

    def _scheduler(self, given: Any) -> Any:
        if given is None:
            return None
        if isinstance(given, self.keras.callbacks.ReduceLROnPlateau):
            if isinstance(self.rate_owner._learning_rate, self.keras.optimizers.schedules.LearningRateSchedule):
                raise SetupError(
                    f"TrainSetup(scheduler=ReduceLROnPlateau(...)) with an optimizer whose learning_rate is a "
                    f"{type(self.rate_owner._learning_rate).__name__}: the callback sets the rate, which a schedule "
                    f"owns (model.fit raises TypeError at the first reduction). Give the optimizer a float rate, or "
                    f"drop the callback.")
            self.plateau = Plateau.of(given)
            return None
        if isinstance(given, self.keras.callbacks.LearningRateScheduler):
            return given.schedule
        if callable(given):
            return given
        raise SetupError(
            f"TrainSetup(scheduler={given!r}) for a Keras model must be a keras.callbacks.LearningRateScheduler, a "
            f"keras.callbacks.ReduceLROnPlateau or a callable(epoch, lr) -> lr; a LearningRateSchedule belongs inside "
            f"the optimizer."
        )

    def _first_layer(self) -> str:
        layer = next((layer for layer in self._layers() if layer.weights), None)
        if layer is None:
            return type(self.model).__name__
        return f"{layer.name} ({type(layer).__name__}) with {layer.weights[0].dtype} weights"

    def number_fields(self) -> tuple[str, ...]:
        from .keras_graph import first_uses

        return tuple(f for f, use in first_uses(self.model, self.form.names).items() if use.role == "numbers")

    def _validate_forward(self) -> Any:
        """One inference-mode forward of the first train samples, before any training: its output."""
        batch = self._device(self.samples["train"].head(2), shape_targets=False)
        try:
            out = self.model(self.form.keras_input(batch), training=False)
        except Exception as exc:  # noqa: BLE001 - one line, not a framework traceback
            fields = "; ".join(f"{k}: {describe(v)}" for k, v in self.form.inputs(batch).items())
            raise SetupError(
                f"The model could not run on a train batch as the pipeline yields it ({self.form.structure()}): "
                f"{fields} raised {type(exc).__name__}: {first_line(exc)}. The model's first layer is "
                f"{self._first_layer()}. Check that the input layer matches the data's shape; the plugin feeds "
                f"batches as the pipeline yields them."
            ) from None
        return predictions(out)

    def _check_loss(self, out: Any) -> None:
        batch = self._device(self.samples["train"].head(2))
        y = self.form.target(batch)
        try:
            if self.step is not None:
                self._step_loss(batch, training=False)
            else:
                self._batch_loss(batch, out)
        except SetupError:
            raise
        except Exception as exc:  # noqa: BLE001
            first = first_line(exc)
            if self.step is not None:
                raise SetupError(f"TrainSetup(step=...) failed on a train batch: {type(exc).__name__}: {first}.") from None
            raise SetupError(
                f"The loss could not compare the train labels with the model's output: loss(labels {describe(y)}, "
                f"output {describe(out)}) raised {type(exc).__name__}: {first}. Check that the loss fits the task "
                f"({self.setup.task}) and the label format (sparse ids vs one-hot)."
            ) from None

    # ------------------------------------------------------------ data

    def _tensor(self, leaf: Any) -> Any:
        if isinstance(leaf, np.ndarray) or hasattr(leaf, "numpy") or hasattr(leaf, "shape"):
            return self.tf.convert_to_tensor(leaf)  # dtype kept: Keras layers cast floats themselves
        return leaf

    def _targets(self, y: Any) -> Any:
        """Array targets in the loss's format: class ids as int64 (float 0/1 for one output)."""
        tf = self.tf
        y = np.asarray(y)
        if self.setup.task == "classification" and y.dtype.kind in "biu":
            n_outputs = getattr(self, "n_outputs", None)
            return tf.convert_to_tensor(y.astype(np.float32) if n_outputs == 1 else y.astype(np.int64))
        return tf.convert_to_tensor(y.astype(np.float32, copy=False))

    def _device(self, batch: Any, shape_targets: bool = True) -> Any:
        batch = tree_map(self._tensor, batch)
        if self.arrays and shape_targets:
            batch = self.form.with_target(batch, self._targets(self.form.target(batch)))
        return batch

    # ------------------------------------------------------------ snapshot / restore

    def __enter__(self) -> "KerasAdapter":
        tf = self.tf
        gen = tf.random.get_global_generator()
        self._rng = (random.getstate(), np.random.get_state(), gen.state.numpy().copy())
        self._orig_lr = self.rate_owner._learning_rate  # Keras 3 reads the rate from here
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
            self.rate_owner._learning_rate = self._lr
            try:
                self.eval_batches = {name: [self._device(c) for c in s.chunks(s.chunk_rows(self.batch_size))] for name, s in self.samples.items()}
                if self.arrays:
                    split = self.train_split
                    self._X = tree_map(self._tensor, split.X)
                    self._Y = tf.Variable(self._targets(as_numpy(split.y, "y")), trainable=False, name="trainsanity_train_labels")
            except BaseException:  # e.g. out of device memory: the optimizer gets its own rate back
                self.__exit__()
                raise
        return self

    def __exit__(self, *exc: Any) -> None:
        self.rate_owner._learning_rate = self._orig_lr
        self._restore(self._snapshot)
        py, npy, tfs = self._rng
        random.setstate(py)
        np.random.set_state(npy)
        self.tf.random.get_global_generator().state.assign(tfs)
        for split in self.splits.values():
            split.rewind()
        self._fns.clear()
        self._predict_fn = None
        self.eval_batches = {}

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
        notes = [f"{self.form.structure()} from {self.train_split.describe()}"]
        if self.step is not None:
            notes.append("loss from TrainSetup(step=...)")
        notes += self.notes
        return ModelInfo(
            framework="keras",
            n_params=int(sum(np.prod(v.shape) for v in self.params)),
            n_outputs=self.n_outputs,
            device=self.device,
            model_name=type(self.model).__name__,
            has_batchnorm=any(isinstance(layer, self.keras.layers.BatchNormalization) for layer in layers),
            embeds_inputs=isinstance(first, self.keras.layers.Embedding),
            notes=tuple(notes),
        )

    def _bn_layers(self) -> list[Any]:
        return [layer for layer in self._layers() if isinstance(layer, self.keras.layers.BatchNormalization)]

    def loss_scale(self) -> Any:
        """The factor the loss is multiplied by before its gradients (a LossScaleOptimizer's dynamic scale; 1)."""
        opt = self.optimizer
        if not self.loss_scaled:
            return 1.0
        return self.tf.cast(opt.dynamic_scale if opt.built else opt.initial_scale, self.tf.float32)

    def _momentum_vars(self) -> list[Any]:
        opt = self.rate_owner
        return list(getattr(opt, "_momentums", None) or getattr(opt, "momentums", None) or [])

    def _step_loss(self, batch: Any, training: bool) -> Any:
        tf = self.tf
        out = self.step(self.model, batch)
        loss = out.get("loss") if isinstance(out, Mapping) else out[0] if isinstance(out, (tuple, list)) else out
        if loss is None:
            raise SetupError("TrainSetup(step=...) returned no loss; return a scalar tensor, a dict with 'loss' or a tuple.")
        return tf.reduce_mean(loss)

    def _measure(self, name: str, noise: LabelNoise | None = None) -> tuple[float, float, np.ndarray]:
        """(metric, loss, predictions) of one split's eval sample, in inference mode."""
        try:
            return self._measure_sample(name, noise)
        except (SetupError, TrainSanityError):
            raise
        except Exception as exc:  # noqa: BLE001 - the user's model or loss failed in inference: one paragraph
            raise SetupError(f"Measuring the {name} eval sample in inference mode failed: {type(exc).__name__}: "
                             f"{first_line(exc)}. The model's first layer is {self._first_layer()}.") from None

    def _measure_sample(self, name: str, noise: LabelNoise | None) -> tuple[float, float, np.ndarray]:
        tf = self.tf
        if self._predict_fn is None:
            self._predict_fn = tf.function(lambda x: self.model(x, training=False), reduce_retracing=True)
        outs, ys, loss_sum, n = [], [], 0.0, 0
        form = self.samples[name].form  # the split's own: val may come without train's sample weights
        for batch in self.eval_batches[name]:
            if noise is not None:
                batch = self._relabel(batch, noise)
            out = predictions(self._predict_fn(form.keras_input(batch)))
            y = form.target(batch)
            size = int(np.asarray(y).shape[0])
            loss = self._step_loss(batch, False) if self.step is not None else self._batch_loss(batch, out, form)
            loss_sum += float(loss) * size
            n += size
            outs.append(np.asarray(out))
            ys.append(np.asarray(y))
        if self.setup.task == "classification" and self.per_position:  # tokens: -100 marks no label
            hits = valid = 0
            for out_b, y_b in zip(outs, ys):
                ok = y_b != -100
                hits, valid = hits + int(((out_b.argmax(axis=-1) == y_b) & ok).sum()), valid + int(ok.sum())
            return hits / max(valid, 1), loss_sum / max(n, 1), np.zeros(0)
        out_np, y_np = np.concatenate(outs), np.concatenate(ys)
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
        return metric, loss_sum / max(n, 1), pred

    def _relabel(self, batch: Any, noise: LabelNoise) -> Any:
        target = noise.targets(named_fields(self.form, batch, np.asarray))
        return self.form.with_target(batch, self._targets(target) if self.arrays else self.tf.convert_to_tensor(target))

    def _core(self, batch: Any, sampled: bool) -> Any:
        """Forward, loss (+ model losses), gradients, the step's learning rate, apply (traced)."""
        tf = self.tf
        model, opt, params = self.model, self.optimizer, self.params
        with tf.GradientTape() as tape:
            if self.step is not None:
                loss = self._step_loss(batch, True)
            else:
                loss = self._batch_loss(batch, predictions(model(self.form.keras_input(batch), training=True)))
            if model.losses:
                loss += tf.add_n(model.losses)
            scaled = opt.scale_loss(loss) if self.loss_scaled else loss
        grads = tape.gradient(scaled, params)
        gnorm = tf.linalg.global_norm([g for g in grads if g is not None]) / self.loss_scale()
        base = self._schedule(opt.iterations) if self._schedule is not None else self._base
        lr = tf.where(self._hold >= 0, self._hold, tf.cast(base, tf.float32) * self._scale)
        self._lr.assign(lr)
        if sampled:
            before = [tf.identity(p) for p in params]
        opt.apply_gradients(zip(grads, params))
        if not sampled:
            return loss, gnorm, lr
        momentum = self._momentum_vars()
        upd = tf.linalg.global_norm([p - b for p, b in zip(params, before)])
        wnorm = tf.linalg.global_norm(before)
        mom = tf.linalg.global_norm(momentum) if momentum else tf.constant(0.0)
        return loss, gnorm, lr, upd, wnorm, mom

    def _step_fn(self, kind: str, sampled: bool) -> Any:
        """The traced step: ``idx`` gathers an array batch in-graph; ``batch`` takes a streamed one."""
        key = (kind, sampled)
        if key not in self._fns:
            tf = self.tf
            if kind == "idx":
                def step(idx: Any) -> Any:
                    x = tree_map(lambda t: tf.gather(t, idx), self._X)
                    return self._core((x, tf.gather(self._Y, idx)), sampled)

                self._fns[key] = tf.function(step, input_signature=[tf.TensorSpec([None], tf.int32)])
            else:
                self._fns[key] = tf.function(lambda batch: self._core(batch, sampled), reduce_retracing=True)
        return self._fns[key]

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
        self._restore(self._snapshot)
        for split in self.splits.values():
            split.rewind()
        self._scale.assign(lr_scale)
        self._hold.assign(-1.0)
        self._base.assign(self._start_lr)
        saved = self._Y.numpy() if self.arrays else None
        if noise is not None and self.arrays:  # the random-label probe trains and measures on these
            fields = named_fields(self.form, (self.train_split.X, None), lambda v: as_numpy(v, "X"))
            self._Y.assign(self._targets(noise.targets(fields)))
        try:
            with self.tf.device(self.device):
                trace = self._train(epochs, max_steps, start, detail, noise)
                # the weights after every pass: a finite loss can hide NaN weights (relu(NaN) is 0 on CPU)
                trace.bad_weights_end = self._bad_weights()
                if trace.bad_weights_end or not finite_pass(trace):  # only then: where they were NaN/Inf already
                    trace.bad_weights_start = self._bad_weights(self._snapshot["model"])
                return trace
        finally:
            if saved is not None:
                self._Y.assign(saved)
            self._scale.assign(1.0)

    def _bad_weights(self, values: list[np.ndarray] | None = None) -> tuple[str, ...]:
        """Paths of the model's variables holding NaN/Inf (now, or in ``values``: a snapshot's)."""
        variables = self.model.variables
        values = values if values is not None else [v.numpy() for v in variables]
        return tuple(getattr(v, "path", v.name) for v, a in zip(variables, values)
                     if np.asarray(a).dtype.kind == "f" and not np.isfinite(a).all())

    def steps_per_epoch(self) -> int | None:
        if self.arrays:
            return len(batch_starts(self.train_split.n_samples(), self.batch_size))
        return self.train_split.steps()  # type: ignore[attr-defined]

    def _batches(self, rng: np.random.RandomState, orders: list[np.ndarray] | None) -> Iterator[tuple[str, Any]]:
        """One epoch: ("idx", indices) for arrays (gathered in-graph), ("batch", batch) for streams."""
        if self.arrays:
            order = rng.permutation(self.train_split.n_samples()).astype(np.int32)
            if orders is not None:
                orders.append(order)
            bs = self.batch_size
            return (("idx", self.tf.constant(order[s : s + bs])) for s in batch_starts(len(order), bs))
        return (("batch", b) for b in self.train_split.batches())  # type: ignore[attr-defined]

    def _train(self, epochs: int, max_steps: int | None, start: float, detail: bool, noise: LabelNoise | None) -> TrainingTrace:
        rng = np.random.RandomState(self.settings.seed)
        random.seed(self.settings.seed)
        rec = StepRecord()
        if self.plateau is not None:
            self.plateau.reset()  # every pass starts as model.fit does (on_train_begin)
        epoch_train, epoch_val, loss_train, loss_val = [], [], [], []
        preds = {"train": np.zeros(0), "val": np.zeros(0)}
        truncated = False
        per_epoch = self.steps_per_epoch()
        last_bn = self._bn_stats() if detail else None
        total = (min(max_steps, epochs * per_epoch) if max_steps and per_epoch else max_steps or
                 (epochs * per_epoch if per_epoch else None))
        if self.progress is not None:
            self.progress.start(self.progress_label, total, epochs)
        orders: list[np.ndarray] = []
        for epoch in range(epochs):
            if detail:
                rec.checkpoints.append({**self._capture(), "rng": rng.get_state(), "py": random.getstate(),
                                        "base": float(self._base.numpy())})
            self._epoch_lr(epoch)
            budget = None if max_steps is None else max_steps - len(rec.losses)
            ran = self._epoch(epoch, self._batches(rng, orders if self.arrays else None), rec, budget, noise)
            if ran == 0 and epoch > 0:
                truncated = True
                break
            for name, metrics, losses_of in (("train", epoch_train, loss_train), ("val", epoch_val, loss_val)):
                if name in self.samples:
                    metric, split_loss, preds[name] = self._measure(name, noise if name == "train" else None)
                    metrics.append(metric)
                    losses_of.append(split_loss)
            if self.plateau is not None and ran:  # after the epoch, on its measurement, as model.fit's callback
                self._plateau_step(rec.losses[-ran:], loss_val, epoch_train, epoch_val)
            if detail:
                stats = self._bn_stats()
                rec.bn.append(float("nan") if stats is None or last_bn is None else
                              float(np.linalg.norm(stats - last_bn) / max(np.linalg.norm(last_bn), 1e-12)))
                last_bn = stats
            if budget is not None and ran >= budget and (per_epoch is None or ran < per_epoch):
                truncated = True
                break
        if self.progress is not None:
            self.progress.done(len(rec.losses))
        counts = None
        if self.setup.task == "classification":
            classes = max(self.n_outputs, 2)
            if self.arrays:
                ids = class_ids(as_numpy(self.train_split.y, "y"))
                counts = [np.bincount(ids[o[s : s + self.batch_size]], minlength=classes)[:classes]
                          for o in orders for s in batch_starts(len(o), self.batch_size)][: len(rec.losses)]
            else:
                counts = rec.counts
        return rec.trace(
            self.tf, counts,
            train_metric=np.asarray(epoch_train, dtype=np.float64), val_metric=np.asarray(epoch_val, dtype=np.float64),
            train_loss=np.asarray(loss_train, dtype=np.float64), val_loss=np.asarray(loss_val, dtype=np.float64),
            train_pred=preds["train"], val_pred=preds["val"], seconds=time.perf_counter() - start, truncated=truncated,
            orders=orders if detail else [],
        )

    def _plateau_step(self, losses: list[Any], loss_val: list[float], train: list[float], val: list[float]) -> None:
        assert self.plateau is not None
        classification = self.setup.task == "classification"
        current = self.plateau.value(float(np.mean(self.tf.stack(losses).numpy())), loss_val[-1] if loss_val else None,
                                     train[-1] if train and classification else None,
                                     val[-1] if val and classification else None)
        if current is not None:  # NaN included: as in Keras, it is never an improvement (the patience runs)
            self._base.assign(self.plateau.step(float(current), float(self._base.numpy())))

    def _epoch_lr(self, epoch: int) -> None:
        """A LearningRateScheduler callback's rate for this epoch (before it, as model.fit does)."""
        if self.scheduler is not None:
            self._base.assign(float(self.scheduler(epoch, float(self._base.numpy()))))

    def _epoch(self, epoch: int, batches: Iterator[tuple[str, Any]], rec: "StepRecord", budget: int | None,
               noise: LabelNoise | None = None) -> int:
        ran = 0
        classes = max(getattr(self, "n_outputs", 2), 2)
        count = not self.arrays and self.setup.task == "classification"
        for kind, item in itertools.islice(batches, budget):
            if kind == "batch":
                if noise is not None:
                    item = self._relabel(item, noise)
                if count:
                    rec.counts.append(np.bincount(np.clip(class_ids(np.asarray(self.form.target(item))), 0, classes - 1),
                                                  minlength=classes)[:classes])
                item = tree_map(self._tensor, item)
            fn = self._step_fn(kind, ran % UPDATE_EVERY == 0)
            try:
                result = fn(item)
            except (SetupError, TrainSanityError):
                raise
            except Exception as exc:  # noqa: BLE001 - the user's model, loss or step failed: one paragraph
                raise SetupError(
                    f"Training step {len(rec.losses) + 1} failed on a batch as the pipeline yields it "
                    f"({self.form.structure()}): {type(exc).__name__}: {first_line(exc)}. The model's first layer is "
                    f"{self._first_layer()}."
                ) from None
            if ran % UPDATE_EVERY == 0:
                loss, gnorm, lr, upd, wnorm, mom = result
                rec.sampled.append((len(rec.losses), upd, wnorm, mom))
            else:
                loss, gnorm, lr = result
            rec.losses.append(loss)
            rec.grad_norms.append(gnorm)
            rec.lrs.append(lr)
            rec.step_epoch.append(epoch)
            ran += 1
            if self.progress is not None:
                self.progress.step(epoch, len(rec.losses))
        return ran

    def _bn_stats(self) -> np.ndarray | None:
        stats = [np.asarray(v).reshape(-1) for layer in self._bn_layers() for v in (layer.moving_mean, layer.moving_variance)]
        return np.concatenate(stats) if stats else None

    def interventions(self) -> dict[str, str]:
        out = {"hold_lr": "", "reshuffle": ""}
        if getattr(self.train_split, "kind", "") == "tf.data":
            out["reshuffle"] = "a tf.data pipeline orders its own batches"
        out["reset_momentum"] = "" if self._momentum_vars() else f"{type(self.rate_owner).__name__} keeps no momentum"
        out["freeze_bn"] = "" if self._bn_layers() else "the model has no batch-norm layer"
        return out

    def replay(self, trace: TrainingTrace, epoch: int, intervention: str | None = None, seed_offset: int = 1) -> dict[str, float]:
        ckpt = trace.checkpoints[epoch]
        self._restore(ckpt)
        self._base.assign(ckpt["base"])
        self._hold.assign(-1.0)
        rng = np.random.RandomState()
        rng.set_state(ckpt["rng"])
        random.setstate(ckpt["py"])
        if intervention == "reshuffle":
            rng = np.random.RandomState(self.settings.seed + 7919 * seed_offset + epoch)
            random.seed(self.settings.seed + 7919 * seed_offset + epoch)
        with self.tf.device(self.device):
            self._epoch_lr(epoch)
            if intervention == "hold_lr":
                before = np.flatnonzero(trace.epoch == epoch - 1)
                if len(before):
                    self._hold.assign(float(trace.lr[before[-1]].max()))
            if intervention == "reset_momentum":
                for v in self._momentum_vars():
                    v.assign(np.zeros(v.shape, dtype=np.float32))
            bn = [(v, v.numpy().copy()) for layer in self._bn_layers() for v in (layer.moving_mean, layer.moving_variance)]
            steps = int(np.sum(trace.epoch == epoch))
            try:
                self._epoch(epoch, self._batches(rng, None), StepRecord(), steps or None)
            finally:
                self._hold.assign(-1.0)
            if intervention == "freeze_bn":  # the running statistics stay where the checkpoint left them
                for v, value in bn:
                    v.assign(value)
            out = {}
            for name in ("train", "val"):
                if name in self.samples:
                    metric, loss, _ = self._measure(name)
                    out[f"{name}_acc"], out[f"{name}_loss"] = metric, loss
        return out
