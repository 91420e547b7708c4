"""Every flag of every subcommand says what it does, and ``imgserve --version`` answers (issue 15)."""

from __future__ import annotations

import argparse
import subprocess
import sys

from imgserve.cli import build_parser
from inference.version import __version__


def _walk(parser: argparse.ArgumentParser, path: str) -> list[tuple[str, argparse.ArgumentParser]]:
    out = [(path, parser)]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                out += _walk(sub, f"{path} {name}")
    return out


def test_every_option_of_every_subcommand_has_help() -> None:
    parsers = _walk(build_parser(), "imgserve")
    assert len(parsers) >= 10  # the commands and the models actions are all there
    missing = [
        f"{path} {'/'.join(action.option_strings) or action.dest}"
        for path, parser in parsers
        for action in parser._actions
        if not isinstance(action, argparse._SubParsersAction | argparse._HelpAction)
        and not (action.help and action.help.strip() and action.help != argparse.SUPPRESS)
    ]
    assert not missing, f"options without help text: {missing}"


def test_version_flag_prints_the_package_version() -> None:
    r = subprocess.run([sys.executable, "-m", "imgserve", "--version"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == f"imgserve {__version__}", (r.stdout, r.stderr)
