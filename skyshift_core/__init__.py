"""SkyShift core: object model, etcd store, API server, CLI and plugin discovery."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("skyshift")
except PackageNotFoundError:  # Running from a source tree that was never installed.
    __version__ = "0.0.0"
