"""The framework's conformance suite run against the core's built-in scheduling plugins."""

from skyshift_core.scheduler.builtin import ClusterReady, FilterPolicyFilter, Placement, ResourcesFit
from skyshift_core.testing.conformance import FilterPluginConformance, ScorePluginConformance


class TestClusterReadyConformance(FilterPluginConformance):
    plugin_class = ClusterReady
    entry_point = "cluster-ready"


class TestPlacementConformance(FilterPluginConformance, ScorePluginConformance):
    plugin_class = Placement
    entry_point = "placement"


class TestFilterPolicyConformance(FilterPluginConformance):
    plugin_class = FilterPolicyFilter
    entry_point = "filter-policy"


class TestResourcesFitConformance(FilterPluginConformance):
    plugin_class = ResourcesFit
    entry_point = "resources-fit"
