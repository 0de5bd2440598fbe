"""The framework's conformance suite run against the spread plugin."""

from skyshift_core.testing.conformance import DividePluginConformance, ScorePluginConformance
from skyshift_scheduler_spread.spread import SpreadPlugin


class TestSpreadConformance(DividePluginConformance, ScorePluginConformance):
    plugin_class = SpreadPlugin
    entry_point = "spread"
