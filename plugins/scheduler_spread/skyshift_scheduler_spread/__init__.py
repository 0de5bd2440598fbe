"""SkyShift scheduler plugin `spread`: divides a Job's replicas evenly, or by preference weight, among clusters."""

from skyshift_scheduler_spread.spread import SpreadPlugin

__all__ = ["SpreadPlugin"]
