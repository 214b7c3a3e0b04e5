"""Peer pre-flight asserts for ``benchmarks/preflight.py``: torchtest 0.5 and neural-net-checklist 1.1.0.

Both peers are optional: this module imports without them and ``run_peers``
then records "not installed". Install (the registry's torchvision, which
neural-net-checklist declares but never imports, must not come along)::

    pip install torchtest==0.5 tqdm pillow
    pip install --no-deps neural-net-checklist==1.1.0

Every assert runs on a freshly built setup (model, optimizer, loss, data as
the benchmark's builder makes them), in try/except: "raised" when it raised
anything, "passed" otherwise. What each one does (read from the sources):

torchtest (``torchtest/torchtest.py``), batch = ``[x, y]``, the first batch:
- ``vars``: ``assert_vars_change(model, loss_fn, optim, batch, device="cpu")``:
  one train-mode step with the user's optimizer and loss, then raises
  ``VariablesChangeException`` for the first trainable parameter that is
  bit-identical to its copy (``torch.equal``).
- ``nan/inf``: ``test_suite(model, loss_fn, optim, batch, test_nan_vals=True,
  test_inf_vals=True)``: one eval-mode forward of the *given* (untrained)
  model; raises on a NaN output. Its Inf test asserts
  ``torch.isfinite(out).byte().any()``, so it raises only when *every*
  output is non-finite. It never trains, so it sees no divergence.

neural-net-checklist (``neural_net_checklist/torch_diagnostics.py``), batch =
the ``(x, y)`` tuple or the user's DataLoader (it reads its first batch):
- ``loss@init``: ``assert_balanced_classification_cross_entropy_loss_at_init(
  model, batch, num_classes=10, loss_fn=loss)``: eval-mode loss on the first
  ``min(128, num_classes)`` = 10 rows; raises when loss / ln(10) - 1 > 0.75
  (one-sided: a loss *below* ln 10 always passes).
- ``calib``: ``assert_balanced_classification_cross_entropy_init_calibrated(
  model, batch, num_classes=10)``: mean |softmax(out) - 1/10| <= 1/10.
- ``fwd``: ``assert_forward_batch_independence(factory, batch)``: eval-mode
  outputs of rows a, b, c alone vs in pairs and a triple, atol 1e-6.
- ``bwd``: ``assert_backward_batch_independence(factory, batch)``: train
  mode, two rows, d out_i / d x_j must be 0 for i != j.
- ``grads``: ``assert_non_zero_gradients(model, batch)``: one row,
  ``outputs.sum().backward()`` (no loss, no optimizer), every parameter's
  gradient must be non-None and not all zero.
- ``overfit``: ``assert_overfit_to_batch(model, batch, loss_fn=loss,
  train_batch_fn=partial(train_batch, optimizer=optim))``: trains on the
  batch until the loss is below 1e-4, else raises after ``max_steps`` =
  2**16 steps. Its own ``optimizer=`` argument is accepted and documented but
  never passed to the training loop (which then builds Adam(lr=3e-4)), so the
  user's optimizer goes in through ``train_batch_fn``, its other documented
  route.
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
from collections.abc import Callable
from typing import Any

os.environ.setdefault("TQDM_DISABLE", "1")  # neural-net-checklist draws a progress bar per overfit step

try:
    import torchtest as tt
except ImportError:
    tt = None
try:
    from neural_net_checklist import torch_diagnostics as nnc
except ImportError:
    nnc = None

NUM_CLASSES = 10
COLUMNS: tuple[tuple[str, str], ...] = (
    ("torchtest", "vars"), ("torchtest", "nan/inf"),
    ("nnc", "loss@init"), ("nnc", "calib"), ("nnc", "fwd"), ("nnc", "bwd"), ("nnc", "grads"), ("nnc", "overfit"),
)


def versions() -> dict[str, str | None]:
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str | None] = {}
    for name in ("torchtest", "neural-net-checklist"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def first_batch(setup: Any) -> tuple[Any, Any]:
    """The first 32 rows of the train split as the user holds it (for a DataLoader: its first batch)."""
    import torch

    if isinstance(setup.train, torch.utils.data.DataLoader):
        x, y = next(iter(setup.train))
        return x, y
    X, y = setup.train
    return torch.as_tensor(X[: setup.batch_size]), torch.as_tensor(y[: setup.batch_size])


def outcome(call: Callable[[], Any]) -> tuple[str, str]:
    """("raised", "ExcType: message") or ("passed", ""); the peer's prints are swallowed."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        try:
            call()
        except Exception as exc:  # noqa: BLE001 - any raise is the peer's verdict
            return "raised", f"{type(exc).__name__}: {' '.join(str(exc).split())}"
    return "passed", ""


def run_peers(build: Callable[[], Any]) -> dict[str, tuple[str, str]]:
    """Every peer assert on a fresh setup from ``build`` (a zero-argument TrainSetup builder)."""

    def fresh() -> tuple[Any, Any, Any, Any, Any]:
        s = build()
        return s.model, s.optimizer, s.loss, s, first_batch(s)

    calls: dict[str, Callable[[], Any] | None] = {"vars": None, "nan/inf": None}
    if tt is not None:
        def tt_vars() -> Any:
            m, o, loss, _, b = fresh()
            return tt.assert_vars_change(m, loss, o, list(b), device="cpu")

        def tt_finite() -> Any:
            m, o, loss, _, b = fresh()
            return tt.test_suite(m, loss, o, list(b), test_nan_vals=True, test_inf_vals=True)

        calls.update({"vars": tt_vars, "nan/inf": tt_finite})
    names = ("loss@init", "calib", "fwd", "bwd", "grads", "overfit")
    calls.update({name: None for name in names})
    if nnc is not None:
        def provider(s: Any) -> Any:  # the loader itself when the user has one (nnc reads its first batch)
            return s.train if not isinstance(s.train, tuple) else first_batch(s)

        def factory() -> Any:
            return build().model

        def peer(name: str) -> Any:
            m, o, loss, s, _ = fresh()
            data = provider(s)
            if name == "loss@init":
                return nnc.assert_balanced_classification_cross_entropy_loss_at_init(
                    m, data, num_classes=NUM_CLASSES, loss_fn=loss)
            if name == "calib":
                return nnc.assert_balanced_classification_cross_entropy_init_calibrated(m, data, num_classes=NUM_CLASSES)
            if name == "fwd":
                return nnc.assert_forward_batch_independence(factory, data)
            if name == "bwd":
                return nnc.assert_backward_batch_independence(factory, data)
            if name == "grads":
                return nnc.assert_non_zero_gradients(m, data)
            return nnc.assert_overfit_to_batch(m, data, loss_fn=loss,
                                               train_batch_fn=functools.partial(nnc.train_batch, optimizer=o))

        calls.update({name: functools.partial(peer, name) for name in names})
    return {name: outcome(call) if call is not None else ("not installed", "") for name, call in calls.items()}
