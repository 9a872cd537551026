"""Thread count for the fused kernel, chosen by timing while it runs."""

from __future__ import annotations

import numba

__all__ = ["ThreadTuner"]


class ThreadTuner:
    """Chooses numba's thread count for each slice of steps.

    Every step ends in a barrier, so on a machine whose cores are busy with other work a
    descheduled worker stalls each step (measured: 2 threads 15x slower than 1 under load 8
    on 2 cores). Results do not depend on the thread count (fixed summation order), so we
    time a short probe slice with all threads and one with a single thread, run the next
    slices with the faster, and probe again now and then because the load changes.
    """

    PROBE, MAIN, REPROBE = 8, 128, 8  # probe length, main slice length (steps), mains per probe

    def __init__(self, n_units: int) -> None:
        self.max = numba.get_num_threads()
        self.candidates = [self.max, 1] if self.max > 1 and n_units > 1 else [1]
        self.best, self.mains, self.trial = self.candidates[-1], 0, {}

    def next(self) -> tuple[int, int]:
        """(threads, steps) for the next slice."""
        if len(self.candidates) == 1:
            return 1, 4096
        pending = [c for c in self.candidates if c not in self.trial]
        return (pending[0], self.PROBE) if pending else (self.best, self.MAIN)

    def record(self, threads: int, seconds_per_step: float) -> None:
        if len(self.trial) < len(self.candidates):
            self.trial[threads] = seconds_per_step
            if len(self.trial) == len(self.candidates):
                self.best = min(self.trial, key=self.trial.get)
            return
        self.mains += 1
        if self.mains % self.REPROBE == 0:
            self.trial = {}

    def close(self) -> None:
        numba.set_num_threads(self.max)
