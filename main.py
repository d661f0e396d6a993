"""Entry point: the window by default, headless commands otherwise (engines/cli.py lists them).

    python main.py [--preset NAME] [--autostart] [--quit-after S] [--screenshot F] ...
    python main.py list | train | sample | bench [--gui] | ... [--help]
    python main.py --help | --version

Installed (`pip install .`), this file is site-packages/genplayground/main.py and the
`genplayground` command calls `console()`, which puts that folder on sys.path first: app/,
engines/ and resources/ are then found exactly as in a checkout, while site-packages itself
gets only the one top-level name `genplayground` (see pyproject.toml).
"""
import os
import sys


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "bench" and "--gui" in argv:
        from app.bench import main as gui_bench
        return gui_bench([a for a in argv[1:] if a != "--gui"])
    from engines import cli
    if argv and argv[0] in cli.names():
        return cli.main(argv)
    if argv and argv[0] in ("-h", "--help", "-V", "--version"):
        from app.main import add_arguments as window_options  # argparse only: no Qt is imported
        return cli.main(argv, window_options=window_options)
    from app.main import main as gui_main
    return gui_main(argv)


def console() -> int:
    """The installed `genplayground` command (pyproject.toml, [project.scripts])."""
    here = os.path.dirname(os.path.abspath(__file__))
    if here not in sys.path:
        sys.path.insert(0, here)
    return main()


if __name__ == "__main__":
    sys.exit(main())
