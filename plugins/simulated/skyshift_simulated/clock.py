"""A clock that moves only when a test advances it, so tests drive simulated clusters without sleeping."""

from __future__ import annotations


class ManualClock:
    """Seconds as a float, starting at `start`; pass it as `clock=` to SimulatedClusterManager."""

    def __init__(self, start: float = 0.0):
        self.now = float(start)

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        """Move the clock forward by `seconds` and return the new reading."""
        if seconds < 0:
            raise ValueError(f"invalid clock step {seconds!r}: the clock only moves forward, pass seconds >= 0")
        self.now += seconds
        return self.now
