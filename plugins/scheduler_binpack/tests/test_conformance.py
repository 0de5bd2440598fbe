"""The framework's conformance suite run against the binpack plugin."""

from skyshift_core.testing.conformance import DividePluginConformance, ScorePluginConformance
from skyshift_scheduler_binpack.binpack import BinpackPlugin


class TestBinpackConformance(DividePluginConformance, ScorePluginConformance):
    plugin_class = BinpackPlugin
    entry_point = "binpack"
