"""imgserve's version: the one place it is written (pyproject.toml reads it, and so do the bento's servers,
which ship ``inference/`` but not the ``imgserve`` CLI package)."""

__version__ = "0.1.0"
