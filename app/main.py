"""`python main.py [--preset NAME] [--family F] [--dataset D] [--autostart] [--quit-after S] [--screenshot FILE]`

Opens the window (default lesson: moons + DDPM). With --quit-after the window closes itself
after S seconds (saving --screenshot just before); with --quit-after or --stats, one line of
key=value stats goes to stdout on exit (steps, steps_per_s, fps, ui_lateness_p99_ms,
peak_rss_mb, ...). Threads are stopped before the QApplication quits, so the interpreter exits
with code 0. Before the QApplication exists, `platform_check` makes sure the xcb platform
plugin can load (a missing system library is one line and exit 2, not a Qt abort).
"""
from __future__ import annotations

import gc
import os
import sys


def add_arguments(p):
    """The window's options, on a parser or an argument group (`python main.py --help` lists them
    beside the headless commands, engines/cli.py)."""
    p.add_argument("--preset", default=None, metavar="NAME|PATH",
                   help="open a lesson from resources/presets (name or path of a .toml; default: moons_ddpm)")
    p.add_argument("--autostart", action="store_true", help="start training at once")
    p.add_argument("--quit-after", type=float, default=None, metavar="S",
                   help="close after S seconds and print the stats line (default: stay open)")
    p.add_argument("--stats", action="store_true", help="print one line of key=value run statistics on exit")
    p.add_argument("--screenshot", default=None, metavar="FILE", help="save the window as PNG just before quitting")
    p.add_argument("--size", default=None, metavar="WxH", help="window size (default 1600x1000)")
    p.add_argument("--family", default=None, metavar="NAME", help="model family (python main.py list); "
                   "overrides the preset's")
    p.add_argument("--dataset", default=None, metavar="NAME|PATH", help="dataset name, data file or image folder; "
                   "overrides the preset's")
    p.add_argument("--present", action="store_true", help="presentation mode: full screen, large type, light "
                   "high-contrast theme, only the lesson's panels (F11 toggles it)")
    p.add_argument("--compare", default=None, metavar="F1,F2,...",
                   help="train 2-4 runs side by side on one dataset: family names (ddpm,ncsn,score_sde) or "
                        "family:key=value items (ddpm:schedule=linear,ddpm:schedule=cosine); a preset with a "
                        "[compare] table opens a comparison too (default: one run)")


def parse_args(argv):
    from engines.cli import HelpFormatter, OneLineParser
    p = OneLineParser(prog="python main.py", formatter_class=HelpFormatter,
                      description="Generative-model playground (the window). Headless commands and "
                                  "every option: python main.py --help.")
    add_arguments(p)
    return p.parse_args(argv)


def stats_line(stats: dict) -> str:
    return " ".join(f"{k}={v}" for k, v in stats.items())


def main(argv=None) -> int:
    import signal
    interrupted = []            # Ctrl+C while starting up: the window opens and closes at once (exit 0)
    signal.signal(signal.SIGINT, lambda *a: interrupted.append(True))
    args = parse_args(list(sys.argv[1:] if argv is None else argv))
    from .platform_check import check as platform_problem
    problem = platform_problem()          # first (no torch import yet): Qt would abort (exit 134)
    if problem:
        print(problem, file=sys.stderr)
        return 2
    from .worker import configure_process
    configure_process()         # once per process (a Run never sets it): all cores but one, the GUI keeps one
    from . import presets
    if args.preset and not os.path.isfile(presets.path(args.preset)):
        print(f"error: no preset named {args.preset!r}; presets: {', '.join(presets.names()) or '-'}",
              file=sys.stderr)
        return 2
    from engines import data as D
    from engines import families
    if args.family and args.family not in families.names():
        print(f"error: no family named {args.family!r}; families: {', '.join(families.names())}", file=sys.stderr)
        return 2
    if args.dataset and args.dataset not in D.names() and not os.path.exists(args.dataset):
        print(f"error: no dataset named {args.dataset!r} and no such file; datasets: {', '.join(D.names())}",
              file=sys.stderr)
        return 2
    size = None
    if args.size:
        try:
            w, h = (int(v) for v in args.size.lower().split("x"))
            size = (w, h)
        except ValueError:
            print(f"error: --size expects WxH, e.g. 1600x1000, got {args.size!r}", file=sys.stderr)
            return 2

    from engines.config import ConfigError
    from .compare import comparison_from_args
    try:
        comparison = comparison_from_args(args)      # --compare ITEMS, or a [compare] preset
    except (ConfigError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    from PySide6 import QtCore, QtWidgets

    from . import theme
    from .main_window import MainWindow

    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication([sys.argv[0]])
    app.setApplicationName("genplayground")
    theme.apply(app)
    if comparison is not None:
        from .compare import preset_view
        from .compare.window import CompareWindow
        win = CompareWindow(comparison, autostart=args.autostart, view=preset_view(args))
    else:
        from . import presets
        from .classroom import install
        from .settings import Settings
        # a scripted run (--quit-after) neither reads nor writes what the window remembers
        settings = None if args.quit_after is not None else Settings()
        preset = args.preset
        if preset is None and settings is not None and settings.last_lesson in presets.names():
            preset = settings.last_lesson
        win = MainWindow(preset=preset, autostart=args.autostart)
        install(win, settings, present=args.present)
    if (args.family or args.dataset) and comparison is None:
        from engines.config import ConfigError
        try:
            win.choose(family=args.family, dataset=args.dataset)
        except (ConfigError, ValueError) as e:
            win.show_error("Could not open this family or dataset", str(e))
    if size:
        win.resize(*size)
    win.show()
    result = dict(code=0, stats=None)

    def finish():
        if args.screenshot:
            app.processEvents()
            if not win.screenshot(args.screenshot):
                print(f"error: could not write the screenshot {args.screenshot}", file=sys.stderr)
                result["code"] = 1
        result["stats"] = win.run_stats()
        win.shutdown()
        win.close()
        app.quit()

    def before_quit():
        if result["stats"] is None:
            result["stats"] = win.run_stats()
        win.shutdown()          # threads end before the application does

    app.aboutToQuit.connect(before_quit)
    # Ctrl+C in the terminal closes the window as its Quit would (exit code 0). Python runs a
    # signal handler only between bytecodes, so a timer wakes the interpreter now and then.
    signal.signal(signal.SIGINT, lambda *a: QtCore.QTimer.singleShot(0, win.close))
    sigint_tick = QtCore.QTimer()
    sigint_tick.timeout.connect(lambda: None)
    sigint_tick.start(200)
    if interrupted:
        QtCore.QTimer.singleShot(0, win.close)
    if args.quit_after is not None:
        QtCore.QTimer.singleShot(int(max(args.quit_after, 0.0) * 1000), finish)
    rc = app.exec()
    before_quit()
    if args.quit_after is not None or args.stats:
        print(stats_line(result["stats"]), flush=True)
    win.deleteLater()
    del win
    app.processEvents()
    gc.collect()
    return int(rc or result["code"])
