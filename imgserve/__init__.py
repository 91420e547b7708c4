"""imgserve: train, export, register and serve image classifiers."""

from inference.version import __version__

__all__ = ["__version__"]
