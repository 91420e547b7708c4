"""Give the heap pages a replaced model freed back to the operating system.

Measured (one worker, the default model, 60 hot swaps with no traffic): RSS went 142 -> 170 MB and stayed
there; with a ``malloc_trim`` a few seconds after each swap it went 145 -> 152 MB. ONNX Runtime frees a
session's arena with ``free()``, and glibc keeps those pages in its arenas for reuse instead of returning them.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import threading

log = logging.getLogger(__name__)
_LIBC = ctypes.util.find_library("c")


def release_freed_memory() -> bool:
    """``malloc_trim(0)`` where the C library has it (glibc); False elsewhere (musl, macOS)."""
    if not _LIBC:
        return False
    try:
        trim = ctypes.CDLL(_LIBC).malloc_trim
    except (OSError, AttributeError):
        return False
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    trim(0)
    return True


def release_freed_memory_later(delay_s: float) -> None:
    """Trim once ``delay_s`` from now, on a daemon thread: the replaced model is freed only when its last
    in-flight request is done, so trimming at the swap itself would find nothing to give back."""
    timer = threading.Timer(delay_s, release_freed_memory)
    timer.daemon = True
    timer.start()
