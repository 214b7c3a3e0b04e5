"""Framework adapters. Only the modules in this package import a framework,
and only inside functions, so importing this package is free."""

from __future__ import annotations

from .base import Adapter, ModelInfo, TrainingTrace

__all__ = ["Adapter", "ModelInfo", "TrainingTrace"]
