"""What CPU this is, for the records that carry timings (training summaries, model cards, benchmark reports):
a figure measured on an AVX-512 CPU and one on an AVX2 CPU of the same name differ 4x for training here."""

from __future__ import annotations

import functools
import platform
from pathlib import Path

# widest first: the first flag present names the vector ISA
_ISAS = (("avx512f", "AVX-512"), ("avx2", "AVX2"), ("avx", "AVX"), ("sse4_2", "SSE4.2"))


@functools.cache
def _cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:  # not Linux
        return ""


def _field(name: str) -> str | None:
    """The first CPU's ``name`` line of /proc/cpuinfo."""
    for line in _cpuinfo().splitlines():
        if line.startswith(name):
            return line.split(":", 1)[1].strip()
    return None


def cpu_model() -> str:
    """``model name`` from /proc/cpuinfo (e.g. ``AMD EPYC``), else what ``platform`` knows."""
    return _field("model name") or platform.processor() or platform.machine()


def cpu_flags() -> frozenset[str]:
    return frozenset((_field("flags") or "").split())


def has_bfloat16() -> bool:
    """Whether the CPU has bfloat16 units (AVX512_BF16 or AMX): what makes ``--precision bfloat16`` pay."""
    return bool(cpu_flags() & {"avx512_bf16", "amx_bf16"})


def cpu_summary() -> str:
    """``AMD EPYC, AVX2`` / ``…, AVX-512, VNNI, BF16``: the model and what decides kernel speed."""
    flags = cpu_flags()
    parts = [cpu_model()]
    parts += [name for flag, name in _ISAS if flag in flags][:1]
    if flags & {"avx512_vnni", "avx_vnni"}:
        parts.append("VNNI")
    if has_bfloat16():
        parts.append("BF16")
    return ", ".join(parts)
