"""Following a training run: one JSON line per event (for job runners), a progress bar on a terminal (rich)
or a log line per epoch and step when output goes to a file or CI, and the load average of the machine while
it trained (a training time means little without it).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from inference.cpuinfo import cpu_summary

log = logging.getLogger(__name__)


def interactive() -> bool:
    """Progress bars only on a terminal; plain log lines for files, pipes and CI (``IMGSERVE_PLAIN=1`` forces
    them on a terminal too)."""
    if os.environ.get("IMGSERVE_PLAIN") or os.environ.get("CI") or os.environ.get("TERM") == "dumb":
        return False
    return sys.stderr.isatty()


def console() -> Any:
    from rich.console import Console

    return Console(stderr=True)


@contextlib.contextmanager
def step(name: str) -> Iterator[None]:
    """One named stage (convert, quantize, evaluate, ...): a spinner then a tick on a terminal, a start and
    a done log line otherwise; the seconds it took either way."""
    t0 = time.perf_counter()
    if not interactive():
        log.info("%s ...", name)
        yield
        log.info("%s: done in %.1fs", name, time.perf_counter() - t0)
        return
    out = console()
    with out.status(f"{name} ...", spinner="dots"):
        yield
    out.print(f"[green]✓[/green] {name} [dim]({time.perf_counter() - t0:.1f}s)[/dim]")


def bar_columns(*middle: Any) -> tuple[Any, ...]:
    """The columns of every progress bar: description, bar, n/total, ``middle`` (e.g. running metrics),
    elapsed, ETA."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), *middle,
            TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn())


@contextlib.contextmanager
def bar(description: str, total: int, logger: logging.Logger = log) -> Iterator[Callable[[str], None]]:
    """``total`` steps (benchmark points, ...): yields ``report(line)``, called once per finished step. On a
    terminal the line is printed above a bar with steps done, elapsed time and ETA; otherwise it is an INFO
    line of ``logger`` (files, pipes, CI)."""
    if not interactive():
        yield logger.info
        return
    from rich.progress import Progress

    with Progress(*bar_columns(), console=console()) as progress:
        task = progress.add_task(description, total=total)

        def report(line: str) -> None:
            progress.console.print(line, markup=False, highlight=False)
            progress.advance(task)

        yield report


def machine_load(loads: list[float]) -> dict[str, Any]:
    """CPU count and load average (1 min) at the start, the highest seen at an epoch end, and the mean:
    training time means little without knowing whether other jobs shared the CPU."""
    return {
        "cpus": os.cpu_count(),
        "cpu": cpu_summary(),  # an AVX-512 and an AVX2 "AMD EPYC" trained the same epoch in 34 s and ~100 s
        "loadavg_1m_start": round(loads[0], 2),
        "loadavg_1m_max": round(max(loads), 2),
        "loadavg_1m_mean": round(sum(loads) / len(loads), 2),
    }


def progress_sink(
    path: Path, callback: Callable[[dict[str, Any]], None] | None
) -> Callable[[dict[str, Any]], None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("")

    def sink(event: dict[str, Any]) -> None:
        event = {"time": round(time.time(), 3), "loadavg_1m": round(os.getloadavg()[0], 2), **event}
        with path.open("a") as fh:
            fh.write(json.dumps(event) + "\n")
        if event["event"] == "epoch" and not interactive():  # on a terminal the batch bar shows it
            m = event["metrics"]
            log.info(
                "epoch %d/%d  loss %.4f  acc %.4f  val_loss %.4f  val_acc %.4f  (%.1fs, load %.1f)",
                event["epoch"],
                event["epochs"],
                m.get("loss", 0),
                m.get("accuracy", 0),
                m.get("val_loss", 0),
                m.get("val_accuracy", 0),
                event["epoch_seconds"],
                event["loadavg_1m"],
            )
        if callback is not None:
            callback(event)

    return sink


def load_during(progress: Path) -> dict[str, float] | None:
    """1-minute load average at the run's events (min/mean/max): was the CPU shared while it trained?"""
    try:
        loads = [json.loads(line)["loadavg_1m"] for line in progress.read_text().splitlines() if line.strip()]
    except (OSError, ValueError, KeyError):
        return None
    if not loads:
        return None
    return {"min": min(loads), "mean": round(sum(loads) / len(loads), 2), "max": max(loads)}


