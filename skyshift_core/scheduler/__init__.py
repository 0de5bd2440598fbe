"""The scheduler: the plugin framework (public API for scheduling plugins) and the scheduling cycle."""
