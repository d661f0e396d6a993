"""The run lifecycle of issue 9, defect by defect (each test failed on the window before the
session / controller split): a failed start keeps the old run, repeated Reset builds one run
at a time, closing mid-build or mid-chunk returns within a second with every thread joined,
one failing handler neither drops the other messages nor repeats its message box, NaN
particles and huge values draw, Play on an unfinished drawing does not train the old dataset,
an unreadable file gives a message, and a stale background load cannot replace a newer choice.
Every wait is for a condition (generous limits), never a fixed dwell."""
import os
import threading
import time

import numpy as np
import pytest

from app.main_window import MainWindow
from engines import messages as M

SMALL = dict(n_data=2000)


@pytest.fixture(scope="module")
def win(themed_app, wait_until):
    w = MainWindow()
    w.train.set_values(SMALL)
    w.restart("small")
    w.show()
    wait_until(lambda: w.ready() and w.info.n_data == 2000, 120, "the first run to be ready")
    yield w
    w.shutdown()
    w.close()
    w.deleteLater()


def alive_session_threads():
    return [t for t in threading.enumerate() if t.name.startswith("session-") and t.is_alive()]


def test_failed_start_keeps_the_old_run_playing(win, wait_until):
    """RBM needs binary images: choosing it on moons fails to build; the moons run goes on."""
    old = win.worker
    n0 = len(win.errors)
    win.set_playing(True)
    win.choose(family="rbm")
    wait_until(lambda: win.ctl.slot.building is None, 60, "the failed build to be dropped")
    assert win.worker is old and old.is_alive()
    assert len(win.errors) > n0 and "could not start" in win.errors[-1][1]
    assert win.playing and win.play_action.text() == "Pause"       # the toolbar tells the truth
    step = win.step
    wait_until(lambda: win.step > step, 60, "the old run to keep training")
    win.set_playing(False)
    win._msgbox.close()
    win.choose(family="ddpm")
    wait_until(lambda: win.ready() and win.info.family == "ddpm", 60, "ddpm again")


def test_repeated_reset_builds_one_run_at_a_time(win, wait_until):
    peak = []
    for _ in range(6):
        win.restart("reset")
        peak.append(len([w for w in (win.ctl.slot.building,) if w is not None]))
    assert max(peak) == 1                                          # at most one building
    retiring = list(win.ctl.slot.retiring)
    assert len(retiring) >= 5 and all(w.session.cancel_event.is_set() for w in retiring)
    wait_until(lambda: win.ready() and not win.ctl.slot.retiring, 60, "the last reset run, the others joined")
    assert len(alive_session_threads()) == 1


def test_one_failing_handler_drops_nothing_and_is_shown_once(win, wait_until, pump):
    real = win.losses.on_snapshot
    n0 = len(win.errors)

    def broken(snap):
        raise RuntimeError("simulated panel bug")
    win.losses.on_snapshot = broken
    try:
        s0 = win.samples.draws
        win.step_once(5)
        win.ctl.send(M.SamplesNow())
        wait_until(lambda: win.step >= 5 and win.samples.draws > s0, 60, "other panels to keep updating")
        win.step_once(5)
        wait_until(lambda: win.step >= 10, 60, "more steps")
        pump(0.2)
    finally:
        win.losses.on_snapshot = real
    bugs = [e for e in win.errors[n0:] if "simulated panel bug" in e[1]]
    assert len(bugs) == 1                                          # shown once, not once per frame
    win._msgbox.close()


def test_non_finite_particles_are_drawn_as_diverged(win, themed_app):
    x = np.random.default_rng(0).normal(size=(100, 2)).astype(np.float32)
    x[:40] = np.nan
    frames = np.stack([x, x])
    frames.setflags(write=False)                                   # what crosses threads is read-only
    traj = M.Trajectory(frames=frames, i=np.arange(2.0), t=np.array([1.0, 0.0]), sigma=np.full(2, np.nan),
                        nfe=2, steps=2, seconds=0.1, step=win.step, sampler="test", diverged=40)
    win.ctl.dispatch(traj)
    win.particles._show(1, force=True)
    assert win.particles.particle_count() == 60 and "40 diverged" in win.particles.text.toPlainText()
    all_nan = np.full((2, 50, 2), np.nan, np.float32)
    win.ctl.dispatch(M.Trajectory(frames=all_nan, i=np.arange(2.0), t=np.zeros(2), sigma=np.zeros(2), nfe=2,
                                  steps=2, seconds=0.1, step=win.step, sampler="test", diverged=50))
    win.particles._show(1, force=True)
    assert win.particles.particle_count() == 0


def test_huge_values_in_a_csv_train_and_draw(win, tmp_path, wait_until, pump):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(300, 2))
    x[0], x[1] = (3e38, 1.0), (-3e38, -1.0)
    path = tmp_path / "huge.csv"
    np.savetxt(path, x, delimiter=",")
    n0 = len(win.errors)
    assert win.datasets.open_file(str(path))
    wait_until(lambda: win.ready() and win.info.n_data == 300, 60, "the huge-valued run")
    assert all(np.isfinite(win.info.bounds))
    win.step_once(3)
    wait_until(lambda: win.step >= 3 and win.field.field is not None, 60, "a field of the huge run")
    pump(0.3)
    assert not [e for e in win.errors[n0:] if e[0].startswith("Drawing failed")]


def test_play_on_an_unfinished_drawing_says_so(win, wait_until):
    before = win.worker
    win.datasets.enter_draw_mode()
    win.datasets.clear_drawing()
    n0 = len(win.errors)
    win.set_playing(True)
    assert not win.playing and win.worker is before
    assert win.errors[n0][0] == "Not enough points"
    win._msgbox.close()
    win.datasets.select("moons")
    wait_until(lambda: win.ready() and win.info.dataset == "moons", 60, "moons again")


def test_unreadable_file_gives_a_message(win, tmp_path, monkeypatch):
    path = tmp_path / "secret.csv"
    np.savetxt(path, np.zeros((20, 2)), delimiter=",")
    if os.geteuid() == 0:                                          # root reads anything: fail the read itself
        import app.controls.dataset as ds

        def denied(p, *a, **kw):
            raise PermissionError(13, "Permission denied", str(p))
        monkeypatch.setattr(ds, "load_points_file", denied)
    else:
        path.chmod(0)
    n0 = len(win.errors)
    assert win.datasets.open_file(str(path)) is False
    assert win.errors[n0][0] == "Could not use this file" and "Permission denied" in win.errors[n0][1]
    win._msgbox.close()


def test_stale_background_load_cannot_replace_a_newer_choice(win, tmp_path, wait_until):
    from PIL import Image
    folder = tmp_path / "imgs"
    folder.mkdir()
    for k in range(12):
        Image.fromarray((np.random.default_rng(k).random((8, 8)) * 255).astype(np.uint8)).save(folder / f"{k}.png")
    assert win.datasets.open_file(str(folder), background=True) is None
    win.datasets.select("moons")                                   # the user changes their mind
    assert not win.datasets.loading()
    wait_until(lambda: win.ready() and win.info.dataset == "moons", 60, "moons")
    time.sleep(0.2)
    assert win.dataset == "moons" and str(folder) not in win.datasets.files


def test_close_mid_build_returns_within_a_second(themed_app, wait_until):
    """10^7 points take seconds to generate: closing meanwhile cancels the build."""
    start = len(alive_session_threads())
    w = MainWindow()
    w.show()
    wait_until(lambda: w.ready(), 120, "the first run")
    w.train.set_values(dict(n_data=10 ** 7))
    w.restart("big")
    wait_until(lambda: w.ctl.slot.building is not None and w.ctl.slot.building.is_alive(), 10, "the build to start")
    time.sleep(0.3)                                                # inside the data generation
    t0 = time.perf_counter()
    w.close()
    assert time.perf_counter() - t0 < 1.5
    wait_until(lambda: len(alive_session_threads()) == start, 10, "every session thread to end")
    w.deleteLater()


def test_close_mid_training_returns_within_a_second(themed_app, wait_until):
    start = len(alive_session_threads())
    w = MainWindow(autostart=True)
    w.show()
    wait_until(lambda: w.step > 5, 120, "training")
    t0 = time.perf_counter()
    assert w.shutdown()
    assert time.perf_counter() - t0 < 1.5
    w.close()
    assert len(alive_session_threads()) == start
    w.deleteLater()
