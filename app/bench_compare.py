"""`python main.py bench --gui --compare N [--seconds S] [--json F]`: compare mode's benchmark.

N runs (ddpm, ncsn, score_sde, dsm: the first N) train side by side on moons in the comparison
window, offscreen, every panel visible. Measured over S seconds of training, after the runs are
built and a warm-up second:
  - event-loop lateness p99, from the window's 10 ms heartbeat      goal <= 16 ms
  - window frame rate: the frame loop's passes per second (and those that redrew a panel)   goal >= 24 fps
  - each run's training steps and steps/s, and the fair share's spread (equal steps: max/min).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

FAMILIES = ("ddpm", "ncsn", "score_sde", "dsm")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python main.py bench --gui --compare N")
    p.add_argument("--compare", type=int, required=True, choices=(2, 3, 4), help="number of runs side by side")
    p.add_argument("--seconds", type=float, default=20.0, help="length of the measurement")
    p.add_argument("--dataset", default="moons")
    p.add_argument("--json", default=None, help="write the results as JSON to this file")
    args, _ = p.parse_known_args(argv)
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from .worker import configure_process
    configure_process()
    from PySide6 import QtCore, QtWidgets

    from engines.compare import make
    from engines.config import RunConfig

    from . import theme
    from .compare.window import CompareWindow

    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication([sys.argv[0]])
    theme.apply(app)
    comp = make(RunConfig(dataset=args.dataset, family=FAMILIES[0]), list(FAMILIES[:args.compare]))
    win = CompareWindow(comp, autostart=True)
    win.resize(1600, 1000)
    win.show()

    def pump(seconds):
        loop = QtCore.QEventLoop()
        QtCore.QTimer.singleShot(int(seconds * 1000), loop.quit)
        loop.exec()
    try:
        end = time.perf_counter() + 300
        while not all(r.info is not None for r in win.ctl.runs):
            if time.perf_counter() > end:
                raise TimeoutError("the runs were not built within 300 s")
            pump(0.1)
        pump(1.0)
        win.heartbeat.reset()
        s0 = [r.step for r in win.ctl.runs]
        f0, k0, t0 = win.frames, win.ticks, time.perf_counter()
        pump(args.seconds)
        dt = time.perf_counter() - t0
        steps = [r.step - a for r, a in zip(win.ctl.runs, s0)]
        res = dict(runs=[r.spec.label for r in win.ctl.runs], seconds=round(dt, 1),
                   ui_lateness_p99_ms=round(win.heartbeat.percentile(99), 2),
                   frames_per_s=round((win.ticks - k0) / dt, 1), drawn_frames_per_s=round((win.frames - f0) / dt, 1),
                   steps=steps, steps_per_s=[round(s / dt, 1) for s in steps],
                   fair_spread=round(max(steps) / max(min(steps), 1), 2),
                   threads_per_run=win.ctl.threads(), concurrent_trainers=win.ctl.share.slots,
                   load_avg=list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
                   cpus=os.cpu_count(), stats=win.run_stats())
    finally:
        win.shutdown()
        win.close()
    print(f"compare mode, {args.compare} runs on {args.dataset}, {res['seconds']} s, all panels visible")
    print(f"  event-loop lateness p99   {res['ui_lateness_p99_ms']:8.1f} ms   goal <= 16 ms")
    print(f"  window frame rate         {res['frames_per_s']:8.1f} fps  goal >= 24 fps  (frame loop; "
          f"{res['drawn_frames_per_s']:.1f} of them redrew a panel)")
    for lab, s, r in zip(res["runs"], res["steps"], res["steps_per_s"]):
        print(f"  {lab:<12} {s:8d} steps  {r:8.1f} steps/s")
    print(f"  fair share (equal steps): max/min steps {res['fair_spread']}; {res['concurrent_trainers']} trainer(s) "
          f"at a time, {res['threads_per_run']} torch thread(s) each; {res['cpus']} cores, load {res['load_avg']}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=2)
    return 0
