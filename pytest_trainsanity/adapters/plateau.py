"""Keras's ``ReduceLROnPlateau`` callback, driven by a check's per-epoch measurements.

``model.fit`` calls the callback after each epoch with its logs (``loss``, ``val_loss``,
``accuracy``, ``val_accuracy``, ...); the check has no ``fit`` and no logs, so it steps a copy of
the callback's rule on what it measures after each epoch: ``loss`` is the mean training-step loss
of the epoch (as ``fit`` logs it), ``val_loss`` the val eval sample's loss, ``accuracy`` /
``val_accuracy`` (any name holding "acc") the train and val eval samples' accuracy. The rule is
Keras 3's (``on_epoch_end`` and ``MonitorCallback._is_improvement``): cooldown, ``min_delta``,
``patience``, ``factor`` and ``min_lr``, reset at the start of every pass as ``on_train_begin``
does. The user's callback object is read, never called or changed. A quantity the check does not
measure leaves the rate as it is, as ``fit`` does when a metric is missing from its logs (a note
says so).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

MEASURED = ("loss", "val_loss", "accuracy", "val_accuracy")


@dataclass
class Plateau:
    monitor: str
    factor: float
    patience: int
    min_delta: float
    cooldown: int
    min_lr: float
    higher: bool  # a larger monitored value is better
    best: float | None = None
    wait: int = 0
    cooldown_counter: int = 0

    @classmethod
    def of(cls, callback: Any) -> "Plateau":
        monitor = str(callback.monitor)
        mode = getattr(callback, "mode", "auto")
        higher = mode == "max" or mode not in ("min", "max") and "acc" in monitor.removeprefix("val_")
        return cls(monitor, float(callback.factor), int(callback.patience), abs(float(callback.min_delta)),
                   int(callback.cooldown), float(callback.min_lr), higher)

    @property
    def known(self) -> bool:
        """Whether the check measures the monitored quantity."""
        base = self.monitor.removeprefix("val_")
        return base == "loss" or "acc" in base

    def value(self, loss: float, val_loss: float | None, accuracy: float | None, val_accuracy: float | None) -> float | None:
        """The monitored quantity among the epoch's measurements (None: not measured)."""
        val = self.monitor.startswith("val_")
        base = self.monitor.removeprefix("val_")
        if base == "loss":
            return val_loss if val else loss
        if "acc" in base:
            return val_accuracy if val else accuracy
        return None

    def reset(self) -> None:
        self.best, self.wait, self.cooldown_counter = None, 0, 0

    def step(self, current: float, lr: float) -> float:
        """The rate after an epoch that measured ``current`` with rate ``lr``."""
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.wait = 0
        better = self.best is None or (current - self.min_delta > self.best if self.higher
                                       else current + self.min_delta < self.best)
        if better:
            self.best, self.wait = current, 0
        elif self.cooldown_counter == 0:  # as Keras: read again after the countdown
            self.wait += 1
            if self.wait >= self.patience and lr > np.float32(self.min_lr):
                self.cooldown_counter, self.wait = self.cooldown, 0
                return max(lr * self.factor, self.min_lr)
        return lr

    def describe(self) -> str:
        return (f"ReduceLROnPlateau(monitor={self.monitor!r}, factor={self.factor:g}, patience={self.patience}) "
                f"stepped after each epoch on the check's measurement")
