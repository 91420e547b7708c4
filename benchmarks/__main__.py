"""``python -m benchmarks run|report|load|corpus|targets`` (see benchmarks/cli.py)."""

import sys

from .cli import main

sys.exit(main())
