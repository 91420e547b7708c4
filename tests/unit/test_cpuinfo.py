"""inference.cpuinfo: the CPU named in training summaries, model cards and benchmark reports."""

from __future__ import annotations

import pytest

from inference import cpuinfo

AVX512 = "processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu sse4_2 avx avx2 avx512f avx512_vnni\n"
BF16 = AVX512.replace("avx512_vnni", "avx512_vnni avx512_bf16")
AVX2 = "processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu sse4_2 avx avx2 fma\n"


@pytest.mark.parametrize(("text", "summary"), [
    (AVX512, "AMD EPYC, AVX-512, VNNI"),
    (BF16, "AMD EPYC, AVX-512, VNNI, BF16"),
    (AVX2, "AMD EPYC, AVX2"),
])
def test_summary_names_the_model_and_the_widest_vector_isa(
    monkeypatch: pytest.MonkeyPatch, text: str, summary: str
) -> None:
    monkeypatch.setattr(cpuinfo, "_cpuinfo", lambda: text)
    assert cpuinfo.cpu_summary() == summary


def test_without_proc_cpuinfo_it_falls_back_to_platform(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cpuinfo, "_cpuinfo", lambda: "")
    assert cpuinfo.cpu_summary() and cpuinfo.cpu_flags() == frozenset()


def test_this_machine_is_described() -> None:
    assert cpuinfo.cpu_model() in cpuinfo.cpu_summary()
