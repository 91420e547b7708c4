"""inference/memory.py: freed heap pages go back to the OS after a swap (glibc's malloc_trim)."""

from __future__ import annotations

import platform
import threading
import time

import pytest

from inference.memory import release_freed_memory, release_freed_memory_later


def _rss_kb() -> int:
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmRSS:"))


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_trim_returns_freed_heap_pages() -> None:
    # many small blocks (below the mmap threshold, so they live in the heap) freed out of order leave
    # holes glibc keeps; malloc_trim gives the free pages back
    blocks = [bytearray(64 * 1024 - 64) for _ in range(3000)]  # ~190 MB
    keep = blocks[-1]
    del blocks
    before = _rss_kb()
    assert release_freed_memory() is True
    after = _rss_kb()
    assert before - after > 50_000, (before, after)  # > 50 MB back
    assert keep


def test_trim_later_runs_on_a_daemon_thread() -> None:
    start = threading.active_count()
    release_freed_memory_later(0.05)
    assert threading.active_count() == start + 1
    deadline = time.monotonic() + 5
    while threading.active_count() > start and time.monotonic() < deadline:
        time.sleep(0.01)
    assert threading.active_count() == start
