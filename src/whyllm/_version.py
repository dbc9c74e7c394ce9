"""The package version (imported by results, renderers and the server without importing the package)."""

__version__ = "0.1.0"
