"""`python main.py bench --gui [--json F] [--seconds S]`: the window's own benchmark, offscreen.

1. Training throughput inside the app (all panels visible, drawing at ~30 Hz, samples and
   particles refreshing) against headless Run.train on the same config in the same process,
   measured in alternating rounds so that machine load hits both alike.   goal >= 0.85x
2. Event-loop lateness p99 while training at full speed, from a 10 ms heartbeat QTimer
   on the GUI thread.                                                      goal <= 16 ms
3. Panel frame rate with 20,000 particles, a 32x32 arrow field and a 1M-point loss
   history: every panel gets new data and the window is repainted, frame after frame.
                                                                           goal >= 30 fps
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import dataclass

import numpy as np


def _pump(app, seconds: float):
    """Run the event loop for `seconds`, as app.exec() would: a nested QEventLoop that sleeps
    until the next event (polling processEvents() in a Python loop would itself fight the
    worker for the GIL a thousand times a second)."""
    from PySide6 import QtCore
    loop = QtCore.QEventLoop()
    QtCore.QTimer.singleShot(int(seconds * 1000), loop.quit)
    loop.exec()


def _wait(app, cond, timeout=60.0):
    end = time.perf_counter() + timeout
    while not cond():
        if time.perf_counter() > end:
            raise TimeoutError("the run did not become ready")
        app.processEvents()
        time.sleep(0.005)


def headless_rate(cfg, seconds: float) -> tuple[float, float]:
    """Run.train steps/s for `seconds`, after a warm-up, on a fresh Run of the same config;
    and the share of one core this thread got meanwhile."""
    from engines.run import Run
    run = Run(cfg)
    run.train(20)
    n, t0, c0 = 0, time.perf_counter(), time.thread_time()
    while time.perf_counter() - t0 < seconds:
        n += run.train(20)
    dt = time.perf_counter() - t0
    return n / dt, (time.thread_time() - c0) / dt


@dataclass
class Round:
    """One measured round of the window training."""
    steps_per_s: float
    fps: float                   # the frame loop's passes per second (its cadence)
    drawn_fps: float             # passes in which a panel redrew (fewer when nothing changed)
    late_ms: list                # every heartbeat tick's lateness
    shares: dict                 # worker seconds per job kind / s, "cpu"; and "gui_cpu"


def app_round(app, win, seconds: float, settle: float = 1.0) -> Round:
    """What the window does while it trains for `seconds` (after `settle` seconds)."""
    win.set_playing(True)
    _pump(app, settle)                            # settle (chunk size, first samples)
    s0, f0, k0 = win.step, win.frames, win.ticks
    tm0 = dict(win.worker.timing)
    win.heartbeat.reset()
    c0 = time.thread_time()
    t0 = time.perf_counter()
    _pump(app, seconds)
    dt = time.perf_counter() - t0
    gui_cpu = (time.thread_time() - c0) / dt
    tm1 = win.worker.timing
    shares = {k: (tm1[k] - tm0.get(k, 0.0)) / dt for k in tm1}
    shares["gui_cpu"] = gui_cpu
    r = Round(steps_per_s=(win.step - s0) / dt, fps=(win.ticks - k0) / dt, drawn_fps=(win.frames - f0) / dt,
              late_ms=list(win.heartbeat.late_ms), shares=shares)
    win.set_playing(False)
    _pump(app, 0.3)
    return r


def paired_rounds(app, win, cfg, seconds: float, rounds: int) -> dict:
    """`rounds` pairs of (the window training, a headless Run.train of the same config at the
    same torch thread count), back to back, so that what the machine's neighbours do hits both
    alike: on a shared 2-core VM, headless steps/s alone varied by +-15% between 2-second windows.
    The ratio is the median of the per-pair ratios; lateness p99 is over every heartbeat tick of
    every round pooled (not the worst round's p99, which grows with the number of rounds). The
    frame rate is the frame loop's cadence: a frame that finds nothing new (the particle
    animation holding its last frame for 0.8 s, say) draws nothing and is still on time."""
    app_rounds, head_rates, head_cpus = [], [], []
    for _ in range(rounds):
        app_rounds.append(app_round(app, win, seconds))
        h, hc = headless_rate(cfg, seconds)
        head_rates.append(h), head_cpus.append(hc)
    app_rates = [r.steps_per_s for r in app_rounds]
    ratios = [a / max(h, 1e-9) for a, h in zip(app_rates, head_rates)]
    late = [x for r in app_rounds for x in r.late_ms]
    return dict(app_rate=float(np.median(app_rates)), head_rate=float(np.median(head_rates)),
                ratio=float(np.median(ratios)), ratios=ratios, app_rates=app_rates, head_rates=head_rates,
                head_cpu=float(np.median(head_cpus)), fps=float(np.median([r.fps for r in app_rounds])),
                drawn_fps=float(np.median([r.drawn_fps for r in app_rounds])),
                late_p99=float(np.percentile(late, 99)) if late else 0.0, late_ticks=len(late),
                shares=[r.shares for r in app_rounds])


def frame_rate(app, win, seconds: float = 4.0, particles: int = 20000, res: int = 32, history: int = 1_000_000):
    """Frames/s of the panels themselves: new particles, a new arrow field and 100 new loss
    points every frame (the loss plot redraws its 1M points at its own 5 Hz, as in the app);
    each frame ends with the repaints they caused (processEvents)."""
    from engines import messages as M
    from engines.messages import Snapshot
    rng = np.random.default_rng(0)
    win.set_playing(False)
    win.frame_timer.stop()                        # this loop is the frame loop now
    if win.worker is not None:
        win.worker.stop()
    # a 1M-point loss history
    steps = np.arange(1, history + 1, dtype=np.float64)
    loss = 0.3 + 0.7 * np.exp(-steps / 2e5) + 0.05 * rng.random(history)
    win.losses.reset(win.info)
    win.losses.append(steps, dict(loss=loss))
    # a 20,000-particle trajectory
    F = 60
    base = rng.standard_normal((particles, 2)).astype(np.float32)
    frames = np.stack([base * (1 - f / F) + np.float32(f / F) * np.sign(base) for f in range(F)])
    traj = M.Trajectory(frames=frames, i=np.arange(F, dtype=float), t=np.linspace(99, 0, F),
                        sigma=np.linspace(3, 0.01, F), nfe=F, steps=F, seconds=1.0, step=history, sampler="bench")
    win.particles.n.setValue(particles)
    win.particles.loop.setChecked(False)
    win.particles.on_message(traj)
    xs = ys = np.linspace(-2, 2, res)
    gx, gy = np.meshgrid(xs, ys)
    app.processEvents()
    n, t0 = 0, time.perf_counter()
    step = history
    times = []
    while time.perf_counter() - t0 < seconds:
        t1 = time.perf_counter()
        ph = n * 0.1
        score = np.stack([-gx + np.sin(ph) * gy, -gy - np.sin(ph) * gx], -1)
        new = np.arange(step + 1, step + 101)
        step += 100
        snap = Snapshot(step=step, wall_time=0.0, loss_steps=new, losses=dict(loss=0.3 + 0.01 * rng.random(100)),
                        lr=1e-3, steps_per_s=0.0,
                        field=dict(xs=xs, ys=ys, score=score, level=10, alpha_sigma=(0.9, 0.4)),
                        samples=base[: 2000] * (1 + 0.01 * n) if n % 30 == 0 else None,
                        metrics=dict(energy_distance_x_iid=2.0, samples_step=step) if n % 30 == 0 else {})
        win.ctl.dispatch(snap)
        win.particles.play_t0 = time.perf_counter() - (n % F) / F * 2.5   # a new particle frame each time
        for key, panel in win.panels.items():
            if win.panel_visible(key):
                panel.draw()
        app.processEvents()          # the repaints the new data asked for (only the dirty regions)
        times.append(time.perf_counter() - t1)
        n += 1
    dt = time.perf_counter() - t0
    arrows = win.field.arrow_count()
    return dict(fps=n / dt, frame_ms_p50=1000 * float(np.median(times)), frame_ms_p95=1000 * float(np.percentile(times, 95)),
                particles=win.particles.particle_count(), arrows=arrows, loss_points=len(win.losses.terms["loss"].raw))


def main(argv=None) -> int:
    if argv and "--compare" in argv:          # compare mode's benchmark (app/bench_compare.py)
        from .bench_compare import main as compare_bench
        return compare_bench(argv)
    p = argparse.ArgumentParser(prog="python main.py bench --gui")
    p.add_argument("--json", help="write the results as JSON to this file")
    p.add_argument("--seconds", type=float, default=3.0, help="length of each measurement round")
    p.add_argument("--rounds", type=int, default=None,
                   help="back-to-back app/headless pairs (default 5; 2 per preset with --all-presets)")
    p.add_argument("--all-presets", action="store_true", help="every lesson: app/headless, lateness, fps (bench_presets.py)")
    p.add_argument("--presets", default=None, help="with --all-presets: only these (comma-separated)")
    p.add_argument("--soak", type=float, default=None, metavar="S", help="train S seconds: RSS growth, fps at start and end")
    args = p.parse_args(argv)
    if args.all_presets:
        from .bench_presets import all_presets
        return all_presets(args.seconds, args.presets.split(",") if args.presets else None, args.json,
                           rounds=args.rounds or 2)
    if args.soak is not None:
        from .bench_presets import soak
        return soak(args.soak, args.json)
    from .worker import configure_process
    configure_process()
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

    from PySide6 import QtWidgets

    from . import theme
    from .main_window import MainWindow

    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication([sys.argv[0]])
    theme.apply(app)
    win = MainWindow()
    win.show()
    try:
        _wait(app, win.ready)
        _pump(app, 0.5)
        cfg = win.cfg
        visible = [k for k in win.panels if win.panel_visible(k)]
        args.rounds = args.rounds or 5
        pr = paired_rounds(app, win, cfg, args.seconds, args.rounds)
        fr = frame_rate(app, win, seconds=args.seconds)
    finally:
        win.shutdown()
        win.close()
    app_rate, head_rate, shares = pr["app_rate"], pr["head_rate"], pr["shares"]
    # Per CPU-second of the training thread: what the ratio is when the GUI thread has a core of
    # its own (on a machine whose other cores are busy, both threads share one and the GUI's CPU
    # time comes straight out of training). GIL waits are not CPU time, so they still count.
    app_cpu = float(np.median([s["cpu"] for s in shares]))
    head_cpu = pr["head_cpu"]
    per_cpu = (app_rate / max(app_cpu, 1e-9)) / (head_rate / max(head_cpu, 1e-9))
    import torch
    res = dict(
        machine=dict(platform=platform.platform(), cpus=os.cpu_count(), torch_threads=torch.get_num_threads(),
                     load_avg=list(os.getloadavg()) if hasattr(os, "getloadavg") else None),
        config=dict(family=cfg.family, dataset=cfg.dataset, batch=cfg.train.batch, panels_visible=visible),
        train_steps_per_s_app=round(app_rate, 1), train_steps_per_s_headless=round(head_rate, 1),
        app_over_headless=round(pr["ratio"], 3), rounds_app=[round(x, 1) for x in pr["app_rates"]],
        rounds_ratio=[round(x, 3) for x in pr["ratios"]],
        app_over_headless_per_cpu_second=round(per_cpu, 3), headless_thread_cpu_share=round(head_cpu, 3),
        rounds_headless=[round(x, 1) for x in pr["head_rates"]],
        ui_lateness_p99_ms=round(pr["late_p99"], 2), heartbeat_ticks=pr["late_ticks"],
        app_frames_per_s_while_training=round(pr["fps"], 1), app_drawn_frames_per_s=round(pr["drawn_fps"], 1),
        panel_fps=round(fr["fps"], 1), panel_frame_ms_p50=round(fr["frame_ms_p50"], 2),
        panel_frame_ms_p95=round(fr["frame_ms_p95"], 2),
        panel_load=dict(particles=fr["particles"], arrows=fr["arrows"], loss_points=fr["loss_points"]),
        worker_time_share={k: round(float(np.mean([s.get(k, 0.0) for s in shares])), 3) for k in shares[-1]},
    )
    rows = [
        ("training steps/s in the app (all panels)", f"{app_rate:,.0f}", ""),
        ("training steps/s headless (Run.train)", f"{head_rate:,.0f}", ""),
        (f"app / headless (median of {args.rounds} back-to-back pairs)", f"{pr['ratio']:.2f}x", ">= 0.85x"),
        ("app / headless per CPU-second of the training thread", f"{per_cpu:.2f}x", ""),
        (f"event-loop lateness p99 while training ({pr['late_ticks']:,} ticks)", f"{res['ui_lateness_p99_ms']:.1f} ms",
         "<= 16 ms"),
        ("window frames/s while training (frame loop; frames that redrew a panel)",
         f"{res['app_frames_per_s_while_training']:.0f} ({res['app_drawn_frames_per_s']:.0f})", ">= 24"),
        (f"panel frame rate ({fr['particles']:,} particles, {fr['arrows']} arrows, "
         f"{fr['loss_points']:,} loss points)", f"{fr['fps']:.0f} fps", ">= 30 fps"),
        ("panel frame time p50 / p95", f"{fr['frame_ms_p50']:.1f} / {fr['frame_ms_p95']:.1f} ms", ""),
        ("worker thread: " + ", ".join(f"{k} {100 * v:.0f}%" for k, v in res["worker_time_share"].items()
                                       if k not in ("cpu", "gui_cpu")), "", ""),
        ("CPU use: worker thread {:.0f}%, GUI thread {:.0f}%, headless thread {:.0f}% of one core".format(
            100 * res["worker_time_share"]["cpu"], 100 * res["worker_time_share"]["gui_cpu"], 100 * head_cpu), "", ""),
    ]
    w = max(len(r[0]) for r in rows)
    print(f"{'measure':<{w}}  {'value':>14}  goal")
    for name, val, goal in rows:
        print(f"{name:<{w}}  {val:>14}  {goal}")
    if res["machine"]["load_avg"]:
        print(f"(machine: {res['machine']['cpus']} cores, load average {res['machine']['load_avg'][0]:.1f}; "
              f"torch threads {res['machine']['torch_threads']})")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=2)
    return 0
