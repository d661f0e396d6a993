"""Compare mode in the window: 2 and 4 runs, the shared x_T, changing and removing one run, the
live table against each run's own numbers, and a clean exit mid-training."""
import csv
import os
import subprocess
import sys
import threading

import pytest
import torch

from engines import samplers as S
from engines.compare import make
from engines.config import RunConfig

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
VIEW = dict(particles=48, samples=200)
SMALL = dict(T=20, hidden=16, depth=2)


def base(**kw):
    d = dict(dataset="moons", family="ddpm", options=dict(SMALL), train=dict(n_data=500, batch=64, seed=0))
    d.update(kw)
    return RunConfig(**d)


@pytest.fixture
def open_window(themed_app):
    wins = []

    def make_win(comp, autostart=True):
        from app.compare.window import CompareWindow
        w = CompareWindow(comp, autostart=autostart, view=VIEW)
        w.resize(1400, 900)
        w.show()
        wins.append(w)
        return w
    yield make_win
    for w in wins:
        w.shutdown(1.0)
        w.close()


def ready(win):
    return all(r.info is not None for r in win.ctl.runs)


def test_two_runs_train_side_by_side_with_equal_steps(open_window, wait_until):
    win = open_window(make(base(), "ddpm,ddpm:schedule=linear"))
    wait_until(lambda: ready(win), 120, "both runs built")
    assert len(win.ctl.runs) == 2 and len(win.losses.curves) == 2
    assert {r.info.family for r in win.ctl.runs} == {"ddpm"}
    # several turns each (a turn is `quantum` seconds of training, a few hundred tiny steps): a run
    # that starved the other would time out here
    wait_until(lambda: min(win.ctl.share.steps[r.index] for r in win.ctl.runs) >= 400, 240, "both runs training")
    steps = [win.ctl.share.steps[r.index] for r in win.ctl.runs]
    # equal-steps sharing: the leader is ahead by at most about one turn
    per_turn = max(win.ctl.share.steps[r.index] / max(win.ctl.share.seconds[r.index], 1e-9)
                   for r in win.ctl.runs) * win.ctl.turns.quantum
    assert max(steps) - min(steps) <= 1.5 * per_turn + 50, (steps, per_turn)
    # the same panels per run, and one loss curve per run
    assert all(len(win.losses.series(r.key)[0]) > 0 for r in win.ctl.runs)
    win.fair_box.setCurrentIndex(1)                       # the user's choice: equal training time
    assert win.ctl.share.mode == "time" and win.ctl.comp.fair == "time"
    t0 = list(win.ctl.share.seconds)
    wait_until(lambda: all(a > b for a, b in zip(win.ctl.share.seconds, t0)), 120, "both runs still training")


def test_four_runs_open_and_remove_one(open_window, wait_until):
    comp = make(base(), "ddpm,ncsn:hidden=16,score_sde:hidden=16,dsm:hidden=16")
    win = open_window(comp, autostart=False)
    wait_until(lambda: ready(win), 180, "four runs built")
    assert [r.info.family for r in win.ctl.runs] == ["ddpm", "ncsn", "score_sde", "dsm"]
    assert win.columns_layout.count() == 4
    gone = win.ctl.runs[2]
    old_worker = gone.slot.worker
    win.ctl.remove_run(gone)
    assert [r.spec.cfg.family for r in win.ctl.runs] == ["ddpm", "ncsn", "dsm"]
    assert gone.key not in win.losses.curves and gone.column.isHidden()
    assert win.ctl.turns.share.active[gone.index] is False
    wait_until(lambda: not old_worker.is_alive(), 30, "the removed run's thread to end")
    wait_until(lambda: not win.ctl.retired, 30, "the removed run to be reaped")
    win.ctl.step_once(3)                                   # Step acts on every run: exactly 3 steps each
    wait_until(lambda: [r.step for r in win.ctl.runs] == [3, 3, 3], 120, "one Step of 3 on every run")
    workers = [r.slot.worker for r in win.ctl.runs]
    win.ctl.reset_all()                                    # Reset: fresh runs from the same seed
    wait_until(lambda: all(r.slot.worker is not None and r.slot.worker not in workers and r.info is not None
                           for r in win.ctl.runs), 120, "the reset runs")
    assert [r.step for r in win.ctl.runs] == [0, 0, 0]
    assert all(win.ctl.share.steps[r.index] == 0 for r in win.ctl.runs)    # fresh places in the share
    assert sum(win.ctl.share.active) == 3
    win.ctl.set_playing(True)
    wait_until(lambda: min(r.step for r in win.ctl.runs) > 0, 180, "the three runs training")
    win._frame()
    assert win.table_view.current is not None and win.table_view.table.rowCount() == 3
    assert [r.label for r in win.ctl.table().rows] == ["ddpm", "ncsn hidden=16", "dsm hidden=16"]


class StartSpy:
    """Records the x every engines.samplers function starts from, per worker thread."""

    def __init__(self, monkeypatch):
        self.starts = {}
        self.lock = threading.Lock()
        for name in dir(S):
            fn = getattr(S, name)
            if callable(fn) and not name.startswith("_") and getattr(fn, "__module__", "") == S.__name__:
                monkeypatch.setattr(S, name, self._wrap(fn))

    def _wrap(self, fn):
        def spy(model_fn, x, *a, **kw):
            if torch.is_tensor(x) and x.is_floating_point() and len(x) == VIEW["particles"]:
                with self.lock:
                    self.starts.setdefault(threading.current_thread().name, x.detach().clone())
            return fn(model_fn, x, *a, **kw)
        return spy


def test_runs_share_the_initial_noise(open_window, wait_until, monkeypatch):
    """DDPM and DDIM-5 (and a different training seed) start their particles from one x_T."""
    spy = StartSpy(monkeypatch)
    win = open_window(make(base(), "sampler=ddpm,sampler=ddim:sampler.steps=5,seed=5"), autostart=False)
    wait_until(lambda: ready(win), 120, "runs built")
    names = [f"session-{r.slot.worker.run_id}" for r in win.ctl.runs]
    wait_until(lambda: all(n in spy.starts for n in names), 120, "every run's particles")
    xs = [spy.starts[n] for n in names]
    assert torch.equal(xs[0], xs[1]) and torch.equal(xs[0], xs[2])
    wait_until(lambda: all(r.column.particles.traj is not None for r in win.ctl.runs), 60, "trajectories")
    # the scrubber aligns DDPM's 20 steps with DDIM's 5 by noise level; p=1 is every final frame
    frames = win.scrubber().frames(1.0)
    assert frames == [len(r.column.particles.traj.frames) - 1 for r in win.ctl.runs]
    win.scrub.slider.setValue(500)
    assert "σ ≈" in win.scrub.label.text()


def test_changing_one_run_leaves_the_others(open_window, wait_until):
    win = open_window(make(base(), "ddpm,ddpm:schedule=linear"))
    wait_until(lambda: ready(win) and min(r.step for r in win.ctl.runs) > 0, 180, "training")
    keep, change = win.ctl.runs
    keep_worker, keep_cfg = keep.slot.worker, keep.spec.cfg
    assert not win.ctl.change_run(change, "ddpm:schedule=nosuch")          # bad: shown, nothing changes
    assert "nosuch" in win.ctl.errors[-1][1] and change.spec.cfg.options["schedule"] == "linear"
    old = change.slot.worker
    assert win.ctl.change_run(change, "ddpm:schedule=sigmoid")
    wait_until(lambda: change.slot.worker is not old and change.info is not None
               and change.slot.worker.cfg.options["schedule"] == "sigmoid", 120, "the changed run")
    assert keep.slot.worker is keep_worker and keep.spec.cfg is keep_cfg
    s0 = keep.step
    wait_until(lambda: keep.step > s0, 120, "the untouched run to go on training")
    assert change.column.label == "schedule=sigmoid"


def test_table_holds_each_runs_own_numbers(open_window, wait_until, tmp_path):
    win = open_window(make(base(), "sampler=ddpm,sampler=ddim:sampler.steps=5"))
    wait_until(lambda: ready(win) and all(r.quality is not None and r.nfe for r in win.ctl.runs), 180,
               "quality and NFE of both runs")
    tab = win.ctl.table()
    for row, rs in zip(tab.rows, win.ctl.runs):
        own = rs.column.samples.metrics                      # what the run's own Samples panel shows
        q = own.get("x_iid", own.get("energy_distance_x_iid"))
        assert row.get("quality_x_iid") == pytest.approx(q)
        assert row.get("parameters") == rs.info.parameters
        assert row.get("nfe") == rs.column.particles.traj.nfe
        assert row.get("steps") == rs.step
    assert [r.get("nfe") for r in tab.rows] == [20, 5]     # DDPM's T network calls, DDIM's 5
    assert tab.leaders()["nfe"] == (1,)
    win.table_view.show_table(tab, [r.column.color for r in win.ctl.runs])
    assert win.table_view.cell_text(1, "nfe").endswith("★")
    path = tmp_path / "t.csv"
    assert win.table_view.export_csv(str(path))
    rows = list(csv.DictReader(open(path)))
    assert [r["run"] for r in rows] == ["sampler=ddpm", "sampler=ddim steps=5"] and "nfe" in rows[1]["leads"]
    stats = win.run_stats()
    assert stats["run0_steps"] == win.ctl.runs[0].step and "run1_quality_x_iid" in stats


def test_bad_compare_items_and_close_mid_training_exit_0():
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    p = subprocess.run([sys.executable, "main.py", "--compare", "ddpm,nosuch"], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and "no family named 'nosuch'" in p.stderr
    p = subprocess.run([sys.executable, "main.py", "--compare", "ddpm:hidden=16,ncsn:hidden=16", "--dataset", "moons",
                        "--autostart", "--quit-after", "6"], cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=240)
    assert p.returncode == 0, p.stderr[-3000:]
    line = [l for l in p.stdout.splitlines() if l.startswith("runs=")]
    assert len(line) == 1, p.stdout
    stats = dict(kv.split("=", 1) for kv in line[0].split())
    for key in ("run0_quality_x_iid", "run0_steps", "run1_quality_x_iid", "run1_steps", "fps", "ui_lateness_p99_ms"):
        assert key in stats
    assert stats["runs"] == "2" and "Traceback" not in p.stderr


def test_compare_with_and_comparison_lessons_from_the_main_window(themed_app, monkeypatch, wait_until):
    from PySide6 import QtWidgets

    from app.main_window import MainWindow
    win = MainWindow()
    opened = []
    try:
        wait_until(lambda: win.info is not None, 120, "the single run")
        monkeypatch.setattr(QtWidgets.QInputDialog, "getText", lambda *a, **k: ("schedule=linear", True))
        win._compare_with()
        cw = win._comparisons[-1]
        opened.append(cw)
        cfgs = [r.spec.cfg for r in cw.ctl.runs]
        assert [c.family for c in cfgs] == ["ddpm", "ddpm"]
        assert cfgs[1].options["schedule"] == "linear" and cfgs[0].options["schedule"] == win.cfg.options["schedule"]
        assert cfgs[0].train.seed == cfgs[1].train.seed
        win._lesson_chosen("compare_plain_vs_annealed")
        lesson = win._comparisons[-1]
        opened.append(lesson)
        assert lesson is not cw and [r.spec.label for r in lesson.ctl.runs] == ["plain Langevin", "annealed Langevin"]
        wait_until(lambda: all(r.info is not None for r in lesson.ctl.runs), 120, "the lesson's runs")
        assert lesson.ctl.share.active == [False, False]      # the exact score trains nothing: no turns held
    finally:
        for w in opened:
            w.shutdown(1.0)
            w.close()
        win.shutdown()
        win.close()
