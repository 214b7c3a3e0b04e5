"""``TrainSetup``: the user's description of a training setup, validated once.

It only holds references to the user's objects; checks never mutate them
(adapters snapshot and restore). Framework-free validation happens here at
construction; what needs a framework (split forms, model type, label range)
is validated by the adapter and data layer with the same error style.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

from .errors import SetupError

SPLITS = ("train", "val", "test")
TASKS = ("classification", "regression")
SCHEDULER_STEPS = ("epoch", "batch")


@dataclass(frozen=True, eq=False)
class TrainSetup:
    """What to train and on which data.

    - ``model``: a ``torch.nn.Module`` (a Lightning ``LightningModule`` or a Hugging Face model
      too), a ``keras.Model``, or a zero-argument factory returning one. May be None for the
      model-free checks (``no_leakage``, ``inputs_normalized``).
    - ``train`` / ``val`` / ``test``: ``(X, y)`` numpy arrays or tensors (X may be a tuple or dict of
      arrays for several inputs), a torch ``Dataset`` or ``DataLoader``, a ``tf.data.Dataset``, a
      keras ``PyDataset``, a pandas / polars DataFrame or pyarrow Table (``(frame, y)``, or the frame
      with ``target``), Parquet files (a path, glob or directory) or a ``pyarrow.dataset.Dataset``, or,
      for the model-free checks, an iterator of ``(X, y)`` blocks. Batches
      may be ``(x, y)``, ``(x1, ..., xk, y)``, ``((x1, ..., xk), y)``, ``(dict, y)`` or a flat dict
      holding the target under ``target_key``.
    - ``optimizer``: torch an ``Optimizer`` or ``callable(params) -> Optimizer``; keras an
      optimizer or its name. None for a LightningModule (its ``configure_optimizers``), a Hugging
      Face model (AdamW 5e-5) or a compiled keras model.
    - ``loss``: a callable ``(output, target)``, a keras loss or its name; None when ``step`` is
      given, for a LightningModule (its ``training_step``) or a model whose output holds ``.loss``.
    - ``scheduler``: a torch ``LRScheduler`` or ``callable(optimizer) -> scheduler`` stepped per
      ``scheduler_step`` ("epoch" or "batch"; ``ReduceLROnPlateau`` once per epoch, on the val loss
      for mode "min" and the val metric for mode "max"); keras: a ``LearningRateSchedule`` inside the
      optimizer or a ``LearningRateScheduler`` callback.
    - ``task``: "classification" (accuracy) or "regression" (loss, R^2).
    - ``batch_size``: used when splits are arrays.
    - ``groups`` / ``timestamps``: ``{"train": ids_or_times, "val": ...}``, one per sample, or the
      name of a feature column of a table split, for group and temporal leakage (missing ids and
      NaT/NaN times are left out and counted).
    - ``step``: ``callable(model, batch) -> loss`` (a tensor, a dict with "loss", or a tuple whose
      first item is the loss), the user's own training step.
    - ``target_key``: the key of the target in dict batches (default: the first present of
      "labels", "label", "target", "targets", "y").
    - ``datamodule``: a Lightning ``LightningDataModule`` whose loaders fill the splits not given.
    - ``target``: the label column of table splits given whole (``train=df``).
    """

    model: Any = None
    train: Any = None
    val: Any = None
    test: Any = None
    optimizer: Any = None
    loss: Any = None
    scheduler: Any = None
    scheduler_step: str = "epoch"
    task: str = "classification"
    batch_size: int = 32
    groups: Mapping[str, Any] | None = None
    timestamps: Mapping[str, Any] | None = None
    step: Callable[[Any, Any], Any] | None = None  # the user's training step: (model, batch) -> loss
    target_key: str | None = None  # dict batches: the key holding the target
    datamodule: Any = None  # a Lightning LightningDataModule filling the splits not given
    target: str | None = None  # table splits (DataFrames, Parquet): the name of the label column

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise SetupError(f"TrainSetup(task={self.task!r}) is not supported; use one of {TASKS}.")
        if self.scheduler_step not in SCHEDULER_STEPS:
            raise SetupError(
                f"TrainSetup(scheduler_step={self.scheduler_step!r}) is not supported; use "
                f"'epoch' (scheduler.step() after every epoch) or 'batch' (after every optimizer step)."
            )
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise SetupError(f"TrainSetup(batch_size={self.batch_size!r}) must be an integer >= 1.")
        if self.train is None and self.datamodule is None:
            raise SetupError(
                "TrainSetup(train=...) is required: give (X, y) arrays, a Dataset or a DataLoader "
                "(or datamodule=, a Lightning LightningDataModule)."
            )
        if self.step is not None and not callable(self.step):
            raise SetupError(f"TrainSetup(step={self.step!r}) must be a callable(model, batch) -> loss.")
        if self.target is not None and not isinstance(self.target, str):
            raise SetupError(f"TrainSetup(target={self.target!r}) must be the name (a str) of the label column.")
        if self.target_key is not None and not isinstance(self.target_key, str):
            raise SetupError(f"TrainSetup(target_key={self.target_key!r}) must be the name (a str) of a batch key.")
        for name in ("groups", "timestamps"):
            value = getattr(self, name)
            if value is None:
                continue
            if not isinstance(value, Mapping) or not set(value) <= set(SPLITS):
                raise SetupError(
                    f"TrainSetup({name}=...) must be a dict keyed by split name "
                    f"({', '.join(SPLITS)}), got {type(value).__name__} with keys "
                    f"{sorted(value) if isinstance(value, Mapping) else '-'}."
                )

    def splits(self) -> dict[str, Any]:
        """The splits that were given, in train/val/test order (a datamodule's are read by the adapters)."""
        return {name: getattr(self, name) for name in SPLITS if getattr(self, name) is not None}

    def require(self, check: str, *fields: str) -> None:
        """Raise one clear error naming every field ``check`` needs but did not get."""
        missing = [name for name in fields if getattr(self, name) is None
                   and not (name in SPLITS and self.datamodule is not None)]
        if missing:
            raise SetupError(
                f"{check} needs TrainSetup({', '.join(f'{m}=...' for m in missing)}) but "
                f"{'it was' if len(missing) == 1 else 'they were'} left None. Only the model-free "
                f"checks (no_leakage, inputs_normalized) work without a model."
            )
