"""training.progress.bar: a bar with the finished steps above it on a terminal, plain log lines elsewhere."""

from __future__ import annotations

import io
import logging

import pytest
from rich.console import Console

from training import progress


def test_plain_log_lines_when_not_a_terminal(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("IMGSERVE_PLAIN", "1")
    logger = logging.getLogger("bench-test")
    with caplog.at_level(logging.INFO, logger="bench-test"), progress.bar("points", 2, logger) as report:
        report("imgserve c=1 100 req/s")
        report("imgserve c=64 900 req/s")
    assert [r.getMessage() for r in caplog.records] == ["imgserve c=1 100 req/s", "imgserve c=64 900 req/s"]


def test_bar_with_lines_above_it_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    out = io.StringIO()
    monkeypatch.setattr(progress, "interactive", lambda: True)
    monkeypatch.setattr(progress, "console", lambda: Console(file=out, force_terminal=True, width=120))
    with progress.bar("fashion-mnist: imgserve", 3) as report:
        for c in (1, 8, 64):
            report(f"imgserve c={c}")
    text = out.getvalue()
    assert all(f"imgserve c={c}" in text for c in (1, 8, 64))
    assert "fashion-mnist: imgserve" in text and "3/3" in text
