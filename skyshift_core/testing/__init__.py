"""Test support for SkyShift and its plugins; `plugin` is registered as a pytest plugin."""
