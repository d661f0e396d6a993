"""Entry point: the GUI by default, headless subcommands otherwise.

    python main.py [--preset NAME] [--autostart] [--quit-after S] [--screenshot F]
    python main.py list | train | sample | bench [--gui] ...
"""
import sys

CLI_COMMANDS = {"list", "train", "sample", "bench"}


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "bench" and "--gui" in argv:
        from app.bench import main as gui_bench
        return gui_bench([a for a in argv[1:] if a != "--gui"])
    if argv and argv[0] in CLI_COMMANDS:
        from engines.cli import main as cli_main
        return cli_main(argv)
    from app.main import main as gui_main
    return gui_main(argv)


if __name__ == "__main__":
    sys.exit(main())
