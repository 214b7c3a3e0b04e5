"""Progress of long checks through ``logging`` (SPEC §5): logger ``pytest_trainsanity``, INFO.

pytest's ``--log-cli-level=INFO`` shows it live; nothing is printed otherwise.
A pass logs when it starts, at most every ``EVERY_S`` seconds while it runs
(epoch and step of the total, elapsed, estimated time left) and when it ends.
"""

from __future__ import annotations

import logging
import time

LOGGER = logging.getLogger("pytest_trainsanity")
EVERY_S = 5.0


class Progress:
    """One check's progress; ``start`` begins a pass, ``step`` is cheap (a clock read)."""

    def __init__(self, check: str, logger: logging.Logger = LOGGER, every: float = EVERY_S) -> None:
        self.check, self.logger, self.every = check, logger, every
        self.label, self.total, self.epochs = "", 0, 1
        self.t0 = self.next_at = 0.0

    def start(self, label: str, total_steps: int | None, epochs: int) -> None:
        self.label, self.total, self.epochs = label, total_steps or 0, epochs
        self.t0 = time.perf_counter()
        self.next_at = self.t0 + self.every
        self.logger.info("%s: %s: started (%d epoch(s)%s)", self.check, label, epochs,
                         f", at most {total_steps} steps" if total_steps else "")

    def step(self, epoch: int, done: int) -> None:
        now = time.perf_counter()
        if now < self.next_at:
            return
        self.next_at = now + self.every
        elapsed = now - self.t0
        left = f", ~{elapsed * (self.total - done) / done:.0f} s left" if self.total and done else ""
        of = f" of {self.total}" if self.total else ""
        self.logger.info("%s: %s: epoch %d/%d, step %d%s, %.0f s elapsed%s", self.check, self.label,
                         epoch + 1, self.epochs, done, of, elapsed, left)

    def done(self, steps: int) -> None:
        self.logger.info("%s: %s: done, %d steps in %.2f s", self.check, self.label, steps, time.perf_counter() - self.t0)

    def note(self, text: str) -> None:
        self.logger.info("%s: %s", self.check, text)
