"""SkyShift scheduler plugin `binpack`: packs a Job's replicas onto the fewest, most allocated clusters."""

from skyshift_scheduler_binpack.binpack import BinpackPlugin

__all__ = ["BinpackPlugin"]
