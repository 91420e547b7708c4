"""``imgserve bench run|report|load|corpus|targets|prepare``: the benchmark suite (``benchmarks/``), same
arguments as ``python -m benchmarks``. See docs/benchmarks.md."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    from benchmarks.cli import add_subcommands  # light: the heavy imports happen when an action runs

    p = sub.add_parser("bench", help="load-test imgserve against its in-process limit and peer servers")
    add_subcommands(p)
