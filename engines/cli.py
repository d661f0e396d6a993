"""Headless commands: a small registry of subcommands (DESIGN.md, "Command line").

    python main.py COMMAND [OPTIONS]        (`genplayground COMMAND ...` once installed)
    python main.py --help | --version

Adding a command = one module + one row in COMMANDS below. The module exposes

    def add_arguments(parser: argparse.ArgumentParser) -> None
        # every option gets help text; the formatter appends its default; options with a finite
        # set of values get choices=...; a default of None must say in the help what it means
    def run(args: argparse.Namespace) -> int
        # the exit status: 0 done, 1 the work itself failed (e.g. training diverged)

and keeps the Unix contract (tests/engines/test_cli.py checks every row's help texts, and the
whole contract on list/train/sample/bench):
  - progress goes to stderr (`progress(...)`); stdout carries only the result, for the commands
    that compute something ONE JSON object printed last (`emit_json(...)`);
  - bad input raises ConfigError / ValueError / OSError (or CLIError) with a message naming the
    option; `main` prints it as one line `error: ...` on stderr and returns 2, never a traceback.
    Any other exception is also one line, status 1 (GENPLAYGROUND_DEBUG=1 re-raises it);
  - the module may import torch at the top: it is imported only when its command runs or its
    --help is asked for, so `--help` and `--version` stay fast. This file imports no torch.
  - a command that trains or samples sets torch's thread count once, engines.run.configure_threads
    (a Run never does: two runs in one process would fight over it).

main.py sends every COMMANDS name here (and `bench --gui` to app/bench.py); with no command it
opens the window, whose options app/main.py declares and `--help` lists beside the commands.
"""
from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import re
import sys
import time
from dataclasses import dataclass

from .resources import version


@dataclass(frozen=True)
class Command:
    name: str        # the word after main.py
    module: str      # importable module with add_arguments(parser) and run(args) -> int
    help: str        # one line for `--help`


COMMANDS: tuple[Command, ...] = (
    Command("list", "engines.cli_list", "datasets, families, samplers and lesson presets"),
    Command("train", "engines.cli_train", "train a family on a dataset, save a RUN_DIR, print metrics as JSON"),
    Command("sample", "engines.cli_sample", "draw samples from a RUN_DIR to .npy/.csv, print metrics as JSON"),
    Command("bench", "engines.cli_bench", "throughput and time-to-quality table (`bench --gui`: the window's)"),
    Command("compare", "engines.compare.cli", "train 2-4 runs side by side on one dataset, print the comparison table"),
    Command("lab", "engines.lab", "every applicable sampler at several NFE budgets on a run or the exact oracle"),
    Command("sweep", "engines.sweep", "a grid of headless runs (schedules x samplers x seeds ...) -> one CSV + JSON table"),
)


def names() -> list[str]:
    return [c.name for c in COMMANDS]


class CLIError(Exception):
    """Bad command-line input that is not a config option (a missing file, a clash of flags)."""


class HelpFormatter(argparse.HelpFormatter):
    """Appends "(default: X)" to every option's help, except flags and None defaults, whose help
    says in words what happens when the option is left out."""

    def _get_help_string(self, action):
        text = action.help or ""
        default = action.default
        if ("%(default)" in text or default in (None, False, [], "") or default is argparse.SUPPRESS
                or not action.option_strings or isinstance(action, argparse._VersionAction)):
            return text
        return text + " (default: %(default)s)"


class OneLineParser(argparse.ArgumentParser):
    """Usage errors as one line on stderr (exit 2), like every other error of the CLI."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {one_line(message)} (see --help)\n")


def one_line(text) -> str:
    return re.sub(r"\s*\n\s*", "; ", str(text)).strip()


def progress(message: str) -> None:
    """A progress line on stderr (stdout is kept for the result)."""
    print(message, file=sys.stderr, flush=True)


def _plain(v):
    """JSON-safe values: numpy / torch scalars to Python numbers, NaN and inf to null (jq and
    strict JSON readers refuse NaN)."""
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if hasattr(v, "tolist") and not isinstance(v, (str, bytes)):
        return _plain(v.tolist())
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def emit_json(obj) -> None:
    """The command's result: one JSON object on one line of stdout."""
    print(json.dumps(_plain(obj)), flush=True)


def parse_key_values(pairs, flag: str = "--set") -> dict:
    """["k=v", ...] -> {k: v} (strings; the config builders coerce and check them)."""
    out = {}
    for p in pairs or []:
        if "=" not in p:
            raise CLIError(f"{flag} expects KEY=VALUE, got {p!r}")
        k, v = p.split("=", 1)
        out[k.strip()] = v.strip()
    return out


def fresh_run_dir(family: str, dataset: str, root: str = "runs", now: float | None = None) -> str:
    """runs/<family>-<dataset>-<YYYYmmdd-HHMMSS>, with -2, -3, ... if that already exists.
    A dataset given as a file path contributes its file name without the extension."""
    stem = os.path.splitext(os.path.basename(os.path.normpath(dataset)))[0] or "data"
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", stem)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(time.time() if now is None else now))
    base = os.path.join(root, f"{family}-{stem}-{stamp}")
    path, k = base, 2
    while os.path.exists(path):
        path, k = f"{base}-{k}", k + 1
    return path


def build_parser(window_options=None, load: str | None = None) -> argparse.ArgumentParser:
    """The top-level parser. window_options(group): the window's options (app/main.py declares
    them; passed in so that engines/ never imports app/). load: the command whose module adds its
    options (only that module is imported)."""
    p = OneLineParser(prog=prog_name(), formatter_class=HelpFormatter,
                      description="Generative-model playground. With no command: the window "
                                  "(default lesson: moons + DDPM). Progress goes to stderr; commands "
                                  "that compute something print one JSON object on stdout.")
    p.add_argument("-V", "--version", action="version", version=f"%(prog)s {version()}",
                   help="print the version and exit")
    if window_options is not None:
        window_options(p.add_argument_group("window options (no command)"))
    sub = p.add_subparsers(dest="command", metavar="COMMAND", title="commands",
                           parser_class=OneLineParser)
    for c in COMMANDS:
        sp = sub.add_parser(c.name, help=c.help, description=c.help, formatter_class=HelpFormatter)
        if c.name == load:
            importlib.import_module(c.module).add_arguments(sp)
    return p


def prog_name() -> str:
    name = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    return name if name and name not in ("-c", "__main__.py", "pytest") and not name.startswith("pytest") else "main.py"


def main(argv=None, window_options=None) -> int:
    """Runs one command; returns the exit status (0 done, 1 failed, 2 bad input)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((c for c in COMMANDS if argv and argv[0] == c.name), None)
    try:
        parser = build_parser(window_options, load=command.name if command else None)
        args = parser.parse_args(argv)
    except SystemExit as e:             # --help, --version, or a usage error already printed
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 2)
    except ImportError as e:
        print(f"error: the {command.name if command else ''} command cannot load: {one_line(e)}", file=sys.stderr)
        return 1
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    module = importlib.import_module(command.module)
    from .config import ConfigError
    try:
        return int(module.run(args) or 0)
    except BrokenPipeError:           # the reader went away (`... | head`): stop quietly, as Unix tools do
        try:                          # and keep the interpreter's final flush from failing too
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError, AttributeError):
            pass
        return 1
    except (CLIError, ConfigError, ValueError, OSError) as e:
        if os.environ.get("GENPLAYGROUND_DEBUG"):
            raise
        print(f"error: {one_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # a bug: still one line for the user, the traceback on request
        if os.environ.get("GENPLAYGROUND_DEBUG"):
            raise
        print(f"error: {type(e).__name__}: {one_line(e)} (GENPLAYGROUND_DEBUG=1 shows where)", file=sys.stderr)
        return 1
