"""The pre-flight probes on a Keras 3 model (TensorFlow backend): the ``Preflight`` mixin of ``KerasAdapter``.

Every probe runs inside an entered adapter and uses its handles: the snapshot
(``_restore``), the traced training step (``_step_fn``, so a probe trains
exactly as a training pass does, with the lr variables of ``__enter__``), the
plugin's batching of arrays (``_batches``) or the pipeline's own batches.
Probes that train start from the snapshot and the seeded batch order, as
``train`` does, so a replay meets the same batches, dropout masks included
(Keras keeps its seed state in ``model.variables``, which the snapshot holds).

Naming the layer where something happens (samples mixed, the first NaN) needs
every intermediate output. Keras 3 has no forward hooks, so for one eager
forward each sub-layer's (and each graph op's) ``call`` is shadowed by an
instance attribute that records its inputs and output, and removed right
after; this works alike for Sequential, functional and subclassed models.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import random
import warnings
from typing import Any, Callable, Iterator

import numpy as np

from ..checks.labels import class_ids, target_ids
from .batches import tree_leaves, tree_map
from .keras_step import predictions
from .preflight import BatchMix, BatchRun, FiniteRun, InitProbe, Mixing, ParamRecord, Preflight, input_range, relative_change
from .splits import as_numpy, fields_rows, named_fields

UPDATE_EVERY = 4  # as the adapter: ||update|| / ||weights|| on every 4th step (it copies the weights)
CHECK_EVERY = 8  # finite_run reads losses and weight finiteness back from the device every 8 steps
LEAK = 1e-6  # a relative cross-sample gradient above this mixes samples
TINY = 1e-30
XENT = ("SparseCategoricalCrossentropy", "CategoricalCrossentropy", "BinaryCrossentropy",
        "CategoricalFocalCrossentropy", "BinaryFocalCrossentropy")
XENT_FNS = ("sparse_categorical_crossentropy", "categorical_crossentropy", "binary_crossentropy")
TRAIN_MODE = ("GaussianDropout", "GaussianNoise", "AlphaDropout")  # besides Dropout (SpatialDropout*) and batch norm


def _np(value: Any) -> np.ndarray:
    return as_numpy(value, "a batch")


class KerasPreflight(Preflight):
    """Pre-flight measurements of the adapter's Keras model; plain numbers out, verdicts elsewhere.

    A mixin: it reads ``KerasAdapter``'s handles (``model``, ``optimizer``, ``loss_fn``, ``form``, the
    lr variables, ``_snapshot``/``_restore``/``_capture``, ``_batches``, ``_step_fn``) and adds no state.
    """

    # ------------------------------------------------------------ shared pieces

    def _reset(self) -> np.random.RandomState:
        """The state a training pass starts from: snapshot, rewound pipelines, seeded batch order."""
        self._restore(self._snapshot)
        for split in self.splits.values():
            split.rewind()
        self._scale.assign(1.0)
        self._hold.assign(-1.0)
        self._base.assign(self._start_lr)
        random.seed(self.settings.seed)
        return np.random.RandomState(self.settings.seed)

    def _walk(self, rng: np.random.RandomState, steps: int) -> Iterator[tuple[str, Any]]:
        """Up to ``steps`` training items over as many epochs as it takes, each epoch's lr callback applied."""
        done, epoch = 0, 0
        while done < steps:
            self._epoch_lr(epoch)
            ran = 0
            for kind, item in self._batches(rng, None):
                yield kind, (tree_map(self._tensor, item) if kind == "batch" else item)
                done, ran = done + 1, ran + 1
                if done >= steps:
                    return
            if not ran:
                return
            epoch += 1

    def _batch_of(self, kind: str, item: Any) -> Any:
        """The batch a training item stands for (an array batch gathered as the traced step gathers it)."""
        if kind == "batch":
            return item
        tf = self.tf
        return (tree_map(lambda t: tf.gather(t, item), self._X), tf.gather(self._Y, item))

    def _first(self) -> tuple[str, Any, Any]:
        """(kind, item, batch) of the first train batch of a pass, from a reset state."""
        kind, item = next(self._walk(self._reset(), 1))
        return kind, item, self._batch_of(kind, item)

    def _batch_loss(self, batch: Any, out: Any, form: Any = None) -> Any:
        """The batch's mean loss as ``model.fit`` computes it: Keras's ``(x, y, sample_weight)`` weighs
        each sample's loss (summed and divided by the batch size, as a Keras loss reduces). ``form``:
        the batch's split's, when not train's."""
        form = form or self.form
        y, w = form.target(batch), form.weights(batch)
        if w is None:
            return self.tf.reduce_mean(self.loss_fn(y, out))
        if isinstance(self.loss_fn, self.keras.losses.Loss):
            return self.tf.reduce_mean(self.loss_fn(y, out, sample_weight=w))
        values = self.loss_fn(y, out)  # a bare function (a Keras without LossFunctionWrapper)
        return self.tf.reduce_mean(values * self.tf.cast(w, values.dtype))

    def _train_loss(self, batch: Any, training: bool) -> Any:
        """The training loss exactly as the adapter's step computes it (model losses included)."""
        tf = self.tf
        if self.step is not None:
            loss = self._step_loss(batch, training)
        else:
            loss = self._batch_loss(batch, predictions(self.model(self.form.keras_input(batch), training=training)))
        if self.model.losses:
            loss += tf.add_n(self.model.losses)
        return loss

    def _floats(self, tree: Any) -> list[Any]:
        return [t for t in tree_leaves(tree) if isinstance(t, self.tf.Tensor) and t.dtype.is_floating]

    def _score(self, out: np.ndarray, y: np.ndarray) -> tuple[float, float]:
        """(accuracy, R^2) of outputs against targets, as the adapter's eval measures them."""
        out = np.asarray(out, dtype=np.float64)
        if self.setup.task != "classification":
            y2 = y.reshape(len(y), -1).astype(np.float64)
            pred = out.reshape(y2.shape) if out.size == y2.size else out
            total = float(((y2 - y2.mean(axis=0)) ** 2).sum())
            return float("nan"), float(1.0 - ((y2 - pred) ** 2).sum() / total) if total > 0 else float("nan")
        if self.per_position:
            ok = y != -100
            return float(((out.argmax(axis=-1) == y) & ok).sum() / max(int(ok.sum()), 1)), float("nan")
        flat = out.reshape(len(out), -1)
        if flat.shape[1] == 1:
            pred = (flat[:, 0] > (0.0 if (flat.min() < 0 or flat.max() > 1) else 0.5)).astype(np.int64)
        else:
            pred = flat.argmax(axis=1)
        return float(np.mean(pred == class_ids(y))), float("nan")

    @contextlib.contextmanager
    def _recording(self, seen_out: Callable[[Any, Any], Any] | None = None) -> Iterator[list[tuple[Any, tuple[Any, ...], Any]]]:
        """Every sub-layer and graph op call of the forwards inside, as (op, args, output) in the order
        the calls finished (an inner layer before the model holding it); the shadows are removed after.
        ``seen_out(op, output)`` sees each output before the model uses it (to watch it on a tape)."""
        keras, ops, seen = self.keras, [], set()
        layers = self._layers()
        for owner in [self.model, *layers]:
            graph = owner if hasattr(owner, "operations") else getattr(owner, "_functional", None)
            extra = [op for op in getattr(graph, "operations", []) if not isinstance(op, keras.layers.Layer)]
            for op in [*([] if owner is self.model else [owner]), *extra]:
                if id(op) not in seen and "call" not in vars(op):
                    seen.add(id(op))
                    ops.append(op)
        records: list[tuple[Any, tuple[Any, ...], Any]] = []

        def spy(op: Any) -> Any:
            call = op.call

            def recorded(*args: Any, **kwargs: Any) -> Any:
                out = call(*args, **kwargs)
                if seen_out is not None:
                    seen_out(op, out)
                records.append((op, args, out))
                return out
            return recorded

        for op in ops:
            object.__setattr__(op, "call", spy(op))
        try:
            yield records
        finally:
            for op in ops:
                object.__delattr__(op, "call")

    # ------------------------------------------------------------ 1. the untrained model

    def init_probe(self) -> InitProbe:
        tf = self.tf
        outs, ys, total, twice, n, calls = [], [], 0.0, 0.0, 0, 0
        summed = self.step is None and getattr(self.loss_fn, "reduction", None) == "sum"
        with tf.device(self.device):
            for batch in self.eval_batches["train"]:
                out = predictions(self.model(self.form.keras_input(batch), training=False))
                y = self.form.target(batch)
                loss = self._step_loss(batch, False) if self.step is not None else tf.reduce_mean(self.loss_fn(y, out))
                size = len(_np(y))
                total, n, calls = total + float(loss) * (1 if summed else size), n + size, calls + 1
                if self.step is None and hasattr(out, "_keras_logits"):  # a copy drops the logits Keras kept on it
                    twice += float(tf.reduce_mean(self.loss_fn(y, tf.identity(out)))) * (1 if summed else size)
                else:
                    twice = float("nan")
                outs.append(np.asarray(out, dtype=np.float64))
                ys.append(_np(y))
        out, y = np.concatenate(outs), np.concatenate(ys)
        if self.setup.task == "classification" and self.per_position:  # a label per position: the labelled ones
            ok = y.reshape(-1) != -100
            out, targets = out.reshape(-1, out.shape[-1])[ok], y.reshape(-1)[ok].astype(np.int64)
        else:
            out = out.reshape(len(out), -1)
            targets = class_ids(y) if self.setup.task == "classification" else y.reshape(len(y), -1)[:, 0].astype(np.float64)
        kind, name = self._loss_kind()
        bias_layer = self._output_bias_layer(out.shape[-1] if out.ndim > 1 else 1)
        return InitProbe(
            outputs=out, targets=targets, loss=total / max(n, 1), loss_kind=kind, loss_name=name,
            final_bias=None if bias_layer is None else np.asarray(bias_layer.bias.numpy(), dtype=np.float64).reshape(-1),
            final_layer="" if bias_layer is None else bias_layer.name, ends_in_softmax=self._softmax_end(),
            summed=summed, per_batch=n / max(calls, 1), twice_loss=twice / max(n, 1),
        )

    def _output_bias_layer(self, width: int) -> Any:
        """The layer whose bias sets the untrained outputs the loss reads: in a graph, the layer behind the
        first output (through bias-free layers: an Activation, a Dropout), not the last layer built (an
        auxiliary head of a multi-output model); otherwise the last layer whose bias has the outputs' width."""
        try:
            op = self.model.outputs[0]._keras_history.operation
        except (AttributeError, IndexError, TypeError, ValueError):  # subclassed, or not built as a graph
            op = None
        for _ in range(8):
            if op is None or getattr(op, "bias", None) is not None:
                break
            if getattr(op, "kernel", None) is not None:  # Dense(use_bias=False): the outputs have no bias of their own
                return None
            nodes = getattr(op, "_inbound_nodes", None) or []
            inputs = list(getattr(nodes[0], "input_tensors", None) or []) if nodes else []
            op = inputs[0]._keras_history.operation if len(inputs) == 1 and hasattr(inputs[0], "_keras_history") else None
        if op is not None and getattr(op, "bias", None) is not None:
            return op
        biased = [layer for layer in reversed(self._layers()) if getattr(layer, "bias", None) is not None]
        return next((layer for layer in biased if int(np.prod(layer.bias.shape)) == width), biased[0] if biased else None)

    def _loss_kind(self) -> tuple[str, str]:
        """("logits" | "probs" | "unknown", a readable name) of the user's loss; a name given as a string
        resolves to Keras's function, whose ``from_logits`` is False."""
        if self.step is not None:
            return "unknown", "TrainSetup(step=...)"
        fn = self.loss_fn
        if type(fn).__name__ == "LossFunctionWrapper":  # a function, wrapped as compile wraps it (KerasAdapter._loss)
            fn = functools.partial(fn.fn, **fn._fn_kwargs) if fn._fn_kwargs else fn.fn
        cls = type(fn).__name__
        if cls in XENT:
            logits = bool(getattr(fn, "get_config", dict)().get("from_logits", False))
            return ("logits" if logits else "probs"), f"{cls}(from_logits={logits})"
        inner = getattr(fn, "func", fn)  # functools.partial(categorical_crossentropy, from_logits=True)
        name = getattr(inner, "__name__", cls)
        if name in XENT_FNS:
            logits = bool(getattr(fn, "keywords", {}).get("from_logits", False))
            return ("logits" if logits else "probs"), f"{name}(from_logits={logits})"
        return "unknown", name

    def _weight_name(self, v: Any) -> str:
        """A weight's path without the model's own name (``sequential_4/``), which changes with how
        many models the process built: ``hidden0/kernel``."""
        prefix = f"{self.model.name}/"
        return v.path[len(prefix):] if v.path.startswith(prefix) else v.path

    def _softmax_end(self) -> str:
        """The name of the layer that produces the model's output when it applies a softmax (or a sigmoid)."""
        layer: Any = self.model
        for _ in range(32):  # descend into nested models that produce the output
            try:
                nxt = layer.outputs[0]._keras_history.operation
            except (AttributeError, IndexError, TypeError, ValueError):
                inner = [sub for sub in getattr(layer, "layers", []) if not isinstance(sub, self.keras.layers.InputLayer)]
                nxt = inner[-1] if inner else None
            if nxt is None or nxt is layer:
                break
            layer = nxt
            if not isinstance(layer, self.keras.Model):
                break
        if layer is self.model:
            return ""
        act = getattr(getattr(layer, "activation", None), "__name__", "")
        if type(layer).__name__ == "Softmax":
            return f"layer '{layer.name}' (Softmax)"
        # a softmax, or a sigmoid on a binary head (Activation("sigmoid") and Dense(activation="sigmoid") alike)
        return f"layer '{layer.name}' (activation='{act}')" if act in ("softmax", "sigmoid") else ""

    # ------------------------------------------------------------ 2. one batch

    def one_batch(self, steps: int, lr_scale: float = 1.0) -> BatchRun:
        tf = self.tf
        with tf.device(self.device):
            kind, item, batch = self._first()
            self._scale.assign(lr_scale)
            losses, ratios, lrs = [], [], []
            try:
                for s in range(steps):
                    result = self._step_fn(kind, s % UPDATE_EVERY == 0)(item)
                    losses.append(result[0])
                    lrs.append(result[2])
                    if s % UPDATE_EVERY == 0:
                        ratios.append((result[3], result[4]))
            finally:
                self._scale.assign(1.0)
            out = predictions(self.model(self.form.keras_input(batch), training=False))
        y = _np(self.form.target(batch))
        acc, r2 = self._score(np.asarray(out), y)
        lr_steps = np.asarray([float(v) for v in lrs], dtype=np.float64)
        index = {id(v): i for i, v in enumerate(self.model.variables)}
        snap = self._snapshot["model"]
        return BatchRun(
            losses=np.asarray([float(v) for v in losses], dtype=np.float64), accuracy=acc, r2=r2, batch_size=len(y),
            conflicts=self._conflicts(batch, y),
            moved={self._weight_name(v): relative_change(snap[index[id(v)]], v.numpy()) for v in self.params},
            lr=float(lr_steps.max()) if len(lr_steps) else float("nan"),  # the schedule's peak (a warm-up starts low)
            lrs=lr_steps,
            update_ratio=float(np.median([float(u) / max(float(w), 1e-12) for u, w in ratios])) if ratios else float("nan"),
            train_mode_layers=[layer.name for layer in self._layers() if type(layer).__name__ in TRAIN_MODE or isinstance(
                layer, (self.keras.layers.Dropout, self.keras.layers.BatchNormalization))],
        )

    def _conflicts(self, batch: Any, y: np.ndarray) -> int:
        """Samples whose inputs equal another sample's in the batch while their labels differ."""
        rows = np.ascontiguousarray(np.asarray(fields_rows(named_fields(self.form, batch, _np))).reshape(len(y), -1))
        labels = np.ascontiguousarray(y.reshape(len(y), -1))
        groups: dict[bytes, list[int]] = {}
        for i in range(len(y)):
            groups.setdefault(rows[i].tobytes(), []).append(i)
        return sum(len(g) for g in groups.values() if len(g) > 1 and len({labels[i].tobytes() for i in g}) > 1)

    # ------------------------------------------------------------ 3. samples mixing in the batch

    def mixing(self, probes: int = 3) -> Mixing:
        tf = self.tf
        bn = [layer.name for layer in self._bn_layers()]
        with tf.device(self.device):
            _, _, batch = self._first()
            x = self.form.keras_input(batch)
            xs, n = self._floats(x), len(_np(self.form.target(batch)))
            if n < 2:
                return Mixing(n, [], float("nan"), batchnorm_train=bn, skipped="the first batch holds one sample")
            probed = sorted({int(i) for i in np.linspace(0, n - 1, max(1, min(probes, n))).round()})
            embedded: dict[str, Any] = {}  # token ids: differentiated at the output of the Embedding that reads them
            tape = tf.GradientTape(persistent=True)

            def embed(op: Any, out: Any) -> None:
                if (not xs and "Embedding" in type(op).__name__ and op.name not in embedded and isinstance(out, tf.Tensor)
                        and out.dtype.is_floating and len(out.shape) and out.shape[0] == n):
                    tape.watch(out)
                    embedded[op.name] = out

            with tape:
                for t in xs:
                    tape.watch(t)
                with self._recording(embed) as records:
                    out = tf.reshape(predictions(self.model(x, training=False)), (n, -1))
                sums = [tf.reduce_sum(out[i]) for i in probed]
                marks = [(op, self._row_sums(args, n, probed), self._row_sums(o, n, probed)) for op, args, o in records]
            xs = xs or list(embedded.values())
            if not xs:
                kinds = sorted({str(getattr(t, "dtype", type(t).__name__)).replace("<dtype: '", "").replace("'>", "")
                                for t in tree_leaves(x)})
                return Mixing(n, [], float("nan"), batchnorm_train=bn,
                              skipped=f"the inputs are not float tensors ({', '.join(kinds)}) and no Embedding layer "
                                      f"reads them with the batch axis first: no gradient reaches them")
            leaks = [self._leak(tape, s, xs, n, i) for s, i in zip(sums, probed)]
            worst = int(np.argmax(leaks))
            through = ", ".join(f"'{name}'" for name in embedded)
            result = Mixing(n, probed, float(max(leaks)), batchnorm_train=bn,
                            through=f"the output of embedding {through}" if through else "")
            if result.leak > LEAK:
                self._locate(result, tape, marks, xs, n, worst)
        return result

    def _row_sums(self, tree: Any, n: int, probed: list[int]) -> list[Any] | None:
        """Per probe, the sum of row i over the float tensors of ``tree``; None when one has no row per
        sample (a reduction over the batch: it mixes by construction); [] when nothing is float."""
        floats = self._floats(tree)
        if any(len(t.shape) == 0 or t.shape[0] != n for t in floats):
            return None
        if not floats:
            return []
        tf = self.tf
        return [tf.add_n([tf.reduce_sum(tf.cast(t[i], tf.float32)) for t in floats]) for i in probed]

    def _leak(self, tape: Any, target: Any, xs: list[Any], n: int, i: int) -> float:
        """max over j != i of |d target / d x_j| over |d target / d x_i|."""
        tf = self.tf
        grads = tape.gradient(target, xs, unconnected_gradients=tf.UnconnectedGradients.ZERO)
        rows = np.zeros(n)
        for g in grads:
            rows = np.maximum(rows, np.abs(np.asarray(tf.convert_to_tensor(g), dtype=np.float64)).reshape(n, -1).max(axis=1))
        others = np.delete(rows, i)
        return float(others.max() / max(rows[i], TINY)) if others.size and others.max() > 0 else 0.0

    def _locate(self, result: Mixing, tape: Any, marks: list[Any], xs: list[Any], n: int, k: int) -> None:
        """The first op whose output mixes samples; when its input already mixed (an op not seen as a
        layer did it), the layers on both sides of it."""
        def leaks(sums: list[Any] | None) -> bool:
            return sums is None or (bool(sums) and self._leak(tape, sums[k], xs, n, result.probed[k]) > LEAK)

        last_clean = ""
        for op, ins, outs in marks:
            if outs == []:
                continue
            if not leaks(outs):
                last_clean = op.name
                continue
            if leaks(ins):
                result.between = (last_clean, op.name)
            else:
                result.module = op.name
            return
        result.between = (last_clean, "")  # mixed in the model's own call, after every recorded layer

    # ------------------------------------------------------------ 4. which weights a step moves

    def param_step(self, frozen: tuple[str, ...]) -> list[ParamRecord]:
        tf, frozen = self.tf, tuple(frozen)
        with tf.device(self.device):
            _, _, batch = self._first()
            # variables a layer creates non-trainable are its state (BatchNormalization's moving mean and
            # variance, which it updates itself in training), as torch's buffers are: not parameters to judge.
            # A layer frozen with trainable=False keeps its weights among its own trainable variables.
            state = {id(v) for layer in self.model._flatten_layers()
                     for v in getattr(layer, "_non_trainable_variables", ())}
            weights = [v for v in self.model.weights if id(v) not in state]
            trainable = {id(v) for v in self.model.trainable_weights}
            in_opt = {id(v) for v in self.params}
            targets = [*self.params, *(v for v in weights if id(v) in trainable and id(v) not in in_opt)]
            before = [v.numpy().copy() for v in weights]
            with tf.GradientTape() as tape:
                loss = self._train_loss(batch, training=True)
                scaled = self.optimizer.scale_loss(loss) if self.loss_scaled else loss
            grads = tape.gradient(scaled, targets)
            base = self._schedule(self._live_step()) if self._schedule is not None else self._base
            self._lr.assign(tf.cast(base, tf.float32) * self._scale)
            with warnings.catch_warnings():  # "gradients do not exist for variables": measured, not warned
                warnings.simplefilter("ignore")
                pairs = [(g, v) for g, v in zip(grads, self.params) if g is not None]
                if pairs:
                    self.optimizer.apply_gradients(pairs)
        kinds = {id(v): self._grad_kind(g) for v, g in zip(targets, grads)}
        return [ParamRecord(
            name=self._weight_name(v), trainable=id(v) in trainable,
                frozen_by_prefix=bool(frozen) and (self._weight_name(v).startswith(frozen) or v.path.startswith(frozen)),
            in_optimizer=id(v) in in_opt, grad=kinds.get(id(v), "none"), changed=not np.array_equal(b, v.numpy()),
            size=int(np.prod(v.shape)),
        ) for v, b in zip(weights, before)]

    def _live_step(self, limit: int = 1000) -> Any:
        """The optimizer's step, or, when the schedule's rate there is 0 (a warm-up from 0:
        ``CosineDecay(0.0, warmup_target=...)``), the first later step with a nonzero rate, so the
        probe's step is one the run takes (as torch's scheduler is stepped past zero rates)."""
        start = int(self.optimizer.iterations.numpy())
        for k in range(start, start + limit):
            if float(self._schedule(k)) > 0:
                return k
        return start

    def _grad_kind(self, grad: Any) -> str:
        if grad is None:
            return "none"
        g = np.asarray(self.tf.convert_to_tensor(grad))
        return "nonfinite" if not np.isfinite(g).all() else "zero" if not g.any() else "ok"

    # ------------------------------------------------------------ 5. the first non-finite step

    def finite_run(self, steps: int) -> FiniteRun:
        tf = self.tf
        dtype = ", ".join(sorted({str(v.dtype) for v in self.params}))
        with tf.device(self.device):
            losses: list[float] = []
            walk = self._walk(self._reset(), steps)
            while True:
                chunk = [self._step_fn(kind, False)(item) for kind, item in itertools.islice(walk, CHECK_EVERY)]
                if not chunk:
                    return FiniteRun(steps=len(losses), bad_step=0, losses=np.asarray(losses),
                                     first_loss=losses[0] if losses else float("nan"), dtype=dtype)
                values = tf.stack([tf.cast(tf.stack([r[0], r[1]]), tf.float32) for r in chunk]).numpy().astype(np.float64)
                if not (np.isfinite(values).all() and self._weights_finite()):
                    return self._pinpoint(steps, len(losses), losses, dtype)
                losses += values[:, 0].tolist()

    def _weights_finite(self) -> bool:
        tf = self.tf
        floats = [v for v in self.model.variables if str(v.dtype) in ("float16", "bfloat16", "float32", "float64")]
        return bool(tf.reduce_all(tf.stack([tf.reduce_all(tf.math.is_finite(v)) for v in floats]))) if floats else True

    def _pinpoint(self, steps: int, start: int, losses: list[float], dtype: str) -> FiniteRun:
        """Replay from the snapshot to the chunk that went bad, then step by step to its first bad step,
        and name the first layer whose output is non-finite on that step (before the update, else after; none
        when every output stayed finite: the loss or the update itself overflowed)."""
        walk = self._walk(self._reset(), steps)
        for kind, item in itertools.islice(walk, start):
            self._step_fn(kind, False)(item)
        for step, (kind, item) in enumerate(itertools.islice(walk, CHECK_EVERY), start + 1):
            before = self._capture()
            loss, gnorm, lr = (float(v) for v in self._step_fn(kind, False)(item))
            losses.append(loss)
            what = ("loss" if not np.isfinite(loss) else "gradient" if not np.isfinite(gnorm) else
                    "" if self._weights_finite() else "weights")
            if what:
                break
        else:  # the chunk was finite on the replay: the pipeline is not reproducible
            return FiniteRun(steps=len(losses), bad_step=0, losses=np.asarray(losses),
                             first_loss=losses[0] if losses else float("nan"), dtype=dtype)
        bad = list(self._bad_weights())
        batch = self._batch_of(kind, item)
        after = self._capture()
        self._restore(before)
        found = self._first_nonfinite(batch, training=True)
        if found is None:
            self._restore(after)
            found = self._first_nonfinite(batch, training=False)
        lo, hi, nonfinite = input_range([_np(t) for t in tree_leaves(self.form.keras_input(batch)) if hasattr(t, "shape")])
        return FiniteRun(
            steps=step, bad_step=step, what=what, module=found[0] if found else "", module_kind=found[1] if found else "",
            lr=lr, input_min=lo, input_max=hi, input_nonfinite=nonfinite,
            losses=np.asarray(losses, dtype=np.float64), first_loss=losses[0], bad_params=bad, dtype=dtype,
        )

    def _first_nonfinite(self, batch: Any, training: bool) -> tuple[str, str] | None:
        """(name, class) of the first op whose output holds NaN/Inf in one forward of ``batch``."""
        tf = self.tf
        with self._recording() as records:
            self.model(self.form.keras_input(batch), training=training)
        for op, _, out in records:
            if any(not bool(tf.reduce_all(tf.math.is_finite(t))) for t in self._floats(out)):
                return op.name, type(op).__name__
        return None

    # ------------------------------------------------------------ 6. label mix per batch

    def batch_mix(self, max_batches: int | None) -> BatchMix:
        if self.setup.task != "classification":
            return BatchMix(np.zeros((0, 0)), "", skipped="regression: no class mix")
        classes = max(self.n_outputs, 2)
        for split in self.splits.values():
            split.rewind()
        random.seed(self.settings.seed)
        rng = np.random.RandomState(self.settings.seed)
        batches = itertools.islice(self._batches(rng, None), max_batches)
        if self.arrays:
            y = as_numpy(self.train_split.y, "y")
            labels = (y[np.asarray(idx)] for _, idx in batches)
            source = f"arrays, shuffled by the plugin each epoch (batches of {self.batch_size})"
        else:
            labels = (_np(self.form.target(batch)) for _, batch in batches)
            source = self.train_split.describe()
        counts = [np.bincount(np.clip(target_ids(t, self.n_outputs), 0, classes - 1), minlength=classes)[:classes]
                  for t in labels]
        return BatchMix(np.asarray(counts, dtype=np.float64).reshape(len(counts), classes), source)
