"""Lightning and Hugging Face models, recognised by their base classes' names (nothing imported).

A ``LightningModule`` brings its optimizer and scheduler through
``configure_optimizers()`` (every documented return form) and its training
loss through ``training_step(batch, batch_idx)``; no ``Trainer`` is created.
A Hugging Face ``PreTrainedModel`` computes its own loss from dict batches
that hold the labels.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import SetupError
from .base import first_line

HF_DEFAULT_LR = 5e-5  # the transformers Trainer's default AdamW rate


def _has_base(model: Any, name: str, roots: tuple[str, ...]) -> bool:
    return any(c.__name__ == name and c.__module__.split(".", 1)[0] in roots for c in type(model).__mro__)


def is_lightning(model: Any) -> bool:
    return _has_base(model, "LightningModule", ("lightning", "pytorch_lightning"))


# hooks a Trainer calls around each optimizer step that the checks call too: on_before_optimizer_step, then
# configure_gradient_clipping (overridden ones only: the base class's need a Trainer)
STEP_HOOKS = ("on_before_optimizer_step", "configure_gradient_clipping")
UNCALLED_HOOKS = ("optimizer_step",)  # takes the Trainer's closure: not called, named in a note


def overridden(model: Any, names: tuple[str, ...]) -> list[str]:
    """Which of the LightningModule hooks ``names`` the model's class overrides."""
    base = next((c for c in type(model).__mro__ if c.__name__ == "LightningModule"), None)
    if base is None:
        return []
    return [n for n in names if getattr(type(model), n, None) is not getattr(base, n, None)]


def is_hugging_face(model: Any) -> bool:
    return _has_base(model, "PreTrainedModel", ("transformers",))


@dataclass(frozen=True)
class SchedulerPlan:
    """When the scheduler steps: every ``frequency`` epochs or optimizer steps."""

    scheduler: Any
    interval: str = "epoch"  # "epoch" | "step"
    frequency: int = 1
    monitor: str | None = None  # ReduceLROnPlateau: the logged metric it watches (Lightning's "monitor")


def refuse_manual(model: Any, optimizer_given: bool = False) -> None:
    """One paragraph for a module with manual optimization, whose training_step needs a Trainer: it calls
    ``self.optimizers()`` and ``self.manual_backward``, which raise outside one."""
    if getattr(model, "automatic_optimization", True) is not False:
        return
    given = (" TrainSetup(optimizer=...) alone does not avoid it: the checks would still call that "
             "training_step." if optimizer_given else "")
    raise SetupError(
        f"{type(model).__name__} uses manual optimization (automatic_optimization = False): its training_step "
        f"steps the optimizers itself through a Trainer (self.optimizers(), self.manual_backward()).{given} Give "
        f"TrainSetup(optimizer=..., step=...) with a step that returns the loss (e.g. step=lambda model, batch: "
        f"F.cross_entropy(model(batch[0]), batch[1])), or TrainSetup(optimizer=..., loss=...), or switch the module "
        f"to automatic optimization."
    )


def configured(model: Any, torch: Any) -> tuple[Any, SchedulerPlan | None]:
    """The optimizer and scheduler of ``model.configure_optimizers()``.

    Accepted (Lightning's documented forms): an optimizer; a list/tuple of optimizers; two lists
    (optimizers, schedulers or scheduler configs); a dict with "optimizer" and optionally
    "lr_scheduler" (a scheduler or a config dict with "scheduler", "interval", "frequency"); a
    list/tuple of such dicts. One optimizer only: several need manual optimization.
    """
    name = type(model).__name__
    refuse_manual(model)
    try:
        out = model.configure_optimizers()
    except Exception as exc:  # noqa: BLE001 - e.g. it reads self.trainer, which does not exist here
        raise SetupError(
            f"{name}.configure_optimizers() failed without a Trainer: {type(exc).__name__}: {first_line(exc)}. "
            f"Give TrainSetup(optimizer=..., scheduler=...) instead."
        ) from None
    Opt = torch.optim.Optimizer
    if out is None:
        raise SetupError(f"{name}.configure_optimizers() returned None: there is no optimizer to train with.")
    if isinstance(out, Opt):
        return out, None
    if isinstance(out, Mapping):
        optimizers, schedulers = [out.get("optimizer")], [out.get("lr_scheduler")]
    elif isinstance(out, (list, tuple)) and len(out) == 2 and all(isinstance(o, (list, tuple)) for o in out):
        optimizers, schedulers = list(out[0]), list(out[1])
    elif isinstance(out, (list, tuple)) and out and all(isinstance(o, Opt) for o in out):
        optimizers, schedulers = list(out), []
    elif isinstance(out, (list, tuple)) and out and all(isinstance(o, Mapping) for o in out):
        optimizers, schedulers = [o.get("optimizer") for o in out], [o.get("lr_scheduler") for o in out]
    else:
        raise SetupError(
            f"{name}.configure_optimizers() returned {type(out).__name__}, which is not one of Lightning's forms "
            f"(an optimizer, a list of optimizers, ([optimizers], [schedulers]), or a dict with 'optimizer')."
        )
    schedulers = [s for s in schedulers if s is not None]
    if len(optimizers) != 1 or not isinstance(optimizers[0], Opt):
        raise SetupError(
            f"{name}.configure_optimizers() returned {len(optimizers)} optimizers; pytest-trainsanity trains with "
            f"one (several need manual optimization). Give TrainSetup(optimizer=...) to choose."
        )
    if len(schedulers) > 1:
        raise SetupError(f"{name}.configure_optimizers() returned {len(schedulers)} schedulers for one optimizer; give one.")
    if not schedulers:
        return optimizers[0], None
    config = schedulers[0]
    if isinstance(config, Mapping):
        interval, frequency = config.get("interval", "epoch"), config.get("frequency", 1)
        if interval not in ("epoch", "step") or not isinstance(frequency, int) or frequency < 1:
            raise SetupError(
                f"{name}.configure_optimizers() has lr_scheduler interval={interval!r}, frequency={frequency!r}; "
                f"Lightning takes interval 'epoch' or 'step' and an integer frequency >= 1."
            )
        monitor = config.get("monitor")
        return optimizers[0], SchedulerPlan(config.get("scheduler"), interval, frequency,
                                            monitor if isinstance(monitor, str) else None)
    return optimizers[0], SchedulerPlan(config)


def takes_batch_idx(model: Any) -> bool:
    """Whether ``training_step`` takes ``batch_idx`` (Lightning passes it only then)."""
    try:
        params = list(inspect.signature(model.training_step).parameters.values())
    except (TypeError, ValueError):
        return True
    return len([p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]) >= 2 or any(
        p.kind == p.VAR_POSITIONAL for p in params)
