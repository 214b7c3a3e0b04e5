"""Global RNG states: seed for our work, then put back exactly as found.

Only frameworks the process has already imported are touched, so this
never imports torch or tensorflow.
"""

from __future__ import annotations

import contextlib
import random
import sys
from typing import Any, Iterator

import numpy as np


def seed_torch(torch: Any, seed: int) -> None:
    """``torch.manual_seed(seed)``, but on a machine with no accelerator only the CPU generator is
    seeded: that is all ``manual_seed`` changes there, and it also formats the caller's stack to
    queue a CUDA seed for later (0.2-1 ms a call, deeper under pytest), which a check calling it a
    few times per pass would pay for nothing."""
    accelerated = (
        torch.cuda.is_available()
        or torch.backends.mps.is_available()
        or (hasattr(torch, "xpu") and torch.xpu.is_available())
        or torch._C._get_privateuse1_backend_name() != "privateuseone"
    )
    if accelerated:
        torch.manual_seed(seed)
    else:
        torch.default_generator.manual_seed(seed)


@contextlib.contextmanager
def seeded(seed: int, gpu: bool = False) -> Iterator[None]:
    """``gpu``: the work may run on CUDA, so CUDA is initialised first when it is available (a
    check on the GPU does so anyway): seeds queued before initialisation are applied, and the
    state read here is exactly the one put back."""
    torch = sys.modules.get("torch")
    saved_py, saved_np = random.getstate(), np.random.get_state()
    saved_torch = torch.get_rng_state() if torch is not None else None
    if gpu and torch is not None and torch.cuda.is_available() and not torch.cuda.is_initialized():
        torch.cuda.init()
    saved_cuda = (
        torch.cuda.get_rng_state_all()
        if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized()
        else None
    )
    random.seed(seed)
    np.random.seed(seed)
    if torch is not None:
        seed_torch(torch, seed)
    try:
        yield
    finally:
        random.setstate(saved_py)
        np.random.set_state(saved_np)
        if torch is not None:
            torch.set_rng_state(saved_torch)
            if saved_cuda is not None:
                torch.cuda.set_rng_state_all(saved_cuda)
