"""Which continuous oximeter samples become readings: one per interval, and any that changed enough.

A worn oximeter notifies PLX Continuous Measurements about once a second; storing each would flood the
queue and the clinician with near-identical values. Pure (the caller passes a monotonic time), so tests
drive it without a clock.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ContinuousSampler"]


@dataclass
class ContinuousSampler:
    """`offer` says whether a sample is kept: the first one, one at least `interval` seconds after the last
    kept one, or one whose SpO2 or pulse rate moved by at least `spo2_change` / `pulse_change` since."""

    interval: float
    spo2_change: float
    pulse_change: float
    _last_at: float | None = None
    _last: tuple[float, float | None] | None = None
    offered: int = 0
    kept: int = 0

    def offer(self, spo2: float, pulse: float | None, now: float) -> bool:
        self.offered += 1
        keep = self._last_at is None or self._last is None or now - self._last_at >= self.interval
        if not keep and self._last is not None:
            last_spo2, last_pulse = self._last
            keep = abs(spo2 - last_spo2) >= self.spo2_change or (
                pulse is not None and last_pulse is not None and abs(pulse - last_pulse) >= self.pulse_change
            )
        if keep:
            self._last_at, self._last = now, (spo2, pulse)
            self.kept += 1
        return keep
