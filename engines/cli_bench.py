"""`bench`: training and sampling throughput and time-to-quality (engines/bench.py); the table on
stdout, every figure in --json. `bench --gui` is the window's own benchmark (main.py sends it to
app/bench.py before this parser sees it)."""
from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", default="bench.json", metavar="FILE", help="also write every figure to FILE")
    parser.add_argument("--quick", action="store_true", help="a short run (seconds, for tests)")
    parser.add_argument("--families", default=None, metavar="A,B",
                        help="comma-separated subset of families (default: every available family)")
    parser.add_argument("--gui", action="store_true",
                        help="the window's own benchmark instead (python main.py bench --gui --help)")


def run(args) -> int:
    from .bench import main
    return main(args)
