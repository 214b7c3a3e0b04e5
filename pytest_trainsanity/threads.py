"""numpy's own BLAS on one thread while a framework trains on the same cores.

A training check does a few milliseconds of numpy statistics (eval samples,
single-feature rules, near copies) between framework passes. OpenBLAS runs a
matrix product of a few hundred rows on every core, and its worker threads
then spin for a while after the call; torch's OpenMP workers do the same after
a pass. Measured on 2 cores (digits, 1437/360): the statistics take 3x longer
right after a torch epoch, and the epoch after them up to 2x longer. One BLAS
thread for numpy during a training check removes both; the frameworks' own
thread pools are left alone. Only BLAS libraries that ship inside numpy's own
package directory are limited (a conda numpy that shares MKL with torch is not
touched), and without ``threadpoolctl`` this is a no-op.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any, Iterator

_NUMPY_BLAS: Any = None  # a threadpoolctl controller of numpy's bundled BLAS, or False when there is none


def _numpy_blas() -> Any:
    global _NUMPY_BLAS
    if _NUMPY_BLAS is None:
        _NUMPY_BLAS = False
        try:
            import numpy
            from threadpoolctl import ThreadpoolController
        except ImportError:
            return False
        home = os.path.dirname(os.path.dirname(os.path.abspath(numpy.__file__)))  # site-packages
        mine = ("numpy.libs", "numpy" + os.sep + ".libs", "numpy" + os.sep + "_core")
        controller = ThreadpoolController().select(user_api="blas")
        own = [c for c in controller.lib_controllers
               if any(os.path.abspath(c.filepath).startswith(os.path.join(home, m)) for m in mine)]
        if own:
            _NUMPY_BLAS = ThreadpoolController._from_controllers(own)
    return _NUMPY_BLAS


@contextlib.contextmanager
def numpy_blas_single() -> Iterator[None]:
    """numpy's bundled BLAS limited to one thread inside the block (restored after)."""
    controller = _numpy_blas()
    if not controller:
        yield
        return
    with controller.limit(limits=1):
        yield
