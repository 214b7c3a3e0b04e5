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


def read_ahead(items: Iterator[Any], depth: int = 2) -> Iterator[Any]:
    """``items`` produced in a background thread at most ``depth`` ahead of the consumer, in order.

    For a stream whose producing is numpy and pyarrow work that releases the GIL (decoding a
    Parquet batch, coding its columns): the consumer's own work on one item overlaps the producing
    of the next. An error in the producer is raised in the consumer, where the item would have come;
    a consumer that stops early stops the producer, which closes ``items`` in its own thread."""
    import queue
    import threading

    done = object()
    slots: queue.Queue[tuple[Any, BaseException | None]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(entry: tuple[Any, BaseException | None]) -> bool:
        while not stop.is_set():
            try:
                slots.put(entry, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put((item, None)):
                    return
            put((done, None))
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, raised there
            put((done, exc))
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()

    worker = threading.Thread(target=produce, name="trainsanity-read-ahead", daemon=True)
    worker.start()
    try:
        while True:
            item, error = slots.get()
            if item is done:
                if error is not None:
                    raise error.with_traceback(error.__traceback__)
                return
            yield item
    finally:
        stop.set()
        worker.join()

