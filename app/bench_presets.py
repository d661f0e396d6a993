"""`python main.py bench --gui --all-presets` and `python main.py bench --gui --soak S`.

--all-presets: every lesson in resources/presets, one after the other in one window (all
panels visible): training steps/s in the window against a headless Run.train of the same
config at the same torch thread count, event-loop lateness p99 and the window's frame rate
while training, and where the worker's time went (train / snapshot / field / views / samples /
particles). Goals: lateness p99 <= 16 ms, >= 24 fps, app/headless >= 0.85x.

--soak S: the default lesson trains for S seconds with every panel visible; resident memory
and frame rate over the first and the last minute (memory must stay flat: bounded loss
history, frames and samples capped by bytes).
"""
from __future__ import annotations

import json
import os
import sys
import time

import numpy as np

from .bench import _pump, _wait, paired_rounds

GOALS = dict(lateness_ms=16.0, fps=24.0, ratio=0.85)


def _window():
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6 import QtWidgets

    from . import theme
    from .main_window import MainWindow
    from .worker import configure_process
    configure_process()
    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication([sys.argv[0]])
    theme.apply(app)
    win = MainWindow()
    win.show()
    return app, win


def all_presets(seconds: float = 3.0, names=None, json_path=None, rounds: int = 2) -> int:
    from . import presets
    from .shell import rss_mb
    app, win = _window()
    rows = []
    try:
        _wait(app, win.ready, 300)
        for name in names or presets.names():
            try:
                win.apply_preset(name)
            except Exception as e:               # a preset this build cannot open: reported, not fatal
                rows.append(dict(preset=name, error=str(e)))
                continue
            _wait(app, lambda: win.ready() and win.ctl.cfg is not None and win.ctl.slot.building is None, 300)
            if not win.info.trainable:
                rows.append(dict(preset=name, error="nothing to train"))
                continue
            pr = paired_rounds(app, win, win.ctl.cfg, seconds, rounds)
            share = {k: float(np.mean([s.get(k, 0.0) for s in pr["shares"]])) for k in pr["shares"][-1]}
            rows.append(dict(preset=name, family=win.info.family, app_steps_per_s=round(pr["app_rate"], 1),
                             headless_steps_per_s=round(pr["head_rate"], 1), ratio=round(pr["ratio"], 3),
                             ratios=[round(r, 3) for r in pr["ratios"]],
                             lateness_p99_ms=round(pr["late_p99"], 1), fps=round(pr["fps"], 1),
                             drawn_fps=round(pr["drawn_fps"], 1), rss_mb=round(rss_mb()),
                             worker_share={k: round(v, 3) for k, v in share.items()}))
            _pump(app, 0.2)
    finally:
        win.shutdown()
        win.close()
    print(f"{'preset':28s} {'app/s':>8s} {'headless/s':>10s} {'ratio':>6s} {'p99 ms':>7s} {'fps':>5s} {'drawn':>5s}  worker time "
          f"(goals: ratio >= {GOALS['ratio']}, p99 <= {GOALS['lateness_ms']:g} ms, fps >= {GOALS['fps']:g})")
    for r in rows:
        if "error" in r:
            print(f"{r['preset']:28s} - {r['error']}")
            continue
        sh = ", ".join(f"{k} {100 * v:.0f}%" for k, v in r["worker_share"].items() if k not in ("cpu", "gui_cpu") and v >= 0.005)
        print(f"{r['preset']:28s} {r['app_steps_per_s']:8.1f} {r['headless_steps_per_s']:10.1f} {r['ratio']:6.2f} "
              f"{r['lateness_p99_ms']:7.1f} {r['fps']:5.0f} {r['drawn_fps']:5.0f}  {sh}")
    print(f"(machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f})")
    if json_path:
        with open(json_path, "w") as f:
            json.dump(rows, f, indent=2)
    return 0


def soak(seconds: float, json_path=None, window_s: float = 60.0) -> int:
    """Train the default lesson for `seconds`; RSS and frame rate at the start and the end."""
    from .shell import rss_mb
    app, win = _window()
    samples = []                                 # (t, rss MB, frames drawn, step, frame-loop passes)
    try:
        _wait(app, win.ready, 300)
        win.set_playing(True)
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            _pump(app, min(5.0, max(seconds / 12, 0.5)))      # >= 12 readings, every 5 s in a long soak
            samples.append((time.perf_counter() - t0, rss_mb(), win.frames, win.step, win.ticks))
        win.set_playing(False)
    finally:
        win.shutdown()
        win.close()
    s = np.asarray(samples, float)

    def fps_between(a, b, col=2):
        m = (s[:, 0] >= a) & (s[:, 0] <= b)
        part = s[m]
        return (part[-1, col] - part[0, col]) / max(part[-1, 0] - part[0, 0], 1e-9) if len(part) >= 2 else float("nan")
    w = min(window_s, seconds / 3)
    res = dict(seconds=seconds, steps=int(s[-1, 3]), rss_start_mb=round(s[min(2, len(s) - 1), 1], 1),
               rss_end_mb=round(s[-1, 1], 1), fps_start=round(fps_between(0, w), 1),
               fps_end=round(fps_between(seconds - w, seconds), 1),
               loop_fps_start=round(fps_between(0, w, 4), 1), loop_fps_end=round(fps_between(seconds - w, seconds, 4), 1))
    res["rss_growth_mb"] = round(res["rss_end_mb"] - res["rss_start_mb"], 1)
    print(" ".join(f"{k}={v}" for k, v in res.items()))
    if json_path:
        with open(json_path, "w") as f:
            json.dump(dict(res, samples=samples), f, indent=2)
    return 0
