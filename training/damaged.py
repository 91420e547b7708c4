"""Reading the files a run or a warm start depends on (model.keras, heldout.npz), with a damaged one
(truncated by a full disk, overwritten, half-copied) said in one line that names it instead of a traceback
from Keras, numpy or zipfile."""

from __future__ import annotations

import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from inference.errors import ConfigError

T = TypeVar("T")


def read_or_explain(path: Path, read: Callable[[Path], T], remedy: str = "train it again") -> T:
    """``read(path)``; a file that cannot be read raises one ``ConfigError`` naming it, its folder and ``remedy``."""
    try:
        return read(path)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise ConfigError(
            f"{path.parent}: {path.name} cannot be read ({type(exc).__name__}: {exc}); {remedy}"
        ) from None
