"""imgserve: train, export, register and serve image classifiers."""

__version__ = "0.1.0"
